package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// bellRecheck is how long a finding that the bell's key is free holds:
// a list the user creates under that name is respected from then on.
const bellRecheck = time.Second

// maxConnFailures bounds the tries in a row that may fail on their
// connection before Acquire gives up with the error.
const maxConnFailures = 3

// raceBackoff bounds the pause after losing a race between optimistic
// tries: a few round trips on a LAN, so that one of two contenders in step
// is likely to be done before the other tries again.
const raceBackoff = 500 * time.Microsecond

// jitter spreads d by ±25%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.75 + 0.5*rand.Float64()))
}

// attempt is the state of one Acquire: the connection it subscribes (and
// waits for the release bell) on, and the auxiliary one it counts, pings,
// kills and wakes with.
type attempt struct {
	s *spec
	// bellFreeAt is the Lock's record of when the bell's key was last
	// found free (see Lock.bellFreeAt).
	bellFreeAt *atomic.Int64
	sub        *conn // the would-be holder connection
	// subClean says that sub is known to be unsubscribed, to carry the
	// Client's name and to await no reply: only then may it go back to
	// the pool. Any other sub is closed, which makes the server drop its
	// subscription and name.
	subClean bool
	aux      *conn  // commands while sub is subscribed (RESP2, miniredis) or blocked
	wake     string // the wake list of this attempt's bell waits (see wakeKey)
	// bellChecked is set once the bell's key was found absent or the
	// bell's own; noBell once it was found to be the user's (a list this
	// attempt must not pop): the attempt then polls.
	bellChecked, noBell bool
	// noYield is set once this attempt's yield check failed for a reason
	// that is no refusal (see yieldRefused): the attempt goes without the
	// window, the Client's next ones look again.
	noYield bool
	pings   []notedPing // pings seen on sub while it contended (see notePing)
	last    outcome     // what the last try found
	waited  bool        // a try found the lock held: the new holder rings the bell
	// gentle is set once a ping was answered by portalocker 4: from then
	// on the attempt's tries count the subscribers before they subscribe,
	// as portalocker does, and poll rather than wait for the bell. A
	// contender that subscribes, is counted, and leaves before the ping
	// of a portalocker 4 probe comes makes that probe wait
	// UnavailableTimeout, or (4.1, upstream #139) take a count of the same
	// size but other members for a conclusive one.
	gentle bool
	// compatible is set by a look (see look) that found that this one
	// may join those who hold the lock, or wait among them, for the try
	// after it, which confirms it subscribed.
	compatible bool
	once       bool // TryAcquire, or FailWhenLocked: one try, and the one after a take-over
	// pending is the hold of a writer that won the writers' election and
	// stays subscribed, pending, until the readers are gone (see
	// tryPending); nil otherwise.
	pending *hold

	connFailures int // tries in a row whose connection failed
	// yieldFor is what the last try found left of a yield window (see
	// bell.go), and yieldID that window's value: the try backs off, and
	// the next waits that long. yieldedTo is the last window the attempt
	// backed off for, from yieldedAt: it backs off for one no longer than
	// yieldWindow (a server that does not expire keys would keep it open;
	// and a wait may end early, by a stale wake push).
	yieldFor           time.Duration
	yieldID, yieldedTo string
	yieldedAt          time.Time
	// owesBell is set when the attempt backed off for a window after the
	// bell woke it: if it ends without the lock, it rings for the next.
	owesBell bool
	until    time.Time // when Acquire gives up; zero: never
}

// close gives back the attempt's connections: sub only when it is clean,
// else it is closed.
func (a *attempt) close() {
	a.leavePending(context.Background())
	if a.owesBell {
		ctx, cancel := context.WithTimeout(context.Background(), a.s.cfg.UnavailableTimeout)
		a.ringAgain(ctx)
		cancel()
	}
	if a.sub != nil && !a.subClean {
		a.sub.close()
	}
	a.s.cl.put(a.sub)
	a.s.cl.put(a.aux)
	a.sub, a.aux = nil, nil
}

// ringAgain passes on a bell this attempt took and did not use, from the
// auxiliary connection; a failure leaves the waiters to their pauses.
func (a *attempt) ringAgain(ctx context.Context) {
	if aux, err := a.getAux(ctx); err == nil {
		_, _ = aux.do(ctx, a.s.ring...)
	}
}

func (a *attempt) getAux(ctx context.Context) (*conn, error) {
	if a.aux != nil && a.aux.failed() != nil {
		a.aux.close()
		a.aux = nil
	}
	if a.aux != nil && !a.s.cl.serves(a.aux, a.s.channel) { // cluster slot or primary moved
		a.s.cl.put(a.aux)
		a.aux = nil
	}
	if a.aux == nil {
		c, err := a.s.cl.get(ctx, a.s.channel)
		if err != nil {
			return nil, err
		}
		a.aux = c
	}
	return a.aux, nil
}

