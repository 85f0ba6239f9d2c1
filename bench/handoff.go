package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// holdFor is how long a holder works before it releases, in the hand-off
// section.
const holdFor = time.Millisecond

// warmupHandoffs are measured but dropped: they happen while the waiters
// are still joining.
const warmupHandoffs = 2

// handoffStats is what one hand-off measurement found besides the samples.
type handoffStats struct {
	violations int64 // acquisitions while another contender held the lock
	errors     int64 // failed acquires or releases (other than ctx's end)
	firstErr   string
	timedOut   bool
}

var handoffNotes = map[string]handoffStats{}

func runHandoff(cfg *config, rs *results) {
	// The floors, each recorded as its p50.
	for _, f := range []struct {
		name  string
		floor func(cfg *config, n int) ([]time.Duration, error)
	}{
		{"Handoff/idle-ping", idlePings},
		{"Handoff/raw-blpop", rawHandoffs},
		{"Handoff/raw-design", func(cfg *config, n int) ([]time.Duration, error) { return rawTryHandoffs(cfg, n, false) }},
		{"Handoff/raw-design-holder-reads", func(cfg *config, n int) ([]time.Duration, error) { return rawTryHandoffs(cfg, n, true) }},
	} {
		if samples, err := f.floor(cfg, cfg.handoffs); err != nil {
			fmt.Fprintf(cfg.log, "%s: %v\n", f.name, err)
		} else {
			rs.add(result{name: f.name, n: len(samples), ns: float64(percentile(samples, 50)), bytes: -1, allocs: -1})
		}
	}
	for _, p := range cfg.peers {
		for _, n := range cfg.waiters {
			name := fmt.Sprintf("Handoff/waiters=%d/%s", n, p.name)
			samples, st, err := handoff(cfg, p, n)
			if err != nil {
				fmt.Fprintf(cfg.log, "%s: %v\n", name, err)
				continue
			}
			if st.firstErr != "" {
				fmt.Fprintf(cfg.log, "%s: %d errors, the first: %s\n", name, st.errors, st.firstErr)
			}
			noteHandoff(name, st)
			addLatencies(rs, name, samples)
		}
	}
}

// noteHandoff adds st to what earlier repeats of the measurement name
// found.
func noteHandoff(name string, st handoffStats) {
	prev := handoffNotes[name]
	st.violations += prev.violations
	st.errors += prev.errors
	st.timedOut = st.timedOut || prev.timedOut
	if prev.firstErr != "" {
		st.firstErr = prev.firstErr
	}
	handoffNotes[name] = st
}

// note describes for a table what went wrong in the measurement.
func (st handoffStats) note() string {
	note := ""
	if st.violations > 0 {
		note += fmt.Sprintf("%d EXCLUSION VIOLATIONS; ", st.violations)
	}
	if st.errors > 0 {
		note += fmt.Sprintf("%d errors, the first: %s; ", st.errors, st.firstErr)
	}
	if st.timedOut {
		note += "timed out before all hand-offs; "
	}
	return note
}

// addLatencies records samples as the result name: the mean as ns/op,
// and the p50, p99 and max.
func addLatencies(rs *results, name string, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	rs.add(result{name: name, n: len(samples), ns: float64(sum.Nanoseconds()) / float64(len(samples)),
		bytes: -1, allocs: -1, extra: []metric{
			{"p50-ns", float64(percentile(samples, 50))},
			{"p99-ns", float64(percentile(samples, 99))},
			{"max-ns", float64(samples[len(samples)-1])},
		}})
}

