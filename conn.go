package pubsublock

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// dialConfig says where and how to connect. It is resolved from Config or
// a URL by the connection source.
type dialConfig struct {
	network     string // "tcp" or "unix"
	addr        string
	username    string
	password    string
	db          int
	tls         *tls.Config // nil: plain
	dialTimeout time.Duration
	name        string // client name set at the handshake; "" for none
	resp2       bool   // skip HELLO 3 and speak RESP2
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	limits      resp.Limits
}

// errConnClosed is the sticky error of a connection closed on purpose.
var errConnClosed = errors.New("connection closed")

// conn is one connection to a Redis server.
//
// It is used in two ways. Synchronously, by one goroutine at a time, with
// do and pipeline: commands are written and their replies read inline,
// push frames going to onPush. Asynchronously, once a lock is held: the
// hold's worker is the only reader (readFrame, then deliver for each
// reply), and any goroutine may call send to queue a command whose reply
// the worker delivers, once hold.start has started the worker.
//
// Any error in the middle of a frame, a protocol violation, or a context
// that ends during a round trip is fatal: the connection is closed and
// every later call returns that error (redigo's conn.fatal).
type conn struct {
	nc    net.Conn
	rd    *resp.Reader
	resp3 bool  // HELLO 3 accepted
	id    int64 // the server's client ID (from HELLO or CLIENT ID); 0: unknown
	// server is the server's software and version from HELLO ("redis
	// 7.0.15"); "" without HELLO.
	server string
	addr   string // the server's address, where the Client pools it
	// idleSince is when the connection went back to the Client's pool.
	idleSince time.Time
	raw       syscall.RawConn // the socket, for peerClosed; nil if not one
	// pollable says that a poll of raw sees every byte not yet read
	// (see peerState): a socket read directly, not through TLS, which
	// may have buffered records, on a system where pollPeer tells.
	pollable bool
	// replyTimeout bounds each synchronous round trip (see pipelineBlocking): the
	// Client's DialTimeout. 0: no bound but the context's.
	replyTimeout time.Duration

	wmu     sync.Mutex // guards wbuf, pending, subMode and writes to nc
	wbuf    []byte
	pending []chan<- reply // async replies awaited, in write order
	subMode bool           // a SUBSCRIBE was sent: RESP2 arrays may be pushes
	// drain, when not nil, is closed once the reader goroutine of a
	// released hold has read the last reply it awaits (see sendFinal); the
	// next synchronous user writes at once but reads only after that.
	drain <-chan struct{}
	// drainInline, when not nil with drain, reads the released hold's
	// replies in the caller's goroutine if its reader has not started,
	// and reports whether it did.
	drainInline func() bool
	final       bool // sendFinal wrote: no command may follow from the reader's side

	emu sync.Mutex // guards err
	err error      // sticky fatal error

	onPush func(resp.Value) // pushes seen by do and pipeline; nil drops them
}

// reply is the outcome of an asynchronous command.
type reply struct {
	err error // transport error or the server's error reply
	val resp.Value
}

func dialConn(ctx context.Context, dc dialConfig) (*conn, error) {
	if dc.dialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dc.dialTimeout)
		defer cancel()
	}
	dial := dc.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, dc.network, dc.addr)
	if err != nil {
		err = fmt.Errorf("dial %s: %w", dc.addr, err)
		if ctx.Err() != nil || deadlinePassed(ctx) {
			// The caller's deadline or DialTimeout passed during the
			// dial: say so in a way errors.Is recognises.
			return nil, fmt.Errorf("%w (%v)", ctxCause(ctx), err)
		}
		return nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		_ = tc.SetKeepAlive(true)
	}
	var raw syscall.RawConn // the socket itself, under TLS too
	if sc, ok := nc.(syscall.Conn); ok {
		// Once: each call allocates, and peerClosed runs on every try.
		raw, _ = sc.SyscallConn()
	}
	if dc.tls != nil {
		cfg := dc.tls.Clone()
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(dc.addr); err == nil {
				cfg.ServerName = host
			}
		}
		t := tls.Client(nc, cfg)
		if err := t.HandshakeContext(ctx); err != nil {
			nc.Close()
			err = fmt.Errorf("TLS handshake with %s: %w", dc.addr, err)
			if ctx.Err() != nil || deadlinePassed(ctx) {
				return nil, fmt.Errorf("%w (%v; does the server speak TLS?)", ctxCause(ctx), err)
			}
			return nil, err
		}
		nc = t
	}
	c := newConn(nc, dc.limits)
	c.raw = raw
	c.pollable = raw != nil && dc.tls == nil && canPollPeer
	c.replyTimeout = dc.dialTimeout
	if err := c.handshake(ctx, dc); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// readBufSize is a connection's read buffer. A lock's replies and pushes