// errTryAgain marks a try's failure that is not the server's refusal of
// the lock: a try on a new connection may succeed.
var errTryAgain = errors.New("try again")

// refusedWhileSubscribed reports whether err is a server's refusal to run
// a command on a subscribed connection. It has no error code of its own
// (it is ERR), so the wording decides, in this one place. Redis 7 and
// Valkey say "ERR Can't execute '<cmd>': only (P|S)SUBSCRIBE /
// (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
// Redis 6.2 "only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET
// ...", miniredis (which refuses them even in RESP3) "only (P)SUBSCRIBE /
// (P)UNSUBSCRIBE / PING / QUIT are allowed in this context".
func refusedWhileSubscribed(err error) bool {
	var re resp.Error
	if !errors.As(err, &re) || re.Code() != "ERR" {
		return false
	}
	msg := string(re)
	return strings.Contains(msg, "only (P") && strings.Contains(msg, "allowed in this context")
}

// yieldRefused reports whether the server refuses the yield window's
// script for good: an ACL (NOPERM; inside a script Redis 7 says "can't run
// this command", Redis 8 and Valkey "ACL failure"), or scripts disabled
// or renamed away.
func yieldRefused(re resp.Error) bool {
	if re.Code() == "NOPERM" {
		return true
	}
	msg := strings.ToLower(string(re))
	if re.Code() != "ERR" {
		return false
	}
	for _, refusal := range []string{"can't run this command", "acl failure", "permission", "unknown command", "disabled"} {
		if strings.Contains(msg, refusal) {
			return true
		}
	}
	return false
}

// transient reports whether the server refused a command for a state that
// passes: loading its data, a script running, a failover or a slot moving.
func transient(re resp.Error) bool {
	switch re.Code() {
	case "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "UNBLOCKED":
		return true
	}
	return false
}

// confirm checks, before a try that counted 1 becomes a hold, that the
// count speaks for sub: that sub was not closed since (a contender's kill
// of a holder that was stopped meanwhile, seen without reading), and, where
// the count came from the auxiliary connection (RESP2, miniredis) or the
// round trip took so long that the count may be stale (slow is set: the
// process was stopped, or the server paused), that sub still answers.
// The server runs sub's PING after the count, so it answers only if sub
// was subscribed when the count was taken and still is.
func (a *attempt) confirm(ctx context.Context, slow bool) error {
	if err := a.sub.peerClosed(); err != nil {
		return err
	}
	if !slow && a.sub.resp3 && a.s.cl.caps.subCmds.yes() {
		return nil // the count ran on sub itself, just now
	}
	// Pings that arrive before the PONG are noted like those of the
	// subscribe: the new holder answers them first.
	a.sub.onPush = a.notePing
	_, err := a.sub.do(ctx, "PING")
	a.sub.onPush = nil
	return err
}

// outcome is what one try found.
type outcome int

const (
	// busy: the lock is held elsewhere; wait (or give up), then try again.
	busy outcome = iota
	// taken: the try took the lock; it returns the hold.
	taken
	// again: the try's connection failed (stale in the pool, killed, or
	// its wait for the bell broke off); try again at once on a new one.
	again
	// freed: the holder was dead, silent and killed, or gone by the time
	// it was pinged or told of this waiter; try again at once.
	freed
	// raced: as freed, for the second try in a row: contenders in step
	// see each other and all back off; try again after a short random
	// pause, which breaks the tie.
	raced
)

