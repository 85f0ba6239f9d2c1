package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// Errors returned by Lock methods; test for them with errors.Is.
var (
	// ErrAlreadyLocked: the lock is held elsewhere and was not obtained in
	// time (or at the first try, with TryAcquire or FailWhenLocked).
	ErrAlreadyLocked = errors.New("pubsublock: already locked")
	// ErrNotHeld: Release on a Lock that does not hold the lock.
	ErrNotHeld = errors.New("pubsublock: not held")
	// ErrLost: the hold ended without Release: the connection died, was
	// killed by a contender, the server restarted, or the health check went
	// unanswered. The wrapped error says which.
	ErrLost = errors.New("pubsublock: lock lost")
	// ErrHeld: Acquire on a Lock that already holds the lock, or while
	// another Acquire on it runs.
	ErrHeld = errors.New("pubsublock: already held by this Lock")
)

// Lock is a lock on one pub/sub channel. Create it with [New]; it may be
// acquired and released any number of times. All methods are safe for
// concurrent use; see the package documentation.
type Lock struct {
	channel  string
	name     string   // client name of the holder connection: channel + "-lock"
	fence    string   // key of the fencing counter: channel + "-fence" (see Client.fenceKey)
	bell     string   // key of the release bell: channel + "-released" (see bell.go)
	ring     []string // the command that rings the bell (see ringCmd)
	waiting  string   // reply channel of a waiter's announcement: channel + "-waiting"
	announce string   // a waiter's announcement: a ping answered on waiting
	cfg      Config
	cl       *Client
	ps       pubsub // classic, or sharded on a cluster
	log      *slog.Logger

	// bellFreeAt is when an attempt last found the bell's key absent or
	// the bell's own (UnixNano; 0: never): attempts within bellRecheck of
	// it do not look again.
	bellFreeAt atomic.Int64

	mu    sync.Mutex // guards h and busy
	h     *hold      // current hold, nil when not held
	busy  bool       // an Acquire is running
	ended chan struct{}
}

// New returns a Lock on channel. The channel must be usable in a client
// name: printable ASCII without spaces, at most 1024 bytes. New checks cfg
// but does not connect.
func New(channel string, cfg Config) (*Lock, error) {
	if err := checkChannel(channel); err != nil {
		return nil, err
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cl := cfg.Client
	if cl == nil {
		if cl, err = NewClient(cfg.clientConfig()); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ended := make(chan struct{})
	close(ended)
	bell, waiting := cl.bellKey(channel), cl.sideName(channel, "waiting") // on a cluster, searched for once
	return &Lock{
		channel:  channel,
		name:     channel + "-lock",
		fence:    cl.fenceKey(channel),
		bell:     bell,
		ring:     ringCmd(bell, cfg.CheckInterval),
		waiting:  waiting,
		announce: pingMessage(waiting),
		cfg:      cfg,
		cl:       cl,
		ps:       cl.pubsub(),
		log:      log.With("channel", channel),
		ended:    ended,
	}, nil
}

// Channel returns the lock's channel.
func (l *Lock) Channel() string { return l.channel }

// ClientName returns the name of the holder's connection, channel + "-lock",
// as portalocker names it.
func (l *Lock) ClientName() string { return l.name }

// Token returns the fencing token of the current hold when Config.Fencing
// is on, and 0 otherwise or when not held.
func (l *Lock) Token() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return 0
	}
	return l.h.token
}

// Lost returns a channel that is closed when the current hold ends: lost
// (see ErrLost) or released. When the Lock does not hold the lock it
// returns a closed channel. Err says why the hold ended.
func (l *Lock) Lost() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		return l.ended
	}
	return l.h.lost
}

// Err returns nil while the lock is held, an error matching ErrLost (and
// wrapping the cause) once the hold was lost and not yet released, and
// ErrNotHeld otherwise.
func (l *Lock) Err() error {
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	if h == nil {
		return ErrNotHeld
	}
	if err := h.lostErr(); err != nil {
		return err
	}
	return nil
}

// Acquire takes the lock, waiting up to Config.Timeout (or, with
// FailWhenLocked, trying once) and returning ErrAlreadyLocked when it is
// held elsewhere all that time. The first try is immediate; later tries
// come every CheckInterval (jittered). While a holder is seen, it is pinged
// and, if silent for UnavailableTimeout, its connection is killed and the
// lock taken over. When ctx ends Acquire returns at once with ctx's error.
func (l *Lock) Acquire(ctx context.Context) error {
	return l.acquire(ctx, l.cfg.Timeout, l.cfg.FailWhenLocked)
}

