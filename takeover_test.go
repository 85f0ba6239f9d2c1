package pubsublock

import (
	"context"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestCrashTakeoverTail: 50 holder processes are SIGKILLed while a waiter
// polls every 20ms; half of them are first frozen, so that the waiter's
// ping is outstanding when the holder dies. A waiter that pinged a holder
// which then died does not wait UnavailableTimeout for an answer that
// cannot come: it watches the holder, and every takeover comes within a
// few CheckIntervals of the kill (the target, on an idle machine without
// the race detector, is 2 × CheckInterval + 10ms; this test allows for a
// loaded one, and logs the figures).
func TestCrashTakeoverTail(t *testing.T) {
	if testing.Short() {
		t.Skip("50 holder processes")
	}
	const (
		kills         = 50
		checkInterval = 20 * time.Millisecond
		unavailable   = 2 * time.Second
	)
	s := redistest.Redis(t)
	var took []time.Duration
	for i := range kills {
		p := startHolder(t, s.URL(), "crash")
		w := newLock(t, "crash", Config{URL: s.URL(), Timeout: -1, CheckInterval: checkInterval, UnavailableTimeout: unavailable})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		acquired := make(chan time.Time, 1)
		errc := make(chan error, 1)
		go func() {
			err := w.Acquire(ctx)
			acquired <- time.Now()
			errc <- err
		}()
		time.Sleep(time.Duration(rand.IntN(int(3 * checkInterval))))
		if i%2 == 1 {
			// Frozen: the waiter's next ping goes unanswered.
			p.signal(t, syscall.SIGSTOP)
			time.Sleep(3 * checkInterval)
		}
		killed := time.Now()
		p.signal(t, syscall.SIGKILL)
		at := <-acquired
		err := <-errc
		cancel()
		if err != nil {
			t.Fatalf("kill %d: waiter: %v", i, err)
		}
		took = append(took, at.Sub(killed))
		_ = w.Release(context.Background())
	}
	slices.Sort(took)
	p50, worst := took[len(took)/2], took[len(took)-1]
	t.Logf("SIGKILL to takeover over %d kills: p50 %v, p90 %v, max %v", kills, p50, took[len(took)*9/10], worst)
	if worst >= unavailable/2 {
		t.Errorf("a takeover took %v: the waiter waited for the dead holder's answer (UnavailableTimeout %v)", worst, unavailable)
	}
}