// try makes one attempt at the lock and says what it found; with taken
// it returns the new hold. An error ends Acquire (dialing,
// authentication, a refused command, ctx).
//
// A try subscribes at once (optimistic), which takes an unheld lock in
// one round trip. With wait > 0 it is first held back by the server until
// the release bell rings or wait is over (see bell.go); where the bell is
// refused, the try sleeps for wait instead and counts the subscribers
// before it subscribes, as portalocker does. Others found subscribed are
// asked who they are (see contend) by a reader, and by a writer when ping
// is set.
func (a *attempt) try(ctx context.Context, ping bool, wait time.Duration) (out outcome, h *hold, err error) {
	defer func() { a.last = out }()
	if a.pending != nil {
		return a.tryPending(ctx, ping, wait)
	}
	l := a.s
	inStep := a.last == freed || a.last == raced // the last try found nobody left too
	// Among portalocker 4 participants, tries count before they
	// subscribe, as portalocker does (see attempt.gentle).
	optimistic := !a.gentle
	if wait > 0 && optimistic && !a.bellChecked && !a.noBell && !l.cl.caps.bell.no() {
		if at := a.bellFreeAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < bellRecheck {
			a.bellChecked = true
		} else {
			free, err := a.bellFree(ctx)
			if err != nil {
				return busy, nil, err
			}
			a.bellChecked, a.noBell = free, !free
			if free {
				a.bellFreeAt.Store(time.Now().UnixNano())
			}
		}
	}
	if wait > 0 && (!optimistic || l.cl.caps.bell.no() || a.noBell) {
		if err := sleepCtx(ctx, wait); err != nil {
			return busy, nil, err
		}
		optimistic, wait = false, 0
	}
	if !optimistic {
		aux, err := a.getAux(ctx)
		if err != nil {
			return busy, nil, err
		}
		n, err := l.numsub(ctx, aux)
		if err != nil {
			var re resp.Error
			if errors.As(err, &re) || ctx.Err() != nil || a.connFailures >= maxConnFailures {
				return busy, nil, err
			}
			// A stale connection: drop it and its idle siblings.
			a.connFailures++
			l.cl.dropIdle(aux.addr)
			return again, nil, nil
		}
		if n > 0 && !a.compatible {
			if !ping && !l.shared {
				return busy, nil, ctx.Err()
			}
			if out, _, err := a.look(ctx); out != freed {
				return out, nil, err
			} // compatible, or silent holders were killed: subscribe
		}
	}
	if a.sub != nil && (!a.subClean || a.sub.failed() != nil || !l.cl.serves(a.sub, l.channel)) {
		a.sub.close()
		a.sub = nil
	}
	if a.sub == nil {
		c, err := l.cl.get(ctx, l.channel)
		if err != nil {
			return busy, nil, err
		}
		a.sub = c
	}
	a.subClean = false // from the write on, it may be subscribed and named
	sent := time.Now()
	n, token, belled, err := a.subscribe(ctx, wait)
	for r := 0; err != nil && r < maxRedirects && l.cl.redirected(err, a.sub); r++ {
		// Cluster: the channel's slot moved (MOVED); the Client has
		// learnt where to.
		l.log.Debug("redirected", "err", err)
		a.sub.close()
		if a.sub, err = l.cl.get(ctx, l.channel); err != nil {
			return busy, nil, err
		}
		n, token, belled, err = a.subscribe(ctx, 0)
	}
	if err == nil && n == 1 && a.sub.failed() == nil {
		err = a.confirm(ctx, time.Since(sent) > wait+l.cfg.UnavailableTimeout)
	}
	if err != nil {
		var re resp.Error
		if errors.As(err, &re) && transient(re) {
			// The server cannot serve the try now (it loads its data
			// after a restart, a failover runs): the lock is busy, not
			// refused; try again after the pause.
			l.log.Debug("try refused for now", "err", err)
			a.sub.close()
			a.sub = nil
			return busy, nil, nil
		}
		if errors.As(err, &re) && re.Code() != "" && !errors.Is(err, errTryAgain) && !refusedWhileSubscribed(err) {
			return busy, nil, err // e.g. NOPERM: no use retrying
		}
		if ctx.Err() != nil {
			return busy, nil, ctx.Err()
		}
		// Our connection died (a stale pooled connection, or killed by a
		// contender), or its wait for the bell failed: try again at once
		// on a new one.
		l.log.Debug("try failed", "err", err)
		a.sub.close()
		// Its idle siblings likely died with it (a restart, a mass kill):
		// the next try dials.
		l.cl.dropIdle(a.sub.addr)
		a.sub = nil
		a.connFailures++
		if a.connFailures > maxConnFailures {
			return busy, nil, err
		}
		return again, nil, nil
	}
	a.connFailures = 0
	if a.yieldFor > 0 && a.sub.failed() == nil && (a.until.IsZero() || time.Now().Add(a.yieldFor).Before(a.until)) {
		// A yield window is open: give the lock to portalocker's poller
		// (see bell.go), even if this try found it free; unless Acquire
		// would give up before the window closes.
		if a.yieldID != a.yieldedTo {
			a.yieldedTo, a.yieldedAt = a.yieldID, time.Now()
		}
		a.owesBell = a.owesBell || belled
		return a.yieldTo(ctx)
	}
	a.yieldFor = 0
	compatible := a.compatible
	a.compatible = false
	if n == 1 && a.sub.failed() == nil {
		mode := ModeExclusive
		if l.shared {
			mode = ModeShared
		}
		h := newHold(l, a.sub, token, mode, a.waited, a.pings)
		a.sub, a.pings = nil, nil
		a.owesBell = false // it took the lock the bell was rung for
		return taken, h, nil
	}
	l.log.Debug("contended", "subscribers", n, "belled", belled)
	if compatible && a.sub.failed() == nil {
		return a.contend(ctx, token)
	}
	// Announce this waiter to the holder, so that its release rings the
	// bell; the count of receivers tells whether anyone still holds the
	// lock.
	receivers := int64(-1)
	a.withdraw(ctx, []string{l.ps.publish, l.channel, l.announce}, func(i int, v resp.Value) error {
		if i == 1 {
			receivers = v.Int
		}
		return nil
	})
	switch {
	case receivers != 0 && (l.shared || ping):
		// A reader asks who holds the lock, and so does a writer whose
		// ping is due, even after a bell: a bell says that a holder left,
		// not that the lock is free (readers ring as they leave one by
		// one).
		return a.look(ctx)
	case receivers == 0:
		// Whoever was counted is gone: a holder that released too early
		// to hear of this waiter and ring, or a contender that tried at
		// the same time and announced itself first, so it heard this one
		// still subscribed and waits for a bell. Try again at once; only
		// when that happens twice in a row (contenders in step) after a
		// short, random pause.
		if inStep {
			return raced, nil, ctx.Err()
		}
		return freed, nil, ctx.Err()
	}
	return busy, nil, ctx.Err()
}

