package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// hold is one acquisition of a Lock: the subscribed connection and what
// keeps it. The worker is the only reader of c; it answers pings and
// notices the end of the subscription. It runs in a goroutine of its own,
// started at once or, for a quiet hold, after lazyStart; or, for a quiet
// hold released before, in the goroutine of c's next user (see claim).
// The health check PINGs c.
type hold struct {
	s     *spec
	c     *conn
	token int64

	stateMu sync.Mutex // guards mode, elected, counting and deferred
	mode    Mode       // what the hold answers pings with (see Mode)
	elected bool       // a pending writer that won the writers' election
	// counting is set while a pending writer counts the subscribers to
	// see whether it may hold the lock: the pings that come meanwhile are
	// answered once the count decided the mode (see beginCount), so no
	// answer says "pending" of a writer that already holds the lock
	// (portalocker 4.1's upstream #145).
	counting bool
	deferred []string // reply channels of the pings that came while counting

	lost      chan struct{} // closed when the hold ends, lost or released
	endOnce   sync.Once
	errMu     sync.Mutex // guards err
	err       error      // why the hold was lost; nil if released
	releasing atomic.Bool
	// waited is set once a contender showed itself (it pinged, or this
	// hold's Acquire had to wait, so others may be waiting too): the
	// release then rings the bell. rang records that it did.
	waited    atomic.Bool
	rang      atomic.Bool
	ringAfter atomic.Bool // the release left the ring to the worker (see release)
	// yieldAfter: the release left the yield window to the worker, as the
	// ring (see release).
	yieldAfter atomic.Bool
	// deaf is set once a contender that does not hear the release bell
	// (portalocker's, which polls) pinged: the release then rings no bell,
	// so that a Go waiter, which the bell would wake at once, does not take
	// the lock ahead of it; both try at the end of their pauses.
	deaf atomic.Bool
	// tentative is set while the hold is a contender's that holds nothing
	// yet (see attempt.contend): its release rings no bell.
	tentative  atomic.Bool
	workerDone chan struct{}
	// started is set by whoever runs the worker (see claim): a quiet
	// hold's starts only after lazyStart (startTimer), or when its
	// connection's next user or a send needs it.
	started    atomic.Bool
	startTimer *time.Timer                 // nil if the worker started at once
	health     atomic.Pointer[healthCheck] // set by the worker; nil when disabled
	resetName  chan reply                  // reply to CLIENT SETNAME "" sent by release
	drainTimer atomic.Pointer[time.Timer]  // closes c if the release goes unanswered

	early  []notedPing // pings c saw while it contended, answered first; worker-owned
	answer *conn       // where pings are answered from when c cannot publish; worker-owned
	// late lists the reply channels of pings that reached the hold after
	// its release: they are answered from another connection once c is
	// drained, as the contender that sent one listed c and would kill it
	// if it is subscribed again under the lock's name. Worker-owned.
	late []string
	// lateRing is set when a contender showed itself after the release
	// began: the worker rings the bell once c is drained, unless the
	// release did. Worker-owned.
	lateRing bool
}

// lazyStart is how long a hold that no contender showed itself to goes
// without a worker goroutine. A lock held and released within it (a short
// critical section, taken again and again) costs no goroutine if its
// connection's next user comes before lazyStart's timer: that user reads
// the release's replies inline. A ping
// that comes meanwhile waits in the socket for up to lazyStart, a
// hundredth of the smallest UnavailableTimeout it is used with
// (lazyMinUnavailable); a loss is seen as late (Lock.Err and Release check
// the socket themselves).
const lazyStart = time.Millisecond

// lazyMinUnavailable is the smallest UnavailableTimeout with which a
// hold's worker starts after lazyStart rather than at once.
const lazyMinUnavailable = 100 * lazyStart

