package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/resp"
)

// cycleRow is one row of the lock-cycle section: a lock's acquire plus
// release, or a PING floor.
type cycleRow struct {
	name, what string
	// setup returns the operation to time and a cleanup.
	setup func(addr string) (op func(ctx context.Context) error, done func(), err error)
}

var cycleRows = []cycleRow{
	{"pubsublock", "Acquire+Release, Locks sharing one pubsublock.Client (warm connections)", func(addr string) (func(context.Context) error, func(), error) {
		cl, err := pubsublock.NewClient(pubsublock.ClientConfig{Addr: addr})
		if err != nil {
			return nil, nil, err
		}
		lk, err := pubsublockLocker(cl, uniqueName("cycle"), true)
		return lockCycle(lk, err)
	}},
	{"pubsublock-noclient", "Acquire+Release, one Lock from Config.URL without a Client, as in the README (the package's shared pool)", func(addr string) (func(context.Context) error, func(), error) {
		l, err := pubsublock.New(uniqueName("cycle"), pubsublock.Config{URL: "redis://" + addr})
		if err != nil {
			return nil, nil, err
		}
		return lockCycle(&locker{acquire: l.Acquire, release: l.Release, close: func() {}}, nil)
	}},
	{"bsm-redislock", "Obtain+Release (TTL 5s), go-redis v9 client", peerCycle("bsm-redislock")},
	{"redsync", "LockContext+UnlockContext, default options, goredis v9 pool", peerCycle("redsync")},
	{"rueidislock", "WithContext+cancel, default options (3 keys, majority 2)", peerCycle("rueidislock")},
	{"ping-rawsocket", "floor: 1 PING round trip, resp.AppendCommand + resp.Reader on a net.Conn", rawPing(1)},
	{"2ping-rawsocket", "floor: 2 PING round trips, as above", rawPing(2)},
	{"ping-go-redis", "floor: 1 go-redis Ping", goredisPing(1)},
	{"2ping-go-redis", "floor: 2 go-redis Pings", goredisPing(2)},
}

func peerCycle(name string) func(addr string) (func(context.Context) error, func(), error) {
	return func(addr string) (func(context.Context) error, func(), error) {
		p, _ := findPeer(name)
		return lockCycle(p.new(addr, uniqueName("cycle"), 0))
	}
}

func lockCycle(lk *locker, err error) (func(context.Context) error, func(), error) {
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context) error {
		if err := lk.acquire(ctx); err != nil {
			return err
		}
		return lk.release(ctx)
	}, lk.close, nil
}

func rawPing(n int) func(addr string) (func(context.Context) error, func(), error) {
	return func(addr string) (func(context.Context) error, func(), error) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		rd := resp.NewReader(bufio.NewReader(nc), resp.Limits{})
		cmd := resp.AppendCommand(nil, "PING")
		return func(context.Context) error {
			for range n {
				if _, err := nc.Write(cmd); err != nil {
					return err
				}
				if _, err := rd.Read(); err != nil {
					return err
				}
			}
			return nil
		}, func() { nc.Close() }, nil
	}
}

func goredisPing(n int) func(addr string) (func(context.Context) error, func(), error) {
	return func(addr string) (func(context.Context) error, func(), error) {
		c := goredis.NewClient(&goredis.Options{Addr: addr})
		return func(ctx context.Context) error {
			for range n {
				if err := c.Ping(ctx).Err(); err != nil {
					return err
				}
			}
			return nil
		}, func() { c.Close() }, nil
	}
}

// cmdsPerCycle is how many commands of each kind one cycle sends, by row,
// from INFO commandstats around 100 cycles.
var cmdsPerCycle = map[string]string{}

// cycleRounds is how many interleaved rounds the cycle section runs (one
// with -short): every row is timed once per round, so a burst of load from
// elsewhere on the machine hits one round of several rows rather than
// every sample of one row. The table shows the median round.
const cycleRounds = 5

