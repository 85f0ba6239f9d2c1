package pubsublock

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

func TestHandshakeTranscript(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   ClientConfig
		steps []step
	}{
		{"plain", ClientConfig{}, []step{{cmd("HELLO", "3"), helloReply}}},
		{"auth name db", ClientConfig{Username: "u", Password: "p", ClientName: "app", DB: 2}, []step{
			{cmd("HELLO", "3", "AUTH", "u", "p", "SETNAME", "app"), helloReply},
			{cmd("SELECT", "2"), "+OK\r\n"},
		}},
		{"password only", ClientConfig{Password: "p"}, []step{{cmd("HELLO", "3", "AUTH", "default", "p"), helloReply}}},
		{"fallback NOPROTO", ClientConfig{Password: "p", ClientName: "app", DB: 1}, []step{
			{cmd("HELLO", "3", "AUTH", "default", "p", "SETNAME", "app"), "-NOPROTO sorry, this protocol version is not supported\r\n"},
			{cmd("AUTH", "p") + cmd("CLIENT", "SETNAME", "app") + cmd("SELECT", "1"), "+OK\r\n+OK\r\n+OK\r\n"},
		}},
		{"fallback Redis 5", ClientConfig{Username: "u", Password: "p"}, []step{
			{cmd("HELLO", "3", "AUTH", "u", "p"), "-ERR unknown command `HELLO`, with args beginning with: `3`, \r\n"},
			{cmd("AUTH", "u", "p"), "+OK\r\n"},
		}},
		{"protocol=2", ClientConfig{URL: "redis://h?protocol=2", ClientName: "x"}, []step{
			{cmd("CLIENT", "SETNAME", "x"), "+OK\r\n"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer(t, transcript(tc.steps...))
			dc, err := tc.cfg.dialConfig()
			if err != nil {
				t.Fatal(err)
			}
			dc.network, dc.addr = "tcp", s.addr()
			c, err := dialConn(context.Background(), dc)
			if err != nil {
				t.Fatal(err)
			}
			c.close()
			var want strings.Builder
			for _, st := range tc.steps {
				want.WriteString(st.want)
			}
			if got := s.sent(t); got != want.String() {
				t.Errorf("sent %q\nwant %q", got, want.String())
			}
		})
	}
}

func TestHandshakeAuthFailureHidesPassword(t *testing.T) {
	s := newFakeServer(t, transcript(step{cmd("HELLO", "3", "AUTH", "u", "hunter2"), "-WRONGPASS invalid username-password pair or user is disabled.\r\n"}))
	_, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.addr(), username: "u", password: "hunter2"})
	var re resp.Error
	if !errors.As(err, &re) || re.Code() != "WRONGPASS" {
		t.Fatalf("err = %v, want WRONGPASS", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error reveals the password: %v", err)
	}
}

// TestHandshakeRealServers checks the bytes sent and the protocol agreed
// with miniredis and redis-server, with a password, a name and a DB, and
// the RESP2 fallback against a server whose HELLO is disabled.
func TestHandshakeRealServers(t *testing.T) {
	type target struct {
		name, addr string
		resp3      bool
		hello      bool
	}
	m := redistest.Miniredis(t)
	m.RequireUserAuth("u", "pw")
	acl := []string{"--user", "u", "on", ">pw", "~*", "&*", "+@all"}
	real := redistest.Redis(t, acl...)
	old := redistest.Redis(t, append([]string{"--rename-command", "HELLO", ""}, acl...)...)
	for _, tg := range []target{{"miniredis", m.Addr(), true, true}, {"redis", real.Addr(), true, true}, {"redis-without-hello", old.Addr(), false, false}} {
		t.Run(tg.name, func(t *testing.T) {
			px := redistest.NewProxy(t, tg.addr)
			px.Record()
			c, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: px.Addr(),
				username: "u", password: "pw", name: "app", db: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			if c.resp3 != tg.resp3 {
				t.Errorf("resp3 = %v", c.resp3)
			}
			v, err := c.do(context.Background(), "PING")
			if err != nil || string(v.Str) != "PONG" {
				t.Fatalf("PING: %v %v", v, err)
			}
			want := cmd("HELLO", "3", "AUTH", "u", "pw", "SETNAME", "app")
			if !tg.hello {
				want += cmd("AUTH", "u", "pw") + cmd("CLIENT", "SETNAME", "app")
			}
			want += cmd("SELECT", "3") + cmd("PING")
			if got := px.Sent(); got != want {
				t.Errorf("sent %q\nwant %q", got, want)
			}
		})
	}
}

func TestContextDeadlineClosesConn(t *testing.T) {
	// A server that reads and never answers.
	s := newFakeServer(t, transcript(step{cmd("PING"), ""}))
	c, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.addr(), resp2: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.do(ctx, "PING")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("returned after %v", d)
	}
	if c.failed() == nil {
		t.Fatal("connection still usable after a timed-out round trip")
	}
	if _, err := c.do(context.Background(), "PING"); err == nil {
		t.Fatal("reused a timed-out connection")
	}
}