// yieldTo undoes a try that a yield window forbids: it unsubscribes and
// drops the holder's name, answers the pings that came meanwhile, and says
// busy; the next try waits a.yieldFor.
func (a *attempt) yieldTo(ctx context.Context) (outcome, *hold, error) {
	l := a.s
	l.log.Debug("yielding to a portalocker contender", "for", a.yieldFor)
	a.withdraw(ctx, nil, nil)
	return busy, nil, ctx.Err()
}

// withdraw ends a try that did not take the lock: it unsubscribes sub and
// drops the holder's name, so that a connection that lost keeps no name a
// contender (portalocker kills by name) would take for a holder's, and
// runs then, in the same write, the command next if not nil; fn gets the
// replies after the unsubscribe's. Sub is then clean, or closed if that
// failed. The pings noted meanwhile are answered: contenders that sent
// them listed this connection, subscribed and named, and it may be again
// by the time they decide.
func (a *attempt) withdraw(ctx context.Context, next []string, fn func(i int, v resp.Value) error) {
	l := a.s
	cmds := [][]string{{l.ps.unsubscribe, l.channel}, {"CLIENT", "SETNAME", l.cl.dc.name}}
	if next != nil {
		cmds = append(cmds, next)
	}
	a.sub.onPush = a.notePing
	err := a.sub.pipeline(ctx, cmds, fn)
	a.sub.onPush = nil
	pings := a.pings
	a.pings = nil
	if err != nil {
		a.sub.close()
		a.sub = nil
	} else {
		a.subClean = true
	}
	if len(pings) > 0 {
		a.answer(ctx, pings)
	}
}

// look asks, unsubscribed, who holds the lock: a reader, to join
// readers; a writer whose ping is due, to find a silent holder, or readers
// it may wait for. It pings every subscriber and judges their answers (see
// judge). When this one may join them, or wait among them as the elected
// writer, it says freed: the next try, at once, subscribes and confirms it
// (see contend). Silent holders are killed (freed too). Looking before
// subscribing keeps the subscriptions of those who must wait short and
// rare: portalocker 4's probes wait UnavailableTimeout for a subscriber
// they counted that left before their ping came.
func (a *attempt) look(ctx context.Context) (outcome, *hold, error) {
	l := a.s
	aux, err := a.getAux(ctx)
	if err != nil {
		l.log.Debug("cannot ask who holds the lock", "err", err)
		return busy, nil, ctx.Err()
	}
	p, err := l.ping(ctx, aux, false, nil, func(p *probe) bool { return l.judge(p, false) != verdictUnsure })
	if err != nil {
		l.log.Debug("cannot ask who holds the lock", "err", err)
		return busy, nil, ctx.Err()
	}
	a.notePeers(p)
	switch v := l.judge(p, false); {
	case v == verdictJoin || v == verdictElected:
		a.compatible = true
		return freed, nil, ctx.Err()
	case v != verdictUnsure:
		return busy, nil, ctx.Err()
	case p.left:
		return freed, nil, ctx.Err()
	case !p.listed:
		return busy, nil, ctx.Err()
	}
	killed, err := l.killSilent(ctx, aux, p)
	if err != nil || killed == 0 {
		return busy, nil, ctx.Err()
	}
	l.log.Info("killed silent holder")
	return freed, nil, ctx.Err()
}

// notePeers makes the attempt gentle once portalocker 4 answered its ping.
func (a *attempt) notePeers(p *probe) {
	for _, ans := range p.snapshot() {
		if !a.gentle && kindOf(ans) == KindPortalocker4 {
			a.gentle = true
			a.s.log.Debug("portalocker 4 contends: tries count before they subscribe")
		}
	}
}