func runCycle(cfg *config, rs *results) {
	ctx := context.Background()
	type live struct {
		row  cycleRow
		op   func(context.Context) error
		done func()
	}
	var rows []live
	for _, row := range cfg.rows {
		op, done, err := row.setup(cfg.srv.addr)
		if err != nil {
			fmt.Fprintf(cfg.log, "cycle %s: %v\n", row.name, err)
			continue
		}
		if err := op(ctx); err != nil { // warm up: connections, scripts
			fmt.Fprintf(cfg.log, "cycle %s: %v\n", row.name, err)
			done()
			continue
		}
		rows = append(rows, live{row, op, done})
	}
	defer func() {
		for _, r := range rows {
			r.done()
		}
	}()
	rounds := cycleRounds
	if cfg.short {
		rounds = 1
	}
	setBenchtime(cfg.benchtime / time.Duration(rounds))
	defer setBenchtime(cfg.benchtime)
	for range rounds {
		for _, r := range rows {
			res := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if err := r.op(ctx); err != nil {
						fatal(b, err)
					}
				}
			})
			if res.N == 0 {
				fmt.Fprintf(cfg.log, "cycle %s failed: %s\n", r.row.name, lastFailure())
				continue
			}
			rs.add(fromBenchmark("Cycle/"+r.row.name, res))
		}
	}
	for _, r := range rows {
		if _, ok := cmdsPerCycle[r.row.name]; !ok {
			cmdsPerCycle[r.row.name] = countCommands(cfg.srv.addr, r.op)
		}
	}
}

// countCommands runs op 100 times between CONFIG RESETSTAT and INFO
// commandstats and describes the commands per run.
func countCommands(addr string, op func(context.Context) error) string {
	const runs = 100
	if _, err := admin(addr, "CONFIG", "RESETSTAT"); err != nil {
		return "?"
	}
	for range runs {
		if err := op(context.Background()); err != nil {
			return "?"
		}
	}
	stats, err := commandStats(addr)
	if err != nil {
		return "?"
	}
	total := 0
	var parts []string
	for name, n := range stats {
		total += n
		parts = append(parts, fmt.Sprintf("%s %s", name, num(float64(n)/runs)))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%s: %s", num(float64(total)/runs), strings.Join(parts, ", "))
}

func printCycle(cfg *config, rs *results) {
	w := cfg.out
	fmt.Fprintln(w, "## 2. Lock cycle: uncontended acquire + release, warm connections")
	fmt.Fprintln(w)
	floor, hasFloor := rs.median("Cycle/ping-rawsocket")
	floor2, hasFloor2 := rs.median("Cycle/2ping-rawsocket")
	fmt.Fprintf(w, "Each row is timed in %d interleaved rounds (1 with -short); time/op is the median round, best the\n", cycleRounds)
	fmt.Fprintln(w, "fastest, × 1 PING and × 2 PINGs the median against the median raw-socket PING and two PINGs of")
	fmt.Fprintln(w, "the same run: compare these ratios across machines, not the times.")
	fmt.Fprintln(w)
	t := table{head: []string{"row", "time/op", "best", "× 1 PING", "× 2 PINGs", "B/op", "allocs/op", "commands per cycle (INFO commandstats)"}, align: "lrrrrrrl"}
	for _, row := range cfg.rows {
		m, ok := rs.median("Cycle/" + row.name)
		if !ok {
			t.row(row.name, "failed")
			continue
		}
		ratio, ratio2 := "n/a", "n/a"
		if hasFloor {
			ratio = fmt.Sprintf("%.2f", m.ns/floor.ns)
		}
		if hasFloor2 {
			ratio2 = fmt.Sprintf("%.2f", m.ns/floor2.ns)
		}
		t.row(row.name, dur(m.ns), dur(rs.best("Cycle/"+row.name)), ratio, ratio2, num(m.bytes), num(m.allocs), cmdsPerCycle[row.name])
	}
	t.write(w)
	for _, row := range cfg.rows {
		fmt.Fprintf(w, "- %s: %s\n", row.name, row.what)
	}
	fmt.Fprintln(w)
}
