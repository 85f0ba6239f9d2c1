//go:build unix

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock"
)

// lockConfig is the configuration of every Lock of the demo: short
// intervals, so that it is quick.
func lockConfig(url string) pubsublock.Config {
	return pubsublock.Config{
		URL:                 url,
		Timeout:             5 * time.Second,
		CheckInterval:       50 * time.Millisecond,
		UnavailableTimeout:  300 * time.Millisecond,
		HealthCheckInterval: 500 * time.Millisecond,
	}
}

// holderMain is the holder process (DEMO_ROLE=holder): it takes the lock
// on $DEMO_CHANNEL, says "acquired", and when the lock is lost says "lost"
// and why. It gives up after 30s, should its parent forget it.
func holderMain() int {
	l, err := pubsublock.New(os.Getenv("DEMO_CHANNEL"), lockConfig(os.Getenv("DEMO_URL")))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("acquired")
	select {
	case <-l.Lost():
		fmt.Println("lost", l.Err())
	case <-time.After(30 * time.Second):
	}
	_ = l.Release(context.Background())
	return 0
}

// holderProc is a holder process started by spawnHolder.
type holderProc struct {
	cmd   *exec.Cmd
	lines chan string   // its stdout, line by line; closed at EOF
	done  chan struct{} // closed once it has exited and been reaped
}

// spawnHolder runs this program as a holder of channel and waits until it
// holds the lock.
func spawnHolder(url, channel string) (*holderProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "DEMO_ROLE=holder", "DEMO_URL="+url, "DEMO_CHANNEL="+channel)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &holderProc{cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		_ = cmd.Wait()
		close(h.done)
	}()
	line, err := h.next(10 * time.Second)
	if err != nil || line != "acquired" {
		h.kill()
		return nil, fmt.Errorf("holder process did not acquire: %q %v", line, err)
	}
	return h, nil
}

// next returns the holder's next line of output.
func (h *holderProc) next(timeout time.Duration) (string, error) {
	select {
	case line, ok := <-h.lines:
		if !ok {
			return "", fmt.Errorf("holder process %d exited", h.cmd.Process.Pid)
		}
		return strings.TrimSpace(line), nil
	case <-time.After(timeout):
		return "", fmt.Errorf("holder process %d silent for %v", h.cmd.Process.Pid, timeout)
	}
}

// signal sends sig to the holder process.
func (h *holderProc) signal(sig syscall.Signal) { _ = h.cmd.Process.Signal(sig) }

// kill kills the holder process and waits until it is reaped.
func (h *holderProc) kill() {
	h.signal(syscall.SIGKILL)
	h.signal(syscall.SIGCONT)
	<-h.done
}