// are a few hundred bytes at most; a longer line is gathered by the
// resp.Reader and a long bulk string read past the buffer, so a small
// buffer costs a large reply only more reads, and a held lock less memory.
const readBufSize = 1024

func newConn(nc net.Conn, lim resp.Limits) *conn {
	return &conn{nc: nc, rd: resp.NewReader(bufio.NewReaderSize(nc, readBufSize), lim), wbuf: make([]byte, 0, 256)}
}

// handshake runs HELLO 3 (with AUTH and SETNAME folded in), or, where the
// server refuses it (Redis 5, -NOPROTO), falls back to RESP2 with AUTH and
// CLIENT SETNAME; then SELECT. The fallback commands go in one round trip.
func (c *conn) handshake(ctx context.Context, dc dialConfig) error {
	if !dc.resp2 {
		hello := []string{"HELLO", "3"}
		if dc.password != "" {
			user := dc.username
			if user == "" {
				user = "default"
			}
			hello = append(hello, "AUTH", user, dc.password)
		}
		if dc.name != "" {
			hello = append(hello, "SETNAME", dc.name)
		}
		v, err := c.do(ctx, hello...)
		var re resp.Error
		switch {
		case err == nil:
			c.resp3 = true
			c.id, c.server = helloInfo(v)
		case errors.As(err, &re) && (re.Code() == "NOPROTO" || re.Code() == "ERR"):
			// Not a RESP3 server: fall back to RESP2 below. An auth failure
			// comes as WRONGPASS or NOAUTH and is returned.
		default:
			return handshakeErr(err)
		}
	}
	var cmds [][]string
	if !c.resp3 && dc.password != "" {
		if dc.username != "" {
			cmds = append(cmds, []string{"AUTH", dc.username, dc.password})
		} else {
			cmds = append(cmds, []string{"AUTH", dc.password})
		}
	}
	if !c.resp3 && dc.name != "" {
		cmds = append(cmds, []string{"CLIENT", "SETNAME", dc.name})
	}
	if dc.db != 0 {
		cmds = append(cmds, []string{"SELECT", strconv.Itoa(dc.db)})
	}
	if len(cmds) == 0 {
		return nil
	}
	return handshakeErr(c.pipeline(ctx, cmds, nil))
}

// helloInfo returns what a HELLO reply (a map) says of the connection:
// its client ID, or 0; and the server's software and version joined by a
// space ("redis 7.0.15"), or "".
func helloInfo(v resp.Value) (id int64, server string) {
	var name, version string
	for i := 0; i+1 < len(v.Elems); i += 2 {
		switch val := v.Elems[i+1]; string(v.Elems[i].Str) {
		case "id":
			if val.Type == resp.TypeInteger {
				id = val.Int
			}
		case "server":
			name = string(val.Str)
		case "version":
			version = string(val.Str)
		}
	}
	return id, strings.TrimSpace(name + " " + version)
}

func handshakeErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("handshake: %w", err)
}

// fatal records err as the connection's sticky error and closes it. The
// first error wins.
func (c *conn) fatal(err error) error {
	c.emu.Lock()
	if c.err == nil {
		c.err = err
		c.nc.Close()
	}
	err = c.err
	c.emu.Unlock()
	return err
}

// failed returns the sticky error, or nil while the connection is usable.
func (c *conn) failed() error {
	c.emu.Lock()
	defer c.emu.Unlock()
	return c.err
}