// newHold starts the worker of a new hold on c, answering pings as a
// participant in mode: at once if the hold's Acquire had to wait (waited)
// or saw pings (early), or if anything would hide a ping from the
// release's look at the socket (see release); else after lazyStart (see
// start).
func newHold(s *spec, c *conn, token int64, mode Mode, waited bool, early []notedPing) *hold {
	h := &hold{
		s:          s,
		c:          c,
		token:      token,
		mode:       mode,
		lost:       make(chan struct{}),
		workerDone: make(chan struct{}),
		resetName:  make(chan reply, 1),
		early:      early,
	}
	for _, p := range early {
		waited = waited || !p.status
		if p.deaf {
			h.deaf.Store(true)
		}
	}
	h.waited.Store(waited)
	c.beginHold()
	c.rd.Shrink() // a hold reads pings and small replies only
	if waited || len(early) > 0 || !c.pollable || c.rd.Buffered() > 0 || s.cfg.UnavailableTimeout < lazyMinUnavailable {
		// A contender may be waiting, or a frame is already buffered; or
		// release could not see the pings that wait unread; or contenders
		// wait too little for a ping to wait at all.
		h.start()
	} else {
		h.startTimer = time.AfterFunc(s.lazyStart, func() {
			if h.claim() {
				h.work()
			}
		})
	}
	return h
}

// claim reports whether the caller is the one to run the worker: the
// first to ask.
func (h *hold) claim() bool {
	return h.started.CompareAndSwap(false, true)
}

// start runs the worker in a goroutine of its own, unless it runs already
// or ran. Whoever sends on the hold's connection and awaits a reply calls
// it first, as only the worker reads.
func (h *hold) start() {
	if h.claim() {
		go h.work()
	}
}

// drainInline is the released hold's worker run by the next user of its
// connection, in the user's goroutine, if it has not started: it reads the
// release's replies (under the user's deadline) and reports true. It
// returns false if the worker runs elsewhere: the user waits for it.
func (h *hold) drainInline() bool {
	if !h.claim() {
		return false
	}
	h.startTimer.Stop()
	h.read()
	if h.finish() {
		// Late pings to answer, or a bell to ring, from another
		// connection: rare, and not the user's to wait for.
		go h.answerLate()
	}
	return true
}

// end closes lost, recording cause (nil for a release).
func (h *hold) end(cause error) {
	h.endOnce.Do(func() {
		if cause != nil {
			h.errMu.Lock()
			h.err = fmt.Errorf("%w: %w", ErrLost, cause)
			h.errMu.Unlock()
			h.s.log.Warn("lock lost", "err", cause)
		}
		close(h.lost)
	})
}

// lostErr returns the ErrLost error once the hold was lost, else nil.
func (h *hold) lostErr() error {
	h.errMu.Lock()
	defer h.errMu.Unlock()
	return h.err
}

// check is lostErr, and more: the worker may not have read the news yet
// (a process resumed after a stop, whose connection a contender killed
// meanwhile), so a connection the server has closed is a loss now (on
// Linux, see peerClosed).
func (h *hold) check() error {
	_, err := h.checkUnread()
	return err
}

// checkUnread is check, and reports too whether data waits unread in the
// hold's socket (see conn.peerState).
func (h *hold) checkUnread() (unread bool, err error) {
	if err := h.lostErr(); err != nil {
		return false, err
	}
	unread, err = h.c.peerState()
	if err != nil {
		h.end(err)
		return false, h.lostErr()
	}
	return unread, nil
}

// errUnsubscribed is the cause of a loss by an unsubscribe the holder did
// not ask for (a slot migration in cluster mode, a server-side kill of the
// subscription).
var errUnsubscribed = errors.New("subscription ended by the server")

// work is the worker goroutine: it reads every frame of the subscribed
// connection until the hold ends, then answers the pings that reached the
// hold after its release (see late).
func (h *hold) work() {
	// The health check's timer is set here rather than in newHold: setting
	// a timer can wake the runtime's network poller, which Acquire's
	// caller need not wait for.
	if iv := h.s.cfg.HealthCheckInterval; iv > 0 && !h.releasing.Load() {
		h.health.Store(newHealthCheck(h, iv, h.s.cfg.UnavailableTimeout))
	}
	h.read()
	if h.finish() {
		h.answerLate()
	}
}

// finish is the end of the worker, once read returned: it reports whether
// answerLate has anything to do.
func (h *hold) finish() bool {
	if h.answer != nil {
		h.s.cl.put(h.answer)
	}
	h.health.Load().stop()
	if t := h.drainTimer.Load(); t != nil {
		t.Stop()
	}
	close(h.workerDone)
	return len(h.late) > 0 || h.lateRing || h.ringAfter.Load() || h.yieldAfter.Load()
}