// TryAcquire makes one try: nil when the lock was taken, ErrAlreadyLocked
// when it is held elsewhere (after pinging the holder, and killing it if it
// is silent for UnavailableTimeout).
func (l *Lock) TryAcquire(ctx context.Context) error {
	return l.acquire(ctx, 0, true)
}

func (l *Lock) acquire(ctx context.Context, timeout time.Duration, once bool) error {
	l.mu.Lock()
	if l.busy || l.h != nil && l.h.lostErr() == nil {
		l.mu.Unlock()
		return ErrHeld
	}
	old := l.h
	l.h, l.busy = nil, true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.busy = false
		l.mu.Unlock()
	}()
	if old != nil { // lost and never released: finish it
		_ = old.release(ctx)
	}

	var until time.Time // when Acquire gives up; zero: never
	if timeout >= 0 && !once {
		until = time.Now().Add(timeout)
		// A server that stops answering must not keep Acquire much past
		// its Timeout: a try under way then gets UnavailableTimeout more.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, until.Add(l.cfg.UnavailableTimeout), errNoAnswer)
		defer cancel()
	}
	// Client.Close ends a waiting Acquire with ErrClientClosed.
	ctx, cancelClosed := context.WithCancelCause(ctx)
	defer cancelClosed(nil)
	stopClosed := context.AfterFunc(l.cl.closing, func() { cancelClosed(ErrClientClosed) })
	defer stopClosed()
	a := &attempt{l: l}
	defer a.close()
	ping := once           // ping a holder found (a scheduled poll, or TryAcquire)
	tookOver := false      // once: the one extra try after killing a silent holder was made
	var wait time.Duration // the try first waits up to this long for the release bell
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return l.opErr("acquire", ctxCause(ctx))
		}
		h, err := a.try(ctx, ping, wait)
		if h != nil {
			l.mu.Lock()
			l.h = h
			l.mu.Unlock()
			l.log.Debug("acquired", "tries", try+1, "token", h.token)
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return l.opErr("acquire", ctxCause(ctx))
			}
			return l.opErr("acquire", err)
		}
		if a.redo {
			continue
		}
		a.waited = true
		if once {
			if (a.freed || a.raced) && !tookOver {
				// The holder was silent and killed, or gone by the time
				// it was pinged or told of this contender: try again, once.
				tookOver = true
				continue
			}
			return ErrAlreadyLocked
		}
		if a.freed { // the holder was dead or gone: try again at once
			ping, wait = false, 0
			continue
		}
		if a.raced {
			// Contenders that tried together can see each other and all
			// back off, leaving the lock free: try again after a short,
			// random pause, which breaks the tie.
			if err := sleepCtx(ctx, time.Duration(rand.Int64N(int64(raceBackoff)))); err != nil {
				return l.opErr("acquire", ctxCause(ctx))
			}
			ping, wait = false, 0
			continue
		}
		now := time.Now()
		if !until.IsZero() && !now.Before(until) {
			return ErrAlreadyLocked
		}
		wait = jitter(l.cfg.CheckInterval)
		if !until.IsZero() {
			wait = min(wait, until.Sub(now))
		}
		ping = true
	}
}

// opErr wraps an error of operation op ("acquire", "check") on the lock;
// nil stays nil.
func (l *Lock) opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("pubsublock: %s %s: %w", op, l.channel, err)
}

// errNoAnswer ends an Acquire whose server did not answer before its
// Timeout (and UnavailableTimeout more) was over.
var errNoAnswer = fmt.Errorf("no answer from the server within Timeout: %w", context.DeadlineExceeded)

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
	l   *Lock
	sub *conn // the would-be holder connection
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
	freed               bool // the last try's check killed a silent holder, or found it gone
	raced               bool // the last try found others subscribed, gone by its announcement
	redo                bool // the last try's connection failed: try again at once
	waited              bool // a try found the lock held: the new holder rings the bell

	connFailures int // tries in a row whose connection failed
}

