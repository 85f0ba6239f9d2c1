package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gomodule/redigo/redis"
	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/redis/rueidis"

	"github.com/pubsublock/pubsublock/resp"
)

// pingPayload is a contender's ping as portalocker writes it: the message a
// holder reads most.
const pingPayload = `{"response_channel": "jobs-0.9461501796110964", "message": "ping"}`

// reply is one canned server reply and the command that asks for it.
type reply struct {
	name  string
	bytes string // as redis-server sends it (RESP3 for the push)
}

// replies are the canned replies; commandFor names the command that asks
// for each, and the push is streamed after SUBSCRIBE jobs.
var replies = []reply{
	{"simple", "+OK\r\n"},
	{"integer", ":1\r\n"},
	{"bulk64", "$64\r\n" + strings.Repeat("b", 64) + "\r\n"},
	{"numsub", "*2\r\n$4\r\njobs\r\n:1\r\n"},
	{"push", pushFrame('>')},
}

// pushFrame is a pub/sub message on jobs: kind '>' for RESP3, '*' for RESP2.
func pushFrame(kind byte) string {
	return string(kind) + "3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$" + strconv.Itoa(len(pingPayload)) + "\r\n" + pingPayload + "\r\n"
}

// codecPath is one way to get from reply bytes to a Go value.
type codecPath struct {
	name, what string
	bench      func(b *testing.B, r reply)
}

var codecPaths = []codecPath{
	{"pubsublock-resp.Reader", "resp.Reader.Read on the bytes (codec only)", benchReader},
	{"pubsublock-rawconn", "resp.AppendCommand + Write + resp.Reader.Read on a fake conn", benchRawConn},
	{"go-redis", "go-redis v9 client command (RESP3) on a fake conn", benchGoRedis},
	{"redigo", "redigo Conn.Do (RESP2; push as RESP2 *3) on a fake conn", benchRedigo},
	{"rueidis", "rueidis client Do (RESP3) on a fake conn", benchRueidis},
}

func runCodec(cfg *config, rs *results) {
	rounds := cycleRounds
	if cfg.short {
		rounds = 1
	}
	setBenchtime(cfg.benchtime / time.Duration(rounds))
	defer setBenchtime(cfg.benchtime)
	for range rounds { // interleaved, as in the cycle section
		for _, p := range codecPaths {
			for _, r := range replies {
				res := testing.Benchmark(func(b *testing.B) { p.bench(b, r) })
				if res.N == 0 {
					fmt.Fprintf(cfg.log, "codec %s/%s failed: %s\n", r.name, p.name, lastFailure())
					continue
				}
				rs.add(fromBenchmark("Codec/"+r.name+"/"+p.name, res))
			}
		}
	}
}

func printCodec(cfg *config, rs *results) {
	t := table{head: []string{"path (ns/op · B/op · allocs/op)"}}
	for _, r := range replies {
		t.head = append(t.head, r.name)
	}
	for _, p := range codecPaths {
		cells := []string{p.name}
		for _, r := range replies {
			m, ok := rs.median("Codec/" + r.name + "/" + p.name)
			if !ok {
				cells = append(cells, "failed")
				continue
			}
			cells = append(cells, fmt.Sprintf("%s · %s · %s", num(m.ns), num(m.bytes), num(m.allocs)))
		}
		t.row(cells...)
	}
	fmt.Fprintln(cfg.out, "## 1. Codec: reply bytes to a Go value")
	fmt.Fprintln(cfg.out)
	fmt.Fprintln(cfg.out, "Same reply bytes for every path: simple `+OK` (SET), integer `:1` (INCR), bulk64 (GET),")
	fmt.Fprintln(cfg.out, "numsub `*2 jobs :1` (PUBSUB NUMSUB), push = a pub/sub message carrying a portalocker ping.")
	fmt.Fprintln(cfg.out, "No peer exports its reader, so peers are timed through their smallest public path:")
	fmt.Fprintln(cfg.out, "a client on a fake net.Conn that answers every command with the canned reply (their")
	fmt.Fprintln(cfg.out, "figures include the client's command path: encoding, pool, result type).")
	fmt.Fprintln(cfg.out, "pubsublock-rawconn is the same fake-conn round trip with our codec, for comparison.")
	fmt.Fprintf(cfg.out, "Median of %d interleaved rounds (1 with -short).\n", cycleRounds)
	fmt.Fprintln(cfg.out)
	for _, p := range codecPaths {
		fmt.Fprintf(cfg.out, "- %s: %s\n", p.name, p.what)
	}
	fmt.Fprintln(cfg.out)
	t.write(cfg.out)
}

// loopReader returns its bytes over and over.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.off:])
		n += c
		l.off = (l.off + c) % len(l.b)
	}
	return n, nil
}

func benchReader(b *testing.B, r reply) {
	rd := resp.NewReader(&loopReader{b: []byte(r.bytes)}, resp.Limits{})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rd.Read(); err != nil {
			fatal(b, err)
		}
	}
}

// commandFor is the command whose answer is r.
func commandFor(r reply) []string {
	switch r.name {
	case "simple":
		return []string{"SET", "k", "v"}
	case "integer":
		return []string{"INCR", "k"}
	case "bulk64":
		return []string{"GET", "k"}
	}
	return []string{"PUBSUB", "NUMSUB", "jobs"}
}