// answerLate answers the pings that reached the hold after its release,
// and rings the bell or opens the yield window if the release left that
// to the worker.
func (h *hold) answerLate() {
	var ring [][]string
	if (h.lateRing || h.ringAfter.Load()) && !h.rang.Load() && !h.tentative.Load() && !h.deaf.Load() && h.lostErr() == nil {
		ring = append(ring, h.s.ring)
	}
	if h.yieldAfter.Load() && h.lostErr() == nil {
		ring = append(ring, h.s.yieldCmd())
	}
	if len(h.late) > 0 || len(ring) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.UnavailableTimeout)
		defer cancel()
		mode, elected := h.state()
		if err := h.s.answerPings(ctx, nil, mode, elected, h.late, ring...); err != nil {
			h.s.log.Debug("cannot answer ping", "err", err)
		} else if h.yieldAfter.Load() && h.lostErr() == nil {
			h.s.yielded()
		}
	}
}

// read is the worker's reading loop.
func (h *hold) read() {
	// Pings this connection saw while it was still contending.
	for _, p := range h.early {
		if p.channel == h.s.channel {
			h.answerPing(p.replyCh, p.status)
		}
	}
	h.early = nil
	unsubscribed := false
	for {
		v, push, err := h.c.readFrame()
		if err != nil {
			cause := h.c.failed()
			if cause == nil {
				cause = h.c.fatal(err)
			}
			h.end(cause)
			return
		}
		if !push {
			if err := h.c.deliver(v); err != nil {
				h.end(err)
				return
			}
		} else {
			switch pushKind(v) {
			case h.s.ps.message:
				if len(v.Elems) == 3 && string(v.Elems[1].Str) == h.s.channel {
					h.onMessage(v.Elems[2].Str)
				}
			case h.s.ps.unsubscribed:
				if len(v.Elems) == 3 && string(v.Elems[1].Str) == h.s.channel {
					// Only the release's own UNSUBSCRIBE, written by
					// sendFinal, ends the hold cleanly; one that comes
					// before it was written (even once releasing is set)
					// is the server's, and the release's replies are
					// still to come: the connection is retired.
					if !h.c.endUnsolicited(errUnsubscribed) {
						h.end(errUnsubscribed)
						return
					}
					unsubscribed = true
				}
			}
		}
		if unsubscribed && h.c.idleReplies() {
			select {
			case r := <-h.resetName:
				if r.err != nil { // the connection keeps the lock's name
					h.c.fatal(fmt.Errorf("release: %w", r.err))
				}
			default:
			}
			h.end(nil)
			return
		}
	}
}

// onMessage answers a ping on its response_channel, as portalocker's
// holder does (see spec.answerFor). Anything else is logged and ignored:
// nothing published on the channel stops the worker.
func (h *hold) onMessage(payload []byte) {
	replyCh, status, ok := parsePing(payload)
	if !ok {
		h.s.log.Debug("ignoring message that is not a ping", "bytes", len(payload))
		return
	}
	if !status && !h.s.hearsBell(payload, replyCh) {
		// deaf is set before releasing is read, as release sets
		// releasing before it reads deaf: either the release opens the
		// window, or this sees it began.
		if !h.deaf.Swap(true) && h.releasing.Load() && h.yields() {
			// The ping came after the release looked at the socket, so
			// the release did not know of this contender: the worker
			// opens the yield window once drained.
			// (Should the release have seen deaf set after all, the
			// window opens twice, no harm.)
			h.yieldAfter.Store(true)
		}
	}
	h.answerPing(replyCh, status)
}

// yields reports whether the hold's release opens the yield window: a
// portalocker contender pinged it (deaf), it held the lock (not
// tentative), and the Client has the window.
func (h *hold) yields() bool {
	return h.deaf.Load() && !h.tentative.Load() && !h.s.cl.caps.yield.no()
}