// contend is a try that subscribed, found others subscribed, and was told
// by the look before it (see look) that it may join them or wait among
// them: it confirms that, subscribed, as a participant that does not hold
// the lock (a tentative hold in mode shared or pending, whose worker
// answers pings at once). It pings every subscriber and judges their
// answers (see judge): a reader among readers holds the lock; a writer
// that wins the writers' election stays pending (see tryPending); anyone
// else leaves.
func (a *attempt) contend(ctx context.Context, token int64) (outcome, *hold, error) {
	l := a.s
	mode := ModePending
	if l.shared {
		mode = ModeShared
	}
	h := newHold(l, a.sub, token, mode, false, a.pings)
	h.tentative.Store(true)
	h.start() // the probe sends on the hold's connection
	a.sub, a.pings = nil, nil
	v, err := a.probe(ctx, h, false)
	switch {
	case err != nil:
		a.leave(ctx, h)
		if ctx.Err() != nil {
			return busy, nil, ctx.Err()
		}
		l.log.Debug("cannot ask who holds the lock", "err", err)
		return busy, nil, nil
	case h.lostErr() != nil: // our connection was killed or failed
		a.leave(ctx, h)
		return again, nil, nil
	case v == verdictJoin:
		a.hold(h)
		return taken, h, nil
	case v == verdictKilled:
		a.leave(ctx, h)
		return freed, nil, ctx.Err()
	case v == verdictRecheck:
		a.leave(ctx, h)
		return a.recheck(ctx)
	case v == verdictElected:
		h.setElected(true)
		a.pending = h
		l.log.Debug("elected: waiting for the readers")
		// The readers may have left already; a TryAcquire has this one
		// chance.
		out, h, err := a.recount(ctx)
		if out == taken || err != nil {
			return out, h, err
		}
		if a.once {
			a.leavePending(ctx)
		}
		return busy, nil, ctx.Err()
	}
	a.leave(ctx, h)
	return busy, nil, ctx.Err()
}

// hold makes a tentative hold (see contend) the Lock's.
func (a *attempt) hold(h *hold) {
	h.waited.Store(h.waited.Load() || a.waited)
	h.tentative.Store(false)
}

// leave ends a tentative hold: it unsubscribes, and rings no bell (it
// held nothing that anyone waited for).
func (a *attempt) leave(ctx context.Context, h *hold) {
	if err := h.release(ctx); err != nil {
		a.s.log.Debug("left", "err", err)
	}
}

// leavePending ends the elected writer's pending hold, if any.
func (a *attempt) leavePending(ctx context.Context) {
	if h := a.pending; h != nil {
		a.pending = nil
		a.leave(ctx, h)
	}
}

// probe pings the lock's channel from the auxiliary connection while h, a
// tentative hold, is subscribed, and judges the answers (incumbent: h won
// the writers' election before). When some holders stayed silent it kills
// them, where the server allows, and says verdictKilled.
func (a *attempt) probe(ctx context.Context, h *hold, incumbent bool) (verdict, error) {
	l := a.s
	aux, err := a.getAux(ctx)
	if err != nil {
		return verdictWait, err
	}
	p, err := l.ping(ctx, aux, false, h, func(p *probe) bool { return l.judge(p, incumbent) != verdictUnsure })
	if err != nil {
		return verdictWait, err
	}
	a.notePeers(p)
	v := l.judge(p, incumbent)
	switch {
	case v != verdictUnsure:
		return v, nil
	case p.left: // the silent ones are gone: look again
		return verdictKilled, nil
	case !p.listed:
		return verdictWait, nil // they cannot be killed here
	case p.self == 0 && p.selfLegacy:
		return verdictRecheck, nil
	}
	killed, err := l.killSilent(ctx, aux, p)
	if err != nil || killed == 0 {
		return verdictWait, err // silent subscribers without a holder's name
	}
	l.log.Info("killed silent holder")
	return verdictKilled, nil
}

// recheck runs the contender's check unsubscribed (see verdictRecheck):
// freed when silent holders were killed or are gone.
func (a *attempt) recheck(ctx context.Context) (outcome, *hold, error) {
	aux, err := a.getAux(ctx)
	if err != nil {
		return busy, nil, ctx.Err()
	}
	st, err := a.s.checkOrKill(ctx, aux)
	a.s.logCheck(st, err)
	if err == nil && (st == holderGone || st == holderKilled) {
		return freed, nil, ctx.Err()
	}
	return busy, nil, ctx.Err()
}

