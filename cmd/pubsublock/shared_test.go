//go:build unix

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestShared: -s takes a reader's lock, which other readers share and a
// writer does not; status shows each reader and its mode.
func TestShared(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	ctx := context.Background()
	r, err := pubsublock.New("ch", pubsublock.Config{URL: s.URL(), Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Release(context.Background()) })

	runBin(t, s.URL(), "-s", "-n", "ch", "true").want(t, 0)
	runBin(t, s.URL(), "--shared", "-w", "5", "ch", "true").want(t, 0)
	runBin(t, s.URL(), "-n", "ch", "true").want(t, 1) // a writer

	// Two readers at once: the one that runs "status" is one of them.
	st := runBin(t, s.URL(), "-s", "-n", "ch", "--", "sh", "-c", `exec "$0" status ch`, binary)
	st.want(t, 1)
	if !strings.HasPrefix(st.stdout, "ch: held (2 subscribers, 2 named ch-lock)\n") ||
		strings.Count(st.stdout, " mode=shared protocol=1 (pubsublock)\n") != 2 || strings.Contains(st.stdout, "note:") {
		t.Errorf("status of two readers:\n%s", st.stdout)
	}

	// A waiting writer keeps new readers out.
	w, err := pubsublock.New("ch", pubsublock.Config{URL: s.URL(), Timeout: 10 * time.Second, CheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- w.Acquire(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(runBin(t, s.URL(), "status", "ch").stdout, " mode=pending ") {
		if time.Now().After(deadline) {
			t.Fatal("the writer does not wait, pending")
		}
		time.Sleep(20 * time.Millisecond)
	}
	runBin(t, s.URL(), "-s", "-n", "ch", "true").want(t, 1)
	_ = r.Release(ctx)
	if err := <-got; err != nil {
		t.Fatalf("writer: %v", err)
	}
	_ = w.Release(ctx)
}
