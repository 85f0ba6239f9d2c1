package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// BenchmarkPing is the physical floor: one PING round trip on a warm
// connection of the same kind the lock uses.
func BenchmarkPing(b *testing.B) {
	s := redistest.Redis(b)
	c, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.do(ctx, "PING"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcquireRelease is an uncontended acquire and release through a
// shared Client (warm connections), on RESP3 and RESP2, and through a Lock
// made from Config{URL} alone (the package's shared pool).
func BenchmarkAcquireRelease(b *testing.B) {
	s := redistest.Redis(b)
	for _, proto := range []string{"resp3", "resp2", "resp3-noclient"} {
		b.Run(proto, func(b *testing.B) {
			url := s.URL()
			if proto == "resp2" {
				url += "?protocol=2"
			}
			cfg := Config{URL: url} // the package's shared pool
			if !strings.HasSuffix(proto, "-noclient") {
				cl, err := NewClient(ClientConfig{URL: url})
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				cfg = Config{Client: cl}
			}
			l, err := New("bench", cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Acquire(ctx); err != nil {
					b.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandoff measures, with waiters blocked in Acquire, the time from
// a holder calling Release to the next holder's Acquire returning. It
// reports the 50th and 99th percentiles.
func BenchmarkHandoff(b *testing.B) {
	s := redistest.Redis(b)
	for _, waiters := range []int{2, 4, 16} {
		b.Run(fmt.Sprintf("waiters=%d", waiters), func(b *testing.B) {
			cl, err := NewClient(ClientConfig{URL: s.URL(), MaxIdle: 4 * waiters})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithCancel(context.Background())
			var (
				mu          sync.Mutex
				lastRelease time.Time
				ds          []time.Duration
				wg          sync.WaitGroup
			)
			for range waiters {
				l, err := New("handoff", Config{Client: cl, Timeout: -1})
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						if err := l.Acquire(ctx); err != nil {
							return
						}
						mu.Lock()
						if !lastRelease.IsZero() {
							ds = append(ds, time.Since(lastRelease))
						}
						if len(ds) >= b.N {
							cancel()
						}
						mu.Unlock()
						time.Sleep(200 * time.Microsecond) // let the others queue up
						mu.Lock()
						lastRelease = time.Now()
						mu.Unlock()
						if err := l.Release(context.Background()); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			cancel()
			slices.Sort(ds)
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkHeldLocks holds many locks at once in one process and reports
// the memory (heap and goroutine stacks, and the two apart, and of the
// heap the connection's buffers) and the goroutines each held lock costs.
func BenchmarkHeldLocks(b *testing.B) {
	const n = 10000
	s := redistest.Redis(b, "--maxclients", "30000")
	cl, err := NewClient(ClientConfig{URL: s.URL()})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		locks := make([]*Lock, n)
		buffers, measured := 0, 0
		for i := range locks {
			l, err := New(fmt.Sprintf("held-%d", i), Config{Client: cl})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Acquire(ctx); err != nil {
				b.Fatal(err)
			}
			locks[i] = l
			// The connection's buffers (part of heap) as the hold keeps
			// them: read here, before its worker starts (the reader is
			// the worker's), by taking the start from the hold's timer.
			l.mu.Lock()
			h := l.h
			l.mu.Unlock()
			if h.claim() {
				h.c.wmu.Lock()
				buffers += h.c.rd.Retained() + cap(h.c.wbuf)
				h.c.wmu.Unlock()
				measured++
				go h.work()
			}
		}
		time.Sleep(10 * lazyStart) // every worker started
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapInuse-before.HeapInuse) / n
		stack := float64(after.StackInuse-before.StackInuse) / n
		b.ReportMetric(heap+stack, "bytes/lock")
		b.ReportMetric(heap, "heap-bytes/lock")
		b.ReportMetric(stack, "stack-bytes/lock")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/lock")
		for _, l := range locks {
			if err := l.Release(ctx); err != nil {
				b.Fatal(err)
			}
		}
		// A hold whose connection cannot be polled (not Linux, TLS)
		// starts its worker at once: its buffers are not read.
		if measured > 0 {
			b.ReportMetric(float64(buffers)/float64(measured), "buffer-bytes/lock")
		}
	}
}

// TestBenchScripts: the bench's design floor (bench/handoff.go) runs the
// library's own scripts, copied there as the bench is another module.
func TestBenchScripts(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("bench", "handoff.go"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("no bench/ beside the package")
	}
	if err != nil {
		t.Fatal(err)
	}
	for name, script := range map[string]string{"ringScript": ringScript, "yieldCheckScript": yieldCheckScript} {
		if !strings.Contains(string(src), "`"+script+"`") {
			t.Errorf("bench/handoff.go has no copy of the library's %s", name)
		}
	}
}