func TestContextCancelClosesConn(t *testing.T) {
	s := newFakeServer(t, transcript(step{cmd("PING"), ""}))
	c, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.addr(), resp2: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := c.do(ctx, "PING"); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if c.failed() == nil {
		t.Fatal("connection still usable after a canceled round trip")
	}
}

func TestPushBeforeReply(t *testing.T) {
	push := ">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$2\r\nhi\r\n"
	s := newFakeServer(t, transcript(
		step{cmd("HELLO", "3"), helloReply},
		step{cmd("SUBSCRIBE", "jobs") + cmd("PUBSUB", "NUMSUB", "jobs"),
			">3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n" + push + "*2\r\n$4\r\njobs\r\n:1\r\n"}))
	c, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var pushes []string
	c.onPush = func(v resp.Value) { pushes = append(pushes, v.String()) }
	var n int64
	err = c.pipeline(context.Background(), [][]string{{"SUBSCRIBE", "jobs"}, {"PUBSUB", "NUMSUB", "jobs"}},
		func(_ int, v resp.Value) (err error) { n, err = numsubCount(v, "jobs"); return err })
	if err != nil || n != 1 {
		t.Fatalf("n = %d, err = %v", n, err)
	}
	if len(pushes) != 2 || pushes[1] != `>["message" "jobs" "hi"]` {
		t.Fatalf("pushes = %q", pushes)
	}
}

func TestProtocolErrorIsFatal(t *testing.T) {
	s := newFakeServer(t, transcript(step{cmd("PING"), "$1\r\naXY\r\n"}))
	c, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.addr(), resp2: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.do(context.Background(), "PING")
	if !errors.Is(err, resp.ErrProtocol) {
		t.Fatalf("err = %v", err)
	}
	if _, err2 := c.do(context.Background(), "PING"); !errors.Is(err2, resp.ErrProtocol) {
		t.Fatalf("second call: %v, want the sticky protocol error", err2)
	}
}

func TestServerErrorIsNotFatal(t *testing.T) {
	s := newFakeServer(t, transcript(
		step{cmd("GET", "k"), "-MOVED 5258 127.0.0.1:17001\r\n"},
		step{cmd("PING"), "+PONG\r\n"}))
	c, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.addr(), resp2: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	_, err = c.do(context.Background(), "GET", "k")
	var re resp.Error
	if !errors.As(err, &re) || re.Code() != "MOVED" {
		t.Fatalf("err = %v", err)
	}
	if v, err := c.do(context.Background(), "PING"); err != nil || string(v.Str) != "PONG" {
		t.Fatalf("after an error reply: %v %v", v, err)
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	sock := dir + "/redis.sock"
	redistest.Redis(t, "--unixsocket", sock, "--unixsocketperm", "700")
	l := newLock(t, "unix-lock", Config{URL: "unix://" + sock + "?db=1"})
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestDrainWaitBounded: a connection still carrying a released hold's
// replies makes its next user wait for them, but never longer than the
// user's context, and a hold's worker never draws such a connection from
// the pool (two workers could each wait for the other's drain).
func TestDrainWaitBounded(t *testing.T) {
	m := redistest.Miniredis(t)
	cl := newClient(t, ClientConfig{Addr: m.Addr()})
	ctx := context.Background()
	c, err := cl.get(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	never := make(chan struct{})
	c.drain = never // a release whose worker never finishes
	cl.put(c)
	r, err := cl.getReady(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	if r == c {
		t.Fatal("getReady returned a draining connection")
	}
	cl.put(r)
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.do(tctx, "PING"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("PING behind a drain that never ends = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("waited %v for a drain, past the context's 100ms", d)
	}
}

// TestPeerClosed: a connection the server closed is seen as closed without
// reading it, even with replies still unread before the close; an open
// one is not.
func TestPeerClosed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("POLLRDHUP is Linux's")
	}
	s := redistest.Redis(t)
	ctx := context.Background()
	c, err := dialConn(ctx, dialConfig{network: "tcp", addr: s.Addr(), dialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	v, err := c.do(ctx, "CLIENT", "ID")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.peerClosed(); err != nil {
		t.Fatalf("an open connection: %v", err)
	}
	// A reply left unread, then the server closes the connection.
	if _, err := c.nc.Write(resp.AppendCommand(nil, "PING")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	mustDo(t, s, "CLIENT", "KILL", "ID", strconv.FormatInt(v.Int, 10))
	waitFor(t, func() bool { return c.peerClosed() != nil })
	if c.failed() == nil {
		t.Error("a connection found closed is not retired")
	}
}
