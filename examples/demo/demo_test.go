//go:build unix

package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestDemo builds the demo, runs it as `make demo` would, and checks that
// it exits 0 within 15s having printed each fact it claims.
func TestDemo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "demo")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	common := []string{
		`\[ *\d+ms\] 1\. 4 workers`,
		`\] +12 acquisitions in \d+ ms, max concurrent holders = 1\n`,
		`\] +crash hand-off: the waiter holds the lock \d+ ms after the SIGKILL\n`,
		`\] +lost holder told: Lost\(\) fired \d+ ms after the kill; Err\(\) = pubsublock: lock lost`,
		`\] done in \d+ ms: every fact above held\n$`,
	}
	t.Run("redis-server", func(t *testing.T) {
		t.Parallel()
		redistest.RequireBinary(t, "redis-server", "redis-server")
		out := runDemo(t, bin)
		want(t, out, append(common,
			`\] server: redis-server \d+\.\d+\.\d+ \(temporary, port \d+\) at `,
			`\] +waiter: library says killing silent holder id=\d+`,
			`\] +frozen holder pinged, silent for 300ms, killed \(CLIENT KILL\) and replaced: the waiter holds the lock \d+ ms after the SIGSTOP\n`,
			`\] +lost holder told: the resumed process's Lost\(\) fired \d+ ms after SIGCONT \(pubsublock: lock lost`,
		)...)
		// The temporary server is gone.
		addr := regexp.MustCompile(`at (127\.0\.0\.1:\d+)\n`).FindStringSubmatch(out)
		if addr == nil {
			t.Fatal("no server address in the output")
		}
		if c, err := net.DialTimeout("tcp", addr[1], time.Second); err == nil {
			c.Close()
			t.Errorf("the demo's redis-server at %s still answers", addr[1])
		}
	})
	t.Run("miniredis", func(t *testing.T) {
		t.Parallel()
		out := runDemo(t, bin, "DEMO_MINIREDIS=1")
		want(t, out, append(common,
			`\] server: miniredis \(in-process\) at `,
			`\] +skipped: miniredis has no CLIENT LIST or CLIENT KILL`,
			`\] +miniredis has no CLIENT KILL: restarted the server instead`,
		)...)
	})
}

// runDemo runs the built demo with env added, and fails the test unless
// it exits 0 within 15s.
func runDemo(t *testing.T, bin string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	// A -race binary sleeps 1s at exit by default, waiting for reports
	// from other goroutines; a race still makes it exit 66.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=100"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("demo ran %v\n%s", time.Since(start).Round(time.Millisecond), stdout.String())
	if err != nil {
		t.Fatalf("demo: %v (within 15s: %v)\nstderr: %s", err, ctx.Err() == nil, stderr.String())
	}
	return stdout.String()
}

// want fails the test for each pattern missing from out.
func want(t *testing.T, out string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			t.Errorf("output lacks %s", p)
		}
	}
}
