package redistest

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
)

// Miniredis starts an in-process miniredis on a free port of 127.0.0.1 and
// closes it with t.Cleanup. It is fast but partial: see PROTOCOL.md for
// what it lacks (CLIENT LIST/KILL, sharded pub/sub) and the hazard of its
// synchronous PUBLISH.
func Miniredis(t testing.TB) *miniredis.Miniredis {
	t.Helper()
	m, err := miniredis.Run()
	if err != nil {
		t.Fatalf("redistest: start miniredis: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}
