package pubsublock

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
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