func benchRawConn(b *testing.B, r reply) {
	fc := newFakeConn([]byte(r.bytes), []byte(r.bytes))
	defer fc.Close()
	rd := resp.NewReader(bufio.NewReaderSize(fc, 4096), resp.Limits{})
	buf := make([]byte, 0, 256)
	if r.name == "push" {
		fc.Write(resp.AppendCommand(buf, "SUBSCRIBE", "jobs"))
		if _, err := rd.Read(); err != nil {
			fatal(b, err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		fc.Stream(b.N)
		for range b.N {
			if _, err := rd.Read(); err != nil {
				fatal(b, err)
			}
		}
		return
	}
	args := commandFor(r)
	b.ReportAllocs()
	for b.Loop() {
		buf = resp.AppendCommand(buf[:0], args...)
		if _, err := fc.Write(buf); err != nil {
			fatal(b, err)
		}
		v, err := rd.Read()
		if err != nil || v.Type == resp.TypeError {
			fatal(b, v, err)
		}
	}
}

func benchGoRedis(b *testing.B, r reply) {
	d := &fakeDialer{reply: []byte(r.bytes), push: []byte(r.bytes)}
	defer d.close()
	c := goredis.NewClient(&goredis.Options{
		Addr:                     "127.0.0.1:6379",
		Dialer:                   func(context.Context, string, string) (net.Conn, error) { return d.dial(), nil },
		Protocol:                 3,
		DisableIdentity:          true,
		PoolSize:                 1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		fatal(b, err)
	}
	var err error
	switch r.name {
	case "push":
		ps := c.Subscribe(ctx, "jobs")
		defer ps.Close()
		if _, err := ps.Receive(ctx); err != nil {
			fatal(b, err)
		}
		fc := d.subscribed(5 * time.Second)
		b.ReportAllocs()
		b.ResetTimer()
		fc.Stream(b.N)
		for range b.N {
			if _, err = ps.ReceiveMessage(ctx); err != nil {
				break
			}
		}
	case "simple":
		b.ReportAllocs()
		for b.Loop() {
			if err = c.Set(ctx, "k", "v", 0).Err(); err != nil {
				break
			}
		}
	case "integer":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = c.Incr(ctx, "k").Result(); err != nil {
				break
			}
		}
	case "bulk64":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = c.Get(ctx, "k").Result(); err != nil {
				break
			}
		}
	case "numsub":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = c.PubSubNumSub(ctx, "jobs").Result(); err != nil {
				break
			}
		}
	}
	if err != nil {
		fatal(b, err)
	}
}

func benchRedigo(b *testing.B, r reply) {
	raw := r.bytes
	if r.name == "push" {
		raw = pushFrame('*') // redigo speaks RESP2 only
	}
	fc := newFakeConn([]byte(raw), []byte(raw))
	c := redis.NewConn(fc, 0, 0)
	defer c.Close()
	var err error
	switch r.name {
	case "push":
		psc := redis.PubSubConn{Conn: c}
		if err := psc.Subscribe("jobs"); err != nil {
			fatal(b, err)
		}
		if _, ok := psc.Receive().(redis.Subscription); !ok {
			fatal(b, "no subscription confirmation")
		}
		b.ReportAllocs()
		b.ResetTimer()
		fc.Stream(b.N)
		for range b.N {
			if v := psc.Receive(); !isMessage(v) {
				fatal(b, "redigo Receive:", v)
			}
		}
	case "simple":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = redis.String(c.Do("SET", "k", "v")); err != nil {
				break
			}
		}
	case "integer":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = redis.Int64(c.Do("INCR", "k")); err != nil {
				break
			}
		}
	case "bulk64":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = redis.String(c.Do("GET", "k")); err != nil {
				break
			}
		}
	case "numsub":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = redis.Int64Map(c.Do("PUBSUB", "NUMSUB", "jobs")); err != nil {
				break
			}
		}
	}
	if err != nil {
		fatal(b, err)
	}
}

func benchRueidis(b *testing.B, r reply) {
	d := &fakeDialer{reply: []byte(r.bytes), push: []byte(r.bytes)}
	defer d.close()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:       []string{"127.0.0.1:6379"},
		DialCtxFn:         func(context.Context, string, *net.Dialer, *tls.Config) (net.Conn, error) { return d.dial(), nil },
		ForceSingleClient: true,
		DisableCache:      true,
	})
	if err != nil {
		fatal(b, err)
	}
	defer c.Close()
	ctx := context.Background()
	switch r.name {
	case "push":
		got := make(chan struct{})
		n, want := 0, b.N
		go c.Receive(ctx, c.B().Subscribe().Channel("jobs").Build(), func(rueidis.PubSubMessage) {
			if n++; n == want {
				close(got)
			}
		})
		fc := d.subscribed(5 * time.Second)
		if fc == nil {
			fatal(b, "no SUBSCRIBE")
		}
		b.ReportAllocs()
		b.ResetTimer()
		fc.Stream(b.N)
		select {
		case <-got:
		case <-time.After(time.Minute):
			fatal(b, "messages lost")
		}
		b.StopTimer()
	case "simple":
		cmd := func() rueidis.Completed { return c.B().Set().Key("k").Value("v").Build() }
		b.ReportAllocs()
		for b.Loop() {
			if err = c.Do(ctx, cmd()).Error(); err != nil {
				break
			}
		}
	case "integer":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = c.Do(ctx, c.B().Incr().Key("k").Build()).AsInt64(); err != nil {
				break
			}
		}
	case "bulk64":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = c.Do(ctx, c.B().Get().Key("k").Build()).ToString(); err != nil {
				break
			}
		}
	case "numsub":
		b.ReportAllocs()
		for b.Loop() {
			if _, err = c.Do(ctx, c.B().PubsubNumsub().Channel("jobs").Build()).AsIntMap(); err != nil {
				break
			}
		}
	}
	if err != nil {
		fatal(b, err)
	}
}

func isMessage(v any) bool {
	_, ok := v.(redis.Message)
	return ok
}
