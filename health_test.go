package pubsublock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestHealthCheckUnansweredPing: while its PINGs are answered the hold
// stays; once the network goes silent (a blackhole: nothing is closed),
// the next PING goes unanswered and the health check ends the hold within
// HealthCheckInterval plus UnavailableTimeout, the PING's deadline.
func TestHealthCheckUnansweredPing(t *testing.T) {
	const (
		interval = 300 * time.Millisecond
		timeout  = 200 * time.Millisecond
		// slack allows for timers and the race detector on a loaded
		// machine.
		slack = 500 * time.Millisecond
	)
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("resp"+map[string]string{"": "3", "?protocol=2": "2"}[proto], func(t *testing.T) {
			leakCheck(t)
			s := redistest.Redis(t)
			px := redistest.NewProxy(t, s.Addr())
			l := newLock(t, "health", Config{URL: "redis://" + px.Addr() + proto,
				HealthCheckInterval: interval, UnavailableTimeout: timeout})
			mustAcquire(t, l)
			px.Record()
			waitUntil(t, 5*time.Second, "two health check PINGs", func() bool {
				return strings.Count(px.Sent(), cmd("PING")) >= 2
			})
			// The count is taken once no PING went out for 50 ms, so that
			// the answer to the last one (a loopback round trip) is in; a
			// PING sent from here on may go out just before the blackhole
			// and have its answer swallowed: it counts.
			pings := strings.Count(px.Sent(), cmd("PING"))
			for {
				time.Sleep(50 * time.Millisecond)
				n := strings.Count(px.Sent(), cmd("PING"))
				if n == pings {
					break
				}
				pings = n
			}
			if err := l.Err(); err != nil {
				t.Fatalf("Err() = %v with every PING answered", err)
			}
			start := time.Now()
			px.Blackhole()
			d := waitLost(t, l, start, 5*time.Second)
			t.Logf("hold lost %v after the blackhole (HealthCheckInterval %v + UnavailableTimeout %v)", d, interval, timeout)
			if d > interval+timeout+slack {
				t.Errorf("hold lost %v after the blackhole, want within %v + %v", d, interval+timeout, slack)
			}
			if strings.Count(px.Sent(), cmd("PING")) <= pings {
				t.Error("no PING was sent after the answered ones")
			}
			if err := l.Err(); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "health check") {
				t.Errorf("Err() = %v, want ErrLost by the health check", err)
			}
		})
	}
}

// TestCheckRacingReleaseLeavesConnection: a Check that took the hold just
// before Release did says ErrNotHeld, and leaves the connection alone: it
// went back to the pool, and the Lock's next hold may already use it.
func TestCheckRacingReleaseLeavesConnection(t *testing.T) {
	leakCheck(t)
	m := redistest.Miniredis(t)
	cl := newClient(t, ClientConfig{URL: "redis://" + m.Addr()})
	l := newLock(t, "raced", Config{Client: cl})
	ctx := context.Background()
	mustAcquire(t, l)
	h := heldBy(t, l)
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.verify(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Check of a released hold = %v, want ErrNotHeld", err)
	}
	mustAcquire(t, l)
	next := heldBy(t, l)
	t.Logf("the next hold took the same connection: %v", next.c == h.c)
	if err := h.verify(ctx, time.Second); !errors.Is(err, ErrNotHeld) {
		t.Errorf("Check of a released hold, its connection held again = %v, want ErrNotHeld", err)
	}
	if err := l.Check(ctx); err != nil {
		t.Errorf("the next hold: Check = %v", err)
	}
	if err := next.c.failed(); err != nil {
		t.Errorf("the next hold's connection failed: %v", err)
	}
}
