package pubsublock

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// The release bell wakes the next waiter of a lock within one trip to the
// server. A waiting Acquire does not sleep between tries: it sends, in one
// write,
//
//	BLPOP <channel>-released <channel>-wake-<random> <pause>
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
// when it empties. A hold that a portalocker contender pinged (it polls,
// and cannot hear the bell: see spec.hearsBell) rings no bell, and
// neither does a contender's tentative hold: the Go waiters then try at
// the end of their pauses, as the Python ones do, rather than take the
// lock ahead of them.
//
// Without the bell a Go waiter and a portalocker one would still poll on
// equal terms, and a Go loop that acquires again right after its release
// would win every time. So such a release also opens a yield window: it
// sets "<channel>-wake-yield" (a name the waiters' ACL pattern already
// covers) to yieldValue for yieldWindow, one portalocker poll and a margin.
// A Go try whose pause ends in the window backs off until it closes, and
// the Lock that released waits it out before its next try, so the
// portalocker contender, whose next poll falls in the window, finds the
// lock free. A Go Acquire that starts in the window on another Lock does
// not look, and may still take the lock first.
//
// The bell is only a wake-up call: the lock is still held by the
// subscription alone, and a try woken by a stale bell finds the holder and
// waits again. The ring (a script: LPUSH, LTRIM, PEXPIRE) trims the list
// to one element and lets it expire after CheckInterval. Python holders
// ring no bell; their waiters, and the waiters of a holder that crashed,
// try when the pause ends. Where the server refuses the bell (an ACL, a
// key of another type) waiters poll as portalocker does.

// bellValue is the element a ring pushes: a list under the bell's name
// holding exactly this one element is the bell's own.
const bellValue = "pubsublock-bell"

// yieldValue begins the value of the yield window's key, which is the
// lock's own only with it and a TTL; a random id per window follows.
const yieldValue = "pubsublock-yield:"

// yieldWindow is how long a release that a portalocker contender pinged
// keeps Go tries off the lock: portalocker's default check_interval,
// 250 ms, and a margin for its round trips.
const yieldWindow = 350 * time.Millisecond

// yielded records that a release of the Lock opened the yield window
// (see yieldCmd): the Lock's next Acquire waits it out.
func (s *spec) yielded() {
	s.yieldUntil.Store(time.Now().Add(yieldWindow).UnixNano())
}

// yieldCmd returns the command that opens a yield window, with an id of
// its own: one script, so that a key the user owns under that name is left
// alone.
func (s *spec) yieldCmd() []string {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	return []string{"EVAL", yieldScript, "1", s.yieldKey, yieldValue, yieldValue + hex.EncodeToString(b[:]),
		strconv.FormatInt(yieldWindow.Milliseconds(), 10)}
}

// yieldOurs is the Lua test that KEYS[1] is absent, or the yield window's
// own: a string that begins with ARGV[1] and expires (a server that does
// not expire keys, such as miniredis, is dealt with by the waiters: see
// attempt.yieldedTo). It leaves the value in v and the TTL in ms.
const yieldOurs = `local t = redis.call('TYPE', KEYS[1])
if type(t) == 'table' then t = t.ok end
local v, ms = '', redis.call('PTTL', KEYS[1])
if t == 'string' then v = redis.call('GET', KEYS[1]) end
local ours = t == 'none' or (t == 'string' and string.sub(v, 1, #ARGV[1]) == ARGV[1] and ms > 0)
`

// yieldScript opens the window: the value ARGV[2], for ARGV[3]
// milliseconds.
const yieldScript = yieldOurs + `if not ours then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`

// yieldCheckScript returns the milliseconds left of an open yield window
// and its value, else {0, ”}.
const yieldCheckScript = yieldOurs + `if not ours or t == 'none' then return {0, ''} end
return {ms, v}`

// ringCmd returns the command of a release's bell for channel: one
// script, so that a key the user owns under the bell's name (another
// type, or a list that is not the bell) is left alone.
func ringCmd(bell string, checkInterval time.Duration) []string {
	ms := strconv.FormatInt(max(checkInterval.Milliseconds(), 1), 10)
	return []string{"EVAL", ringScript, "1", bell, bellValue, ms}
}

// bellOurs is the Lua test that KEYS[1] is absent or the bell's own: a
// list holding only ARGV[1]. TYPE answers a status reply, a table in Lua.
const bellOurs = `local t = redis.call('TYPE', KEYS[1])
if type(t) == 'table' then t = t.ok end
local ours = t == 'none' or (t == 'list' and redis.call('LLEN', KEYS[1]) == 1 and redis.call('LINDEX', KEYS[1], 0) == ARGV[1])
`

// ringScript pushes a bell where the key is absent or the bell's own,
// keeps the list at one element, and lets it expire after ARGV[2]
// milliseconds. It returns 1 when it rang, 0 when it left the key alone.
const ringScript = bellOurs + `if not ours then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`

// wakeGrace is how long after its timeout a BLPOP is woken by the
// attempt's own push. A server that ends blocking commands on time
// (miniredis, a busy Redis) does it first, and no push is sent; an idle
// Redis applies blocking timeouts only every 1/hz seconds (100 ms by
// default), and the push ends the wait instead.
const wakeGrace = 5 * time.Millisecond

// wakeKey returns the attempt's wake list: a name of its own beside the
// lock's, in the channel's hash slot on a cluster (BLPOP takes keys of
// one slot).
func (a *attempt) wakeKey() string {
	if a.wake == "" {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], rand.Uint64())
		a.wake = a.s.cl.sideName(a.s.channel, "wake-"+hex.EncodeToString(b[:]))
	}
	return a.wake
}

// wakeAfter ends c's wait on the bell after d (plus wakeGrace) by pushing to the
// attempt's wake list from the auxiliary connection. A push is a write:
// a server in CLIENT PAUSE WRITE (a failover, an operator) holds it back
// with the BLPOP, and runs both when the pause ends. (CLIENT UNBLOCK, the
// obvious means, crashes Redis 7.0, 8.0 and Valkey 8.1 when it names a
// BLPOP that a write pause holds back: valkey-io/valkey#2111.)
//
// The returned stop cancels the timer, or waits for the push under way;
// it may be called more than once, and must be called before the auxiliary connection is used again. Where
// the server refuses the push (an ACL without the wake key) the server's
// timeout ends the pause.
func (a *attempt) wakeAfter(ctx context.Context, d time.Duration) (stop func()) {
	cl := a.s.cl
	if cl.caps.wake.no() {
		return func() {}
	}
	aux, err := a.getAux(ctx)
	if err != nil {
		return func() {}
	}
	// Two plain commands, no script: the key's random name is the wake's
	// own, and a push the waiter did not take expires.
	cmds := [][]string{{"LPUSH", a.wakeKey(), "1"}, {"PEXPIRE", a.wakeKey(), strconv.FormatInt((d + wakeTTL).Milliseconds(), 10)}}
	done := make(chan struct{})
	t := time.AfterFunc(d+wakeGrace, func() {
		defer close(done)
		var re resp.Error
		if err := aux.pipeline(ctx, cmds, nil); errors.As(err, &re) && re.Code() == "NOPERM" {
			a.s.log.Debug("pauses end at the server's BLPOP timeout", "err", err)
			cl.caps.wake.set(false)
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			if !t.Stop() {
				<-done
			}
		})
	}
}

// wakeTTL bounds how long a wake push that its waiter did not take (the
// bell came first) stays in the keyspace.
const wakeTTL = time.Second
