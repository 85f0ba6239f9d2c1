package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestSharedReaders: readers hold the lock together, and a writer waits
// for all of them.
func TestSharedReaders(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		ctx := context.Background()
		const n = 4
		readers := make([]*Lock, n)
		errs := make(chan error, n)
		for i := range readers {
			readers[i] = newLock(t, "shared", Config{URL: url, Shared: true, Fencing: true})
			go func() { errs <- readers[i].Acquire(ctx) }()
		}
		for range n {
			if err := <-errs; err != nil {
				t.Fatalf("reader: %v", err)
			}
		}
		for i, r := range readers {
			if err := r.Err(); err != nil || r.Token() == 0 {
				t.Fatalf("reader %d: Err %v, Token %d", i, err, r.Token())
			}
		}
		w := newLock(t, "shared", Config{URL: url, Timeout: 200 * time.Millisecond})
		if err := w.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("writer TryAcquire among readers: %v", err)
		}
		if err := w.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("writer Acquire among readers: %v", err)
		}
		// The writer's Acquire left once its Timeout was over, and its
		// release reaches the server a moment later.
		var st Status
		waitFor(t, func() bool {
			var err error
			st, err = readers[0].Status(ctx)
			return err == nil && st.Subscribers == n
		})
		for _, h := range st.Holders {
			if h.Mode != ModeShared || h.Kind != KindPubsublock || h.Protocol != 1 {
				t.Errorf("holder %+v", h)
			}
		}
		for _, r := range readers {
			if err := r.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Acquire(ctx); err != nil {
			t.Fatalf("writer after the readers: %v", err)
		}
		r := newLock(t, "shared", Config{URL: url, Shared: true})
		if err := r.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("reader TryAcquire while a writer holds: %v", err)
		}
	})
}

// TestSharedWriterNotStarved: readers take turns so that the lock is never
// free of them; a writer that waits keeps new readers out, and gets the
// lock once the readers that held it are gone.
func TestSharedWriterNotStarved(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writing atomic.Bool
	var wg sync.WaitGroup
	var overlaps, reads atomic.Int64
	for range 3 {
		r := newLock(t, "starve", Config{URL: s.URL(), Shared: true, Timeout: -1, CheckInterval: 20 * time.Millisecond})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := r.Acquire(ctx); err != nil {
					return
				}
				reads.Add(1)
				if writing.Load() {
					overlaps.Add(1)
				}
				time.Sleep(time.Duration(30+rand.IntN(30)) * time.Millisecond)
				_ = r.Release(context.Background())
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the readers overlap by now
	w := newLock(t, "starve", Config{URL: s.URL(), Timeout: 5 * time.Second, CheckInterval: 50 * time.Millisecond})
	start := time.Now()
	if err := w.Acquire(ctx); err != nil {
		t.Fatalf("writer among readers that take turns: %v", err)
	}
	writing.Store(true)
	t.Logf("writer waited %v among readers taking turns (%d reads)", time.Since(start), reads.Load())
	time.Sleep(100 * time.Millisecond)
	writing.Store(false)
	_ = w.Release(ctx)
	cancel()
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d reads while the writer held the lock", n)
	}
}

