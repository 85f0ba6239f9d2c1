//go:build unix

package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

func TestExitStatusPassesThrough(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"true"}, 0},
		{[]string{"sh", "-c", "exit 7"}, 7},
		{[]string{"--", "sh", "-c", "exit 255"}, 255},
		{[]string{"sh", "-c", "kill -KILL $$"}, 128 + 9},
		{[]string{"sh", "-c", "kill -TERM $$"}, 128 + 15},
		{[]string{"no-such-command-pubsublock"}, 127},
		{[]string{filepath.Join(dir, "missing")}, 127},
		{[]string{plain}, 126},
		{[]string{dir}, 126},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runBin(t, s.URL(), append([]string{"ch"}, tc.args...)...)
			if r.code != tc.want {
				t.Errorf("pubsublock ch %q: exit %d, want %d; stderr: %s", tc.args, r.code, tc.want, r.stderr)
			}
		})
	}
}

func TestReleased(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	runBin(t, s.URL(), "ch", "true").want(t, 0)
	runBin(t, s.URL(), "ch", "false").want(t, 1)
	runBin(t, s.URL(), "ch", "no-such-command-pubsublock").want(t, 127)
	// Every run released the lock.
	if got, _ := s.Do("PUBSUB", "NUMSUB", "ch"); got != "ch\n0" {
		t.Errorf("NUMSUB after the runs: %q", got)
	}
	list, _ := s.Do("CLIENT", "LIST")
	for line := range strings.Lines(list) {
		if !strings.Contains(line, " cmd=client|list ") { // ours
			t.Errorf("connection left after the runs: %s", line)
		}
	}
}

func TestConflict(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	release := hold(t, s.URL(), "ch")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-n"}, 1},
		{[]string{"--nonblock"}, 1},
		{[]string{"-w", "0"}, 1},
		{[]string{"-n", "-E", "42"}, 42},
		{[]string{"--nonblock", "--conflict-exit-code=0"}, 0},
	} {
		args := append(tc.args, "ch", "touch", "ran")
		cmd, stdout, stderr := prepare(t, s.URL(), args...)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := wait(t, cmd, start, stdout, stderr)
		if r.code != tc.want {
			t.Errorf("pubsublock %q: exit %d, want %d; stderr: %s", args, r.code, tc.want, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(cmd.Dir, "ran")); err == nil {
			t.Errorf("pubsublock %q ran the command without the lock", args)
		}
		if r.stderr != "" {
			t.Errorf("pubsublock %q: a conflict should be silent without -v, stderr: %s", args, r.stderr)
		}
	}
	release()
	runBin(t, s.URL(), "-n", "ch", "true").want(t, 0)
}

func TestTimeoutWaits(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	hold(t, s.URL(), "ch")
	for _, tc := range []struct {
		flag string
		wait time.Duration
	}{
		{"-w=1s", time.Second},
		{"--timeout=0.6", 600 * time.Millisecond},
	} {
		r := runBin(t, s.URL(), tc.flag, "ch", "true")
		r.want(t, 1)
		if r.elapsed < tc.wait || r.elapsed > tc.wait+5*time.Second {
			t.Errorf("pubsublock %s gave up after %v", tc.flag, r.elapsed)
		}
	}
}

func TestWaitsForeverByDefault(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	release := hold(t, s.URL(), "ch")
	cmd, stdout, stderr := prepare(t, s.URL(), "--check-interval", "20ms", "ch", "true")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	release()
	r := wait(t, cmd, start, stdout, stderr)
	r.want(t, 0)
	if r.elapsed < 700*time.Millisecond {
		t.Errorf("got the lock after %v, before it was released", r.elapsed)
	}
}

