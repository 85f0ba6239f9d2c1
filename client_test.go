package pubsublock

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// clientConns counts the server's client connections other than the one
// that asks.
func clientConns(t *testing.T, s *redistest.Server) int {
	t.Helper()
	out := strings.TrimSpace(mustDo(t, s, "CLIENT", "LIST"))
	return strings.Count(out, "\n") // one line per client, the asker's too
}

// TestDefaultClientPools: Locks made without Config.Client share warm
// connections per connection setting, so acquire and release after the
// first dial nothing; Locks dropped without a word leave no goroutine
// behind, only idle connections; those are closed by CloseIdleConnections,
// and by the default pool's idle timeout, on a timer, after which no
// goroutine and no connection is left.
func TestDefaultClientPools(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	ctx := context.Background()
	base := runtime.NumGoroutine()
	url := s.URL() + "?protocol=3" // a setting of this test's own
	var cl *Client                 // the Locks' default Client
	// The Locks are dropped when this returns: released, never closed.
	func() {
		var locks []*Lock
		for range 3 {
			l, err := New("pool", Config{URL: url})
			if err != nil {
				t.Fatal(err)
			}
			locks = append(locks, l)
		}
		for round := range 3 {
			for _, l := range locks {
				mustCycle(t, ctx, l)
			}
			if round == 0 {
				mustDo(t, s, "CONFIG", "RESETSTAT")
			}
		}
		cl = locks[0].cl
		for _, l := range locks[1:] {
			if l.cl != locks[0].cl {
				t.Fatal("Locks with the same settings got different default Clients")
			}
		}
	}()
	if n, ok := infoField(t, s.URL(), "stats", "total_connections_received"); !ok {
		t.Fatal("INFO stats has no total_connections_received")
	} else if n != "1" { // the INFO's own
		t.Errorf("Locks without a Client dialed %s connections in 6 warm cycles, want none", n)
	}
	goroutinesBack(t, base, "after the Locks were dropped")
	if n := clientConns(t, s); n < 1 {
		t.Fatalf("no idle connection kept: %d", n)
	}
	CloseIdleConnections()
	waitFor(t, func() bool { return clientConns(t, s) == 0 })
	goroutinesBack(t, base, "after CloseIdleConnections")

	// The default pool's own idle timeout, made short for the test: the
	// same Client serves a new Lock with these settings.
	const idleTimeout = time.Second
	cl.mu.Lock()
	was := cl.idleTimeout
	cl.idleTimeout = idleTimeout
	cl.mu.Unlock()
	t.Cleanup(func() {
		cl.mu.Lock()
		cl.idleTimeout = was
		cl.mu.Unlock()
	})
	if was != DefaultIdleTimeout {
		t.Fatalf("the default pool closes idle connections after %v, want DefaultIdleTimeout (%v)", was, DefaultIdleTimeout)
	}
	func() {
		l, err := New("pool", Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		if l.cl != cl {
			t.Fatal("a new Lock with the same settings got another default Client")
		}
		mustCycle(t, ctx, l)
	}()
	start := time.Now()
	cl.mu.Lock()
	kept := len(cl.idle[cl.dc.addr])
	cl.mu.Unlock()
	if kept < 1 {
		t.Fatalf("no idle connection kept: %d", kept)
	}
	waitFor(t, func() bool { return clientConns(t, s) == 0 })
	if d := time.Since(start); d < idleTimeout/2 {
		t.Errorf("idle connections closed %v after the release, before the idle timeout (%v)", d, idleTimeout)
	} else {
		t.Logf("idle connections closed %v after the release", d)
	}
	cl.mu.Lock()
	timer := cl.idleTimer
	cl.mu.Unlock()
	if timer != nil {
		t.Error("the idle timer is still set with no idle connection")
	}
	goroutinesBack(t, base, "after the idle timeout")
}

// TestDefaultClientAfterRestart: a Lock without a Client whose pooled
// connections died with a server restart still acquires.
func TestDefaultClientAfterRestart(t *testing.T) {
	s := redistest.Redis(t)
	ctx := context.Background()
	l := newLock(t, "restart", Config{URL: s.URL() + "?protocol=3"})
	for range 2 {
		mustCycle(t, ctx, l)
		s.Restart(t)
	}
}

// TestStalePooledConnection: idle connections of a Client killed by the
// server (a restart, CLIENT KILL, a Python contender killing by name) are
// replaced at once, not taken for a held lock.
func TestStalePooledConnection(t *testing.T) {
	s := redistest.Redis(t)
	cl := newClient(t, ClientConfig{URL: s.URL()})
	ctx := context.Background()
	l := newLock(t, "stale", Config{Client: cl})
	other := newLock(t, "stale", Config{Client: cl})
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := other.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Fatalf("TryAcquire while held: %v", err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// No idle connection keeps the holder's name, once the server has
	// read the release (Release does not wait for it).
	waitFor(t, func() bool {
		list, err := s.Do("CLIENT", "LIST")
		return err == nil && !strings.Contains(list, "name=stale-lock")
	})
	if _, err := s.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil {
		t.Fatal(err)
	}
	if err := other.TryAcquire(ctx); err != nil {
		t.Fatalf("TryAcquire on a free lock with stale pooled connections: %v", err)
	}
}

// FuzzClient runs a lock against a fake server that answers everything
// with the fuzzer's bytes: no panic, no hang, and an error that says what
// went wrong.
func FuzzClient(f *testing.F) {
	hello := "%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"
	for _, s := range []string{
		"",
		"-ERR nope\r\n",
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n",
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:2\r\n",
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$3\r\nxyz\r\n",
		hello + "+OK\r\n>3\r\n$11\r\nunsubscribe\r\n$4\r\njobs\r\n:0\r\n",
		// Held, released (with a ping before the unsubscribe), held again
		// on the same connection.
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n" +
			">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$30\r\n{\"response_channel\": \"jobs-1\"}\r\n" +
			">3\r\n$11\r\nunsubscribe\r\n$4\r\njobs\r\n:0\r\n:1\r\n+OK\r\n" +
			"+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n",
		"$9223372036854775807\r\n", "*1000000000\r\n", "$1\r\naXY",
		hello + "+OK\r\n*2\r\n$4\r\njobs\r\n:1\r\n", hello + ":1\r\n:2\r\n:3\r\n",
		// Held elsewhere, then a try woken by the bell takes it.
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:2\r\n" +
			">3\r\n$11\r\nunsubscribe\r\n$4\r\njobs\r\n:0\r\n+OK\r\n" +
			"*2\r\n$13\r\njobs-released\r\n$1\r\n1\r\n+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
			return &scriptConn{r: bytes.NewReader(script)}, nil
		}
		cl := newClient(t, ClientConfig{Dial: dial, MaxIdle: 1, Limits: resp.Limits{MaxBulkLen: 1 << 16, MaxElements: 64, MaxDepth: 8}})
		l, err := New("jobs", Config{Client: cl, HealthCheckInterval: 20 * time.Millisecond, UnavailableTimeout: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		err = l.TryAcquire(ctx)
		if time.Since(start) > 3*time.Second {
			t.Fatalf("TryAcquire took %v", time.Since(start))
		}
		if err == nil {
			// Release without waiting for the server (the connection is
			// pooled), and try again on the same connection, behind the
			// release's replies.
			_ = l.Release(ctx)
			err = l.TryAcquire(ctx)
			if time.Since(start) > 5*time.Second {
				t.Fatalf("Release and TryAcquire took %v", time.Since(start))
			}
		}
		if errors.Is(err, ErrAlreadyLocked) {
			// Wait: the tries are held back by the release bell (BLPOP),
			// whose reply comes from the script too.
			w, werr := New("jobs", Config{Client: cl, Timeout: 30 * time.Millisecond, CheckInterval: 10 * time.Millisecond,
				HealthCheckInterval: 20 * time.Millisecond, UnavailableTimeout: 20 * time.Millisecond})
			if werr != nil {
				t.Fatal(werr)
			}
			l = w
			err = l.Acquire(ctx)
			if time.Since(start) > 6*time.Second {
				t.Fatalf("waiting Acquire took %v", time.Since(start))
			}
		}
		if err == nil {
			// The fake server's script ran out: the hold must end.
			select {
			case <-l.Lost():
			case <-time.After(3 * time.Second):
				t.Fatal("a hold on a closed connection was not lost")
			}
			l.Release(ctx)
			return
		}
		if err.Error() == "" || errors.Is(err, ErrHeld) {
			t.Fatalf("unclear error %q", err)
		}
	})
}

// scriptConn is a connection to a fake server that sends script, whatever
// it is sent, and then hangs up (EOF).
type scriptConn struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
	dl     time.Time // read deadline
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case !c.dl.IsZero() && time.Now().After(c.dl):
		return 0, os.ErrDeadlineExceeded
	}
	return c.r.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *scriptConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *scriptConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dl = t
	return nil
}

func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

func (c *scriptConn) LocalAddr() net.Addr { return &net.TCPAddr{} }

func (c *scriptConn) RemoteAddr() net.Addr { return &net.TCPAddr{} }

// A Client that meets another server under the same address (a Redis
// upgraded or replaced in place) forgets what it learnt of the old one:
// here that miniredis refuses commands on a subscribed RESP3 connection,
// which redis-server runs.
func TestClientForgetsCapsOnNewServer(t *testing.T) {
	m := redistest.Miniredis(t)
	s := redistest.Redis(t)
	var target atomic.Value
	target.Store(m.Addr())
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, target.Load().(string))
	}
	cl := newClient(t, ClientConfig{Addr: "server.invalid:6379", Dial: dial})
	l := newLock(t, "replaced", Config{Client: cl})
	mustAcquire(t, l)
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !cl.caps.subCmds.no() {
		t.Fatal("miniredis: the Client did not learn that a subscribed connection refuses commands")
	}

	target.Store(s.Addr())
	cl.CloseIdleConnections()
	mustAcquire(t, l)
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !cl.caps.subCmds.yes() {
		t.Errorf("redis-server under the same address: subCmds %d, want learnt anew (yes)", cl.caps.subCmds.v.Load())
	}
}