// close gives back the attempt's connections: sub only when it is clean,
// else it is closed.
func (a *attempt) close() {
	if a.sub != nil && !a.subClean {
		a.sub.close()
	}
	a.l.cl.put(a.sub)
	a.l.cl.put(a.aux)
	a.sub, a.aux = nil, nil
}

func (a *attempt) getAux(ctx context.Context) (*conn, error) {
	if a.aux != nil && a.aux.failed() != nil {
		a.aux.close()
		a.aux = nil
	}
	if a.aux != nil && !a.l.cl.serves(a.aux, a.l.channel) { // cluster slot or primary moved
		a.l.cl.put(a.aux)
		a.aux = nil
	}
	if a.aux == nil {
		c, err := a.l.cl.get(ctx, a.l.channel)
		if err != nil {
			return nil, err
		}
		a.aux = c
	}
	return a.aux, nil
}

// try makes one attempt at the lock. It returns the new hold, or nil and
// nil when the lock is held elsewhere, or an error that ends Acquire
// (dialing, authentication, ctx).
//
// A try subscribes at once (optimistic), which takes an unheld lock in
// one round trip. With wait > 0 it is first held back by the server until
// the release bell rings or wait is over (see bell.go); where the bell is
// refused, the try sleeps for wait instead and counts the subscribers
// before it subscribes, as portalocker does. A holder found is pinged when
// ping is set, unless the bell woke the try: a holder that took the lock
// since the bell rang is alive.
func (a *attempt) try(ctx context.Context, ping bool, wait time.Duration) (*hold, error) {
	l := a.l
	raced := a.freed || a.raced // the last try found nobody left too
	a.freed, a.raced, a.redo = false, false, false
	optimistic := true
	if wait > 0 && !a.bellChecked && !a.noBell && !l.cl.noBell.Load() {
		if at := l.bellFreeAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < bellRecheck {
			a.bellChecked = true
		} else {
			free, err := a.bellFree(ctx)
			if err != nil {
				return nil, err
			}
			a.bellChecked, a.noBell = free, !free
			if free {
				l.bellFreeAt.Store(time.Now().UnixNano())
			}
		}
	}
	if wait > 0 && (l.cl.noBell.Load() || a.noBell) {
		if err := sleepCtx(ctx, wait); err != nil {
			return nil, err
		}
		optimistic, wait = false, 0
	}
	if !optimistic {
		aux, err := a.getAux(ctx)
		if err != nil {
			return nil, err
		}
		n, err := l.numsub(ctx, aux)
		if err != nil {
			var re resp.Error
			if errors.As(err, &re) || ctx.Err() != nil || a.connFailures >= maxConnFailures {
				return nil, err
			}
			// A stale connection: drop it and its idle siblings, and redo.
			a.connFailures++
			l.cl.dropIdle(aux.addr)
			a.redo = true
			return nil, nil
		}
		if n > 0 && (!ping || !a.check(ctx)) {
			return nil, ctx.Err()
		}
	}
	if a.sub != nil && (!a.subClean || a.sub.failed() != nil || !l.cl.serves(a.sub, l.channel)) {
		a.sub.close()
		a.sub = nil
	}
	if a.sub == nil {
		c, err := l.cl.get(ctx, l.channel)
		if err != nil {
			return nil, err
		}
		a.sub = c
	}
	a.subClean = false // from the write on, it may be subscribed and named
	n, token, belled, err := a.subscribe(ctx, wait)
	for r := 0; err != nil && r < maxRedirects && l.cl.redirected(err, a.sub); r++ {
		// Cluster: the channel's slot moved (MOVED); the Client has
		// learnt where to.
		l.log.Debug("redirected", "err", err)
		a.sub.close()
		if a.sub, err = l.cl.get(ctx, l.channel); err != nil {
			return nil, err
		}
		n, token, belled, err = a.subscribe(ctx, 0)
	}
	if err != nil {
		var re resp.Error
		if errors.As(err, &re) && re.Code() != "" && !strings.Contains(err.Error(), "only (P") {
			return nil, err // e.g. NOPERM: no use retrying
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
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
			return nil, err
		}
		a.redo = true
		return nil, nil
	}
	a.connFailures = 0
	if n == 1 && a.sub.failed() == nil {
		h := newHold(l, a.sub, token, a.waited)
		a.sub = nil
		return h, nil
	}
	l.log.Debug("contended", "subscribers", n)
	a.sub.onPush = func(v resp.Value) { l.notePing(a.sub, v) }
	// Unsubscribe and drop the holder's name: a connection that lost keeps
	// no name a contender (portalocker kills by name) would take for a
	// holder's. Then announce this waiter to the holder, so that its
	// release rings the bell; the count of receivers tells whether anyone
	// still holds the lock.
	receivers := int64(-1)
	err = a.sub.pipeline(ctx, [][]string{
		{l.ps.unsubscribe, l.channel},
		{"CLIENT", "SETNAME", l.cl.dc.name},
		{l.ps.publish, l.channel, l.announce},
	}, func(i int, v resp.Value) error {
		if i == 1 {
			receivers = v.Int
		}
		return nil
	})
	a.sub.onPush = nil
	pings := a.sub.pings
	a.sub.pings = nil
	if err != nil {
		a.sub.close()
		a.sub = nil
	} else {
		a.subClean = true
	}
	if len(pings) > 0 {
		// Contenders that pinged listed this connection, subscribed and
		// named; it may be again by the time they decide, so answer.
		a.answer(ctx, pings)
	}
	switch {
	case receivers == 0:
		// Whoever was counted is gone: a holder that released too early
		// to hear of this waiter and ring, or a contender that tried at
		// the same time and announced itself first, so it heard this one
		// still subscribed and waits for a bell. Try again at once; only
		// when that happens twice in a row (contenders in step) after a
		// short, random pause.
		a.raced = raced
		a.freed = !raced
	case optimistic && ping && !belled && n > 1:
		a.freed = a.check(ctx)
	}
	return nil, ctx.Err()
}

