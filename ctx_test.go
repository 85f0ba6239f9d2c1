package pubsublock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// TestAcquireDeadlineErrors: a context deadline that passes at any moment
// of an Acquire, the dial included, gives an error matching
// context.DeadlineExceeded.
func TestAcquireDeadlineErrors(t *testing.T) {
	s := redistest.Redis(t)
	failed := 0
	for i := range 400 {
		l := newLock(t, "jobs", Config{URL: s.URL()})
		d := time.Duration(50+i%200) * time.Microsecond
		ctx, cancel := context.WithTimeout(context.Background(), d)
		err := l.Acquire(ctx)
		cancel()
		if err == nil {
			_ = l.Release(context.Background())
			continue
		}
		failed++
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("deadline %v: Acquire = %v, which does not match context.DeadlineExceeded", d, err)
		}
	}
	t.Logf("%d of 400 Acquires ran out of time", failed)
}

// TestAcquireCancelCause: an Acquire canceled with a cause returns an
// error matching both context.Canceled and the cause.
func TestAcquireCancelCause(t *testing.T) {
	s := redistest.Redis(t)
	holder := newLock(t, "jobs", Config{URL: s.URL()})
	if err := holder.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	waiter := newLock(t, "jobs", Config{URL: s.URL(), Timeout: -1})
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("shutting down")
	time.AfterFunc(100*time.Millisecond, func() { cancel(cause) })
	err := waiter.Acquire(ctx)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Fatalf("Acquire = %v, want an error matching context.Canceled and the cause", err)
	}
}

// TestAcquireEndsWhenClientCloses: an Acquire waiting on the bell (or
// polling) returns ErrClientClosed when its Client is closed, and does not
// take the lock after that.
func TestAcquireEndsWhenClientCloses(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		holder := newLock(t, "jobs", Config{URL: url})
		if err := holder.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		cl, err := NewClient(ClientConfig{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		waiter := newLock(t, "jobs", Config{Client: cl, CheckInterval: 300 * time.Millisecond, Timeout: -1})
		got := acquireAsync(context.Background(), waiter)
		awaitBlocked(t, url, 1)
		cl.Close()
		_ = holder.Release(context.Background())
		select {
		case err := <-got:
			if !errors.Is(err, ErrClientClosed) {
				t.Fatalf("Acquire after Client.Close = %v, want ErrClientClosed", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Acquire still waiting a second after Client.Close")
		}
	})
}

// TestUnsolicitedUnsubscribeDuringRelease: an unsubscribe the server sends
// once Release has begun but before its own UNSUBSCRIBE is written ends
// the hold as lost, and the connection, which still has the release's
// replies to come, is retired, never pooled.
func TestUnsolicitedUnsubscribeDuringRelease(t *testing.T) {
	s := redistest.Redis(t)
	cl, err := NewClient(ClientConfig{URL: s.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l := newLock(t, "jobs", Config{Client: cl})
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	h.releasing.Store(true) // Release has begun, and not yet written
	// The server unsubscribes the holder: an UNSUBSCRIBE the worker did
	// not send through the hold.
	if _, err := h.c.nc.Write(resp.AppendCommand(nil, "UNSUBSCRIBE", "jobs")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the hold did not end")
	}
	if err := l.Err(); !errors.Is(err, ErrLost) {
		t.Fatalf("Err() = %v, want ErrLost", err)
	}
	if h.c.failed() == nil {
		t.Fatal("the connection with the release's replies still to come was kept")
	}
	if err := l.Release(context.Background()); !errors.Is(err, ErrLost) {
		t.Fatalf("Release = %v, want ErrLost", err)
	}
}

// TestDrainWaitBounded: a connection still carrying a released hold's
// replies makes its next user wait for them, but never longer than the
// user's context, and a hold's worker never draws such a connection from
// the pool (two workers could each wait for the other's drain).
func TestDrainWaitBounded(t *testing.T) {
	m := redistest.Miniredis(t)
	cl, err := NewClient(ClientConfig{Addr: m.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
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
