package pubsublock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Code map, in layer order; each layer calls only the ones below it.
//
//	lock.go      the Lock: its state, New, the Acquire loop, Release, Lost, Err
//	attempt.go   one contender's try (subscribe, count, the bell wait, the
//	             look at who holds it); its outcome; an elected writer's wait
//	elect.go     what a contender makes of the answers to its ping: readers
//	             join readers, writers elect the one that waits
//	worker.go    the hold: the worker goroutine that reads the subscribed
//	             connection, answers pings and ends the hold; the release
//	health.go    the hold's periodic PING (timers, no goroutine of its own)
//	check.go     who holds it: the ping-and-kill check, CLIENT LIST, Status
//	bell.go      the release bell: the ring, the waiter's check and wake push
//	protocol.go  the spec New derives; the wire contract shared with portalocker
//	errors.go    every exported error
//	config.go    Config, ClientConfig; url.go: URL parsing
//	client.go    Client: the pool, routing, what the servers were found to do
//	cluster.go   cluster topology; sentinel.go: following the primary; crc16.go
//	conn.go      one connection: dial, handshake, synchronous round trips, pushes
//	send.go      a connection read by a hold's worker: sends, replies, the drain
//	peer_*.go    seeing, without reading, that the server closed a connection
//	resp/        the RESP2/RESP3 codec
//
// Goroutines: a hold's worker (started by newHold, or for a quiet hold
// after lazyStart or by whoever needs it first, which may run it inline;
// ended by the end of the subscription, which Release or a loss causes;
// Release and Acquire wait for it when they must), the health check's and
// a waiter's wake timers (stopped before their connection is reused), a
// contender's holder watch during a check (stopped before the check
// returns), and a sentinel Client's watcher (stopped by Client.Close).
//
// Glossary:
//
//	try           one SUBSCRIBE-and-count at the lock (attempt.try)
//	hold          one acquisition, from the try that took it to its end; a
//	              tentative hold is a contender's subscription that answers
//	              pings while it asks who holds the lock, or waits pending
//	bell          the list "<channel>-released" a release pushes to, that
//	              waiting tries are held back on (BLPOP)
//	wake          a waiter's own list, pushed to when its pause is over
//	announcement  a waiter's ping that no Go holder answers: it tells the
//	              holder that someone waits, so its release rings
//	aux           an attempt's second connection, for commands while its
//	              first is subscribed or blocked

// Lock is a lock on one pub/sub channel. Create it with [New]; it may be
// acquired and released any number of times. All methods are safe for
// concurrent use; see the package documentation.
type Lock struct {
	// spec is what New derived from the channel and Config; it never
	// changes, but for the record of the yield window (spec.yieldUntil).
	*spec

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
		if cl, err = defaultClient(cfg); err != nil {
			return nil, err
		}
	}
	ended := make(chan struct{})
	close(ended)
	return &Lock{spec: newSpec(channel, cfg, cl), ended: ended}, nil
}

// Channel returns the lock's channel.
func (l *Lock) Channel() string { return l.channel }

// ClientName returns the name of the holder's connection: channel +
// "-lock" as portalocker 2.x and 3.x name it, or with Config.Protocol 1,
// channel + "-lock-" + HolderID() as portalocker 4 does.
func (l *Lock) ClientName() string { return l.name }

// HolderID returns the Lock's protocol-1 holder id, a random uuid4 in hex
// fixed by New, which its answers to pings carry; "" with Config.Protocol
// 0.
func (l *Lock) HolderID() string { return l.id }

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