// answerPing answers a ping on replyCh, except for a waiting contender's
// announcement, which awaits no answer. A status ping (see
// Lock.Status) is answered, but is no contender: the release does not
// ring for it.
func (h *hold) answerPing(replyCh string, status bool) {
	// Set before releasing is read, as release sets releasing before it
	// reads waited: either the release rings, or this sees it began.
	if !status {
		h.waited.Store(true)
	}
	if h.releasing.Load() {
		// The connection may already carry the next user's commands,
		// and any other one may be waiting for this one to drain.
		h.lateRing = h.lateRing || !status
		if replyCh != h.s.waiting {
			h.noteLate(replyCh)
		}
		return
	}
	if replyCh == h.s.waiting {
		return
	}
	mode, elected, now := h.answering(replyCh)
	if !now {
		return
	}
	if h.c.resp3 && h.s.cl.caps.subCmds.yes() {
		err := h.c.send(nil, h.s.ps.publish, replyCh, h.s.answerFor(replyCh, mode, elected))
		if errors.Is(err, errReleased) { // released meanwhile
			h.noteLate(replyCh)
		} else if err != nil {
			h.s.log.Debug("cannot answer ping", "err", err)
		}
		return
	}
	// The subscribed connection cannot publish: answer from a second one.
	ctx, cancel := context.WithTimeout(context.Background(), h.s.cfg.UnavailableTimeout)
	defer cancel()
	if h.answer == nil || h.answer.failed() != nil {
		c, err := h.s.cl.getReady(ctx, h.s.channel)
		if err != nil {
			h.s.log.Debug("cannot answer ping", "err", err)
			return
		}
		if c == h.c { // released meanwhile, and pooled: its reads wait for ours
			h.s.cl.put(c)
			h.noteLate(replyCh)
			return
		}
		h.answer = c
	}
	if err := h.s.answerPings(ctx, h.answer, mode, elected, []string{replyCh}); err != nil {
		h.s.log.Debug("cannot answer ping", "err", err)
	}
}

// answering returns the mode and election the hold answers a ping on
// replyCh with, and now; or, while a count is under way, keeps the ping
// for the count's end (see endCount) and returns now false.
func (h *hold) answering(replyCh string) (mode Mode, elected, now bool) {
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	if h.counting {
		if len(h.deferred) < maxNotedPings {
			h.deferred = append(h.deferred, replyCh)
		}
		return "", false, false
	}
	return h.mode, h.elected, true
}

// state returns what the hold answers pings with.
func (h *hold) state() (Mode, bool) {
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	return h.mode, h.elected
}

// setElected records whether a pending writer won the election.
func (h *hold) setElected(elected bool) {
	h.stateMu.Lock()
	h.elected = elected
	h.stateMu.Unlock()
}

// beginCount holds back the answers to pings until endCount.
func (h *hold) beginCount() {
	h.stateMu.Lock()
	h.counting = true
	h.stateMu.Unlock()
}

// endCount ends a count: with promote the pending writer holds the lock
// and answers as exclusive from now on. It returns the pings that came
// during the count, for the caller to answer with mode and elected.
func (h *hold) endCount(promote bool) (deferred []string, mode Mode, elected bool) {
	h.stateMu.Lock()
	defer h.stateMu.Unlock()
	h.counting = false
	if promote {
		h.mode, h.elected = ModeExclusive, false
	}
	deferred, h.deferred = h.deferred, nil
	return deferred, h.mode, h.elected
}

func (h *hold) noteLate(replyCh string) {
	if len(h.late) < maxNotedPings {
		h.late = append(h.late, replyCh)
	}
}

// answerPings answers, as a participant in mode (elected, for a pending
// writer), the pings whose reply channels are replyChs (see answerFor),
// then sends then, on c or, when c is nil, on a connection of the Client.
func (s *spec) answerPings(ctx context.Context, c *conn, mode Mode, elected bool, replyChs []string, then ...[]string) error {
	if c == nil {
		var err error
		if c, err = s.cl.getReady(ctx, s.channel); err != nil {
			return err
		}
		defer s.cl.put(c)
	}
	cmds := make([][]string, 0, len(replyChs)+len(then))
	for _, ch := range replyChs {
		cmds = append(cmds, []string{s.ps.publish, ch, s.answerFor(ch, mode, elected)})
	}
	return c.pipeline(ctx, append(cmds, then...), nil)
}

