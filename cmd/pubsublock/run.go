//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
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

// notify relays sigs, except those ignored when pubsublock started (nohup,
// a background job of a script): they stay ignored, here and in COMMAND,
// which inherits that.
func notify(n int, sigs ...os.Signal) chan os.Signal {
	ch := make(chan os.Signal, n)
	for _, sig := range sigs {
		if !signal.Ignored(sig) {
			signal.Notify(ch, sig)
		}
	}
	return ch
}

// runLocked acquires the lock, runs COMMAND under it and returns the exit
// status.
func runLocked(o *options, srv server, stderr io.Writer) int {
	// Signals are caught from the start (-v's first record comes after),
	// so that one sent early still ends the wait cleanly.
	sigs := notify(16, forwarded...)
	defer signal.Stop(sigs)
	// A SIGCONT says that pubsublock was stopped, perhaps for longer than
	// a contender waits for the holder's answer. It is relayed even when
	// ignored: it continues a stopped process all the same.
	conts := make(chan os.Signal, 1)
	signal.Notify(conts, syscall.SIGCONT)
	defer signal.Stop(conts)

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
	select {
	case <-conts:
		if err := verifyHold(lock, o.verifyTimeout()); err != nil {
			rep.errorf("lock %s lost while pubsublock was stopped, before the command started: %v",
				o.channel, errText(err))
			_ = lock.Release(context.Background()) // ends the lost hold
			return exitLost
		}
	default:
	}

	// Job control: Ctrl-Z stops COMMAND, and pubsublock with it.
	tstp := notify(1, syscall.SIGTSTP)
	defer signal.Stop(tstp)
	term := openTerminal()
	defer term.close()
	var fg *terminal
	if term.ours() {
		fg = term
	}
	cmd := command(path, o, lock.Token(), fg)
	err = cmd.Start()
	ignoreTerminalStops()
	if err != nil {
		if fg != nil {
			// The child may have taken the foreground before exec failed.
			_ = fg.setForeground(syscall.Getpgrp())
		}
		release(lock, rep)
		rep.fail(err)
		return startStatus(err)
	}
	pgid := cmd.Process.Pid // Setpgid: the child leads its own group
	rep.event("started", "pid", pgid, "command", o.command[0], "waited", waited, "foreground", fg != nil)

	s := &supervisor{lock: lock, rep: rep, term: term, pgid: pgid, killAfter: o.killAfter,
		verifyTimeout: o.verifyTimeout(), sigs: sigs, tstp: tstp, conts: conts, events: watchChild(pgid)}
	ws, reaped := s.run()
	term.takeBack(pgid)
	_ = cmd.Process.Release()
	status := exitSoftware
	if reaped {
		status = exitStatus(ws)
		rep.event("command exited", "status", status)
	} else {
		rep.errorf("cannot wait for the command (pid %d)", pgid)
	}
	if s.lost {
		// COMMAND is gone; processes it left in its group must go too.
		if !s.killed {
			clearGroup(pgid, s.termAt, o.killAfter, rep)
		}
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
	ctx, cancel := context.WithTimeout(context.Background(), o.verifyTimeout())
	defer cancel()
	st, err := lock.Status(ctx)
	return err == nil && st.Held()
}

// verifyTimeout bounds the check of the hold after a stop: a dial and a
// round trip.
func (o *options) verifyTimeout() time.Duration { return 2 * o.dialTimeout }

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

// verifyHold checks, once pubsublock has been stopped, that it still
// holds the lock, before COMMAND may run again: a stopped holder answers
// no ping, and a contender may have killed its connection and taken the
// lock while the worker that would notice was frozen too. Lock.Check asks
// the server through the hold's own connection: one that answers still
// holds, one that was killed does not.
func verifyHold(lock *pubsublock.Lock, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := lock.Check(ctx); err != nil {
		if errors.Is(err, pubsublock.ErrLost) {
			return err
		}
		return fmt.Errorf("cannot check the hold, so it counts as lost: %w", err)
	}
	return nil
}

// supervisor watches COMMAND under the lock: it forwards signals to its
// process group, stops and continues it with pubsublock (job control),
// and ends it when the lock is lost.
type supervisor struct {
	lock          *pubsublock.Lock
	rep           *reporter
	term          *terminal // nil without a controlling terminal
	pgid          int
	killAfter     time.Duration
	verifyTimeout time.Duration

	sigs   <-chan os.Signal          // forwarded signals
	tstp   <-chan os.Signal          // SIGTSTP
	conts  <-chan os.Signal          // SIGCONT
	events <-chan syscall.WaitStatus // COMMAND's stops, continues and end

	stopped   bool // COMMAND is stopped
	stopAsked bool // pubsublock got SIGTSTP: it stops once COMMAND has

	lost   bool      // the lock was lost before COMMAND was reaped
	termAt time.Time // when SIGTERM went to the group after the loss; zero: not sent
	killAt <-chan time.Time
	killed bool // SIGKILL went to the group after the loss
}

// run supervises COMMAND until it is reaped, and returns how it ended,
// and true; or false if it could not be waited for.
func (s *supervisor) run() (syscall.WaitStatus, bool) {
	lostCh := s.lock.Lost()
	for {
		select {
		case sig := <-s.sigs:
			s.rep.event("forwarding signal", "signal", sigName(sig), "pgid", s.pgid)
			_ = syscall.Kill(-s.pgid, sig.(syscall.Signal))
			if s.stopped && !s.lost && (sig == syscall.SIGTERM || sig == syscall.SIGHUP) {
				// A stopped job must wake to act on it, as a shell's
				// kill builtin does it.
				s.cont()
			}
		case <-s.tstp:
			if s.stopped {
				s.suspend()
				break
			}
			s.rep.event("forwarding signal", "signal", sigName(syscall.SIGTSTP), "pgid", s.pgid)
			_ = syscall.Kill(-s.pgid, syscall.SIGTSTP)
			s.stopAsked = true // pubsublock stops once COMMAND has
		case <-s.conts:
			// Stopped by someone else (SIGSTOP): COMMAND ran on while
			// this hold could not answer.
			if s.lost {
				break
			}
			s.rep.event("continued: checking the hold")
			if err := verifyHold(s.lock, s.verifyTimeout); err != nil {
				s.lose(err)
				break
			}
			if !s.stopped && s.term.ours() {
				_ = s.term.setForeground(s.pgid)
			}
		case <-lostCh:
			lostCh = nil
			if !s.lost {
				s.lose(s.lock.Err())
			}
		case <-s.killAt:
			s.killAt = nil
			s.rep.errorf("process group %d still running %v after SIGTERM; sending SIGKILL", s.pgid, s.killAfter)
			s.kill()
		case ev, ok := <-s.events:
			switch {
			case !ok:
				return ev, false
			case ev.Exited() || ev.Signaled():
				if !s.lost && lostCh != nil {
					select {
					case <-lostCh:
						s.lost = true
						s.rep.errorf("lock %s lost as the command exited (%v)", s.lock.Channel(), errText(s.lock.Err()))
					default:
					}
				}
				return ev, true
			case ev.Stopped():
				s.stopped = true
				s.rep.event("command stopped", "signal", sigName(ev.StopSignal()))
				switch {
				case s.lost:
					// The lock is gone: it must not run again.
					s.kill()
				case s.stopAsked || s.term != nil && jobStop(ev.StopSignal()):
					s.stopAsked = false
					s.suspend()
				}
			case ev.Continued():
				s.stopped = false
			}
		}
	}
}

// lose ends COMMAND after the loss of the lock: SIGTERM to its group, and
// SIGKILL after killAfter; or SIGKILL at once when COMMAND is stopped,
// as a stopped command must not run again without the lock, not even its
// SIGTERM handler.
func (s *supervisor) lose(cause error) {
	s.lost = true
	if s.stopped {
		s.rep.errorf("lock %s lost while the command was stopped (%v); sending SIGKILL to process group %d",
			s.lock.Channel(), errText(cause), s.pgid)
		s.kill()
		return
	}
	s.rep.errorf("lock %s lost while the command ran (%v); sending SIGTERM to process group %d",
		s.lock.Channel(), errText(cause), s.pgid)
	_ = syscall.Kill(-s.pgid, syscall.SIGTERM)
	s.termAt = time.Now()
	s.killAt = time.After(s.killAfter)
}

// suspend stops pubsublock together with COMMAND, which has stopped: as a
// shell's job, pubsublock's process group gives its parent (an interactive
// shell) the terminal back by stopping. Once continued, it checks the hold
// and then continues COMMAND, in the terminal's foreground if pubsublock
// was continued there (fg rather than bg); or, if the lock was lost
// meanwhile, kills it.
func (s *supervisor) suspend() {
	if s.lost {
		s.kill()
		return
	}
	// Members that ignore SIGTSTP must not run on while pubsublock,
	// stopped, cannot watch the lock.
	_ = syscall.Kill(-s.pgid, syscall.SIGSTOP)
	s.term.takeBack(s.pgid)
	s.rep.event("stopping with the command", "pgid", s.pgid)
	for len(s.conts) > 0 {
		<-s.conts
	}
	// SIGSTOP rather than SIGTSTP: the kernel discards SIGTSTP in a
	// process group no shell controls (an orphaned one), and pubsublock
	// would then take a stop that never happened for a continue.
	_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	<-s.conts
	s.rep.event("continued: checking the hold")
	if err := verifyHold(s.lock, s.verifyTimeout); err != nil {
		s.lose(err)
		return
	}
	if s.term.ours() {
		_ = s.term.setForeground(s.pgid)
	}
	s.cont()
}

// kill sends SIGKILL to COMMAND's process group.
func (s *supervisor) kill() {
	s.killed = true
	_ = syscall.Kill(-s.pgid, syscall.SIGKILL)
}

// cont continues COMMAND's process group.
func (s *supervisor) cont() {
	s.rep.event("continuing the command", "pgid", s.pgid)
	s.stopped = false
	_ = syscall.Kill(-s.pgid, syscall.SIGCONT)
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
