//go:build unix

package main

import (
	"context"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock"
)

// crash starts a holder process, lets a waiter in this process wait for
// its lock, and kills the holder with SIGKILL: the server drops the dead
// holder's subscription at once, and the waiter's next try takes the lock.
func crash(url string) error {
	say("2. a holder process crashes")
	h, err := spawnHolder(url, "crash")
	if err != nil {
		return err
	}
	defer h.kill()
	say("   holder process %d holds lock %q", h.cmd.Process.Pid, "crash")
	l, err := pubsublock.New("crash", lockConfig(url))
	if err != nil {
		return err
	}
	got := make(chan error, 1)
	go func() { got <- l.Acquire(context.Background()) }()
	time.Sleep(200 * time.Millisecond)
	say("   a waiter has been trying for 200 ms: the holder answers its pings")
	killed := time.Now()
	h.signal(syscall.SIGKILL)
	say("   SIGKILL to holder process %d", h.cmd.Process.Pid)
	if err := <-got; err != nil {
		return err
	}
	say("   crash hand-off: the waiter holds the lock %d ms after the SIGKILL", ms(time.Since(killed)))
	return l.Release(context.Background())
}