func TestSignalsReachTheChild(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	dir := t.TempDir()
	marks, ready := filepath.Join(dir, "marks"), filepath.Join(dir, "ready")
	script := `
for s in USR1 USR2 HUP INT QUIT; do trap "echo $s >> '` + marks + `'" $s; done
trap "echo TERM >> '` + marks + `'; exit 3" TERM
echo ready > '` + ready + `'
while :; do sleep 0.05; done`
	cmd, stdout, stderr := prepare(t, s.URL(), "ch", "sh", "-c", script)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, ready)
	var want []string
	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM} {
		name := strings.TrimPrefix(sigName(sig), "SIG")
		want = append(want, name)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		// One signal at a time: the same pending signal twice is one.
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(marks)
			if strings.Count(string(b), "\n") == len(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach the child; marks: %q", name, b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	r := wait(t, cmd, start, stdout, stderr)
	r.want(t, 3)
	b, _ := os.ReadFile(marks)
	if got := strings.Fields(string(b)); !slices.Equal(got, want) {
		t.Errorf("child saw %q, want %q", got, want)
	}
}

// TestIgnoredSignalsStayIgnored: under nohup, SIGHUP is ignored, and
// COMMAND must inherit that rather than pubsublock's handler.
func TestIgnoredSignalsStayIgnored(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	if !signal.Ignored(syscall.SIGHUP) { // the test itself may run under nohup
		r := runBin(t, s.URL(), "ch", "sh", "-c", "kill -HUP $$; echo survived")
		r.want(t, 128+1) // not ignored: HUP kills sh
	}
	cmd, stdout, stderr := prepare(t, s.URL())
	cmd.Args = []string{"sh", "-c", `trap "" HUP; exec "$0" "$@"`, binary, "ch", "sh", "-c", "kill -HUP $$; echo survived"}
	cmd.Path = "/bin/sh"
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := wait(t, cmd, start, stdout, stderr)
	r.want(t, 0)
	if r.stdout != "survived\n" {
		t.Errorf("stdout %q", r.stdout)
	}
}

func TestSignalWhileWaiting(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	hold(t, s.URL(), "ch")
	cmd, stdout, stderr := prepare(t, s.URL(), "-v", "ch", "touch", "ran")
	// -v's first record comes once signals are caught: a -race binary
	// can take longer than a moment to get there on a busy machine.
	log := filepath.Join(t.TempDir(), "stderr")
	f, err := os.Create(log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stderr = f
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, log)
	time.Sleep(200 * time.Millisecond) // let it wait for the lock
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wait(t, cmd, start, stdout, stderr).want(t, 128+15)
	if _, err := os.Stat(filepath.Join(cmd.Dir, "ran")); err == nil {
		t.Error("the command ran after pubsublock was told to stop waiting")
	}
}

// TestLossKillsTheGroup kills the holder's connection from outside, as a
// contender does with a silent holder: the child and its child must die.
func TestLossKillsTheGroup(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		trap  string        // how the shell treats SIGTERM
		after time.Duration // --kill-after
		min   time.Duration // least time from the kill to the exit
	}{
		{"SIGTERM", "", 5 * time.Second, 0},
		{"SIGKILL", `trap "" TERM;`, 500 * time.Millisecond, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := redistest.Redis(t)
			dir := t.TempDir()
			pids := filepath.Join(dir, "pids")
			script := tc.trap + `sleep 300 & echo $$ $! > '` + pids + `'; wait`
			cmd, stdout, stderr := prepare(t, s.URL(), "--kill-after", tc.after.String(), "ch", "sh", "-c", script)
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var sh, sleep int
			if _, err := fmt.Sscan(waitFile(t, pids), &sh, &sleep); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { // should the test fail, leave nothing behind
				_ = syscall.Kill(sh, syscall.SIGKILL)
				_ = syscall.Kill(sleep, syscall.SIGKILL)
			})
			id := field(holderLine(t, s, "ch"), "id")
			killed := time.Now()
			if got, err := s.Do("CLIENT", "KILL", "ID", id); err != nil || got != "1" {
				t.Fatalf("CLIENT KILL ID %s = %q, %v", id, got, err)
			}
			r := wait(t, cmd, start, stdout, stderr)
			r.want(t, 75)
			if d := time.Since(killed); d < tc.min || d > tc.after+5*time.Second {
				t.Errorf("exited %v after the kill, want between %v and %v", d, tc.min, tc.after+5*time.Second)
			}
			if !strings.Contains(r.stderr, "lost") {
				t.Errorf("stderr does not report the loss: %s", r.stderr)
			}
			deadline := time.Now().Add(5 * time.Second)
			for !gone(sh) || !gone(sleep) {
				if time.Now().After(deadline) {
					t.Fatalf("after the loss: child sh %d gone %v, grandchild sleep %d gone %v", sh, gone(sh), sleep, gone(sleep))
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestNoOverlap runs contending pubsublock processes whose commands log
// their start and end: no two may be inside at once.
func TestNoOverlap(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	log := filepath.Join(t.TempDir(), "log")
	script := `echo "start $$ $(date +%s%N)" >> '` + log + `'; sleep 0.05; echo "end $$ $(date +%s%N)" >> '` + log + `'`
	const runners, runs = 4, 3
	var wg sync.WaitGroup
	for range runners {
		wg.Go(func() {
			for range runs {
				r := runBin(t, s.URL(), "--check-interval", "20ms", "ch", "sh", "-c", script)
				if r.code != 0 {
					t.Errorf("exit %d; stderr: %s", r.code, r.stderr)
				}
			}
		})
	}
	wg.Wait()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2*runners*runs {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), 2*runners*runs, b)
	}
	var last int64
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("line %q", line)
		}
		ts, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || ts < last {
			t.Fatalf("line %d %q: time goes back (or %v):\n%s", i, line, err, b)
		}
		last = ts
		want := "start"
		if i%2 == 1 {
			want = "end"
			if f[1] != strings.Fields(lines[i-1])[1] {
				t.Fatalf("line %d: %q ends a run that %q did not start: overlap\n%s", i, line, lines[i-1], b)
			}
		}
		if f[0] != want {
			t.Fatalf("line %d: %q, want %s: overlap\n%s", i, line, want, b)
		}
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	show := []string{"sh", "-c", `echo "[$PUBSUBLOCK_CHANNEL] [$PUBSUBLOCK_TOKEN]"`}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append([]string{"--fencing", "jobs"}, show...), "[jobs] [1]"},
		{append([]string{"--fencing", "jobs"}, show...), "[jobs] [2]"},
		{append([]string{"jobs"}, show...), "[jobs] []"},
		{append([]string{"--", "status", "--"}, show...), "[status] []"}, // a channel named status
	} {
		cmd, stdout, stderr := prepare(t, s.URL(), tc.args...)
		// Stale values from an outer run must not leak through.
		cmd.Env = append(cmd.Env, "PUBSUBLOCK_TOKEN=99", "PUBSUBLOCK_CHANNEL=outer")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := wait(t, cmd, start, stdout, stderr)
		r.want(t, 0)
		if got := strings.TrimSpace(r.stdout); got != tc.want {
			t.Errorf("pubsublock %q: child saw %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	url := freeURL(t) // never dialed: usage is checked first
	for _, args := range [][]string{
		{},
		{"ch"},
		{"ch", "--"},
		{"-x", "ch", "true"},
		{"-w", "soon", "ch", "true"},
		{"-w", "-1", "ch", "true"},
		{"-E", "256", "ch", "true"},
		{"--check-interval", "0", "ch", "true"},
		{"--url", "http://127.0.0.1:6379", "ch", "true"},
		{"--url", "redis://127.0.0.1:99999", "ch", "true"},
		{"bad channel", "true"},
		{"status"},
		{"status", "a", "b"},
		{"--url", "ftp://x", "status", "ch"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := runBin(t, url, args...)
			if r.code != 64 || !strings.Contains(r.stderr, "pubsublock: ") {
				t.Errorf("pubsublock %q: exit %d, stderr %q; want 64 and a message", args, r.code, r.stderr)
			}
		})
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--version"}, {"-w", "5", "--help", "ch", "true"}} {
		r := runBin(t, url, args...)
		if r.code != 0 || r.stdout == "" {
			t.Errorf("pubsublock %q: exit %d, stdout %q", args, r.code, r.stdout)
		}
	}
	if r := runBin(t, url, "--help"); !strings.Contains(r.stdout, "Exit status") || !strings.Contains(r.stdout, "Examples") {
		t.Errorf("help lacks exit codes or examples:\n%s", r.stdout)
	}
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	url := freeURL(t)
	for _, args := range [][]string{{"ch", "touch", "ran"}, {"-n", "ch", "true"}, {"status", "ch"}} {
		r := runBin(t, url, args...)
		if r.code != 69 || !strings.Contains(r.stderr, "refused") || strings.Contains(r.stderr, "pubsublock: pubsublock:") {
			t.Errorf("pubsublock %q against nothing: exit %d, stderr %q; want 69", args, r.code, r.stderr)
		}
	}
}

// TestVerbose: -v names the server once, without its password, and logs
// the acquisition and the release once each.
func TestVerbose(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	requirePass(t, s, "sesame")
	url := "redis://:sesame@" + s.Addr()
	r := runBin(t, url, "-v", "ch", "true")
	r.want(t, 0)
	for msg, n := range map[string]int{"msg=server ": 1, "url=redis://***@" + s.Addr(): 1, "msg=acquired ": 1,
		"msg=started ": 1, `msg="command exited" `: 1, "msg=released ": 1, "sesame": 0} {
		if got := strings.Count(r.stderr, msg); got != n {
			t.Errorf("%q %d times in -v output, want %d:\n%s", msg, got, n, r.stderr)
		}
	}
	r = runBin(t, url, "-v", "status", "ch")
	r.want(t, 0)
	if strings.Count(r.stderr, "msg=server ") != 1 || strings.Contains(r.stderr, "sesame") {
		t.Errorf("status -v:\n%s", r.stderr)
	}
}

// TestShellCommand: -c runs a shell command, as flock's does, after
// CHANNEL or among the flags.
func TestShellCommand(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	for _, args := range [][]string{
		{"ch", "-c", `echo "$PUBSUBLOCK_CHANNEL" "$0"; exit 3`},
		{"ch", "--command", `echo "$PUBSUBLOCK_CHANNEL" "$0"; exit 3`},
		{"-c", `echo "$PUBSUBLOCK_CHANNEL" "$0"; exit 3`, "ch"},
	} {
		cmd, stdout, stderr := prepare(t, s.URL(), args...)
		cmd.Env = append(cmd.Env, "SHELL=/bin/sh")
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := wait(t, cmd, start, stdout, stderr)
		r.want(t, 3)
		if r.stdout != "ch /bin/sh\n" {
			t.Errorf("pubsublock %q: stdout %q", args, r.stdout)
		}
	}
	for _, args := range [][]string{{"ch", "-c"}, {"ch", "-c", "true", "x"}, {"-c", "true", "ch", "true"},
		{"-c", "true", "ch", "-c", "true"}, {"-c", "true", "status", "ch"}} {
		runBin(t, s.URL(), args...).want(t, 64)
	}
}
