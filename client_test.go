package pubsublock

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// clientConns counts the server's client connections other than the one
// that asks.
func clientConns(t *testing.T, s *redistest.Server) int {
	t.Helper()
	out := strings.TrimSpace(mustDo(t, s, "CLIENT", "LIST"))
	return strings.Count(out, "\n") // one line per client, the asker's too
}

// TestDefaultClientPools: Locks made without Config.Client share warm
// connections per connection setting, so acquire and release after the
// first dial nothing; the idle ones are closed after the idle timeout, by
// a timer, and by CloseIdleConnections; dropped Locks leave no goroutine.
func TestDefaultClientPools(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	ctx := context.Background()
	url := s.URL() + "?protocol=3" // a setting of this test's own
	var locks []*Lock
	for range 3 {
		locks = append(locks, newLock(t, "pool", Config{URL: url}))
	}
	for round := range 3 {
		for _, l := range locks {
			if err := l.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if round == 0 {
			mustDo(t, s, "CONFIG", "RESETSTAT")
		}
	}
	if n, ok := infoField(t, s.URL(), "stats", "total_connections_received"); !ok {
		t.Fatal("INFO stats has no total_connections_received")
	} else if n != "1" { // the INFO's own
		t.Errorf("Locks without a Client dialed %s connections in 6 warm cycles, want none", n)
	}
	if n := clientConns(t, s); n < 1 {
		t.Fatalf("no idle connection kept: %d", n)
	}
	CloseIdleConnections()
	waitFor(t, func() bool { return clientConns(t, s) == 0 })
	locks = nil

	// The idle timeout, on a Client's timer.
	cl, err := NewClient(ClientConfig{URL: s.URL(), IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l := newLock(t, "pool", Config{Client: cl})
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n := clientConns(t, s); n < 1 {
		t.Fatalf("no idle connection kept: %d", n)
	}
	start := time.Now()
	waitFor(t, func() bool { return clientConns(t, s) == 0 })
	t.Logf("idle connections closed %v after the release", time.Since(start))
}

// TestDefaultClientAfterRestart: a Lock without a Client whose pooled
// connections died with a server restart still acquires.
func TestDefaultClientAfterRestart(t *testing.T) {
	s := redistest.Redis(t)
	ctx := context.Background()
	l := newLock(t, "restart", Config{URL: s.URL() + "?protocol=3"})
	for range 2 {
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		s.Restart(t)
	}
}
