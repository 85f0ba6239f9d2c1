package pubsublock

import (
	"context"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// The helpers shared by the package's tests. Servers come from redistest;
// the fake RESP server is in fakeserver_test.go.

// servers runs f against miniredis and a real redis-server.
func servers(t *testing.T, f func(t *testing.T, url string)) {
	t.Run("miniredis", func(t *testing.T) {
		m := redistest.Miniredis(t)
		f(t, "redis://"+m.Addr())
	})
	t.Run("redis", func(t *testing.T) {
		s := redistest.Redis(t)
		f(t, s.URL())
	})
	t.Run("redis-resp2", func(t *testing.T) {
		s := redistest.Redis(t)
		f(t, s.URL()+"?protocol=2")
	})
}

// newLock returns New(channel, cfg) or fails t, and releases the lock when
// t ends.
func newLock(t testing.TB, channel string, cfg Config) *Lock {
	t.Helper()
	l, err := New(channel, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Release(context.Background()) })
	return l
}

// countingDial is a ClientConfig.Dial that counts its dials in n.
func countingDial(n *atomic.Int32) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		n.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// newClient returns NewClient(cfg) or fails t, and closes the Client when
// t ends.
func newClient(t testing.TB, cfg ClientConfig) *Client {
	t.Helper()
	cl, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// mustAcquire acquires l within 10s or fails t.
func mustAcquire(t testing.TB, l *Lock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
}

// acquireAsync starts l.Acquire under ctx, cut to 5s, and returns where its
// error comes.
func acquireAsync(ctx context.Context, l *Lock) <-chan error {
	return acquireAsyncWithin(ctx, l, 5*time.Second)
}

// acquireAsyncWithin is acquireAsync with ctx cut to d: for waiters that
// poll often, whose budget must also cover the pauses and failovers of
// the test before they can take the lock.
func acquireAsyncWithin(ctx context.Context, l *Lock, d time.Duration) <-chan error {
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		got <- l.Acquire(ctx)
	}()
	return got
}

// takeInTurn waits for the Acquires that acquireAsync started, got[i] for
// waiters[i], and releases each lock as soon as it is taken, so that the
// next waiter can take it. A failed Acquire fails t.
func takeInTurn(t testing.TB, waiters []*Lock, got []<-chan error) {
	t.Helper()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(got))
	for i, g := range got {
		go func() { results <- result{i, <-g} }()
	}
	for range got {
		r := <-results
		if r.err != nil {
			t.Errorf("waiter %d: %v", r.i, r.err)
			continue
		}
		_ = waiters[r.i].Release(context.Background())
	}
}

// waitLost waits up to limit after since for l's hold to end and returns
// how long after since it did.
func waitLost(t testing.TB, l *Lock, since time.Time, limit time.Duration) time.Duration {
	t.Helper()
	select {
	case <-l.Lost():
		return time.Since(since)
	case <-time.After(limit - time.Since(since)):
		t.Fatalf("Lost() not closed within %v; Err() = %v", limit, l.Err())
		return 0
	}
}

// waitFor waits up to 5s for cond to hold, or fails t.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	waitUntil(t, 5*time.Second, "condition", cond)
}

// waitUntil waits up to limit for cond to hold, or fails t saying what it
// waited for.
func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// leakCheck fails t if, once t and its cleanups are done, more goroutines
// run than when leakCheck was called. Goroutines may take a moment to
// exit, so it retries for a few seconds. Call it first, so its cleanup
// runs last. Tests using it must not run in parallel.
func leakCheck(t testing.TB) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() { goroutinesBack(t, base, "once the test was done") })
}

// goroutinesBack fails t if no more than base goroutines run within a few
// seconds (they may take a moment to exit), and shows them all.
func goroutinesBack(t testing.TB, base int, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak %s: %d goroutines, %d before\n%s", when, n, base, buf)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockedBuffer collects what many goroutines write: a logger's output, a
// process's stderr.
type lockedBuffer = redistest.LockedBuffer

// serverDo runs one command on a new connection to the server of url
// (redis://[user@]host:port[?query], miniredis too; the user and the query
// are ignored) and returns its reply as text, as redistest.Do does. An
// error fails t.
func serverDo(t testing.TB, url string, args ...string) string {
	t.Helper()
	addr, _, _ := strings.Cut(strings.TrimPrefix(url, "redis://"), "?")
	addr = addr[strings.LastIndexByte(addr, '@')+1:]
	out, err := redistest.Do(addr, args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return out
}

// mustDo runs a command on s or fails the test.
func mustDo(t testing.TB, s *redistest.Server, args ...string) string {
	t.Helper()
	return serverDo(t, s.URL(), args...)
}

// infoField returns field of INFO section on the server of url, and
// whether INFO has it.
func infoField(t testing.TB, url, section, field string) (string, bool) {
	t.Helper()
	for line := range strings.SplitSeq(serverDo(t, url, "INFO", section), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, true
		}
	}
	return "", false
}

// blockedClients returns the server's blocked_clients (INFO clients), or
// -1 where INFO does not tell (miniredis).
func blockedClients(t testing.TB, url string) int {
	t.Helper()
	v, ok := infoField(t, url, "clients", "blocked_clients")
	if !ok {
		return -1
	}
	n, _ := strconv.Atoi(v)
	return n
}

// bellHandOff starts waiter's Acquire, waits until it blocks on the bell,
// releases holder, and fails the test unless waiter then takes the lock
// (within acquireAsync's 5 s: give it a far longer pause).
func bellHandOff(t *testing.T, s *redistest.Server, holder, waiter *Lock) {
	t.Helper()
	got := acquireAsync(context.Background(), waiter)
	awaitBlocked(t, s.URL(), 1)
	if err := holder.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// awaitBlocked waits until n clients are blocked (BLPOP), or, where the
// server does not tell, a while.
func awaitBlocked(t testing.TB, url string, n int) {
	t.Helper()
	if blockedClients(t, url) < 0 {
		time.Sleep(100 * time.Millisecond)
		return
	}
	waitFor(t, func() bool { return blockedClients(t, url) == n })
}

// silentHolder subscribes a raw connection to channel on s as a holder
// would, named "<channel>-lock", with subscribe (SUBSCRIBE, or SSUBSCRIBE
// on a cluster node), and never reads from it again: a frozen holder. The
// connection is closed when t ends.
func silentHolder(t testing.TB, s *redistest.Server, subscribe, channel string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	var b []byte
	b = resp.AppendCommand(b, "CLIENT", "SETNAME", channel+"-lock")
	b = resp.AppendCommand(b, subscribe, channel)
	if _, err := nc.Write(b); err != nil {
		t.Fatal(err)
	}
	count := s.NumSub
	if subscribe == "SSUBSCRIBE" {
		count = s.ShardNumSub
	}
	waitUntil(t, 5*time.Second, "the silent holder subscribes", func() bool { return count(t, channel) == 1 })
	return nc
}

// mustCycle acquires and releases l under ctx, or fails t.
func mustCycle(t testing.TB, ctx context.Context, l *Lock) {
	t.Helper()
	if err := l.Acquire(ctx); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}
