package pubsublock

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestLockContext: the context of a hold ends with ErrNotHeld when the
// lock is released, with the loss when it is lost, at once when nothing is
// held, and its goroutine ends with it.
func TestLockContext(t *testing.T) {
	leakCheck(t)
	m := redistest.Miniredis(t)
	ctx := context.Background()
	l := newLock(t, "ctx", Config{Addr: m.Addr()})
	if c, cancel := l.Context(ctx); !errors.Is(context.Cause(c), ErrNotHeld) {
		t.Errorf("Context without a hold: cause %v, want ErrNotHeld", context.Cause(c))
	} else {
		cancel()
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	work, cancel := l.Context(ctx)
	defer cancel()
	if work.Err() != nil {
		t.Fatalf("the context of a live hold ended: %v", context.Cause(work))
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-work.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the context did not end at Release")
	}
	if !errors.Is(context.Cause(work), ErrNotHeld) {
		t.Errorf("cause after Release: %v, want ErrNotHeld", context.Cause(work))
	}
	// A context canceled by its caller ends its goroutine (leakCheck).
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	_, cancel2 := l.Context(ctx)
	cancel2()
	_ = l.Release(ctx)
}

// TestLockCheck: Check confirms a live hold through its connection, and
// reports a hold whose connection was killed as lost, even before the
// worker could have read the news; with nothing held, ErrNotHeld.
func TestLockCheck(t *testing.T) {
	s := redistest.Redis(t)
	ctx := context.Background()
	l := newLock(t, "check", Config{URL: s.URL()})
	if err := l.Check(ctx); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Check without a hold = %v, want ErrNotHeld", err)
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Check(ctx); err != nil {
		t.Fatalf("Check of a live hold = %v", err)
	}
	for _, id := range s.SubscriberIDs(t, "check-lock") {
		mustDo(t, s, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10))
	}
	if err := l.Check(ctx); !errors.Is(err, ErrLost) {
		t.Fatalf("Check of a killed hold = %v, want ErrLost", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Error("Check found the hold lost, and Lost() is open")
	}
}
