package pubsublock

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// The release bell wakes the next waiter of a lock within one trip to the
// server. A waiting Acquire does not sleep between tries: it sends, in one
// write,
//
//	BLPOP <channel>-released <pause>
//	CLIENT SETNAME <channel>-lock
//	SUBSCRIBE <channel>
//	PUBSUB NUMSUB <channel>
//
// and the server holds the try back until the pause ends or a Go holder's
// Release pushes to the bell list ("<channel>-released", see
// Client.bellKey). Release unsubscribes before it pushes, so the woken
// try, which the server runs at once, finds the channel free and the
// lock is handed over with no trip back to the waiter in between. BLPOP
// serves the longest waiting client first, and only one per push, so
// waiters take the lock in the order they began to wait and a release
// wakes no herd.
//
// A release rings only when a contender showed itself during the hold:
// the hold's own Acquire had to wait (others may be queued behind it), or
// a ping came, or a waiter's announcement. A try that finds the lock held
// unsubscribes, and in the same round trip publishes that announcement
// (a ping whose reply channel is "<channel>-waiting", which Go holders do
// not answer); if nobody receives it, whoever was counted is gone, and the
// waiter tries again at once (after a short random pause when that happens
// twice in a row) instead of waiting for a bell that may never come. An announcement that reaches a hold after its
// release began is rung for by the worker once the release is drained. So
// an uncontended lock writes no key, and a queue leaves one bell behind
// when it empties.
//
// The bell is only a wake-up call: the lock is still held by the
// subscription alone, and a try woken by a stale bell finds the holder and
// waits again. The ring (a script: LPUSH, LTRIM, PEXPIRE) trims the list
// to one element and lets it expire after CheckInterval. Python holders
// ring no bell; their waiters, and the waiters of a holder that crashed,
// try when the pause ends. Where the server refuses the bell (an ACL, a
// key of another type) waiters poll as portalocker does.

// ringCmd returns the command of a release's bell for channel: one
// script, so that a key of another type under the bell's name is left
// alone (a PEXPIRE sent on its own would set a TTL on it).
func ringCmd(bell string, checkInterval time.Duration) []string {
	ms := strconv.FormatInt(max(checkInterval.Milliseconds(), 1), 10)
	return []string{"EVAL", ringScript, "1", bell, ms}
}

// ringScript pushes a bell, keeps the list at one, and lets it expire
// after ARGV[1] milliseconds; on a key of another type it does nothing.
const ringScript = `local r = redis.pcall('LPUSH', KEYS[1], '1')
if type(r) == 'table' and r.err then return r end
redis.call('LTRIM', KEYS[1], 0, 0)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1`

// bellWait returns the BLPOP that holds a try back for up to d (at least
// a millisecond).
func (l *Lock) bellWait(d time.Duration) []string {
	return []string{"BLPOP", l.bell, strconv.FormatFloat(max(d, time.Millisecond).Seconds(), 'f', 3, 64)}
}

// unblockAfter ends c's BLPOP from the auxiliary connection after d with
// CLIENT UNBLOCK: an idle Redis applies blocking timeouts only every 1/hz
// seconds (100 ms by default), which would stretch every pause. The
// returned stop cancels the timer, or waits for the unblock under way, and
// must be called before the auxiliary connection is used again. Where the
// server refuses CLIENT UNBLOCK the server's timeout is left to end the
// pause.
func (a *attempt) unblockAfter(ctx context.Context, c *conn, d time.Duration) (stop func()) {
	cl := a.l.cl
	if cl.noUnblock.Load() {
		return func() {}
	}
	aux, err := a.getAux(ctx)
	if err == nil && c.id == 0 { // RESP2: HELLO did not tell
		var v resp.Value
		if v, err = c.do(ctx, "CLIENT", "ID"); err == nil {
			c.id = v.Int
		}
	}
	if err != nil || c.id == 0 {
		return func() {}
	}
	id := strconv.FormatInt(c.id, 10)
	done := make(chan struct{})
	t := time.AfterFunc(d, func() {
		defer close(done)
		var re resp.Error
		if _, err := aux.do(ctx, "CLIENT", "UNBLOCK", id); errors.As(err, &re) {
			a.l.log.Debug("pauses end at the server's BLPOP timeout", "err", err)
			cl.noUnblock.Store(true)
		}
	})
	return func() {
		if !t.Stop() {
			<-done
		}
	}
}
