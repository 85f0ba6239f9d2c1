//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// startedPidRe matches pubsublock's -v record of the command it started.
var startedPidRe = regexp.MustCompile(`msg=started .*pid=(\d+)`)

// startedPid finds, in -v output, the pid of the command pubsublock
// started.
func startedPid(t *testing.T, out string) int {
	t.Helper()
	m := startedPidRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no started record in:\n%s", out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// waitStartedPid is startedPid for the output of p, as it comes: the
// record may follow the command's first output.
func waitStartedPid(t *testing.T, p *pty) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !startedPidRe.MatchString(p.output()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return startedPid(t, p.output())
}

// TestTerminalRead: a command run from a terminal reads it, as under
// flock, and the terminal is given back afterwards, even to a shell that
// has tostop set and pubsublock writing -v records from the background.
func TestTerminalRead(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	p := openPTY(t)
	cmd := p.start(t, []string{"REDIS_URL=" + s.URL()}, "/bin/sh", "-c",
		`stty tostop; "$0" -v ttyjob -- sh -c 'read x; echo got:$x'; echo rc=$?; read y; echo again:$y`, binary)
	at := p.waitOutput(t, 0, "msg=started")
	p.typeIn(t, "hello\n")
	at = p.waitOutput(t, at, "got:hello")
	at = p.waitOutput(t, at, "rc=0")
	p.typeIn(t, "more\n")
	p.waitOutput(t, at, "again:more")
	if code := waitPty(t, cmd); code != 0 {
		t.Errorf("sh exited %d", code)
	}
}

// TestTerminalStopLost: Ctrl-Z stops the command with pubsublock; a
// contender takes the lock from the silent holder; continued, pubsublock
// finds the lock lost, kills the command, which never runs again, and
// exits 75.
func TestTerminalStopLost(t *testing.T) {
	t.Parallel()
	// Not dash: its vfork leaves the shell waiting, uninterruptibly, for
	// a child that Ctrl-Z stopped before its exec; so a shell's job never
	// stops, nor does pubsublock.
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	s := redistest.Redis(t)
	p := openPTY(t)
	log := filepath.Join(t.TempDir(), "log")
	a := p.start(t, []string{"REDIS_URL=" + s.URL()}, binary, "-v", "tstp", "--", bash, "-c",
		`while :; do echo A >> '`+log+`'; sleep 0.05; done`)
	pid := waitStartedPid(t, p)
	waitFile(t, log)
	p.typeIn(t, "\x1a") // Ctrl-Z
	waitState(t, pid, "T")
	waitState(t, a.Process.Pid, "T")

	// fg while the contender holds the lock: the stopped holder's
	// connection was killed, and the lock is held, but not by it.
	b, bout, berr := prepare(t, s.URL(), "-w", "5", "tstp", "sh", "-c",
		`echo "B start" >> '`+log+`'; sleep 1; echo "B end" >> '`+log+`'`)
	bstart := time.Now()
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for content, _ := os.ReadFile(log); !strings.Contains(string(content), "B start"); content, _ = os.ReadFile(log) {
		if time.Now().After(deadline) {
			t.Fatal("the contender did not get the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.Process.Signal(syscall.SIGCONT); err != nil { // fg
		t.Fatal(err)
	}
	if code := waitPty(t, a); code != 75 {
		t.Errorf("pubsublock exited %d, want 75", code)
	}
	wait(t, b, bstart, bout, berr).want(t, 0)
	if !strings.Contains(p.closed(t), "lost while the command was stopped") {
		t.Error("the loss was not reported")
	}
	content, _ := os.ReadFile(log)
	_, after, ok := strings.Cut(string(content), "B start\n")
	if !ok || after != "B end\n" {
		t.Errorf("the stopped command ran again, or the contender did not run: log ends %q", after)
	}
	if !gone(pid) {
		t.Errorf("command %d still there", pid)
	}
}

// TestTerminalStopContinue: Ctrl-Z stops the command with pubsublock; fg
// (SIGCONT) continues both, the command in the foreground again, where it
// reads the terminal.
func TestTerminalStopContinue(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	p := openPTY(t)
	a := p.start(t, []string{"REDIS_URL=" + s.URL()}, binary, "-v", "tstp", "--", "sh", "-c",
		`echo ready; read x; echo got:$x`)
	at := p.waitOutput(t, 0, "ready")
	pid := waitStartedPid(t, p)
	p.typeIn(t, "\x1a")
	waitState(t, pid, "T")
	waitState(t, a.Process.Pid, "T")
	time.Sleep(100 * time.Millisecond) // stopped for a while: no contender, no loss
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	at = p.waitOutput(t, at, "continuing the command")
	p.typeIn(t, "hello\n")
	p.waitOutput(t, at, "got:hello")
	if code := waitPty(t, a); code != 0 {
		t.Errorf("pubsublock exited %d, want 0", code)
	}
}

// TestTerminalJobControl runs pubsublock as a job of an interactive bash:
// Ctrl-Z gives bash the terminal back with the job stopped; bg continues
// it in the background, where its command's read of the terminal stops
// it again (SIGTTIN); fg brings it back, and the command reads the
// terminal.
func TestTerminalJobControl(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	s := redistest.Redis(t)
	p := openPTY(t)
	sh := p.start(t, []string{"REDIS_URL=" + s.URL(), "PS1=$ ", "TERM=dumb", "HOME=" + t.TempDir()},
		bash, "--norc", "--noprofile", "--noediting", "-i")
	at := p.waitOutput(t, 0, "$ ")
	p.typeIn(t, "set -b\n") // report a job's stop at once, not at the next prompt
	p.typeIn(t, binary+` jobs -- sh -c 'sleep 0.3; read x; echo got:$x'`+"\n")
	time.Sleep(100 * time.Millisecond)
	p.typeIn(t, "\x1a")
	at = p.waitOutput(t, at, "Stopped")
	p.typeIn(t, "bg\n")
	// In the background, the command's read stops it, and pubsublock.
	at = p.waitOutput(t, at, "Stopped")
	p.typeIn(t, "fg\n")
	time.Sleep(200 * time.Millisecond)
	p.typeIn(t, "hello\n")
	at = p.waitOutput(t, at, "got:hello")
	p.typeIn(t, "echo status=$?\n")
	at = p.waitOutput(t, at, "status=0")
	p.typeIn(t, "exit\n")
	if code := waitPty(t, sh); code != 0 {
		t.Errorf("bash exited %d", code)
	}
	_ = at
}

// TestTerminalStartFails: a command that cannot be executed after the
// fork, which gave it the foreground already: the terminal comes back.
func TestTerminalStartFails(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("\x7fELF garbage"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := openPTY(t)
	cmd := p.start(t, []string{"REDIS_URL=" + s.URL()}, "/bin/sh", "-c",
		`"$0" ch "$1"; echo rc=$?; read y; echo again:$y`, binary, bad)
	at := p.waitOutput(t, 0, "rc=126")
	p.typeIn(t, "more\n")
	p.waitOutput(t, at, "again:more")
	if code := waitPty(t, cmd); code != 0 {
		t.Errorf("sh exited %d", code)
	}
}

// TestStopSignalLost is Ctrl-Z without a terminal: SIGTSTP to pubsublock
// stops its command, then pubsublock; a contender takes the lock over;
// continued, pubsublock kills the command, which never runs again.
func TestStopSignalLost(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash") // see TestTerminalStopLost
	if err != nil {
		t.Skip("no bash")
	}
	s := redistest.Redis(t)
	log := filepath.Join(t.TempDir(), "log")
	a, stdout, stderr := prepare(t, s.URL(), "-v", "tstp", bash, "-c", `while :; do echo A >> '`+log+`'; sleep 0.05; done`)
	start := time.Now()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, log)
	if err := a.Process.Signal(syscall.SIGTSTP); err != nil {
		t.Fatal(err)
	}
	waitState(t, a.Process.Pid, "T")
	r := runBin(t, s.URL(), "-w", "5", "tstp", "sh", "-c", `echo "B start" >> '`+log+`'; sleep 0.5; echo "B end" >> '`+log+`'`)
	r.want(t, 0)
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	ra := wait(t, a, start, stdout, stderr)
	ra.want(t, 75)
	b, _ := os.ReadFile(log)
	if _, after, ok := strings.Cut(string(b), "B start\n"); !ok || after != "B end\n" {
		t.Errorf("the stopped command ran again, or the contender did not run: log ends %q\n%s", after, ra.stderr)
	}
	if !gone(startedPid(t, ra.stderr)) {
		t.Error("the command is still there")
	}
}

// TestStopSignalIgnored: a command that ignores SIGTSTP does not stop, and
// neither does pubsublock, which keeps the lock.
func TestStopSignalIgnored(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	ready := filepath.Join(t.TempDir(), "ready")
	a, stdout, stderr := prepare(t, s.URL(), "tstp", "sh", "-c", `trap "" TSTP; echo > '`+ready+`'; sleep 2`)
	start := time.Now()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, ready)
	if err := a.Process.Signal(syscall.SIGTSTP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if st, _ := procState(a.Process.Pid); st == 'T' {
		t.Error("pubsublock stopped, its command did not")
	}
	runBin(t, s.URL(), "-n", "tstp", "touch", "ran").want(t, 1)
	wait(t, a, start, stdout, stderr).want(t, 0)
}

// TestStoppedFromOutside: SIGSTOP to pubsublock alone cannot be caught;
// once continued it checks its hold, still there, and the command runs to
// its end.
func TestStoppedFromOutside(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	ready := filepath.Join(t.TempDir(), "ready")
	a, stdout, stderr := prepare(t, s.URL(), "-v", "ch", "sh", "-c", `echo > '`+ready+`'; sleep 1; echo done`)
	start := time.Now()
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, ready)
	if err := a.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitState(t, a.Process.Pid, "T")
	time.Sleep(200 * time.Millisecond)
	if err := a.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r := wait(t, a, start, stdout, stderr)
	r.want(t, 0)
	if r.stdout != "done\n" || !strings.Contains(r.stderr, "checking the hold") {
		t.Errorf("stdout %q, stderr:\n%s", r.stdout, r.stderr)
	}
}