// answer answers pings on the lock's channel that a contending
// connection saw.
func (a *attempt) answer(ctx context.Context, pings []notedPing) {
	var chs []string
	for _, p := range pings {
		if p.channel == a.l.channel && p.replyCh != a.l.waiting {
			chs = append(chs, p.replyCh)
		}
	}
	if len(chs) == 0 {
		return
	}
	aux, err := a.getAux(ctx)
	if err == nil {
		err = a.l.answerPings(ctx, aux, chs)
	}
	if err != nil {
		a.l.log.Debug("cannot answer ping", "err", err)
	}
}

// check runs the contender's check on a holder that was seen. It reports
// whether the lock may be free now (the holder was gone or killed). On a
// server that cannot kill clients it does not ping: a silent holder could
// not be removed anyway.
func (a *attempt) check(ctx context.Context) (free bool) {
	l := a.l
	if l.cl.killCmds.Load() < 0 {
		return false
	}
	aux, err := a.getAux(ctx)
	if err != nil {
		return false
	}
	if l.cl.killCmds.Load() == 0 {
		// Learn whether silent holders can be killed before pinging.
		var re resp.Error
		if _, err := aux.do(ctx, "CLIENT", "LIST", "TYPE", "pubsub"); errors.As(err, &re) {
			l.log.Debug("silent holders cannot be killed here", "err", err)
			l.cl.killCmds.Store(-1)
			return false
		} else if err != nil {
			return false
		}
		l.cl.killCmds.Store(1)
	}
	st, err := l.checkOrKill(ctx, aux)
	l.logCheck(st, err)
	return err == nil && st != holderAlive
}

// notePing records, on a connection subscribed outside a hold, the reply
// channel of a ping that arrived on the lock channel. If the connection
// goes on to hold the lock, its worker answers these first: the contender
// that sent one listed this connection as a subscriber and would
// otherwise kill it for its silence.
func (l *Lock) notePing(c *conn, v resp.Value) {
	if !isKind(v, l.ps.message) || len(v.Elems) != 3 || string(v.Elems[1].Str) != l.channel {
		return
	}
	ch, ok := parsePing(v.Elems[2].Str)
	if !ok {
		return
	}
	if len(c.pings) == maxNotedPings {
		c.pings = slices.Delete(c.pings, 0, 1)
	}
	c.pings = append(c.pings, notedPing{channel: l.channel, replyCh: ch})
}

// notedPing is a ping seen by a contending connection.
type notedPing struct{ channel, replyCh string }

// maxNotedPings bounds conn.pings.
const maxNotedPings = 16

