//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// pty is a pseudo-terminal: a process started on it (start) has it as
// its controlling terminal, and the test types into it (typeIn) and reads
// what it shows (waitOutput), as a user would.
type pty struct {
	master *os.File
	slave  *os.File // closed once a process is started on it

	mu   sync.Mutex // guards out
	out  bytes.Buffer
	done chan struct{} // closed when the master reads EOF or EIO
}

// openPTY opens a pseudo-terminal pair through /dev/ptmx, as
// posix_openpt, unlockpt and ptsname do, and closes it when the test ends.
func openPTY(t *testing.T) *pty {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	var unlock int32
	var n uint32
	if err := ioctl(m, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock)); err != nil {
		m.Close()
		t.Fatalf("unlockpt: %v", err)
	}
	if err := ioctl(m, syscall.TIOCGPTN, unsafe.Pointer(&n)); err != nil {
		m.Close()
		t.Fatalf("ptsname: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Fatal(err)
	}
	p := &pty{master: m, slave: s, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil { // EIO once no process has the terminal open
				return
			}
		}
	}()
	t.Cleanup(func() {
		s.Close()
		m.Close()
		<-p.done
		if t.Failed() {
			t.Logf("terminal output:\n%s", p.output())
		}
	})
	return p
}

// ioctl runs an ioctl on f without putting f in blocking mode, as Fd
// would.
func ioctl(f *os.File, req uintptr, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// start runs name with args as the leader of a new session whose
// controlling terminal is the pty, with stdin, stdout and stderr on it,
// and returns once it runs. env is added to the test's environment.
func (p *pty) start(t *testing.T, env []string, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(append(os.Environ(), goraceEnv), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.slave, p.slave, p.slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.slave.Close() // the process has it; the master reads EIO when it is gone
	t.Cleanup(func() {
		// Should the test fail, leave nothing behind.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Process.Kill()
	})
	return cmd
}

// typeIn writes s to the terminal, as typed.
func (p *pty) typeIn(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(p.master, s); err != nil {
		t.Fatal(err)
	}
}

// closed waits up to 10s for every process to have closed the terminal,
// and returns all it has shown.
func (p *pty) closed(t *testing.T) string {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the terminal is still open after 10s")
	}
	return p.output()
}

// output returns everything the terminal has shown so far.
func (p *pty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitOutput waits up to 10s for the terminal to show want after the
// first `after` bytes of its output, and returns the offset past it.
func (p *pty) waitOutput(t *testing.T, after int, want string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := p.output()
		if i := strings.Index(out[min(after, len(out)):], want); i >= 0 {
			return min(after, len(out)) + i + len(want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the terminal did not show %q within 10s", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitState waits up to 10s for process pid to be in state ('T' stopped,
// 'S' sleeping, ...), as /proc/PID/stat shows it.
func waitState(t *testing.T, pid int, states string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := procState(pid)
		if err == nil && strings.IndexByte(states, st) >= 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d: state %c (%v), want one of %q", pid, st, err, states)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procState returns the state letter of process pid.
func procState(pid int) (byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || len(s) < i+3 {
		return 0, errors.New("cannot parse /proc stat")
	}
	return s[i+2], nil
}

// waitPty waits for a process started by start, killing it after 30s.
func waitPty(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode()
}
