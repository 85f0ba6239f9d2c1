package pubsublock

import (
	"errors"
	"fmt"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// send queues a command for a connection whose frames are read by another
// goroutine (see deliver). If ch is not nil it receives the reply; it must
// have room for one value. Commands of the SUBSCRIBE family take no ch.
func (c *conn) send(ch chan<- reply, args ...string) error {
	return c.sendBatch([][]string{args}, []chan<- reply{ch})
}

// sendBatch is send for several commands in one write; chans[i] receives
// the reply to cmds[i].
func (c *conn) sendBatch(cmds [][]string, chans []chan<- reply) error {
	return c.sendQueued(cmds, chans, nil, nil, false)
}

// errReleased is returned by send once sendFinal has handed the
// connection on.
var errReleased = errors.New("connection released")

// sendFinal is sendBatch for the last commands of the reader goroutine:
// with drain not nil, the connection may be given to a synchronous user as
// soon as it returns, and that user reads only once drain is closed, which
// the reader does after the last reply it awaits. Later sends fail with
// errReleased until then. inline, if not nil, runs the reader in the
// user's goroutine, if it has not started, and reports whether it did (see
// hold.drainInline).
func (c *conn) sendFinal(cmds [][]string, chans []chan<- reply, drain <-chan struct{}, inline func() bool) error {
	return c.sendQueued(cmds, chans, drain, inline, true)
}

// sendQueued is sendBatch and sendFinal.
func (c *conn) sendQueued(cmds [][]string, chans []chan<- reply, drain <-chan struct{}, inline func() bool, final bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.failed(); err != nil {
		return err
	}
	if c.drain != nil || c.final {
		return errReleased
	}
	c.drain, c.drainInline, c.final = drain, inline, final
	c.wbuf = c.wbuf[:0]
	for i, args := range cmds {
		c.wbuf = resp.AppendCommand(c.wbuf, args...)
		if isSubscribeCmd(args[0]) {
			c.subMode = true
		} else {
			c.pending = append(c.pending, chans[i])
		}
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.nc.Write(c.wbuf)
	if err != nil {
		return c.fatal(fmt.Errorf("write: %w", err))
	}
	return nil
}

// endUnsolicited is called by the reader goroutine when the server ends
// the subscription: it reports true when sendFinal has written (the
// unsubscribe is the release's own), and otherwise makes err the
// connection's fatal error before sendFinal can write, and returns false.
func (c *conn) endUnsolicited(err error) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.final {
		return true
	}
	c.fatal(err)
	return false
}

// beginHold readies the connection for a new hold's reader goroutine.
func (c *conn) beginHold() {
	c.wmu.Lock()
	c.final = false
	c.wmu.Unlock()
}

// draining reports whether the connection still carries a released
// hold's replies, which its next user must wait for (or read itself).
func (c *conn) draining() bool {
	c.wmu.Lock()
	drain := c.drain
	c.wmu.Unlock()
	if drain == nil {
		return false
	}
	select {
	case <-drain: // read already; the next user clears drain
		return false
	default:
		return true
	}
}

// writeTimeout bounds a write to a connection read by another goroutine, so
// a server that stops reading cannot block the sender forever.
const writeTimeout = 5 * time.Second

// deliver hands a reply read by the reader goroutine to the oldest waiting
// sender. A reply nobody asked for means the stream is out of sync.
func (c *conn) deliver(v resp.Value) error {
	c.wmu.Lock()
	if len(c.pending) == 0 {
		c.wmu.Unlock()
		return c.fatal(fmt.Errorf("%w: unexpected reply %.64s", resp.ErrProtocol, v.String()))
	}
	ch := c.pending[0]
	c.pending = c.pending[1:]
	c.wmu.Unlock()
	if ch != nil {
		ch <- reply{err: v.Err(), val: v.Clone()}
	}
	return nil
}

// idleReplies reports whether no reply is awaited.
func (c *conn) idleReplies() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return len(c.pending) == 0
}