// tryPending is a try of the elected writer a.pending, which stays
// subscribed and keeps new readers out: after wait it counts the
// subscribers, and holds the lock once it is alone. Otherwise, when its
// ping is due, it asks again who is there, and leaves when it finds an
// exclusive holder, or an elected writer with a lower id (see judge).
func (a *attempt) tryPending(ctx context.Context, ping bool, wait time.Duration) (outcome, *hold, error) {
	if wait > 0 {
		if err := sleepCtx(ctx, wait); err != nil {
			return busy, nil, err
		}
	}
	h := a.pending
	if h.lostErr() != nil {
		a.leavePending(ctx)
		return again, nil, nil
	}
	out, h, err := a.recount(ctx)
	if out == taken || err != nil {
		return out, h, err
	}
	if !ping {
		return busy, nil, nil
	}
	v, err := a.probe(ctx, a.pending, true)
	switch {
	case err != nil:
		a.leavePending(ctx)
		if ctx.Err() != nil {
			return busy, nil, ctx.Err()
		}
		a.s.log.Debug("cannot ask who holds the lock", "err", err)
		return busy, nil, nil
	case v == verdictElected:
		return busy, nil, nil
	case v == verdictKilled:
		return freed, nil, nil // still pending: count again at once
	case v == verdictRecheck:
		a.leavePending(ctx)
		return a.recheck(ctx)
	}
	a.s.log.Debug("elected writer leaves")
	a.leavePending(ctx)
	return busy, nil, ctx.Err()
}

// recount counts the subscribers for the elected writer a.pending, with
// a fencing token taken before the count (so that a later holder, who
// must subscribe after the count, gets a larger one). Alone, it holds the
// lock: its answers, held back during the count (see hold.beginCount),
// say so from then on. A failed count ends the pending hold.
func (a *attempt) recount(ctx context.Context) (outcome, *hold, error) {
	l, h := a.s, a.pending
	aux, err := a.getAux(ctx)
	if err != nil {
		a.leavePending(ctx)
		return busy, nil, err
	}
	var cmds [][]string
	if l.cfg.Fencing {
		cmds = append(cmds, []string{"INCR", l.fence})
	}
	cmds = append(cmds, []string{"PUBSUB", l.ps.numsub, l.channel})
	var n, token int64
	h.beginCount()
	err = aux.pipeline(ctx, cmds, func(i int, v resp.Value) error {
		if i == 0 && l.cfg.Fencing {
			token = v.Int
			return nil
		}
		var err error
		n, err = numsubCount(v, l.channel)
		return err
	})
	if code, _ := isRedirect(err); code == "ASK" && l.cfg.Fencing {
		n, token, err = l.fenceAsked(ctx, aux)
	}
	// One subscriber: us, if our connection is still subscribed after
	// the count (it may have been killed, and someone else have taken
	// the lock).
	promote := err == nil && n == 1 && h.verify(ctx, l.cfg.UnavailableTimeout) == nil
	deferred, mode, elected := h.endCount(promote)
	if len(deferred) > 0 {
		if err := l.answerPings(ctx, aux, mode, elected, deferred); err != nil {
			l.log.Debug("cannot answer ping", "err", err)
		}
	}
	switch {
	case err != nil:
		a.leavePending(ctx)
		if ctx.Err() != nil {
			return busy, nil, ctx.Err()
		}
		return again, nil, nil
	case promote:
		a.pending = nil
		h.token = token
		a.hold(h)
		return taken, h, nil
	case h.lostErr() != nil:
		a.leavePending(ctx)
		return again, nil, nil
	}
	return busy, nil, nil
}

// answer answers pings on the lock's channel that a contending
// connection saw.
func (a *attempt) answer(ctx context.Context, pings []notedPing) {
	var chs []string
	for _, p := range pings {
		if p.channel == a.s.channel && p.replyCh != a.s.waiting {
			chs = append(chs, p.replyCh)
		}
	}
	if len(chs) == 0 {
		return
	}
	aux, err := a.getAux(ctx)
	if err == nil {
		mode := ModePending
		if a.s.shared {
			mode = ModeShared
		}
		err = a.s.answerPings(ctx, aux, mode, false, chs)
	}
	if err != nil {
		a.s.log.Debug("cannot answer ping", "err", err)
	}
}

// notePing records the reply channel of a ping that arrived on the lock
// channel while sub was subscribed outside a hold. If sub goes on to hold
// the lock, its worker answers these first: the contender that sent one
// listed sub as a subscriber and would otherwise kill it for its silence.
func (a *attempt) notePing(v resp.Value) {
	s := a.s
	if !isKind(v, s.ps.message) || len(v.Elems) != 3 || string(v.Elems[1].Str) != s.channel {
		return
	}
	ch, status, ok := parsePing(v.Elems[2].Str)
	if !ok {
		return
	}
	if len(a.pings) == maxNotedPings {
		a.pings = slices.Delete(a.pings, 0, 1)
	}
	a.pings = append(a.pings, notedPing{channel: s.channel, replyCh: ch, status: status,
		deaf: !status && !s.hearsBell(v.Elems[2].Str, ch)})
}

