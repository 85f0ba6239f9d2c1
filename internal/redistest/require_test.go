package redistest

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a helper stopped the test.
type recorder struct {
	testing.TB
	how, msg string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.how, r.msg = "fatal", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.how, r.msg = "skip", fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder on its own goroutine, so that Fatalf and
// Skipf can end it, and returns how it ended ("" if it returned).
func run(t *testing.T, f func(testing.TB)) (how, msg string) {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r.how, r.msg
}

func TestRequireBinary(t *testing.T) {
	if got := RequireBinary(t, "sh", "dash"); got == "" {
		t.Error("RequireBinary(sh) returned no path")
	}
	if got := RequireBinary(t, "/bin/sh", "dash"); got != "/bin/sh" {
		t.Errorf("RequireBinary(/bin/sh) = %q", got)
	}
	for _, tc := range []struct {
		ci, how string
	}{
		{"", "skip"},
		{"false", "skip"},
		{"true", "fatal"},
	} {
		t.Setenv("CI", tc.ci)
		how, msg := run(t, func(tb testing.TB) { RequireBinary(tb, "no-such-binary-redistest", "redis-server redis-tools") })
		if how != tc.how || !strings.Contains(msg, "apt-get install -y redis-server redis-tools") {
			t.Errorf("CI=%q: missing binary ended the test with %s %q, want %s with an install hint", tc.ci, how, msg, tc.how)
		}
	}
}

func TestRequirePython(t *testing.T) {
	py := RequirePython(t)
	if _, err := os.Stat(py); err != nil {
		t.Errorf("RequirePython() = %q: %v", py, err)
	}
}