// Context returns a context derived from parent that ends when the current
// hold ends, lost or released, or when parent ends; its cause
// (context.Cause) is then the loss, matching ErrLost, or ErrNotHeld after
// a Release. Call it after Acquire, and the cancel func when done. When
// the Lock holds no lock the context is already canceled. With it, the
// work a lock protects stops as soon as the lock is lost:
//
//	if err := l.Acquire(ctx); err != nil {
//		return err
//	}
//	defer l.Release(context.Background())
//	work, cancel := l.Context(ctx)
//	defer cancel()
//	return backup(work) // context.Cause(work) says why it ended
func (l *Lock) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	if h == nil {
		cancel(ErrNotHeld)
		return ctx, func() {}
	}
	go func() { // ends with the hold or with ctx
		select {
		case <-h.lost:
			if err := h.lostErr(); err != nil {
				cancel(err)
			} else {
				cancel(ErrNotHeld) // released
			}
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// Check confirms, through the hold's own connection, that the lock is
// still held: the health check's probe, answered within
// UnavailableTimeout. It returns nil while held, an error matching ErrLost
// once the hold is lost (a probe that fails or goes unanswered ends it),
// and ErrNotHeld when nothing is held. Err tells what the hold's worker
// has seen; Check asks the server, which is what a process resumed after
// a stop (SIGSTOP, a suspended VM) must do before it goes on, as its
// worker may not have read the news of a loss yet. When ctx ends first,
// Check returns its error and the hold goes on.
func (l *Lock) Check(ctx context.Context) error {
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	if h == nil {
		return ErrNotHeld
	}
	return h.verify(ctx, l.cfg.UnavailableTimeout)
}

// Err returns nil while the lock is held, an error matching ErrLost (and
// wrapping the cause) once the hold was lost and not yet released, and
// ErrNotHeld otherwise. It does not wait: it tells what the hold's worker
// has read, and (on Linux) whether the server has closed the connection
// though the worker has not read that yet, as after a stop of the
// process (SIGSTOP, a suspended VM). Check asks the server.
func (l *Lock) Err() error {
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	if h == nil {
		return ErrNotHeld
	}
	return h.check()
}

// Acquire takes the lock, waiting up to Config.Timeout (or, with
// FailWhenLocked, trying once) and returning ErrAlreadyLocked when it is
// held elsewhere all that time. The first try is immediate; later tries
// come every CheckInterval (jittered). While a holder is seen, it is pinged
// and, if silent for UnavailableTimeout, its connection is killed and the
// lock taken over (a frozen holder thus costs up to UnavailableTimeout
// more than Timeout). When ctx ends Acquire returns at once with an error
// matching ctx's error and its cause. The errors it returns are listed in
// the package documentation, under Errors.
func (l *Lock) Acquire(ctx context.Context) error {
	return l.acquire(ctx, l.cfg.Timeout, l.cfg.FailWhenLocked)
}

// TryAcquire makes one try: nil when the lock was taken, ErrAlreadyLocked
// when it is held elsewhere (after pinging the holder, and killing it if it
// is silent for UnavailableTimeout: so a try that finds a frozen holder
// takes about that long). Other errors are as Acquire's.
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
	// Client.Close ends a waiting Acquire with ErrClientClosed. The first
	// try does not wait, so only an Acquire that goes on to wait pays for
	// the watch.
	watchingClose := false
	a := &attempt{s: l.spec, bellFreeAt: &l.bellFreeAt, once: once, until: until}
	defer a.close()
	ping := once           // ping a holder found (a scheduled poll, or TryAcquire)
	tookOver := false      // once: the one extra try after killing a silent holder was made
	var wait time.Duration // the try first waits up to this long for the release bell
	if at := l.yieldUntil.Load(); at != 0 && !once {
		// This Lock's release left the lock to a portalocker poller for
		// a while: wait that out (a release bell ends the wait early).
		// Unless Acquire would give up first.
		if d := time.Until(time.Unix(0, at)); d > 0 && (until.IsZero() || d < time.Until(until)) {
			wait = d
		}
	}
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return l.opErr("acquire", ctxCause(ctx))
		}
		if try > 0 && !watchingClose {
			watchingClose = true
			var cancelClosed context.CancelCauseFunc
			ctx, cancelClosed = context.WithCancelCause(ctx)
			defer cancelClosed(nil)
			stopClosed := context.AfterFunc(l.cl.closing, func() { cancelClosed(ErrClientClosed) })
			defer stopClosed()
		}
		if try > 0 && l.cl.closing.Err() != nil {
			return l.opErr("acquire", ErrClientClosed)
		}
		out, h, err := a.try(ctx, ping, wait)
		if err != nil {
			if ctx.Err() != nil {
				return l.opErr("acquire", ctxCause(ctx))
			}
			return l.opErr("acquire", err)
		}
		switch out {
		case taken:
			l.mu.Lock()
			l.h = h
			l.mu.Unlock()
			l.log.Debug("acquired", "tries", try+1, "token", h.token)
			return nil
		case again:
			continue
		}
		a.waited = true
		if once {
			if (out == freed || out == raced) && !tookOver {
				// The holder was silent and killed, or gone by the time
				// it was pinged or told of this contender: try again, once.
				tookOver = true
				continue
			}
			return l.alreadyLocked()
		}
		switch out {
		case freed: // the holder was dead or gone: try again at once
			ping, wait = false, 0
			continue
		case raced:
			if err := sleepCtx(ctx, time.Duration(rand.Int64N(int64(raceBackoff)))); err != nil {
				return l.opErr("acquire", ctxCause(ctx))
			}
			ping, wait = false, 0
			continue
		}
		now := time.Now()
		if !until.IsZero() && !now.Before(until) {
			return l.alreadyLocked()
		}
		wait = jitter(l.cfg.CheckInterval)
		if a.yieldFor > 0 {
			wait, a.yieldFor = a.yieldFor+time.Millisecond, 0
		}
		if !until.IsZero() {
			wait = min(wait, until.Sub(now))
		}
		ping = true
	}
}

// opErr wraps an error of operation op ("acquire", "check") on the lock;
// nil stays nil.
func (s *spec) opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("pubsublock: %s %s: %w", op, s.channel, err)
}

// alreadyLocked is ErrAlreadyLocked, naming the channel.
func (l *Lock) alreadyLocked() error {
	return fmt.Errorf("%w: %s", ErrAlreadyLocked, l.channel)
}

// errNoAnswer ends an Acquire whose server did not answer before its
// Timeout (and UnavailableTimeout more) was over.
var errNoAnswer = fmt.Errorf("no answer from the server within Timeout: %w", context.DeadlineExceeded)

// Release gives the lock up. It writes the unsubscribe, the release bell
// for the first waiting contender and the reset of the connection's name
// in one write, ends the hold (Lost is closed), and returns the connection
// to the Client without waiting for the server's replies: the server frees
// the lock as soon as it reads them, about half a round trip later, and
// until then other clients may still find it held (a waiting Acquire is
// handed the lock by the bell). The worker goroutine reads the replies and
// exits (for a quiet hold released before its worker started, 1ms after
// Acquire, whoever comes first reads them: the connection's next user, in
// its own goroutine, or the 1ms timer); the next user of the connection
// writes behind the release, so an Acquire through the same
// Client finds the lock free. If the replies do not come within
// UnavailableTimeout the connection is closed, which frees the lock too.
// When the connection is not pooled (ClientConfig.MaxIdle < 0, or a Lock
// without Config.Client in sentinel mode), or ctx has ended, Release waits
// for the worker and closes the connection.
//
// If the hold was lost before, the error matches ErrLost and wraps the
// cause. That includes a loss the worker has not read yet, as after a stop
// of the process (on Linux, where the socket tells: see Err), and a
// connection that failed before the release could be written. If the Lock
// does not hold the lock, ErrNotHeld (see Errors in the package
// documentation). Release is safe to call twice and after errors.
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