// notedPing is a ping seen by a contending connection.
type notedPing struct {
	channel, replyCh string
	status           bool // a status ping (see statusMessage)
	deaf             bool // from a contender that does not hear the bell (see spec.hearsBell)
}

// maxNotedPings bounds attempt.pings.
const maxNotedPings = 16

// subscribe names a.sub as the holder, subscribes it to the channel, takes
// a fencing token if asked, and counts the subscribers once the
// subscription is in place. Where a subscribed connection may run commands
// (RESP3 on real Redis) this is one round trip; otherwise the count and
// the token come from the auxiliary connection after the subscription is
// confirmed. With wait > 0 the server holds it all back until the release
// bell rings (belled) or wait is over.
func (a *attempt) subscribe(ctx context.Context, wait time.Duration) (n int64, token int64, belled bool, err error) {
	l := a.s
	c := a.sub
	// The token is taken after our SUBSCRIBE and before the count, so a
	// later holder, who must subscribe after our count, gets a larger one.
	a.pings = nil // those of an earlier subscription were answered
	a.yieldFor = 0
	c.onPush = a.notePing
	defer func() { c.onPush = nil }()
	var cmds [][]string
	if wait > 0 {
		cmds = append(cmds, a.bellWait(wait))
	}
	// Every try after the first reads the yield window, right before it
	// subscribes (a try at once after a waiter's announcement went
	// unheard, too: the holder may have released after a portalocker ping).
	checkYield := (wait > 0 || a.waited) && !l.cl.caps.yield.no() && !a.noYield
	if checkYield {
		cmds = append(cmds, l.yieldCheck)
	}
	first := len(cmds) // replies before SETNAME's
	yieldSeen := false
	cmds = append(cmds, []string{"CLIENT", "SETNAME", l.name}, []string{l.ps.subscribe, l.channel})
	inline := c.resp3 && !l.cl.caps.subCmds.no()
	if inline {
		if l.cfg.Fencing {
			cmds = append(cmds, []string{"INCR", l.fence})
		}
		cmds = append(cmds, []string{"PUBSUB", l.ps.numsub, l.channel})
	}
	stopWake := func() {}
	if wait > 0 {
		stopWake = a.wakeAfter(ctx, wait)
	}
	waited := wait == 0 // BLPOP answered
	err = c.pipelineBlocking(ctx, wait+wakeGrace, cmds, func(i int, v resp.Value) error {
		switch i -= first; {
		case i == -1 && checkYield:
			yieldSeen = true
			if len(v.Elems) == 2 && v.Elems[0].Int > 0 && (string(v.Elems[1].Str) != a.yieldedTo || time.Since(a.yieldedAt) < yieldWindow) {
				a.yieldFor = time.Duration(v.Elems[0].Int) * time.Millisecond
				a.yieldID = string(v.Elems[1].Str)
			}
		case i < 0:
			// [key, element]: the bell rang, or the wake list ended the
			// pause; null: the server's timeout did.
			stopWake() // at once: a push now would be left for the next wait
			waited = true
			belled = len(v.Elems) == 2 && string(v.Elems[0].Str) == l.bell
		case i == 1 && l.cfg.Fencing:
			token = v.Int
		case i >= 1:
			n, err = numsubCount(v, l.channel)
			return err
		}
		return nil
	})
	stopWake()
	var re resp.Error
	if _, redirect := isRedirect(err); !waited && !redirect && errors.As(err, &re) {
		switch {
		case transient(re):
			// The server's state changed under the wait (a failover, a
			// slot moving): not a refusal.
		case re.Code() == "WRONGTYPE" || re.Code() == "READONLY" || re.Code() == "OOM":
			// A key of the user's under the bell's name, a replica, a
			// full memory: this attempt polls.
			l.log.Debug("no release bell: this attempt polls", "err", err)
			a.noBell = true
		default: // NOPERM, a server without float timeouts
			l.log.Debug("no release bell: waiters poll", "err", err)
			l.cl.caps.bell.set(false)
		}
		// The commands behind the BLPOP ran at once and may have left c
		// subscribed, uncounted: the try gives c up as a failed connection
		// and tries again.
		return 0, 0, false, fmt.Errorf("%w: waiting for the release bell: %w", errTryAgain, err)
	}
	if _, redirect := isRedirect(err); checkYield && waited && !yieldSeen && !redirect && errors.As(err, &re) {
		// The yield window's key or script is refused (an ACL, scripts
		// disabled): waiters do without it. Another error (none is known)
		// costs only this attempt the window: one error must not end
		// fairness to portalocker for the Client's life. The commands
		// behind it ran: as above.
		switch {
		case transient(re):
		case yieldRefused(re):
			l.log.Debug("no yield window", "err", err)
			l.cl.caps.yield.set(false)
		default:
			l.log.Debug("no yield window for this attempt", "err", err)
			a.noYield = true
		}
		if belled {
			// The next try, at once, or another waiter takes it.
			a.ringAgain(ctx)
		}
		return 0, 0, false, fmt.Errorf("%w: reading the yield window: %w", errTryAgain, err)
	}
	if checkYield && yieldSeen {
		l.cl.caps.yield.set(true)
	}
	if inline && err != nil && refusedWhileSubscribed(err) {
		// miniredis: a subscribed connection refuses other commands even
		// in RESP3. Remember, and count from the auxiliary connection.
		l.cl.caps.subCmds.set(false)
		inline, err = false, nil
	}
	if code, _ := isRedirect(err); code == "ASK" && inline && l.cfg.Fencing {
		n, token, err = l.fenceAsked(ctx, c)
	}
	if err != nil {
		return 0, 0, belled, err
	}
	if inline {
		l.cl.caps.subCmds.set(true)
		return n, token, belled, nil
	}
	aux, err := a.getAux(ctx)
	if err != nil {
		return 0, 0, belled, err
	}
	cmds = cmds[:0]
	if l.cfg.Fencing {
		cmds = append(cmds, []string{"INCR", l.fence})
	}
	cmds = append(cmds, []string{"PUBSUB", l.ps.numsub, l.channel})
	err = aux.pipeline(ctx, cmds, func(i int, v resp.Value) error {
		if i == 0 && l.cfg.Fencing {
			token = v.Int
			return nil
		}
		n, err = numsubCount(v, l.channel)
		return err
	})
	if code, _ := isRedirect(err); code == "ASK" && l.cfg.Fencing {
		n, token, err = l.fenceAsked(ctx, aux)
	}
	return n, token, belled, err
}

