//go:build unix

package main

import (
	"strings"
	"testing"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	r := runBin(t, s.URL(), "status", "ch")
	r.want(t, 0)
	if r.stdout != "ch: free\n" {
		t.Errorf("status of a free lock: %q", r.stdout)
	}

	release := hold(t, s.URL(), "ch")
	line := holderLine(t, s, "ch")
	r = runBin(t, s.URL(), "status", "ch")
	r.want(t, 1)
	want := "ch: held\nholder: id=" + field(line, "id") + " addr=" + field(line, "addr") + " age="
	if !strings.HasPrefix(r.stdout, want) {
		t.Errorf("status of a held lock:\n%s\nwant it to start with:\n%s", r.stdout, want)
	}
	// Flags may come after "status" too.
	runBin(t, "redis://127.0.0.1:1", "status", "--url", s.URL(), "ch").want(t, 1)
	runBin(t, s.URL(), "status", "other").want(t, 0)

	release()
	runBin(t, s.URL(), "status", "ch").want(t, 0)
}

// TestStatusMiniredis: without CLIENT LIST the holder is unknown, but held
// and free are still told apart.
func TestStatusMiniredis(t *testing.T) {
	t.Parallel()
	m := redistest.Miniredis(t)
	url := "redis://" + m.Addr()
	runBin(t, url, "status", "ch").want(t, 0)
	hold(t, url, "ch")
	r := runBin(t, url, "status", "ch")
	r.want(t, 1)
	if !strings.HasPrefix(r.stdout, "ch: held\nholder: unknown") {
		t.Errorf("status on miniredis: %q", r.stdout)
	}
	runBin(t, url, "-n", "ch", "true").want(t, 1)
}

func TestStatusAuth(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t) // the harness cannot start one with --requirepass: it PINGs
	if _, err := s.Do("CONFIG", "SET", "requirepass", "sesame"); err != nil {
		t.Fatal(err)
	}
	url := "redis://:sesame@" + s.Addr()
	runBin(t, url, "status", "ch").want(t, 0)
	hold(t, url, "ch")
	runBin(t, url, "status", "ch").want(t, 1)
	runBin(t, "redis://sesame@"+s.Addr(), "status", "ch").want(t, 1) // lone user info is the password
	r := runBin(t, "redis://:wrong@"+s.Addr(), "status", "ch")
	r.want(t, 69)
	r = runBin(t, s.URL(), "status", "ch")
	r.want(t, 69)
	if !strings.Contains(r.stderr, "NOAUTH") {
		t.Errorf("stderr: %q", r.stderr)
	}
}
