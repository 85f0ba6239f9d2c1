package pubsublock

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestFailedAcquireLeavesNoSubscription: an Acquire that fails after its
// SUBSCRIBE (here the fencing INCR is refused: OOM, NOPERM, READONLY) gives
// back no connection that is still subscribed or named as a holder, so
// the channel is free for everyone, on RESP3 and RESP2.
func TestFailedAcquireLeavesNoSubscription(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("proto"+proto, func(t *testing.T) {
			s := redistest.Redis(t)
			ctx := context.Background()
			cl, err := NewClient(ClientConfig{URL: s.URL() + proto})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			l := newLock(t, "jobs", Config{Client: cl, Fencing: true, Timeout: 200 * time.Millisecond})
			mustDo(t, s, "CONFIG", "SET", "maxmemory-policy", "noeviction")
			mustDo(t, s, "CONFIG", "SET", "maxmemory", "1")
			if err := l.Acquire(ctx); err == nil {
				t.Fatal("Acquire succeeded")
			}
			mustDo(t, s, "CONFIG", "SET", "maxmemory", "0")
			if n := s.NumSub(t, "jobs"); n != 0 {
				t.Errorf("after the failed Acquire, PUBSUB NUMSUB jobs = %d, want 0", n)
			}
			if ids := s.SubscriberIDs(t, "jobs-lock"); len(ids) != 0 {
				t.Errorf("connections still named jobs-lock: %v", ids)
			}
			other := newLock(t, "other", Config{Client: cl})
			if err := other.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			c := newLock(t, "jobs", Config{URL: s.URL(), UnavailableTimeout: 200 * time.Millisecond})
			if err := c.TryAcquire(ctx); err != nil {
				t.Errorf("TryAcquire of jobs, which nobody holds: %v", err)
			}
			_ = other.Release(ctx)
		})
	}
}

// TestCanceledAcquireLeavesNoSubscription: on RESP2 the count comes from a
// second connection after the SUBSCRIBE is confirmed; a context that ends
// while that connection is dialed leaves no subscribed connection behind.
func TestCanceledAcquireLeavesNoSubscription(t *testing.T) {
	s := redistest.Redis(t)
	var dials atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl, err := NewClient(ClientConfig{URL: s.URL() + "?protocol=2",
		Dial: func(dctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 2 { // the auxiliary connection: stall until canceled
				cancel()
				<-dctx.Done()
				return nil, dctx.Err()
			}
			var d net.Dialer
			return d.DialContext(dctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l := newLock(t, "jobs", Config{Client: cl})
	if err := l.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
	waitFor(t, func() bool { return s.NumSub(t, "jobs") == 0 })
	c := newLock(t, "jobs", Config{URL: s.URL(), UnavailableTimeout: 200 * time.Millisecond})
	if err := c.TryAcquire(context.Background()); err != nil {
		t.Errorf("TryAcquire of jobs, which nobody holds: %v", err)
	}
}
