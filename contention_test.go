package pubsublock_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestContentionMutualExclusion has 8 goroutines, each with its own Lock
// on one channel, take the lock thousands of times in all. Each holder
// checks that it is alone, and that its hold was not lost meanwhile.
func TestContentionMutualExclusion(t *testing.T) {
	if testing.Short() {
		t.Skip("contention runs take seconds")
	}
	const (
		workers = 8
		total   = 2000 // acquisitions per server
		// budget bounds a run on a loaded machine (the race detector slows
		// the in-process miniredis most): no acquisition starts after it,
		// and at least minTotal must have been made.
		budget   = 15 * time.Second
		minTotal = 200
	)
	run := func(t *testing.T, url string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()

		var (
			holders    atomic.Int32 // goroutines inside the critical section
			acquired   atomic.Int64 // acquisitions so far, all goroutines
			violations atomic.Int64
			longest    atomic.Int64 // longest wait in Acquire, ns
			counts     [workers]int
			wg         sync.WaitGroup
			errMu      sync.Mutex
			errs       []error
		)
		fail := func(err error) {
			errMu.Lock()
			errs = append(errs, err)
			errMu.Unlock()
			cancel()
		}
		// Kills and losses are logged at Info and above.
		var logs pubsublock.LockedBuffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		start := time.Now()
		for i := range workers {
			cfg := pubsublock.Config{
				Timeout:       -1,
				CheckInterval: time.Duration(1+i%5) * time.Millisecond,
				Logger:        logger.With("worker", i),
			}
			// Half the locks dial for every acquisition, half share a
			// warm Client of their own.
			if i%2 == 0 {
				cl, err := pubsublock.NewClient(pubsublock.ClientConfig{URL: url})
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				cfg.Client = cl
			} else {
				cfg.URL = url
			}
			l := pubsublock.NewLock(t, "contended", cfg)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for acquired.Load() < total && time.Since(start) < budget {
					t0 := time.Now()
					err := l.Acquire(ctx)
					if w := time.Since(t0); w > time.Duration(longest.Load()) {
						longest.Store(int64(w)) // racy max, good enough for a log
					}
					if err != nil {
						if !errors.Is(err, context.Canceled) {
							// Canceled: another worker failed first.
							fail(fmt.Errorf("worker %d: Acquire after %d acquisitions: %w", i, acquired.Load(), err))
						}
						return
					}
					if n := holders.Add(1); n != 1 {
						violations.Add(1)
						fail(fmt.Errorf("worker %d: %d holders at once", i, n))
					}
					acquired.Add(1)
					counts[i]++
					if counts[i]%2 == 0 {
						runtime.Gosched()
					} else {
						time.Sleep(50 * time.Microsecond)
					}
					lostErr := l.Err()
					holders.Add(-1)
					rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
					err = l.Release(rctx)
					rcancel()
					if err != nil || lostErr != nil {
						fail(fmt.Errorf("worker %d: hold lost under contention: Err %v, Release %v", i, lostErr, err))
						return
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		errMu.Lock()
		defer errMu.Unlock()
		for _, err := range errs {
			t.Error(err)
		}
		// A live holder must never be killed. (A check whose ping reached
		// only another contender's passing subscription gets no answer and
		// may log "killed silent holder" although it killed nobody: that
		// costs time, not safety.)
		if out := logs.String(); strings.Contains(out, `msg="killing silent holder"`) || strings.Contains(out, `msg="lock lost"`) {
			t.Errorf("live holders killed under contention:\n%s", out)
		} else if out != "" {
			t.Logf("lock log:\n%s", out)
		}
		if v := violations.Load(); v > 0 {
			t.Fatalf("mutual exclusion violated %d times", v)
		}
		n := acquired.Load()
		if n < minTotal {
			t.Fatalf("only %d acquisitions in %v", n, d)
		}
		t.Logf("%d acquisitions by %d contenders in %v (%v each, longest wait %v); per contender %v",
			n, workers, d.Round(time.Millisecond), (d / time.Duration(n)).Round(time.Microsecond),
			time.Duration(longest.Load()).Round(time.Millisecond), counts)
	}
	t.Run("miniredis", func(t *testing.T) {
		pubsublock.LeakCheck(t)
		m := redistest.Miniredis(t)
		run(t, "redis://"+m.Addr())
	})
	t.Run("redis", func(t *testing.T) {
		pubsublock.LeakCheck(t)
		s := redistest.Redis(t)
		run(t, s.URL())
	})
	t.Run("redis-resp2", func(t *testing.T) {
		pubsublock.LeakCheck(t)
		s := redistest.Redis(t)
		run(t, s.URL()+"?protocol=2")
	})
}
