package pubsublock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

func TestAcquireRelease(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		ctx := context.Background()
		a := newLock(t, "jobs", Config{URL: url, Fencing: true})
		b := newLock(t, "jobs", Config{URL: url, Timeout: 300 * time.Millisecond, Fencing: true})
		if err := a.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		t1 := a.Token()
		if err := b.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("TryAcquire while held: %v", err)
		}
		start := time.Now()
		if err := b.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("Acquire while held: %v", err)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("Acquire gave up after %v", d)
		}
		if err := a.Acquire(ctx); !errors.Is(err, ErrHeld) {
			t.Fatalf("second Acquire: %v", err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Release(ctx); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("second Release: %v", err)
		}
		if err := b.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if t2 := b.Token(); t2 <= t1 {
			t.Fatalf("token %d after %d", t2, t1)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMinimalACL runs the lock as a user with exactly the permissions the
// package documentation lists, including killing a silent holder, the
// release bell and the wake push that ends a waiter's pause.
func TestMinimalACL(t *testing.T) {
	s := redistest.Redis(t, "--user", "locker", "on", ">secret", "resetchannels", "&jobs", "&jobs-*",
		"~jobs-released", "~jobs-fence", "~jobs-wake-*",
		"+subscribe", "+unsubscribe", "+publish", "+pubsub|numsub", "+client|setname", "+client|list",
		"+client|kill", "+blpop", "+eval", "+lpush", "+ltrim", "+pexpire", "+type", "+llen", "+lindex",
		"+ping", "+hello", "+incr", "+select")
	url := "redis://locker:secret@" + s.Addr()
	ctx := context.Background()
	a := newLock(t, "jobs", Config{URL: url, Fencing: true})
	if err := a.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"3", "2"} {
		cl, err := NewClient(ClientConfig{URL: url + "?protocol=" + proto})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		b := newLock(t, "jobs", Config{Client: cl, Fencing: true, UnavailableTimeout: 200 * time.Millisecond,
			CheckInterval: 20 * time.Millisecond, Timeout: 100 * time.Millisecond})
		if alive, err := b.CheckOrKill(ctx); err != nil || !alive {
			t.Fatalf("CheckOrKill of a live holder: %v %v", alive, err)
		}
		if err := b.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("TryAcquire: %v", err)
		}
		if err := b.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("Acquire of a held lock: %v", err)
		}
		if cl.caps.bell.no() || cl.caps.wake.no() {
			t.Fatalf("protocol %s: bell refused %v, wake refused %v", proto, cl.caps.bell.no(), cl.caps.wake.no())
		}
	}
	// Woken by the bell: its pause is far longer than its context.
	b := newLock(t, "jobs", Config{URL: url, Fencing: true, CheckInterval: time.Minute, Timeout: -1})
	got := acquireAsync(ctx, b)
	awaitBlocked(t, s.URL(), 1)
	if err := a.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// A user without the lock's channel gets a clear permission error.
	other := newLock(t, "other", Config{URL: url})
	err := other.TryAcquire(ctx)
	if err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("lock on a forbidden channel: %v", err)
	}
}

func TestStatus(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		ctx := context.Background()
		a := newLock(t, "status", Config{URL: url})
		st, err := a.Status(ctx)
		if err != nil || st.Held() || len(st.Holders) != 0 {
			t.Fatalf("free lock: %+v %v", st, err)
		}
		if err := a.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		st, err = a.Status(ctx)
		if err != nil || st.Subscribers != 1 {
			t.Fatalf("held lock: %+v %v", st, err)
		}
		if strings.HasSuffix(t.Name(), "miniredis") {
			if st.ListErr == nil {
				t.Fatal("miniredis listed clients")
			}
		} else if st.ListErr != nil || len(st.Holders) != 1 || st.Holders[0].ID == 0 || st.Holders[0].Addr == "" {
			t.Fatalf("holders: %+v", st)
		}
	})
}

// TestAcquireCanceledNeverReturnsDeadHold cancels Acquire at random moments
// around its round trip: whenever it reports success, the hold must be
// alive.
func TestAcquireCanceledNeverReturnsDeadHold(t *testing.T) {
	s := redistest.Redis(t)
	cl, err := NewClient(ClientConfig{URL: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l := newLock(t, "cancel", Config{Client: cl})
	won := 0
	for i := range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Duration(i%400)*time.Microsecond, cancel)
		err := l.Acquire(ctx)
		cancel()
		if err != nil {
			continue
		}
		won++
		select {
		case <-l.Lost():
			t.Fatalf("Acquire returned nil with a lost hold: %v", l.Err())
		default:
		}
		if err := l.Release(context.Background()); err != nil {
			t.Fatalf("Release after a successful Acquire: %v", err)
		}
	}
	t.Logf("%d of 2000 acquisitions won the race with cancellation", won)
}

// TestStalePooledConnection: idle connections of a Client killed by the
// server (a restart, CLIENT KILL, a Python contender killing by name) are
// replaced at once, not taken for a held lock.
func TestStalePooledConnection(t *testing.T) {
	s := redistest.Redis(t)
	cl, err := NewClient(ClientConfig{URL: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
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

// TestTryAcquireTakesOverSilentHolder: one TryAcquire pings a holder that
// never answers, kills it, and takes the lock.
func TestTryAcquireTakesOverSilentHolder(t *testing.T) {
	s := redistest.Redis(t)
	silentHolder(t, s, "SUBSCRIBE", "tk") // it cannot answer pings
	l := newLock(t, "tk", Config{URL: s.URL(), UnavailableTimeout: 200 * time.Millisecond})
	start := time.Now()
	if err := l.TryAcquire(context.Background()); err != nil {
		t.Fatalf("TryAcquire against a silent holder: %v", err)
	}
	t.Logf("silent holder killed and lock taken in %v", time.Since(start))
	if n := s.NumSub(t, "tk"); n != 1 {
		t.Fatalf("NUMSUB after take-over: %d", n)
	}
}