// close closes the connection; later calls fail with errConnClosed.
func (c *conn) close() {
	c.fatal(errConnClosed)
	c.wmu.Lock()
	pend := c.pending
	c.pending = nil
	c.wmu.Unlock()
	for _, ch := range pend {
		if ch != nil {
			ch <- reply{err: c.failed()}
		}
	}
}

// watchUntil applies ctx to the connection for the duration of one round
// trip: its deadline becomes the connection's, and cancellation makes
// blocked I/O return at once. The round trip is also bounded by limit
// (zero: no bound but ctx's): a server that stops answering must not hang a
// caller whose context has no deadline. The returned stop must be called
// when the round trip ends; it reports whether ctx ended during it.
func (c *conn) watchUntil(ctx context.Context, limit time.Time) (stop func() bool) {
	// No deadline left by an earlier user (a send's write deadline, a
	// listener's) may apply.
	dl, _ := ctx.Deadline()
	if !limit.IsZero() && (dl.IsZero() || limit.Before(dl)) {
		dl = limit
	}
	_ = c.nc.SetDeadline(dl)
	if ctx.Done() == nil {
		return func() bool { _ = c.nc.SetDeadline(time.Time{}); return false }
	}
	unblock := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(time.Unix(1, 0)) })
	return func() bool {
		if !unblock() {
			return true
		}
		_ = c.nc.SetDeadline(time.Time{})
		return false
	}
}

