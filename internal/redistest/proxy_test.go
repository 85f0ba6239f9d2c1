package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// noLeak runs f as a subtest and checks that every goroutine it started,
// its cleanups' included, has exited.
func noLeak(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Run(name, f)
	waitFor(t, 5*time.Second, name+" leaves no goroutine", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

// client is a raw RESP connection for the proxy tests.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) send(args ...string) {
	c.t.Helper()
	if _, err := c.c.Write(appendCommand(nil, args...)); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one reply, waiting at most d.
func (c *client) read(d time.Duration) (any, error) {
	c.c.SetReadDeadline(time.Now().Add(d))
	return readReply(c.r, 0)
}

// subscribed dials n clients through p, each subscribed to "ch".
func subscribed(t *testing.T, p *Proxy, n int) []*client {
	t.Helper()
	var cs []*client
	for range n {
		c := dial(t, p.Addr())
		c.send("SUBSCRIBE", "ch")
		if _, err := c.read(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestProxy(t *testing.T) {
	noLeak(t, "forward", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		c := dial(t, p.Addr())
		c.send("SET", "k", "v")
		c.send("GET", "k")
		for _, want := range []string{"OK", "v"} {
			if v, err := c.read(5 * time.Second); err != nil || v != want {
				t.Fatalf("reply %#v, %v; want %q", v, err, want)
			}
		}
	})
	noLeak(t, "blackhole", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		c := dial(t, p.Addr())
		c.send("PING")
		if v, err := c.read(5 * time.Second); err != nil || v != "PONG" {
			t.Fatalf("PING = %#v, %v", v, err)
		}
		p.Blackhole()
		p.Blackhole() // twice is once
		c.send("PING")
		if v, err := c.read(200 * time.Millisecond); !isTimeout(err) {
			t.Fatalf("PING through a blackhole = %#v, %v; want a timeout", v, err)
		}
		// A connection made meanwhile carries nothing either.
		c2 := dial(t, p.Addr())
		c2.send("PING")
		if v, err := c2.read(100 * time.Millisecond); !isTimeout(err) {
			t.Fatalf("PING on a new connection through a blackhole = %#v, %v; want a timeout", v, err)
		}
		p.Resume()
		p.Resume()
		for _, c := range []*client{c, c2} {
			if v, err := c.read(5 * time.Second); err != nil || v != "PONG" {
				t.Fatalf("PING after Resume = %#v, %v; want the held PONG", v, err)
			}
		}
	})
	noLeak(t, "blackhole holds a close", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		c := dial(t, p.Addr())
		c.send("SUBSCRIBE", "ch")
		if _, err := c.read(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		p.Blackhole()
		c.c.Close()
		time.Sleep(100 * time.Millisecond)
		if err := numsub(s, "ch", "1"); err != nil {
			t.Fatalf("server saw the close through a blackhole: %v", err)
		}
		p.Resume()
		waitFor(t, 5*time.Second, "server sees the close", func() error { return numsub(s, "ch", "0") })
	})
	noLeak(t, "close all", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		cs := subscribed(t, p, 3)
		p.Blackhole() // CloseAll works through a blackhole too
		p.CloseAll()
		for _, c := range cs {
			if v, err := c.read(5 * time.Second); err != io.EOF {
				t.Fatalf("read after CloseAll = %#v, %v; want EOF", v, err)
			}
		}
		waitFor(t, 5*time.Second, "server sees the closes", func() error { return numsub(s, "ch", "0") })
		p.Resume()
		c := dial(t, p.Addr())
		c.send("PING")
		if v, err := c.read(5 * time.Second); err != nil || v != "PONG" {
			t.Fatalf("PING on a new connection after CloseAll = %#v, %v", v, err)
		}
	})
	noLeak(t, "target down", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		s.Stop()
		c := dial(t, p.Addr())
		if v, err := c.read(5 * time.Second); err != io.EOF {
			t.Fatalf("read with the target down = %#v, %v; want EOF", v, err)
		}
	})
	noLeak(t, "record", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		c := dial(t, p.Addr())
		c.send("SET", "before", "record")
		if _, err := c.read(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if got := p.Sent(); got != "" {
			t.Fatalf("Sent() before Record = %q", got)
		}
		p.Record()
		c2 := dial(t, p.Addr())
		for _, step := range []struct {
			c    *client
			args []string
		}{{c, []string{"SET", "k", "v"}}, {c2, []string{"GET", "k"}}} { // each connection's, in order
			step.c.send(step.args...)
			if _, err := step.c.read(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		// Bytes held back by a blackhole were sent all the same.
		p.Blackhole()
		c.send("PING")
		want := string(appendCommand(appendCommand(appendCommand(nil, "SET", "k", "v"), "GET", "k"), "PING"))
		waitFor(t, 5*time.Second, "the proxy reads the PING", func() error {
			if got := p.Sent(); got != want {
				return fmt.Errorf("Sent() = %q, want %q", got, want)
			}
			return nil
		})
	})
	noLeak(t, "inject", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		cs := subscribed(t, p, 2)
		p.Inject("*3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n")
		for _, c := range cs {
			v, err := c.read(5 * time.Second)
			if err != nil || fmt.Sprint(v) != "[unsubscribe ch 0]" {
				t.Fatalf("read after Inject = %#v, %v; want the injected unsubscribe", v, err)
			}
		}
		// The server's own replies follow, whole; through a blackhole,
		// the injected bytes come, the server's wait.
		cs[0].send("PING")
		if v, err := cs[0].read(5 * time.Second); err != nil || fmt.Sprint(v) != "[pong ]" {
			t.Fatalf("PING after Inject = %#v, %v", v, err)
		}
		p.Blackhole()
		cs[0].send("PING")
		p.Inject("+injected\r\n")
		if v, err := cs[0].read(5 * time.Second); err != nil || v != "injected" {
			t.Fatalf("read after Inject through a blackhole = %#v, %v", v, err)
		}
		if v, err := cs[0].read(100 * time.Millisecond); !isTimeout(err) {
			t.Fatalf("the server's reply came through a blackhole: %#v, %v", v, err)
		}
		p.Resume()
		if v, err := cs[0].read(5 * time.Second); err != nil || fmt.Sprint(v) != "[pong ]" {
			t.Fatalf("PING after Resume = %#v, %v", v, err)
		}
	})
	noLeak(t, "cleanup with open connections", func(t *testing.T) {
		s := Redis(t)
		p := NewProxy(t, s.Addr())
		c := dial(t, p.Addr())
		c.send("SUBSCRIBE", "ch")
		p.Blackhole()
	})
}