// release unsubscribes. See Lock.Release.
//
// On a pooled connection it does not wait for the server: the unsubscribe,
// the release bell and the name reset go out in one write, the hold ends,
// and the connection goes back to the Client at once while the worker
// reads the replies (or, if it has not started, the connection's next
// user or lazyStart's timer runs it: see drainInline). The next user of
// the connection writes behind them (so on this connection the lock is
// free before its next command runs) and reads once the worker is done
// (see conn.sendFinal). Otherwise release waits for the worker.
//
// A release that finds data unread in the socket (a quiet hold's worker
// may not have started, or any worker not have read yet) first has the
// worker read it (see verify), so that it rings the bell for a
// contender's ping and not for a status query's or a portalocker poller's,
// and reports an end of the subscription as a loss.
func (h *hold) release(ctx context.Context) error {
	// A release on a pooled connection returns once written (the next user
	// reads its replies), so it cannot wait to learn of a loss the worker
	// has not read yet: check the socket first.
	unread, err := h.checkUnread()
	if err != nil {
		h.c.fatal(err)
		h.start()
		<-h.workerDone
		h.c.close()
		return err
	}
	if unread {
		// Something waits unread: a contender's ping, a status query's, a
		// portalocker poller's (which must not be rung ahead of), or the
		// end of the subscription; a quiet hold's worker may not have
		// started (see lazyStart), or started but not read yet. The worker
		// reads it, up to the reply to a PING, before the release decides
		// what to write.
		if err := h.verify(ctx, h.s.cfg.UnavailableTimeout); err != nil {
			if lerr := h.lostErr(); lerr != nil {
				<-h.workerDone
				h.c.close()
				return lerr
			}
			// ctx ended: the release goes on, and waits for the worker.
		}
	}
	h.releasing.Store(true)
	h.health.Load().stop() // no PING may follow the last write (and on a pooled connection none can)
	// Unsubscribe, then ring the bell if a contender showed itself, so
	// that the waiter it wakes finds the channel free; all in one write.
	cmds := [][]string{{h.s.ps.unsubscribe, h.s.channel}}
	chans := []chan<- reply{nil}
	switch {
	case !h.waited.Load() || h.tentative.Load() || h.deaf.Load(): // after releasing is set: see answerPing
	case h.s.cl.caps.subCmds.no():
		// A server that refuses commands on a subscribed RESP3 connection
		// (miniredis) may still run the connection's publisher while it
		// runs the ring's script on it (a data race in miniredis): the
		// worker rings from another connection once the release is read.
		h.ringAfter.Store(true)
	default:
		h.rang.Store(true)
		cmds = append(cmds, h.s.ring)
		chans = append(chans, nil)
	}
	// A portalocker contender pinged: keep Go tries off the lock until
	// its next poll (see the yield window in bell.go).
	yield := h.yields()
	switch {
	case !yield:
	case h.s.cl.caps.subCmds.no():
		h.yieldAfter.Store(true) // as ringAfter
	default:
		cmds = append(cmds, h.s.yieldCmd())
		chans = append(chans, nil)
	}
	pooled := h.s.cl.maxIdle > 0
	if pooled {
		cmds = append(cmds, []string{"CLIENT", "SETNAME", h.s.cl.dc.name})
		chans = append(chans, h.resetName)
	}
	var drain <-chan struct{}
	var inline func() bool
	if pooled && ctx.Err() == nil {
		drain, inline = h.workerDone, h.drainInline
	}
	err = h.c.sendFinal(cmds, chans, drain, inline)
	if err != nil {
		// The release was not written, or not all of it: unconfirmed, it
		// is a loss, which the worker records when it reads the failure
		// (Release returns lostErr below).
		h.c.fatal(err)
	} else if yield {
		// Recorded now even where the worker opens the window once
		// drained (yieldAfter), so that this Lock's next Acquire cannot
		// come first; answerLate records it again when it opens.
		h.s.yielded()
	}
	// A server that never answers cannot keep the connection, and the
	// lock, forever (nor hold up Release, when it waits). The timer is set
	// after the write, which it must not delay.
	h.drainTimer.Store(time.AfterFunc(h.s.cfg.UnavailableTimeout, func() {
		select {
		case <-h.workerDone:
		default:
			h.c.fatal(errDrainTimeout)
		}
	}))
	if err == nil && drain != nil {
		h.end(nil)
		h.s.cl.put(h.c)
		return nil
	}
	h.start() // release waits for the worker
	select {
	case <-h.workerDone:
	case <-ctx.Done():
		h.c.fatal(ctxErr(ctx, errConnClosed))
		<-h.workerDone
	}
	h.s.cl.put(h.c)    // closed if it failed: the server dropped the subscription
	return h.lostErr() // lost before the release was written
}

// errDrainTimeout closes a released connection whose last replies did
// not come within UnavailableTimeout.
var errDrainTimeout = errors.New("no reply to the release within UnavailableTimeout")