func deadlinePassed(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// ctxErr is the error of a round trip cut short by its context.
func ctxErr(ctx context.Context, err error) error {
	return fmt.Errorf("%w (connection closed: %v)", ctxCause(ctx), err)
}

// ctxCause is the error of an ended ctx: it matches ctx.Err()
// (context.Canceled or context.DeadlineExceeded) and the cause given to
// context.WithCancelCause or WithDeadlineCause, if any. A deadline that
// passed before ctx noticed it counts as DeadlineExceeded. A Client
// closed under an Acquire gives ErrClientClosed alone.
func ctxCause(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	switch {
	case err == nil:
		return context.DeadlineExceeded
	case cause == nil || cause == err || errors.Is(cause, err) || errors.Is(cause, ErrClientClosed):
		return cause
	}
	return fmt.Errorf("%w: %w", err, cause)
}

// do runs one command synchronously and returns its reply. An error reply
// is returned as a resp.Error with the zero Value. The Value is valid until
// the next use of the connection.
//
// If ctx ends during the round trip the connection is closed: the reply
// could still arrive and would be taken for the next command's.
func (c *conn) do(ctx context.Context, args ...string) (resp.Value, error) {
	var out resp.Value
	err := c.pipeline(ctx, [][]string{args}, func(_ int, v resp.Value) error {
		out = v
		return nil
	})
	return out, err
}

// pipeline writes cmds in one write and reads their replies in order,
// calling fn (if not nil) for each, i counting the replies. Commands of
// the SUBSCRIBE family get no reply of their own: pipeline reads up to
// their confirmations, one push per channel, which go to onPush with every
// other push; or up to the error reply that refuses one (MOVED on a
// cluster, NOPERM). It returns the first error reply (after reading every
// reply), or a fatal error.
func (c *conn) pipeline(ctx context.Context, cmds [][]string, fn func(i int, v resp.Value) error) error {
	return c.pipelineBlocking(ctx, 0, cmds, fn)
}

// pipelineBlocking is pipeline for commands of which one may block in the
// server for up to block (BLPOP): the round trip is bounded by block
// plus replyTimeout.
func (c *conn) pipelineBlocking(ctx context.Context, block time.Duration, cmds [][]string, fn func(i int, v resp.Value) error) error {
	if err := c.failed(); err != nil {
		return err
	}
	var limit time.Time
	if c.replyTimeout > 0 {
		limit = time.Now().Add(block + c.replyTimeout)
	}
	stop := c.watchUntil(ctx, limit)
	err := c.roundTrip(ctx, limit, cmds, fn)
	ended := stop()
	var re resp.Error
	if err == nil || errors.As(err, &re) || errors.Is(err, errCallback) {
		if ended {
			// The replies are in, but the context ended on the way and its
			// deadline may still be set on the socket: retire the
			// connection, and say so, as a caller must not build on it.
			return c.fatal(ctxErr(ctx, errConnClosed))
		}
		return err
	}
	switch {
	case ended || ctx.Err() != nil || deadlinePassed(ctx):
		err = ctxErr(ctx, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("no answer from the server within %v (DialTimeout): %w", c.replyTimeout, err)
	}
	return c.fatal(err)
}

// errCallback wraps errors returned by a pipeline callback.
var errCallback = errors.New("reply rejected")

// roundTrip writes cmds and reads their replies. Behind a released hold's
// replies (drain) it waits no longer than ctx and limit allow.
func (c *conn) roundTrip(ctx context.Context, limit time.Time, cmds [][]string, fn func(i int, v resp.Value) error) error {
	c.wmu.Lock()
	drain, inline := c.drain, c.drainInline
	if len(c.pending) > 0 && drain == nil {
		c.wmu.Unlock()
		return errors.New("synchronous command on a connection with a reader")
	}
	c.wbuf = c.wbuf[:0]
	subscribes := false
	for _, args := range cmds {
		c.wbuf = resp.AppendCommand(c.wbuf, args...)
		subscribes = subscribes || isSubscribeCmd(args[0])
	}
	c.subMode = c.subMode || subscribes
	_, err := c.nc.Write(c.wbuf)
	c.wmu.Unlock()
	if err != nil {
		return err
	}
	if drain != nil {
		// Our commands queue behind the released hold's; its reader
		// stops right after their last reply.
		if inline == nil || !inline() {
			if err := awaitDrain(ctx, limit, drain); err != nil {
				return err
			}
		}
		if err := c.failed(); err != nil {
			return err
		}
		// The unsubscribe read before our replies may have left subscribed
		// mode after our SUBSCRIBE was written.
		c.wmu.Lock()
		c.drain, c.drainInline = nil, nil
		c.subMode = c.subMode || subscribes
		c.wmu.Unlock()
	}
	var first error
	i := 0
	for _, args := range cmds {
		// A command of the SUBSCRIBE family is answered by a confirmation
		// per channel, or by one error reply instead; any other command by
		// one reply. Pushes come in between.
		kind, confirms := confirmKind(args)
		for {
			v, push, err := c.readFrame()
			if err != nil {
				return err
			}
			if push {
				if c.onPush != nil {
					c.onPush(v)
				}
				if kind != "" && isKind(v, kind) {
					if confirms--; confirms == 0 {
						break
					}
				}
				continue
			}
			e := v.Err()
			if e != nil && first == nil {
				first = e
			}
			if kind != "" {
				if e == nil {
					return fmt.Errorf("%w: reply %.64s to %s", resp.ErrProtocol, v.String(), args[0])
				}
				break
			}
			if e == nil && fn != nil {
				if err := fn(i, v); err != nil && first == nil {
					first = fmt.Errorf("%w: %w", errCallback, err)
				}
			}
			i++
			break
		}
	}
	return first
}

// awaitDrain waits for drain to close, up to ctx's end or limit (zero:
// no limit).
func awaitDrain(ctx context.Context, limit time.Time, drain <-chan struct{}) error {
	select {
	case <-drain: // often already: no timer
		return nil
	default:
	}
	var expired <-chan time.Time
	if !limit.IsZero() {
		t := time.NewTimer(time.Until(limit))
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-drain:
		return nil
	case <-ctx.Done():
		return ctxCause(ctx)
	case <-expired:
		return fmt.Errorf("released hold's replies not read: %w", os.ErrDeadlineExceeded)
	}
}

// confirmKind returns the kind of push that confirms a command of the
// SUBSCRIBE family, and how many come (one per channel; at least one for
// an UNSUBSCRIBE of every channel), or "" for another command.
func confirmKind(args []string) (kind string, n int) {
	n = max(len(args)-1, 1)
	switch args[0] {
	case "SUBSCRIBE":
		return "subscribe", n
	case "UNSUBSCRIBE":
		return "unsubscribe", n
	case "SSUBSCRIBE":
		return "ssubscribe", n
	case "SUNSUBSCRIBE":
		return "sunsubscribe", n
	case "PSUBSCRIBE":
		return "psubscribe", n
	case "PUNSUBSCRIBE":
		return "punsubscribe", n
	}
	return "", 0
}

// readFrame reads the next frame and says whether it is a push (pub/sub
// confirmation or message) rather than the reply to a command. In RESP3
// pushes carry their own type byte; in RESP2, and for servers that send
// subscribed-mode replies as arrays, the frame's first element tells.
func (c *conn) readFrame() (v resp.Value, push bool, err error) {
	v, err = c.rd.Read()
	if err != nil {
		return v, false, err
	}
	switch v.Type {
	case resp.TypePush:
		// miniredis answers PING on a subscribed RESP3 connection with a
		// "pong" array, real Redis with +PONG; a "pong" push is a reply too.
		c.trackUnsubscribe(v)
		return v, !isKind(v, "pong"), nil
	case resp.TypeArray:
		c.wmu.Lock()
		sub := c.subMode
		c.wmu.Unlock()
		if sub && len(v.Elems) >= 3 && pushKind(v) != "" {
			c.trackUnsubscribe(v)
			return v, true, nil
		}
	}
	return v, false, nil
}

// trackUnsubscribe leaves subscribed mode when an unsubscribe confirmation
// says no subscription is left.
func (c *conn) trackUnsubscribe(v resp.Value) {
	switch pushKind(v) {
	case "unsubscribe", "sunsubscribe", "punsubscribe":
		if n := v.Elems[len(v.Elems)-1]; n.Type == resp.TypeInteger && n.Int == 0 {
			c.wmu.Lock()
			c.subMode = false
			c.wmu.Unlock()
		}
	}
}

// pushKind returns the kind of a pub/sub push frame ("message",
// "subscribe", ...) or "" if v is not one.
func pushKind(v resp.Value) string {
	if len(v.Elems) == 0 {
		return ""
	}
	k := v.Elems[0]
	if k.Type != resp.TypeBulkString && k.Type != resp.TypeSimpleString {
		return ""
	}
	switch string(k.Str) {
	case "message", "subscribe", "unsubscribe", "smessage", "ssubscribe", "sunsubscribe",
		"pmessage", "psubscribe", "punsubscribe", "pong":
		return string(k.Str) // constant strings: no allocation
	}
	return ""
}

func isKind(v resp.Value, kind string) bool {
	return len(v.Elems) > 0 && string(v.Elems[0].Str) == kind
}

func isSubscribeCmd(name string) bool {
	switch name {
	case "SUBSCRIBE", "UNSUBSCRIBE", "SSUBSCRIBE", "SUNSUBSCRIBE", "PSUBSCRIBE", "PUNSUBSCRIBE":
		return true
	}
	return false
}

// peerClosed reports, without reading and without waiting, that the
// server has closed the connection (or reset it), even while replies it
// sent before are still unread: a process that was stopped (SIGSTOP, a
// suspended VM) learns at once on resume that a contender killed its
// connection meanwhile, before its reader goroutine runs. It returns nil
// where it cannot tell (see pollPeer).
func (c *conn) peerClosed() error {
	_, err := c.peerState()
	return err
}

// peerState is peerClosed, and reports too whether data waits in the
// socket (false where it cannot tell, as a hold on such a connection reads
// from the start: see newHold); not what the reader has buffered, which
// only the reader may look at.
func (c *conn) peerState() (unread bool, err error) {
	if err := c.failed(); err != nil {
		return false, err
	}
	if c.raw == nil {
		return false, nil
	}
	var closed, readable bool
	if c.raw.Control(func(fd uintptr) { closed, readable = pollPeer(fd) }) != nil {
		return false, nil
	}
	if closed {
		return readable, c.fatal(errPeerClosed)
	}
	return readable, nil
}

// errPeerClosed is the error of a connection the server closed.
var errPeerClosed = errors.New("connection closed by the server")

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

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
