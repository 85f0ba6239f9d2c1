package main

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// fakeConn is a net.Conn that plays a Redis server from canned bytes, so a
// client's reply path can be timed without a network or a server. Every
// command written to it is parsed (cheaply, without allocating) and
// answered: HELLO with a Redis 7.0 handshake reply, PING with +PONG,
// SUBSCRIBE with its confirmation, the handshake's CLIENT/SELECT/AUTH with
// +OK, and every other command with reply. After a SUBSCRIBE it can also
// stream push messages: Stream(n) makes the next n reads deliver n copies of
// push. Reads block until there is something to deliver or Close.
type fakeConn struct {
	reply []byte // the answer to every non-handshake command
	push  []byte // the message streamed after SUBSCRIBE

	mu     sync.Mutex // guards the fields below
	cond   *sync.Cond
	in     []byte // written bytes not yet parsed: a partial command
	out    []byte // bytes to deliver
	off    int    // delivered prefix of out
	pushes int    // messages still to stream
	resp3  bool   // HELLO 3 seen
	closed bool
	subbed chan struct{} // closed at the first SUBSCRIBE
}

func newFakeConn(reply, push []byte) *fakeConn {
	c := &fakeConn{reply: reply, push: push, in: make([]byte, 0, 4096), out: make([]byte, 0, 4096),
		subbed: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// Stream lets n push messages be read.
func (c *fakeConn) Stream(n int) {
	c.mu.Lock()
	c.pushes += n
	c.mu.Unlock()
	c.cond.Broadcast()
}

func (c *fakeConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.out) == c.off && c.pushes == 0 && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return 0, io.EOF
	}
	if len(c.out) == c.off {
		c.out, c.off = c.out[:0], 0
		for c.pushes > 0 && len(c.out)+len(c.push) <= max(len(p), len(c.push)) {
			c.out = append(c.out, c.push...)
			c.pushes--
		}
	}
	n := copy(p, c.out[c.off:])
	c.off += n
	if c.off == len(c.out) {
		c.out, c.off = c.out[:0], 0
	}
	return n, nil
}

func (c *fakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	c.in = append(c.in, p...)
	used := 0
	for {
		n, ok := c.command(c.in[used:])
		if !ok {
			break
		}
		used += n
	}
	c.in = c.in[:copy(c.in, c.in[used:])]
	c.mu.Unlock()
	c.cond.Broadcast()
	return len(p), nil
}

// command parses one command (an array of bulk strings) at the start of b,
// queues its answer and returns its length, or ok false when b holds no
// whole command.
func (c *fakeConn) command(b []byte) (n int, ok bool) {
	argc, i, ok := header(b, 0, '*')
	if !ok {
		return 0, false
	}
	var name, arg1 []byte
	for a := range argc {
		l, j, ok := header(b, i, '$')
		if !ok || len(b) < j+l+2 {
			return 0, false
		}
		switch a {
		case 0:
			name = b[j : j+l]
		case 1:
			arg1 = b[j : j+l]
		}
		i = j + l + 2
	}
	switch {
	case bytes.EqualFold(name, []byte("HELLO")):
		c.resp3 = string(arg1) == "3"
		if c.resp3 {
			c.out = append(c.out, hello3...)
		} else {
			c.out = append(c.out, hello2...)
		}
	case bytes.EqualFold(name, []byte("PING")):
		c.out = append(c.out, "+PONG\r\n"...)
	case bytes.EqualFold(name, []byte("SUBSCRIBE")):
		kind := byte('*')
		if c.resp3 {
			kind = '>'
		}
		c.out = append(c.out, kind)
		c.out = append(c.out, "3\r\n$9\r\nsubscribe\r\n$"...)
		c.out = strconv.AppendInt(c.out, int64(len(arg1)), 10)
		c.out = append(c.out, "\r\n"...)
		c.out = append(c.out, arg1...)
		c.out = append(c.out, "\r\n:1\r\n"...)
		select {
		case <-c.subbed:
		default:
			close(c.subbed)
		}
	case bytes.EqualFold(name, []byte("CLIENT")), bytes.EqualFold(name, []byte("SELECT")),
		bytes.EqualFold(name, []byte("AUTH")):
		c.out = append(c.out, "+OK\r\n"...)
	default:
		c.out = append(c.out, c.reply...)
	}
	return i, true
}

// header parses "<kind><n>\r\n" at b[i:], returning n and the index after it.
func header(b []byte, i int, kind byte) (n, next int, ok bool) {
	if i >= len(b) || b[i] != kind {
		return 0, 0, false
	}
	for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int(b[i]-'0')
	}
	if i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return 0, 0, false
	}
	return n, i + 2, true
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cond.Broadcast()
	return nil
}

func (c *fakeConn) LocalAddr() net.Addr                { return fakeAddr{} }
func (c *fakeConn) RemoteAddr() net.Addr               { return fakeAddr{} }
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }

type fakeAddr struct{}

func (fakeAddr) Network() string { return "tcp" }
func (fakeAddr) String() string  { return "127.0.0.1:6379" }

// The HELLO replies of redis-server 7.0.15.
var (
	hello3 = "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n" +
		"$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
	hello2 = "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:2\r\n" +
		"$2\r\nid\r\n:5\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
)

// fakeDialer hands out fakeConns and remembers them.
type fakeDialer struct {
	reply, push []byte
	mu          sync.Mutex // guards conns
	conns       []*fakeConn
}

func (d *fakeDialer) dial() *fakeConn {
	c := newFakeConn(d.reply, d.push)
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.mu.Unlock()
	return c
}

// subscribed waits for the first of its conns to see SUBSCRIBE.
func (d *fakeDialer) subscribed(timeout time.Duration) *fakeConn {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		conns := d.conns
		d.mu.Unlock()
		for _, c := range conns {
			select {
			case <-c.subbed:
				return c
			default:
			}
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (d *fakeDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		c.Close()
	}
}
