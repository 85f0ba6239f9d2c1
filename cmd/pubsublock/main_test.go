//go:build unix

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/internal/redistest"
)

// binary is the pubsublock command built by TestMain, run as a real
// process by the tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pubsublock-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pubsublock")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goraceEnv shortens the second a -race binary sleeps at exit, waiting for
// reports from other goroutines; a race still makes it exit 66, which the
// tests' exit status checks catch.
const goraceEnv = "GORACE=atexit_sleep_ms=100"

// result is how a run of the binary ended.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// prepare prepares a run of the binary against url (as $REDIS_URL), in a
// temporary working directory.
func prepare(t *testing.T, url string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "REDIS_URL="+url, goraceEnv)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// runBin runs the binary to the end, within 30s.
func runBin(t *testing.T, url string, args ...string) result {
	t.Helper()
	cmd, stdout, stderr := prepare(t, url, args...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return wait(t, cmd, start, stdout, stderr)
}

// wait waits for a started run, killing it after 30s.
func wait(t *testing.T, cmd *exec.Cmd, start time.Time, stdout, stderr *bytes.Buffer) result {
	t.Helper()
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	r := result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(),
		elapsed: time.Since(start)}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("pubsublock %s: %v", strings.Join(cmd.Args[1:], " "), err)
	}
	if r.code < 0 {
		t.Fatalf("pubsublock %s: %v (killed by the test's timeout?)\nstderr: %s", strings.Join(cmd.Args[1:], " "), err, r.stderr)
	}
	return r
}

// want fails the test unless r ended with code.
func (r result) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
}

// hold takes the lock on channel in the test process until the test ends
// or the returned release is called.
func hold(t *testing.T, url, channel string) (release func()) {
	t.Helper()
	l, err := pubsublock.New(channel, pubsublock.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	release = func() { _ = l.Release(context.Background()) }
	t.Cleanup(release)
	return release
}

// holderLine waits until CLIENT LIST shows a subscribed client named
// channel-lock, and returns its line.
func holderLine(t *testing.T, s *redistest.Server, channel string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := s.Do("CLIENT", "LIST", "TYPE", "pubsub")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(list) {
			if strings.Contains(line, " name="+channel+"-lock ") && strings.Contains(line, " sub=1 ") {
				return strings.TrimSpace(line)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no holder of %s in CLIENT LIST:\n%s", channel, list)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// field returns the value of key in a CLIENT LIST line.
func field(line, key string) string {
	for f := range strings.FieldsSeq(line) {
		if k, v, _ := strings.Cut(f, "="); k == key {
			return v
		}
	}
	return ""
}

// waitFile waits up to 10s for path to exist and be non-empty, and
// returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within 10s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports whether process pid has exited: it no longer exists, or is
// a zombie waiting for init to reap it.
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	if runtime.GOOS != "linux" {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces, so look after the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// freeURL returns a URL on a loopback port where nothing listens.
func freeURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "redis://" + addr
}