func (l *Lock) logCheck(st holderState, err error) {
	switch {
	case err != nil:
		l.log.Warn("cannot check holder", "err", err)
	case st == holderAlive:
		l.log.Debug("holder alive")
	case st == holderKilled:
		l.log.Info("killed silent holder")
	default:
		l.log.Debug("holder gone before the ping")
	}
}

// subscribe names a.sub as the holder, subscribes it to the channel, takes
// a fencing token if asked, and counts the subscribers once the
// subscription is in place. Where a subscribed connection may run commands
// (RESP3 on real Redis) this is one round trip; otherwise the count and
// the token come from the auxiliary connection after the subscription is
// confirmed. With wait > 0 the server holds it all back until the release
// bell rings (belled) or wait is over.
func (a *attempt) subscribe(ctx context.Context, wait time.Duration) (n int64, token int64, belled bool, err error) {
	l := a.l
	c := a.sub
	// The token is taken after our SUBSCRIBE and before the count, so a
	// later holder, who must subscribe after our count, gets a larger one.
	c.onPush = func(v resp.Value) { l.notePing(c, v) }
	defer func() { c.onPush = nil }()
	var cmds [][]string
	if wait > 0 {
		cmds = append(cmds, a.bellWait(wait))
	}
	first := len(cmds) // replies before SETNAME's
	cmds = append(cmds, []string{"CLIENT", "SETNAME", l.name}, []string{l.ps.subscribe, l.channel})
	inline := c.resp3 && l.cl.subCmds.Load() >= 0
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
	block := wait
	if wait > 0 {
		block += wakeSlack
	}
	err = c.pipelineBlocking(ctx, block, cmds, func(i int, v resp.Value) error {
		switch i -= first; {
		case i < 0:
			// [key, element]: the bell rang, or the wake list ended the
			// pause; null: the server's timeout did.
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
		switch re.Code() {
		case "UNBLOCKED", "LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN":
			// The server's state changed under the wait (a failover, a
			// slot moving): not a refusal.
		case "WRONGTYPE", "READONLY", "OOM":
			// A key of the user's under the bell's name, a replica, a
			// full memory: this attempt polls.
			l.log.Debug("no release bell: this attempt polls", "err", err)
			a.noBell = true
		default: // NOPERM, a server without float timeouts
			l.log.Debug("no release bell: waiters poll", "err", err)
			l.cl.noBell.Store(true)
		}
		// The commands behind the BLPOP ran at once and may have left c
		// subscribed, uncounted: the try gives c up as a failed connection
		// and tries again (%v: not an error reply that ends Acquire).
		return 0, 0, false, fmt.Errorf("waiting for the release bell: %v", err)
	}
	if inline && err != nil && strings.Contains(err.Error(), "only (P") {
		// miniredis: a subscribed connection refuses other commands even
		// in RESP3. Remember, and count from the auxiliary connection.
		l.cl.subCmds.Store(-1)
		inline, err = false, nil
	}
	if code, _ := isRedirect(err); code == "ASK" && inline && l.cfg.Fencing {
		n, token, err = l.fenceAsked(ctx, c)
	}
	if err != nil {
		return 0, 0, belled, err
	}
	if inline {
		l.cl.subCmds.Store(1)
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

// awaitPush reads frames from c until done reports true. Replies are not
// expected and are an error.
func awaitPush(ctx context.Context, c *conn, done func() bool) error {
	if done() {
		return nil
	}
	// Waiting for a push is not a round trip: only ctx bounds it.
	stop := c.watchUntil(ctx, time.Time{})
	defer stop()
	for !done() {
		v, push, err := c.readFrame()
		if err != nil {
			if ctx.Err() != nil || deadlinePassed(ctx) {
				err = ctxErr(ctx, err)
			}
			return c.fatal(err)
		}
		if !push {
			return c.fatal(fmt.Errorf("%w: unexpected reply %.64s", resp.ErrProtocol, v.String()))
		}
		if c.onPush != nil {
			c.onPush(v)
		}
	}
	return nil
}

// subscribeSync subscribes c to channel and waits for the confirmation.
func subscribeSync(ctx context.Context, c *conn, ps pubsub, channel string) error {
	// pipeline reads up to the subscribe confirmation.
	return c.pipeline(ctx, [][]string{{ps.subscribe, channel}}, nil)
}

// unsubscribe sends cmd (UNSUBSCRIBE or SUNSUBSCRIBE) for channel on a
// connection read synchronously and drains it up to the confirmation, so
// messages already queued for the channel are consumed.
func unsubscribe(ctx context.Context, c *conn, cmd, channel string) error {
	// pipeline reads up to the confirmation; pushes on the way go to onPush.
	return c.pipeline(ctx, [][]string{{cmd, channel}}, nil)
}

// numsub counts the subscribers of the lock's channel.
func (l *Lock) numsub(ctx context.Context, c *conn) (int64, error) {
	v, err := c.do(ctx, "PUBSUB", l.ps.numsub, l.channel)
	if err != nil {
		return 0, err
	}
	return numsubCount(v, l.channel)
}

// numsubCount reads the count of a PUBSUB NUMSUB (or SHARDNUMSUB) reply
// for one channel: a flat array [channel, count] in RESP2 and RESP3.
func numsubCount(v resp.Value, channel string) (int64, error) {
	if (v.Type != resp.TypeArray && v.Type != resp.TypeMap) || len(v.Elems) != 2 ||
		string(v.Elems[0].Str) != channel || v.Elems[1].Type != resp.TypeInteger {
		return 0, fmt.Errorf("%w: unexpected NUMSUB reply %.100s", resp.ErrProtocol, v.String())
	}
	return v.Elems[1].Int, nil
}

// Release gives the lock up. It writes the unsubscribe, the release bell
// for the first waiting contender and the reset of the connection's name
// in one write, ends the hold (Lost is closed), and returns the connection
// to the Client without waiting for the server's replies: the server frees
// the lock as soon as it reads them, about half a round trip later, and
// until then other clients may still find it held (a waiting Acquire is
// handed the lock by the bell). The worker goroutine reads the replies and exits; the next
// user of the connection writes behind the release, so an Acquire through
// the same Client finds the lock free. If the replies do not come within
// UnavailableTimeout the connection is closed, which frees the lock too.
// When the connection is not pooled (a Lock without Config.Client, or
// ClientConfig.MaxIdle < 0), or ctx has ended, Release waits for the worker
// and closes the connection.
//
// If the hold was lost before, the error matches ErrLost and wraps the
// cause; if the Lock does not hold the lock, ErrNotHeld. Release is safe
// to call twice and after errors.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	h := l.h
	l.h = nil
	l.mu.Unlock()
	if h == nil {
		return ErrNotHeld
	}
	err := h.release(ctx)
	if err != nil {
		l.log.Debug("released after loss", "err", err)
	} else {
		l.log.Debug("released")
	}
	return err
}

// CheckOrKill pings whoever holds the lock's channel and reports whether it
// answered within UnavailableTimeout. A silent holder's connection is
// killed (CLIENT KILL ID), freeing the lock, and alive is false. With no
// holder at all, alive is false and nothing is killed. Servers without
// CLIENT LIST or CLIENT KILL (miniredis) give an error when a holder is
// silent.
func (l *Lock) CheckOrKill(ctx context.Context) (alive bool, err error) {
	c, err := l.cl.get(ctx, l.channel)
	if err != nil {
		return false, err
	}
	defer l.cl.put(c)
	if n, err := l.numsub(ctx, c); err != nil || n == 0 {
		return false, l.opErr("check", err)
	}
	st, err := l.checkOrKill(ctx, c)
	l.logCheck(st, err)
	return st == holderAlive, l.opErr("check", err)
}

// ErrKillUnsupported is returned when a silent holder must be killed but
// the server has no CLIENT LIST or CLIENT KILL (miniredis, or an ACL user
// without them).
var ErrKillUnsupported = errors.New("pubsublock: server cannot list or kill clients")

// holderState is what a contender's check found.
type holderState int

const (
	holderGone   holderState = iota // nobody received the ping
	holderAlive                     // the holder answered
	holderKilled                    // silent holders were killed
)

// checkOrKill is the contender's liveness check, using aux for commands
// and a second connection for the reply channel.
func (l *Lock) checkOrKill(ctx context.Context, aux *conn) (holderState, error) {
	replyCh := l.cl.replyChannel(l.channel)
	r, err := l.cl.get(ctx, l.channel)
	if err != nil {
		return holderGone, err
	}
	answered := false
	r.onPush = func(v resp.Value) {
		// A subscribe confirmation is not an answer.
		if isKind(v, l.ps.message) && len(v.Elems) == 3 && string(v.Elems[1].Str) == replyCh {
			answered = true
		}
	}
	defer func() {
		// Drain every answer up to the unsubscribe confirmation.
		if r.failed() == nil && unsubscribe(context.WithoutCancel(ctx), r, l.ps.unsubscribe, replyCh) != nil {
			r.close()
		}
		l.cl.put(r)
	}()
	if err := subscribeSync(ctx, r, l.ps, replyCh); err != nil {
		return holderGone, err
	}

	// Who holds it now, and the ping, in one round trip: only clients
	// listed before the ping went out may be killed, so a holder that
	// takes the lock during the check is never killed.
	var (
		before    []clientInfo
		listErr   error
		receivers int64
		published bool
	)
	ping := pingMessage(replyCh)
	err = aux.pipeline(ctx, [][]string{{"CLIENT", "LIST", "TYPE", "pubsub"}, {l.ps.publish, l.channel, ping}},
		func(i int, v resp.Value) error {
			if v.Type == resp.TypeInteger {
				receivers, published = v.Int, true
				return nil
			}
			before, listErr = parseClientList(v.Str)
			return listErr
		})
	var re resp.Error
	if errors.As(err, &re) && published {
		listErr, err = err, nil // CLIENT LIST refused (miniredis, ACL); the ping went out
		l.cl.killCmds.Store(-1)
	}
	if err != nil {
		return holderGone, err
	}
	if listErr == nil {
		l.cl.killCmds.Store(1)
	}
	if receivers == 0 {
		return holderGone, nil
	}

	watched, gone := context.WithCancelCause(ctx)
	wait, cancel := context.WithTimeout(watched, l.cfg.UnavailableTimeout)
	stopWatch := l.watchHolder(ctx, aux, before, listErr == nil, gone)
	err = awaitPush(wait, r, func() bool { return answered })
	cancel()
	stopWatch()
	gone(nil)
	switch {
	case answered:
		return holderAlive, nil
	case ctx.Err() != nil:
		return holderGone, ctx.Err()
	case errors.Is(context.Cause(watched), errHolderLeft):
		return holderGone, nil
	case r.failed() != nil && !errors.Is(err, context.DeadlineExceeded):
		return holderGone, err
	case listErr != nil:
		return holderGone, fmt.Errorf("%w: %w", ErrKillUnsupported, listErr)
	}
	killed, err := l.killSilent(ctx, aux, before)
	if err != nil || killed == 0 {
		return holderGone, err // the silent subscribers left on their own
	}
	return holderKilled, nil
}

// errHolderLeft ends a contender's wait for the holder's answer when the
// holder it pinged is gone (crashed, or released).
var errHolderLeft = errors.New("the holder left")

// watchHolder watches, while a contender waits for the holder's answer to
// its ping, whether the holders listed before the ping (or, where clients
// cannot be listed, any subscriber) are still there, every CheckInterval
// on aux: a holder that crashed after the ping cannot answer, and waiting
// UnavailableTimeout for it would hold the lock up for nothing. When they
// are gone it calls gone(errHolderLeft). stop ends the watch and returns
// once aux is free again.
func (l *Lock) watchHolder(ctx context.Context, aux *conn, before []clientInfo, listed bool, gone context.CancelCauseFunc) (stop func()) {
	var ids []int64
	for _, b := range before {
		if b.name == l.name && b.subscribed() {
			ids = append(ids, b.id)
		}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.cfg.CheckInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			left, err := l.holdersLeft(ctx, aux, ids, listed)
			if err != nil {
				return
			}
			if left {
				gone(errHolderLeft)
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// holdersLeft reports whether none of the holder connections ids is still
// subscribed under the lock's name, or, when they cannot be listed or none
// was, whether the channel has no subscriber left.
func (l *Lock) holdersLeft(ctx context.Context, aux *conn, ids []int64, listed bool) (bool, error) {
	if !listed || len(ids) == 0 {
		n, err := l.numsub(ctx, aux)
		return n == 0, err
	}
	v, err := aux.do(ctx, "CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		return false, err
	}
	now, err := parseClientList(v.Str)
	if err != nil {
		return false, err
	}
	for _, n := range now {
		if slices.Contains(ids, n.id) && n.name == l.name && n.subscribed() {
			return false, nil
		}
	}
	return true, nil
}

// killSilent kills the holder connections in before that still hold the
// channel's client name and a subscription, and says how many.
func (l *Lock) killSilent(ctx context.Context, aux *conn, before []clientInfo) (killed int, err error) {
	v, err := aux.do(ctx, "CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		return 0, err
	}
	now, err := parseClientList(v.Str)
	if err != nil {
		return 0, err
	}
	var kill [][]string
	for _, b := range before {
		if b.name != l.name || !b.subscribed() {
			continue
		}
		for _, n := range now {
			// Still subscribed and still named: a connection that has
			// left and subscribed again since the list answers pings it
			// saw on the way (see conn.pings), so it is not killed.
			if n.id == b.id && n.name == l.name && n.subscribed() {
				kill = append(kill, []string{"CLIENT", "KILL", "ID", strconv.FormatInt(n.id, 10)})
				l.log.Info("killing silent holder", "id", n.id, "addr", n.addr)
			}
		}
	}
	if len(kill) == 0 {
		return 0, nil
	}
	return len(kill), aux.pipeline(ctx, kill, nil)
}

// clientInfo is one line of CLIENT LIST.
type clientInfo struct {
	id        int64
	addr      string
	name      string
	age       time.Duration
	sub, ssub int
}

func (ci clientInfo) subscribed() bool { return ci.sub > 0 || ci.ssub > 0 }

// parseClientList reads CLIENT LIST text: one client per line, fields
// "key=value" separated by spaces.
func parseClientList(text []byte) ([]clientInfo, error) {
	var out []clientInfo
	for line := range strings.SplitSeq(string(text), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		var ci clientInfo
		for f := range strings.SplitSeq(line, " ") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				id, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%w: CLIENT LIST id %q", resp.ErrProtocol, v)
				}
				ci.id = id
			case "addr":
				ci.addr = v
			case "name":
				ci.name = v
			case "age":
				s, _ := strconv.ParseInt(v, 10, 64)
				ci.age = time.Duration(s) * time.Second
			case "sub":
				ci.sub, _ = strconv.Atoi(v)
			case "ssub":
				ci.ssub, _ = strconv.Atoi(v)
			}
		}
		out = append(out, ci)
	}
	return out, nil
}

// Holder is a connection subscribed to a lock's channel under the lock's
// client name, as the server's CLIENT LIST shows it.
type Holder struct {
	ID   int64         // client id, as CLIENT KILL ID takes it
	Addr string        // the holder's address, host:port
	Age  time.Duration // age of the connection: an upper bound on the hold's
}

// Status is what [Lock.Status] found.
type Status struct {
	// Subscribers counts the channel's subscribers: 0 when the lock is free,
	// 1 when held, more for a moment while contenders try.
	Subscribers int64
	// Holders lists the subscribed connections named ClientName(). It is
	// nil, and ListErr says why, when the server refuses CLIENT LIST
	// (miniredis, an ACL user without it).
	Holders []Holder
	ListErr error
}

// Held reports whether someone holds the lock.
func (s Status) Held() bool { return s.Subscribers > 0 }

// Status reports whether the lock is held, and by which connections, in
// one round trip. It neither pings nor disturbs the holder.
func (l *Lock) Status(ctx context.Context) (Status, error) {
	c, err := l.cl.get(ctx, l.channel)
	if err != nil {
		return Status{}, l.opErr("status", err)
	}
	defer l.cl.put(c)
	var st Status
	var listed, counted bool
	err = c.pipeline(ctx, [][]string{{"PUBSUB", l.ps.numsub, l.channel}, {"CLIENT", "LIST", "TYPE", "pubsub"}},
		func(i int, v resp.Value) error {
			if v.Type == resp.TypeArray || v.Type == resp.TypeMap {
				st.Subscribers, err = numsubCount(v, l.channel)
				counted = err == nil
				return err
			}
			clients, err := parseClientList(v.Str)
			if err != nil {
				return err
			}
			listed = true
			for _, ci := range clients {
				if ci.name == l.name && ci.subscribed() {
					st.Holders = append(st.Holders, Holder{ID: ci.id, Addr: ci.addr, Age: ci.age})
				}
			}
			return nil
		})
	var re resp.Error
	if errors.As(err, &re) && counted && !listed {
		st.ListErr, err = err, nil
	}
	return st, l.opErr("status", err)
}
