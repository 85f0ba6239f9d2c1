//go:build unix

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock"
)

// forwarded are the signals passed on to COMMAND's process group, unless
// ignored when pubsublock started. While pubsublock still waits for the
// lock, they make it give up instead.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP,
	syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// releaseTimeout bounds the release after COMMAND exits; past it the
// connection is closed, which frees the lock as well.
const releaseTimeout = 5 * time.Second

// runLocked acquires the lock, runs COMMAND under it and returns the exit
// status.
func runLocked(o *options, srv server, stderr io.Writer) int {
	rep := newReporter(stderr, o.verbose, o.channel)
	path, err := lookCommand(o.command[0])
	if err != nil {
		rep.fail(err)
		return startStatus(err)
	}
	lock, err := pubsublock.New(o.channel, o.config(srv, rep.lib))
	if err != nil {
		rep.fail(err)
		return exitUsage
	}
	rep.event("server", "url", redactURL(o.url))

	sigs := make(chan os.Signal, 16)
	for _, sig := range forwarded {
		// A signal ignored at start (nohup, a background job of a script)
		// stays ignored, here and in COMMAND, which inherits that.
		if !signal.Ignored(sig) {
			signal.Notify(sigs, sig)
		}
	}
	defer signal.Stop(sigs)

	start := time.Now()
	watch := rep.watchWait(lock, o.unavailableTimeout+o.checkInterval)
	sig, err := acquire(lock, sigs)
	watch.stop()
	waited := time.Since(start).Round(time.Millisecond)
	switch {
	case err == nil && sig != nil: // the signal came just as the lock did
		release(lock, rep)
		fallthrough
	case sig != nil:
		rep.event("signal while waiting for the lock", "signal", sigName(sig))
		return exitSignal + int(sig.(syscall.Signal))
	case errors.Is(err, pubsublock.ErrAlreadyLocked), timedOutHeld(lock, o, err, waited):
		rep.event("lock held elsewhere", "waited", waited)
		watch.final()
		return o.conflictExit
	case errors.Is(err, pubsublock.ErrConfig):
		rep.fail(err)
		return exitUsage
	case err != nil:
		rep.failServer(err, o)
		return exitUnavailable
	}

	cmd := command(path, o, lock.Token())
	if err := cmd.Start(); err != nil {
		release(lock, rep)
		rep.fail(err)
		return startStatus(err)
	}
	pgid := cmd.Process.Pid // Setpgid: the child leads its own group
	rep.event("started", "pid", pgid, "command", o.command[0], "waited", waited)
	reaped := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the status is read from cmd.ProcessState
		close(reaped)
	}()

	lost, termAt := supervise(lock, sigs, reaped, pgid, o.killAfter, rep)
	status := exitStatus(cmd.ProcessState)
	rep.event("command exited", "status", status)
	if lost {
		// COMMAND is gone; processes it left in its group must go too.
		clearGroup(pgid, termAt, o.killAfter, rep)
		_ = lock.Release(context.Background()) // ends the lost hold
		return exitLost
	}
	release(lock, rep)
	return status
}

// timedOutHeld reports whether err, which ended a wait of -w, is a
// deadline that the server can be asked past, and the lock is held: a
// conflict, then. The library gives a wait UnavailableTimeout past its
// Timeout to finish a try under way; a try that pings a silent subscriber
// it cannot kill then runs out of it, and Acquire returns a deadline
// error rather than ErrAlreadyLocked.
func timedOutHeld(lock *pubsublock.Lock, o *options, err error, waited time.Duration) bool {
	if err == nil || o.timeout <= 0 || waited < o.timeout || !errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*o.dialTimeout)
	defer cancel()
	st, err := lock.Status(ctx)
	return err == nil && st.Held()
}

// acquire takes the lock, giving up when one of the forwarded signals
// arrives. sig is that signal, if one came, even when the lock was taken
// at the same moment.
func acquire(lock *pubsublock.Lock, sigs <-chan os.Signal) (sig os.Signal, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case sig = <-sigs:
			cancel()
		case <-stop:
		}
	}()
	err = lock.Acquire(ctx)
	close(stop)
	<-done
	return sig, err
}

// supervise waits for COMMAND to be reaped, forwarding signals to its
// process group, and sends SIGTERM to the group if the lock is lost first,
// then SIGKILL after killAfter. It reports whether the lock was lost before
// COMMAND was reaped (a loss seen together with the exit counts: COMMAND
// may have done its last work without the lock) and when SIGTERM was sent.
func supervise(lock *pubsublock.Lock, sigs <-chan os.Signal, reaped <-chan struct{},
	pgid int, killAfter time.Duration, rep *reporter) (lost bool, termAt time.Time) {
	lostCh := lock.Lost()
	var deadline <-chan time.Time
	for {
		select {
		case s := <-sigs:
			rep.event("forwarding signal", "signal", sigName(s), "pgid", pgid)
			_ = syscall.Kill(-pgid, s.(syscall.Signal))
		case <-lostCh:
			lostCh, lost, termAt = nil, true, time.Now()
			rep.errorf("lock %s lost while the command ran (%v); sending SIGTERM to process group %d",
				lock.Channel(), errText(lock.Err()), pgid)
			_ = syscall.Kill(-pgid, syscall.SIGTERM)
			t := time.NewTimer(killAfter)
			defer t.Stop()
			deadline = t.C
		case <-deadline:
			deadline = nil
			rep.errorf("process group %d still running %v after SIGTERM; sending SIGKILL", pgid, killAfter)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		case <-reaped:
			if !lost {
				select {
				case <-lostCh:
					lost = true
					rep.errorf("lock %s lost as the command exited (%v)", lock.Channel(), errText(lock.Err()))
				default:
				}
			}
			return lost, termAt
		}
	}
}

// release gives the lock up after COMMAND has exited. A loss at this point
// came after COMMAND finished, so it is only logged. The library logs the
// release itself.
func release(lock *pubsublock.Lock, rep *reporter) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := lock.Release(ctx); err != nil {
		rep.event("release", "err", err)
	}
}
