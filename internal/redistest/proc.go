package redistest

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a process a test started with StartProc, whose standard output
// it reads line by line: a holder process, a Python client.
type Proc struct {
	Cmd   *exec.Cmd
	Stdin io.WriteCloser
	Lines <-chan string // its stdout, line by line; closed at EOF

	done chan struct{} // closed once stdout hit EOF
	errb LockedBuffer
}

// StartProc starts cmd with its stdout read line by line, and kills
// (SIGKILL) and reaps it when the test ends.
func StartProc(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	lines := make(chan string, 16)
	p := &Proc{Cmd: cmd, Lines: lines, done: make(chan struct{})}
	var err error
	if p.Stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &p.errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		p.Stdin.Close()
		_ = cmd.Process.Signal(syscall.SIGKILL)
		for range lines { // drain, so the reader can finish
		}
		<-p.done
		_ = cmd.Wait()
	})
	return p
}

// Expect waits up to limit for the next line of output and fails the test
// unless it starts with want; it returns the line.
func (p *Proc) Expect(t testing.TB, want string, limit time.Duration) string {
	t.Helper()
	select {
	case line, ok := <-p.Lines:
		if !ok {
			t.Fatalf("process exited without printing %q; stderr:\n%s", want, p.Stderr())
		}
		if !strings.HasPrefix(line, want) {
			t.Fatalf("process printed %q, want %q; stderr:\n%s", line, want, p.Stderr())
		}
		return line
	case <-time.After(limit):
		t.Fatalf("process did not print %q within %v; stderr:\n%s", want, limit, p.Stderr())
		return ""
	}
}

// Signal sends sig to the process, failing the test if it cannot.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Stderr returns what the process wrote to its standard error so far.
func (p *Proc) Stderr() string { return p.errb.String() }

// Done is closed once the process's standard output is closed.
func (p *Proc) Done() <-chan struct{} { return p.done }

// LockedBuffer is a strings.Builder that many goroutines may write to: a
// logger's output, a process's stderr.
type LockedBuffer struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

// Write appends p.
func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
