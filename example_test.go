package pubsublock_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/resp"
)

// startRedis stands in for a real server in the examples.
func startRedis() *miniredis.Miniredis {
	m, err := miniredis.Run()
	if err != nil {
		log.Fatal(err)
	}
	return m
}

func Example() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()

	l, err := pubsublock.New("nightly-backup", pubsublock.Config{URL: "redis://" + m.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("holding", l.Channel(), "as", l.ClientName())
	if err := l.Release(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("released")
	// Output:
	// holding nightly-backup as nightly-backup-lock
	// released
}

// TryAcquire makes one attempt and reports ErrAlreadyLocked when another
// process holds the lock.
func ExampleLock_TryAcquire() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()
	cfg := pubsublock.Config{URL: "redis://" + m.Addr()}

	first, _ := pubsublock.New("deploy", cfg)
	second, _ := pubsublock.New("deploy", cfg)
	if err := first.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	defer first.Release(ctx)

	err := second.TryAcquire(ctx)
	fmt.Println(errors.Is(err, pubsublock.ErrAlreadyLocked))
	// Output: true
}

// A holder should stop its work when the lock is lost: here the server
// goes away, dropping every subscription.
func ExampleLock_Lost() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()

	l, _ := pubsublock.New("reindex", pubsublock.Config{URL: "redis://" + m.Addr()})
	if err := l.Acquire(ctx); err != nil {
		log.Fatal(err)
	}

	m.Close() // every connection is dropped
	select {
	case <-l.Lost():
		fmt.Println("lost:", errors.Is(l.Err(), pubsublock.ErrLost))
	case <-time.After(5 * time.Second):
		fmt.Println("still held")
	}
	err := l.Release(ctx)
	fmt.Println("release:", errors.Is(err, pubsublock.ErrLost))
	// Output:
	// lost: true
	// release: true
}

// store is a resource protected by the lock. It remembers the largest
// fencing token it has seen and refuses writes that carry a smaller one:
// such a write comes from a holder that was paused, lost the lock, and
// resumed without knowing.
type store struct {
	mu      sync.Mutex
	highest int64
	value   string
}

var errStale = errors.New("stale fencing token")

func (s *store) write(token int64, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return errStale
	}
	s.highest, s.value = token, value
	return nil
}

// With Fencing on, each acquisition gets a strictly increasing token that
// the protected resource checks.
func ExampleLock_Token() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()
	cfg := pubsublock.Config{URL: "redis://" + m.Addr(), Fencing: true}
	var s store

	a, _ := pubsublock.New("ledger", cfg)
	if err := a.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	stale := a.Token()
	a.Release(ctx) // suppose a was paused here and its lock taken over

	b, _ := pubsublock.New("ledger", cfg)
	if err := b.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Release(ctx)
	fmt.Println("b writes:", s.write(b.Token(), "from b"))
	fmt.Println("a writes:", s.write(stale, "from a"))
	fmt.Println("value:", s.value)
	// Output:
	// b writes: <nil>
	// a writes: stale fencing token
	// value: from b
}

// A Client shares warm connections among many locks; the locks never
// close it.
func ExampleClient() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()

	client, err := pubsublock.NewClient(pubsublock.ClientConfig{URL: "redis://" + m.Addr()})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	for _, job := range []string{"job-a", "job-b"} {
		l, _ := pubsublock.New(job, pubsublock.Config{Client: client})
		if err := l.Acquire(ctx); err != nil {
			log.Fatal(err)
		}
		fmt.Println("holding", job)
		l.Release(ctx)
	}
	// Output:
	// holding job-a
	// holding job-b
}

// ExampleLock_Context runs work under the lock with a context that ends
// as soon as the lock is lost, its cause saying why.
func ExampleLock_Context() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()
	l, err := pubsublock.New("report", pubsublock.Config{Addr: m.Addr()})
	if err != nil {
		panic(err)
	}
	if err := l.Acquire(ctx); err != nil {
		panic(err)
	}
	work, cancel := l.Context(ctx)
	defer cancel()

	m.Close() // the server goes away: the hold is lost
	<-work.Done()
	fmt.Println(errors.Is(context.Cause(work), pubsublock.ErrLost))
	// Output: true
}

// Status tells whether the lock is held, without disturbing the holder.
// miniredis has no CLIENT LIST, so the holders' connections are not
// listed here; on Redis, Holders gives each one's id, address and age.
func ExampleLock_Status() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()
	cfg := pubsublock.Config{Addr: m.Addr()}
	holder, _ := pubsublock.New("jobs", cfg)
	observer, _ := pubsublock.New("jobs", cfg)

	st, err := observer.Status(ctx)
	fmt.Println(st.Held(), err)
	if err := holder.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	defer holder.Release(ctx)
	st, err = observer.Status(ctx)
	fmt.Println(st.Held(), st.Subscribers, st.ListErr != nil, err)
	// Output:
	// false <nil>
	// true 1 true <nil>
}

// CheckOrKill pings the holder: a live one answers; a silent one (a frozen
// process) would be killed, freeing the lock.
func ExampleLock_CheckOrKill() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()
	cfg := pubsublock.Config{Addr: m.Addr()}
	holder, _ := pubsublock.New("jobs", cfg)
	checker, _ := pubsublock.New("jobs", cfg)
	if err := holder.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	defer holder.Release(ctx)

	alive, err := checker.CheckOrKill(ctx)
	fmt.Println(alive, err)
	// Output: true <nil>
}

// Errors are tested with errors.Is and errors.As: the package's sentinels
// for the lock's own outcomes, resp.Error for the server's refusals, and
// net errors for the network.
func Example_errors() {
	m := startRedis()
	defer m.Close()
	ctx := context.Background()

	_, err := pubsublock.New("has space", pubsublock.Config{})
	fmt.Println(errors.Is(err, pubsublock.ErrConfig))

	cfg := pubsublock.Config{Addr: m.Addr(), FailWhenLocked: true}
	a, _ := pubsublock.New("jobs", cfg)
	b, _ := pubsublock.New("jobs", cfg)
	if err := a.Acquire(ctx); err != nil {
		log.Fatal(err)
	}
	err = b.Acquire(ctx)
	fmt.Println(errors.Is(err, pubsublock.ErrAlreadyLocked), err)
	_ = a.Release(ctx)
	fmt.Println(errors.Is(a.Release(ctx), pubsublock.ErrNotHeld))

	m.RequireAuth("secret")
	err = b.Acquire(ctx)
	var re resp.Error
	fmt.Println(errors.As(err, &re), re.Code())

	addr := m.Addr()
	m.Close()
	noServer, _ := pubsublock.New("jobs", pubsublock.Config{Addr: addr, DialTimeout: time.Second})
	err = noServer.Acquire(ctx)
	var ne *net.OpError
	fmt.Println(errors.As(err, &ne))
	// Output:
	// true
	// true pubsublock: already locked: jobs
	// true
	// true NOAUTH
	// true
}