// idlePings times n raw PING round trips that each follow holdFor of
// idleness, as every thread is at a hand-off, unlike in a loop of PINGs.
func idlePings(cfg *config, n int) ([]time.Duration, error) {
	nc, err := net.Dial("tcp", cfg.srv.addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	rd := resp.NewReader(bufio.NewReader(nc), resp.Limits{})
	cmd := resp.AppendCommand(nil, "PING")
	samples := make([]time.Duration, 0, n)
	for range n {
		time.Sleep(holdFor)
		start := time.Now()
		if _, err := nc.Write(cmd); err != nil {
			return nil, err
		}
		if _, err := rd.Read(); err != nil {
			return nil, err
		}
		samples = append(samples, time.Since(start))
	}
	slices.Sort(samples)
	return samples, nil
}

// readReplies reads one reply from rd per check, with a read deadline on
// nc so that a silent server fails the floor rather than hangs it. An
// error reply fails; so does a reply its check rejects (a nil check takes
// any other).
func readReplies(nc net.Conn, rd *resp.Reader, checks ...func(resp.Value) error) error {
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, check := range checks {
		v, err := rd.Read()
		switch {
		case err != nil:
			return err
		case v.Err() != nil:
			return v.Err()
		case check != nil:
			if err := check(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// rang checks that a BLPOP returned an element rather than timing out.
func rang(v resp.Value) error {
	if v.IsNull() {
		return errors.New("BLPOP timed out: nothing was pushed")
	}
	return nil
}

// isOne checks an integer reply of 1: the ring script rang.
func isOne(v resp.Value) error {
	if v.Type != resp.TypeInteger || v.Int != 1 {
		return fmt.Errorf("got %v, want 1", v)
	}
	return nil
}

// numsubOne checks a PUBSUB NUMSUB reply for channel ch: 1 subscriber.
func numsubOne(ch string) func(resp.Value) error {
	return func(v resp.Value) error {
		if len(v.Elems) != 2 || string(v.Elems[0].Str) != ch || v.Elems[1].Int != 1 {
			return fmt.Errorf("PUBSUB NUMSUB answered %v, want 1 subscriber to %s", v, ch)
		}
		return nil
	}
}

// rawPair dials two raw connections to the bench's server, each with a
// reader; done closes them.
func rawPair(cfg *config) (conns [2]net.Conn, rds [2]*resp.Reader, done func(), err error) {
	done = func() {
		for _, nc := range conns {
			if nc != nil {
				nc.Close()
			}
		}
	}
	for i := range conns {
		nc, err := net.Dial("tcp", cfg.srv.addr)
		if err != nil {
			done()
			return conns, rds, nil, err
		}
		conns[i], rds[i] = nc, resp.NewReader(bufio.NewReader(nc), resp.Limits{})
	}
	return conns, rds, done, nil
}

// rawHandoffs times n hand-offs between two raw sockets, the floor under
// any lock's: one connection waits in BLPOP, read by a goroutine of its
// own, and the other, after holdFor, LPUSHes; a sample is the time from
// the LPUSH's write to the waiting goroutine having read the BLPOP's
// reply.
func rawHandoffs(cfg *config, n int) ([]time.Duration, error) {
	key := uniqueName("raw-handoff")
	conns, rds, done, err := rawPair(cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	blpop := resp.AppendCommand(nil, "BLPOP", key, "5")
	push := resp.AppendCommand(nil, "LPUSH", key, "1")
	samples := make([]time.Duration, 0, n)
	type wake struct {
		at  time.Time
		err error
	}
	woken := make(chan wake, 1)
	for range n {
		if _, err := conns[0].Write(blpop); err != nil {
			return nil, err
		}
		go func() {
			err := readReplies(conns[0], rds[0], rang)
			woken <- wake{time.Now(), err}
		}()
		time.Sleep(holdFor)
		start := time.Now()
		if _, err := conns[1].Write(push); err != nil {
			return nil, err // the deferred Close ends the reader
		}
		w := <-woken
		if w.err != nil {
			return nil, w.err
		}
		samples = append(samples, w.at.Sub(start))
		if err := readReplies(conns[1], rds[1], nil); err != nil {
			return nil, err
		}
	}
	slices.Sort(samples)
	return samples, nil
}

// The library's release-bell and yield-window scripts (bell.go: ringScript
// and yieldCheckScript), copied so that the design floor below has the
// server do the same work; the root package's TestBenchScripts keeps them
// equal.
const (
	libRingScript = `local t = redis.call('TYPE', KEYS[1])
if type(t) == 'table' then t = t.ok end
local ours = t == 'none' or (t == 'list' and redis.call('LLEN', KEYS[1]) == 1 and redis.call('LINDEX', KEYS[1], 0) == ARGV[1])
if not ours then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`
	libYieldCheckScript = `local t = redis.call('TYPE', KEYS[1])
if type(t) == 'table' then t = t.ok end
local v, ms = '', redis.call('PTTL', KEYS[1])
if t == 'string' then v = redis.call('GET', KEYS[1]) end
local ours = t == 'none' or (t == 'string' and string.sub(v, 1, #ARGV[1]) == ARGV[1] and ms > 0)
if not ours or t == 'none' then return {0, ''} end
return {ms, v}`
)

// rawTryHandoffs times n hand-offs of this lock's design on raw sockets,
// with nothing of the library: the floor under pubsublock's hand-off. The
// holder's connection, subscribed to the channel, writes its release in
// one write: UNSUBSCRIBE, the library's script that rings the bell, CLIENT
// SETNAME back. The waiter's connection has written its whole try in one
// write too, held back by the server behind a BLPOP on the bell and its
// wake list: the library's yield-window check, CLIENT SETNAME, SUBSCRIBE
// and PUBSUB NUMSUB. The replies are checked: the bell rang, the try
// counted 1 subscriber. A sample is the time from the holder's
// write to the waiting goroutine having read the count. The two
// connections swap roles each round. With holderReads, a goroutine of the
// holder's reads the release's replies as they come, as a lock's reader
// does (the library's hold worker), rather than after the sample.
func rawTryHandoffs(cfg *config, n int, holderReads bool) ([]time.Duration, error) {
	ch := uniqueName("raw-try")
	bell := ch + "-released"
	conns, rds, done, err := rawPair(cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	pipeline := func(cmds ...[]string) []byte {
		var b []byte
		for _, c := range cmds {
			b = resp.AppendCommand(b, c...)
		}
		return b
	}
	// The replies to the release and to the try, each checked.
	released := func(i int) error { return readReplies(conns[i], rds[i], nil, isOne, nil) }
	tried := func(i int) error { return readReplies(conns[i], rds[i], rang, nil, nil, nil, numsubOne(ch)) }
	for i, setup := range [][]byte{pipeline([]string{"HELLO", "3"}, []string{"SUBSCRIBE", ch}), pipeline([]string{"HELLO", "3"})} {
		if _, err := conns[i].Write(setup); err != nil {
			return nil, err
		}
		if err := readReplies(conns[i], rds[i], make([]func(resp.Value) error, 2-i)...); err != nil {
			return nil, err
		}
	}
	release := pipeline([]string{"UNSUBSCRIBE", ch},
		[]string{"EVAL", libRingScript, "1", bell, "pubsublock-bell", "250"},
		[]string{"CLIENT", "SETNAME", "idle"})
	try := pipeline([]string{"BLPOP", bell, ch + "-wake-1", "5"},
		[]string{"EVAL", libYieldCheckScript, "1", ch + "-wake-yield", "pubsublock-yield:"},
		[]string{"CLIENT", "SETNAME", ch + "-lock"}, []string{"SUBSCRIBE", ch}, []string{"PUBSUB", "NUMSUB", ch})
	type wake struct {
		at  time.Time
		err error
	}
	woken := make(chan wake, 1)
	holder, waiter := 0, 1
	samples := make([]time.Duration, 0, n)
	for range n {
		if _, err := conns[waiter].Write(try); err != nil {
			return nil, err
		}
		go func(w int) {
			err := tried(w)
			woken <- wake{time.Now(), err}
		}(waiter)
		read := make(chan error, 1)
		if holderReads {
			go func(h int) { read <- released(h) }(holder)
		}
		time.Sleep(holdFor)
		start := time.Now()
		if _, err := conns[holder].Write(release); err != nil {
			return nil, err // the deferred Close ends the goroutines
		}
		w := <-woken
		if w.err != nil {
			return nil, w.err
		}
		samples = append(samples, w.at.Sub(start))
		if !holderReads {
			read <- released(holder)
		}
		if err := <-read; err != nil {
			return nil, err
		}
		holder, waiter = waiter, holder
	}
	slices.Sort(samples)
	return samples, nil
}

// handoff runs waiters+1 contenders of p on one lock. Whoever acquires works
// holdFor, releases, and rejoins only once someone else has acquired, so
// exactly `waiters` contenders wait at each release. A sample is the time
// from the holder calling Release to the next Acquire returning: the time
// the lock stands free, whether a Release waits for the server or not.
func handoff(cfg *config, p peer, waiters int) ([]time.Duration, handoffStats, error) {
	var st handoffStats
	name := uniqueName("handoff")
	want := cfg.handoffs + warmupHandoffs
	limit := 60 * time.Second
	if cfg.short {
		limit = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()

	lockers := make([]*locker, waiters+1)
	for i := range lockers {
		lk, err := p.new(cfg.srv.addr, name, 0)
		if err != nil {
			for _, l := range lockers[:i] {
				l.close()
			}
			return nil, st, err
		}
		lockers[i] = lk
	}
	defer func() {
		for _, l := range lockers {
			l.close()
		}
	}()

	var (
		mu          sync.Mutex // guards the fields below
		cond        = sync.NewCond(&mu)
		acquired    int       // acquisitions so far
		lastRelease time.Time // when the last Release was called
		samples     []time.Duration
		holders     atomic.Int32
		wg          sync.WaitGroup
		errOnce     sync.Once
	)
	fail := func(op string, err error) {
		atomic.AddInt64(&st.errors, 1)
		errOnce.Do(func() { st.firstErr = op + ": " + err.Error() })
	}
	stopCond := context.AfterFunc(ctx, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
	defer stopCond()
	for _, lk := range lockers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := lk.acquire(ctx); err != nil {
					if ctx.Err() == nil {
						fail("acquire", err)
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				now := time.Now()
				if holders.Add(1) != 1 {
					atomic.AddInt64(&st.violations, 1)
				}
				mu.Lock()
				if !lastRelease.IsZero() {
					samples = append(samples, now.Sub(lastRelease))
				}
				acquired++
				mine := acquired
				finished := len(samples) >= want
				cond.Broadcast()
				mu.Unlock()

				time.Sleep(holdFor)
				holders.Add(-1)
				// Stamped before the release, so that the waiter it hands
				// the lock to measures from this release, not the one
				// before (as it would if it took mu first).
				mu.Lock()
				lastRelease = time.Now()
				mu.Unlock()
				err := lk.release(context.WithoutCancel(ctx))
				if err != nil {
					fail("release", err)
				}
				mu.Lock()
				if finished {
					mu.Unlock()
					cancel()
					return
				}
				for acquired == mine && ctx.Err() == nil {
					cond.Wait()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	st.timedOut = len(samples) < want
	if len(samples) <= warmupHandoffs {
		return nil, st, nil
	}
	return slices.Clone(samples[warmupHandoffs:]), st, nil
}

func printHandoff(cfg *config, rs *results) {
	w := cfg.out
	fmt.Fprintln(w, "## 3. Hand-off under contention")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "N waiters on one lock, each with its own connections; the holder works %v, releases, and rejoins\n", holdFor)
	fmt.Fprintln(w, "only after the next acquisition. Time from the holder calling Release to the next Acquire returning.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "p50 × PING is the p50 against the median raw-socket PING of the cycle section, when it ran.")
	if idle, ok := rs.median("Handoff/idle-ping"); ok {
		fmt.Fprintf(w, "A raw-socket PING sent after %v of idleness, as at a hand-off, took %s (p50).\n", holdFor, dur(idle.ns))
	}
	raw, hasRaw := rs.median("Handoff/raw-blpop")
	if hasRaw {
		fmt.Fprintf(w, "The floor under any hand-off, a raw-socket BLPOP woken by an LPUSH from another connection after %v,\n", holdFor)
		fmt.Fprintf(w, "took %s (p50) from the LPUSH's write to the waiting goroutine's read: p50 × raw is the p50 against it.\n", dur(raw.ns))
	}
	design, hasDesign := rs.median("Handoff/raw-design")
	if hasDesign {
		fmt.Fprintf(w, "The floor under this lock's hand-off, the same wake-up from the release's commands in one write, with the\n")
		fmt.Fprintf(w, "waiter's try written behind its BLPOP, all on raw sockets and nothing of the library, took %s (p50):\n", dur(design.ns))
		fmt.Fprintln(w, "p50 × design is the p50 against it.")
	}
	if reads, ok := rs.median("Handoff/raw-design-holder-reads"); ok {
		fmt.Fprintf(w, "The same with a goroutine of the holder's reading the release's replies as they come, as a lock's reader does,\n")
		fmt.Fprintf(w, "took %s (p50).\n", dur(reads.ns))
	}
	fmt.Fprintln(w)
	floor, hasFloor := rs.median("Cycle/ping-rawsocket")
	t := table{head: []string{"peer", "waiters", "p50", "p50 × PING", "p50 × raw", "p50 × design", "p99", "max", "mean", "samples", "notes"}, align: "lrrrrrrrrrl"}
	for _, p := range cfg.peers {
		for _, n := range cfg.waiters {
			name := fmt.Sprintf("Handoff/waiters=%d/%s", n, p.name)
			note := handoffNotes[name].note()
			m, ok := rs.median(name)
			if !ok {
				t.row(p.name, fmt.Sprint(n), "failed", "", "", "", "", "", "", "", note)
				continue
			}
			ratio, rawRatio, designRatio := "–", "–", "–"
			if hasFloor && floor.ns > 0 {
				ratio = fmt.Sprintf("%.1f", m.metric("p50-ns")/floor.ns)
			}
			if hasRaw && raw.ns > 0 {
				rawRatio = fmt.Sprintf("%.1f", m.metric("p50-ns")/raw.ns)
			}
			if hasDesign && design.ns > 0 {
				designRatio = fmt.Sprintf("%.2f", m.metric("p50-ns")/design.ns)
			}
			t.row(p.name, fmt.Sprint(n), dur(m.metric("p50-ns")), ratio, rawRatio, designRatio, dur(m.metric("p99-ns")), dur(m.metric("max-ns")),
				dur(m.ns), fmt.Sprint(m.n), note)
		}
	}
	t.write(w)
	for _, p := range cfg.peers {
		fmt.Fprintf(w, "- %s waits: %s\n", p.name, p.waits)
	}
	fmt.Fprintln(w)
}