// contendMixed runs readers and writers on channel, each its own Lock,
// each acquiring cycles times with the oracle checking that no writer
// holds with anyone else; it returns the overlaps seen.
func contendMixed(t *testing.T, url, channel string, readers, writers, cycles int, extra func(*Config)) int64 {
	t.Helper()
	var r, w, bad atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, readers+writers)
	for i := range readers + writers {
		shared := i < readers
		cfg := Config{URL: url, Shared: shared, Timeout: 20 * time.Second, CheckInterval: 20 * time.Millisecond,
			UnavailableTimeout: 2 * time.Second}
		if extra != nil {
			extra(&cfg)
		}
		l := newLock(t, channel, cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range cycles {
				if err := l.Acquire(context.Background()); err != nil {
					errs <- fmt.Errorf("shared %v: %w", shared, err)
					return
				}
				if shared {
					r.Add(1)
					if w.Load() != 0 {
						bad.Add(1)
					}
				} else if w.Add(1) != 1 || r.Load() != 0 {
					bad.Add(1)
				}
				time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
				if shared {
					r.Add(-1)
				} else {
					w.Add(-1)
				}
				if err := l.Release(context.Background()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return bad.Load()
}

// TestSharedContention: readers and writers contend; no writer ever holds
// the lock with anyone else.
func TestSharedContention(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		cycles := 25
		if testing.Short() {
			cycles = 8
		}
		start := time.Now()
		if bad := contendMixed(t, url, "mixed", 4, 2, cycles, nil); bad != 0 {
			t.Errorf("%d overlaps", bad)
		}
		t.Logf("4 readers and 2 writers, %d cycles each, in %v", cycles, time.Since(start))
	})
}

// TestSharedElection: two writers wait for a reader; only one of them
// stays subscribed, pending, and it takes the lock first.
func TestSharedElection(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	ctx := context.Background()
	reader := newLock(t, "elect", Config{URL: s.URL(), Shared: true})
	mustAcquire(t, reader)
	var ws []*Lock
	for range 2 {
		ws = append(ws, newLock(t, "elect", Config{URL: s.URL(), Protocol: 1, Timeout: 10 * time.Second, CheckInterval: 30 * time.Millisecond}))
	}
	got := make(chan *Lock, 2)
	for _, w := range ws {
		go func() {
			if err := w.Acquire(ctx); err != nil {
				t.Error(err)
			}
			got <- w
		}()
	}
	// Writers that start together may both subscribe pending before the
	// lower id wins; the loser's tries are subscribed, and answer
	// "pending", for a round trip each. Once the election settled, the
	// elected writer is pending in every sample, and no other.
	pendingNow := func() []string {
		st, err := reader.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range st.Holders {
			if h.Mode == ModePending {
				ids = append(ids, h.HolderID)
			}
		}
		return ids
	}
	waitFor(t, func() bool { return len(pendingNow()) == 1 })
	time.Sleep(100 * time.Millisecond) // several tries of each writer
	const samples = 8
	seen := map[string]int{}
	for range samples {
		for _, id := range pendingNow() {
			seen[id]++
		}
		time.Sleep(30 * time.Millisecond)
	}
	var pending []string // the writers pending in every sample
	for id, n := range seen {
		if n == samples {
			pending = append(pending, id)
		}
	}
	if len(pending) != 1 {
		t.Fatalf("writers pending in all of %d samples: %q (seen: %v); want one, the elected", samples, pending, seen)
	}
	if err := reader.Release(ctx); err != nil {
		t.Fatal(err)
	}
	w := <-got
	if w.HolderID() != pending[0] {
		t.Errorf("writer %s took the lock first, want the elected %s", w.HolderID(), pending[0])
	}
	_ = w.Release(ctx)
	w = <-got
	_ = w.Release(ctx)
}

// TestSharedFencing: a writer's token is larger than that of every reader
// that held before it, and the readers' after it larger than its.
func TestSharedFencing(t *testing.T) {
	s := redistest.Redis(t)
	ctx := context.Background()
	r1 := newLock(t, "fence", Config{URL: s.URL(), Shared: true, Fencing: true})
	r2 := newLock(t, "fence", Config{URL: s.URL(), Shared: true, Fencing: true})
	w := newLock(t, "fence", Config{URL: s.URL(), Fencing: true, Timeout: 5 * time.Second, CheckInterval: 20 * time.Millisecond})
	mustAcquire(t, r1)
	mustAcquire(t, r2)
	got := make(chan error, 1)
	go func() { got <- w.Acquire(ctx) }()
	time.Sleep(100 * time.Millisecond) // the writer waits, pending
	t1, t2 := r1.Token(), r2.Token()
	_ = r1.Release(ctx)
	_ = r2.Release(ctx)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if tw := w.Token(); tw <= t1 || tw <= t2 {
		t.Errorf("writer's token %d, readers' before it %d and %d", tw, t1, t2)
	}
	tw := w.Token()
	_ = w.Release(ctx)
	mustAcquire(t, r1)
	if r1.Token() <= tw {
		t.Errorf("reader's token %d after the writer's %d", r1.Token(), tw)
	}
}

// TestSharedLost: a reader whose connection is killed learns it.
func TestSharedLost(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	r1 := newLock(t, "lost", Config{URL: s.URL(), Shared: true})
	r2 := newLock(t, "lost", Config{URL: s.URL(), Shared: true})
	mustAcquire(t, r1)
	mustAcquire(t, r2)
	ids := s.SubscriberIDs(t, r1.ClientName())
	if len(ids) != 1 {
		t.Fatalf("connections named %s: %v", r1.ClientName(), ids)
	}
	if _, err := s.Do("CLIENT", "KILL", "ID", fmt.Sprint(ids[0])); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r1.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("killed reader did not see the loss")
	}
	if err := r1.Err(); !errors.Is(err, ErrLost) {
		t.Errorf("Err() = %v, want ErrLost", err)
	}
	if err := r2.Err(); err != nil {
		t.Errorf("the other reader: %v", err)
	}
}

// TestSharedCluster: readers and writers on a cluster (sharded pub/sub):
// readers together, a writer alone.
func TestSharedCluster(t *testing.T) {
	c := redistest.Cluster(t, 1)
	cycles := 10
	if testing.Short() {
		cycles = 4
	}
	bad := contendMixed(t, "", "{shared}-cluster", 3, 1, cycles, func(cfg *Config) {
		cfg.URL, cfg.ClusterAddrs, cfg.Fencing = "", c.Addrs(), true
	})
	if bad != 0 {
		t.Errorf("%d overlaps", bad)
	}
	ctx := context.Background()
	r1 := newLock(t, "{shared}-cluster", Config{ClusterAddrs: c.Addrs(), Shared: true})
	r2 := newLock(t, "{shared}-cluster", Config{ClusterAddrs: c.Addrs(), Shared: true})
	mustAcquire(t, r1)
	mustAcquire(t, r2)
	st, err := r1.Status(ctx)
	if err != nil || st.Subscribers != 2 || len(st.Holders) != 2 {
		t.Fatalf("Status of two readers on a cluster: %+v, %v", st, err)
	}
	for _, h := range st.Holders {
		if !h.Answered || h.Mode != ModeShared || h.Protocol != 1 {
			t.Errorf("holder %+v", h)
		}
	}
	w := newLock(t, "{shared}-cluster", Config{ClusterAddrs: c.Addrs()})
	if err := w.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Fatalf("writer among readers on a cluster: %v", err)
	}
}
