package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// listener follows the release notices of a lock's channel ("<channel>-
// released", published by a Go holder's Release) for a waiting Acquire. It
// has no goroutine: between tries the waiting Acquire reads the subscribed
// connection itself, until a notice comes, its pause ends or its context
// does, so a notice wakes it with no hand-over between goroutines. The
// subscription lasts from the first wait to the end of Acquire, so a
// release during a try is not missed.
type listener struct {
	l       *Lock
	ch      string
	c       *conn // nil when not listening: wait only sleeps
	refused bool  // the server refused the subscription (ACL): never retry
}

// woke says why a wait ended.
type woke int

const (
	wokeAtPause    woke = iota // the pause ended: poll
	wokeByNotice               // a holder released
	wokeAtDeadline             // Acquire's Timeout ended
	wokeByContext              // Acquire's context ended
)

// listen subscribes a connection to the lock's release notices. When that
// fails the waiter still polls; notices only make it faster.
func (l *Lock) listen(ctx context.Context) *listener {
	ls := &listener{l: l, ch: l.cl.noticeChannel(l.channel)}
	c, err := l.cl.get(ctx, l.channel)
	if err == nil {
		err = subscribeSync(ctx, c, l.ps, ls.ch)
	}
	if err != nil {
		l.log.Debug("cannot listen for release notices", "err", err)
		var re resp.Error
		ls.refused = errors.As(err, &re)
		if c != nil {
			c.close()
		}
		return ls
	}
	ls.c = c
	return ls
}

// lapsed reports whether the listener lost its connection and should be
// started again.
func (ls *listener) lapsed() bool { return ls.c == nil && !ls.refused }

// subscribeSync subscribes c to channel and waits for the confirmation.
func subscribeSync(ctx context.Context, c *conn, ps pubsub, channel string) error {
	// pipeline reads up to the subscribe confirmation.
	return c.pipeline(ctx, [][]string{{ps.subscribe, channel}}, nil)
}

// wait blocks until a release notice comes, pause ends, until (when not
// zero) passes, or ctx ends. Notices that came since the last wait end it
// at once.
func (ls *listener) wait(ctx context.Context, pause time.Duration, until time.Time) woke {
	end, last := time.Now().Add(pause), wokeAtPause
	if !until.IsZero() && !end.Before(until) {
		end, last = until, wokeAtDeadline
	}
	if ls.c != nil {
		w, err := ls.read(ctx, end, last)
		if err == nil {
			return w
		}
		if ctx.Err() == nil {
			ls.l.log.Debug("release notices lost", "err", err)
		}
		ls.c.fatal(err)
		ls.c = nil
	}
	if ctx.Err() != nil {
		return wokeByContext
	}
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	select {
	case <-t.C:
		return last
	case <-ctx.Done():
		return wokeByContext
	}
}

// read reads the listener's connection until a notice or end. An error
// means the connection is unusable (it failed, or ctx ended while it was
// read).
func (ls *listener) read(ctx context.Context, end time.Time, last woke) (w woke, err error) {
	c := ls.c
	// Frames that came while the Acquire was trying.
	noticed := false
	for c.rd.Buffered() > 0 {
		n, err := ls.frame()
		if err != nil {
			return 0, err
		}
		noticed = noticed || n
	}
	if noticed {
		return wokeByNotice, nil
	}
	// end bounds the wait, and any frame under way then: a server that
	// stops in the middle of one loses the listener. ctx ends it at once.
	stop := c.watchUntil(ctx, end)
	defer func() {
		if stop() && err == nil { // the socket's deadline is in the past
			err = context.Cause(ctx)
		}
	}()
	for !noticed {
		if _, err := c.br.Peek(1); err != nil {
			if ctx.Err() == nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(end) {
				return last, nil // nothing was read: the connection is intact
			}
			return 0, err
		}
		// A frame is coming: read it, and any that came with it, whole.
		for first := true; first || c.rd.Buffered() > 0; first = false {
			n, err := ls.frame()
			if err != nil {
				return 0, err
			}
			noticed = noticed || n
		}
	}
	return wokeByNotice, nil
}

// frame reads one frame and reports whether it is a release notice.
func (ls *listener) frame() (notice bool, err error) {
	v, push, err := ls.c.readFrame()
	if err != nil {
		return false, err
	}
	if !push {
		return false, fmt.Errorf("%w: unexpected reply %.64s", resp.ErrProtocol, v.String())
	}
	if len(v.Elems) != 3 || string(v.Elems[1].Str) != ls.ch {
		return false, nil
	}
	switch pushKind(v) {
	case ls.l.ps.message:
		return true, nil
	case ls.l.ps.unsubscribed: // a cluster slot moved
		return false, errUnsubscribed
	}
	return false, nil
}

// stop ends the subscription without waiting: the unsubscribe is written
// and the connection goes back to the Client, whose next user reads up to
// the confirmation first (see conn.unsubscribeLater).
func (ls *listener) stop(ctx context.Context) {
	c := ls.c
	ls.c = nil
	if c == nil {
		return
	}
	if ctx.Err() != nil || c.unsubscribeLater(ls.l.ps.unsubscribe, ls.ch) != nil {
		c.close() // its deadline may be in the past
		return
	}
	ls.l.cl.put(c)
}