// bellWait returns the BLPOP that holds a try back on the bell and the
// attempt's wake list for up to d (at least a millisecond).
func (a *attempt) bellWait(d time.Duration) []string {
	return []string{"BLPOP", a.s.bell, a.wakeKey(), strconv.FormatFloat(max(d, time.Millisecond).Seconds(), 'f', 3, 64)}
}

// bellFree reports whether the bell's key is absent or the bell's own, so
// that this attempt may block on it. A list of the user's under that name
// is not popped: the attempt polls instead.
func (a *attempt) bellFree(ctx context.Context) (bool, error) {
	aux, err := a.getAux(ctx)
	if err != nil {
		return false, err
	}
	var typ string
	var n int64 = -1
	var first resp.Value
	err = aux.pipeline(ctx, [][]string{{"TYPE", a.s.bell}, {"LLEN", a.s.bell}, {"LINDEX", a.s.bell, "0"}},
		func(i int, v resp.Value) error {
			switch i {
			case 0:
				typ = string(v.Str)
			case 1:
				n = v.Int
			case 2:
				first = v
			}
			return nil
		})
	var re resp.Error
	if errors.As(err, &re) && typ == "" {
		a.s.log.Debug("no release bell: waiters poll", "err", err)
		if re.Code() == "NOPERM" { // an ACL: so for every lock of the Client
			a.s.cl.caps.bell.set(false)
		}
		return false, nil
	}
	switch {
	case typ == "none":
		return true, nil
	case typ == "list":
		return n == 1 && string(first.Str) == bellValue, nil
	case err != nil && !errors.As(err, &re):
		return false, err
	}
	return false, nil // a key of another type: LLEN refused it (WRONGTYPE)
}

// fenceAsked takes the fencing token when the INCR pipelined after our
// SSUBSCRIBE got ASK: the slot is migrating and the fence key has already
// moved to the importing node, while the migrating node still serves the
// channel. The token comes from the importing node (ASKING, INCR), then
// the subscribers are counted again on c, so that the count still follows
// the token.
func (s *spec) fenceAsked(ctx context.Context, c *conn) (n, token int64, err error) {
	if s.cl.cluster == nil {
		return 0, 0, fmt.Errorf("%w: ASK redirect outside cluster mode", resp.ErrProtocol)
	}
	v, err := s.cl.doKey(ctx, s.fence, "INCR", s.fence)
	if err != nil {
		return 0, 0, err
	}
	if v.Type != resp.TypeInteger {
		return 0, 0, fmt.Errorf("%w: INCR reply %.40s", resp.ErrProtocol, v.String())
	}
	n, err = s.numsub(ctx, c)
	return n, v.Int, err
}
