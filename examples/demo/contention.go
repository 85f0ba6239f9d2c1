//go:build unix

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock"
)

// contention runs workers goroutines, each with its own Lock on one
// channel, each taking the lock rounds times and holding it briefly. It
// counts the holders at every moment and fails if it ever sees two.
func contention(url string, workers, rounds int) error {
	say("1. %d workers, each with its own Lock, contend for lock %q, %d times each", workers, "jobs", rounds)
	var holders, maxHolders, acquisitions atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	t0 := time.Now()
	for w := range workers {
		wg.Go(func() {
			l, err := pubsublock.New("jobs", lockConfig(url))
			if err != nil {
				errs <- err
				return
			}
			for r := range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := l.Acquire(ctx)
				if err == nil {
					n := holders.Add(1)
					for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
					}
					acquisitions.Add(1)
					say("   worker %d holds the lock (round %d, holders now %d)", w, r+1, n)
					time.Sleep(10 * time.Millisecond) // the critical section
					holders.Add(-1)
					err = l.Release(ctx)
				}
				cancel()
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	say("   %d acquisitions in %d ms, max concurrent holders = %d", acquisitions.Load(), ms(time.Since(t0)), maxHolders.Load())
	if maxHolders.Load() != 1 || acquisitions.Load() != int64(workers*rounds) {
		return fmt.Errorf("want %d acquisitions and 1 holder at most", workers*rounds)
	}
	return nil
}
