package pubsublock

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// fakeServer is the tests' RESP server: the commands of every connection
// go, one by one, to a handler that writes raw replies (or none), such as
// transcript's. It keeps every byte the clients send (see sent).
type fakeServer struct {
	ln   net.Listener
	wg   sync.WaitGroup
	eofs chan time.Time // when client connections were closed by the client

	mu  sync.Mutex // guards got
	got []byte     // what the clients sent
}

func newFakeServer(t *testing.T, handle func(w io.Writer, args []string)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln, eofs: make(chan time.Time, 16)}
	f.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Go(func() {
				defer c.Close()
				rd := resp.NewReader(bufio.NewReader(io.TeeReader(c, (*fakeRecorder)(f))), resp.Limits{})
				for {
					v, err := rd.Read()
					if err != nil {
						select {
						case f.eofs <- time.Now():
						default:
						}
						return
					}
					args := make([]string, len(v.Elems))
					for i, e := range v.Elems {
						args[i] = string(e.Str)
					}
					handle(c, args)
				}
			})
		}
	})
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

// fakeRecorder keeps what the clients of a fakeServer send.
type fakeRecorder fakeServer

func (r *fakeRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, p...)
	return len(p), nil
}

// sent waits until a client connection ends and returns every byte the
// clients sent.
func (f *fakeServer) sent(t *testing.T) string {
	t.Helper()
	select {
	case <-f.eofs:
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not hang up")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.got)
}

// step is one exchange of a transcript: the bytes the client sends, and
// the server's reply to them.
type step struct{ want, reply string }

// transcript is a fakeServer handler that plays steps on one connection:
// once the commands sent since the last reply make up the next step's want
// (encoded as resp.AppendCommand does), it writes the step's reply.
// Anything else closes the connection; commands after the last step get no
// reply. The server's sent holds what the client really sent, to compare
// byte for byte.
func transcript(steps ...step) func(w io.Writer, args []string) {
	var mu sync.Mutex // guards pending and steps
	var pending string
	return func(w io.Writer, args []string) {
		mu.Lock()
		defer mu.Unlock()
		if len(steps) == 0 {
			return
		}
		pending += cmd(args...)
		switch {
		case pending == steps[0].want:
			io.WriteString(w, steps[0].reply)
			pending, steps = "", steps[1:]
		case !strings.HasPrefix(steps[0].want, pending):
			steps = nil
			w.(io.Closer).Close()
		}
	}
}

// cmd is the wire form of a command.
func cmd(args ...string) string { return string(resp.AppendCommand(nil, args...)) }

// helloReply is a RESP3 server's answer to HELLO 3.
const helloReply = "%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"

// newFakeRedis is a fakeServer that speaks RESP3: it answers HELLO itself.
func newFakeRedis(t *testing.T, handle func(w io.Writer, args []string)) *fakeServer {
	t.Helper()
	return newFakeServer(t, answerHello(helloReply, handle))
}

// answerHello answers HELLO with hello (an error reply makes a RESP2
// server) and gives every other command to handle.
func answerHello(hello string, handle func(w io.Writer, args []string)) func(w io.Writer, args []string) {
	return func(w io.Writer, args []string) {
		if strings.EqualFold(args[0], "HELLO") {
			io.WriteString(w, hello)
			return
		}
		handle(w, args)
	}
}

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

// client returns a Client of the fake server, closed when the test ends.
func (f *fakeServer) client(t *testing.T) *Client {
	t.Helper()
	return newClient(t, ClientConfig{Addr: f.addr()})
}

// push is a RESP3 push frame; parts starting with ':' are integers, the
// others bulk strings.
func push(parts ...string) string {
	b := []byte(">" + strconv.Itoa(len(parts)) + "\r\n")
	for _, p := range parts {
		if strings.HasPrefix(p, ":") {
			b = append(b, p+"\r\n"...)
			continue
		}
		b = append(b, "$"+strconv.Itoa(len(p))+"\r\n"+p+"\r\n"...)
	}
	return string(b)
}

// fakeLockServer is a fake Redis for one contender's tries on "jobs". Each
// command goes first to other, called with mu held, which reports whether
// it answered; if not, the server confirms subscriptions and
// unsubscriptions, answers CLIENT SETNAME and PING, and counts the
// subscribers for PUBSUB NUMSUB: 2 for the first held counts (the lock held
// elsewhere), 1 after. Any other command is unexpected.
type fakeLockServer struct {
	*fakeServer
	mu     sync.Mutex // guards counts and the test's own state
	counts int        // PUBSUB NUMSUB calls
}

func newFakeLockServer(t *testing.T, held int, other func(w io.Writer, args []string) bool) *fakeLockServer {
	t.Helper()
	f := &fakeLockServer{}
	f.fakeServer = newFakeRedis(t, func(w io.Writer, args []string) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case other(w, args):
		case args[0] == "SUBSCRIBE":
			io.WriteString(w, push("subscribe", args[1], ":1"))
		case args[0] == "UNSUBSCRIBE":
			io.WriteString(w, push("unsubscribe", args[1], ":0"))
		case args[0] == "PUBSUB":
			f.counts++
			n := "1"
			if f.counts <= held {
				n = "2"
			}
			io.WriteString(w, "*2\r\n$4\r\njobs\r\n:"+n+"\r\n")
		case args[0] == "CLIENT" && args[1] == "SETNAME":
			io.WriteString(w, "+OK\r\n")
		case args[0] == "PING":
			io.WriteString(w, "+PONG\r\n")
		case args[0] == "TYPE": // the bell's key is free
			io.WriteString(w, "+none\r\n")
		case args[0] == "LINDEX":
			io.WriteString(w, "_\r\n")
		case args[0] == "EVAL" && args[1] == yieldCheckScript: // no yield window
			io.WriteString(w, ":0\r\n")
		case args[0] == "LLEN", args[0] == "LPUSH", args[0] == "PEXPIRE", args[0] == "EVAL":
			io.WriteString(w, ":1\r\n")
		default:
			io.WriteString(w, "-ERR unexpected "+strings.Join(args, " ")+"\r\n")
		}
	})
	return f
}

// redisClient is client for a fake server that, as real Redis, lets a
// subscribed RESP3 connection run other commands (count, publish).
func (f *fakeServer) redisClient(t *testing.T) *Client {
	t.Helper()
	cl := f.client(t)
	cl.caps.subCmds.set(true)
	return cl
}

// acquireWaiting runs an Acquire on the fake server whose polls are a
// minute apart and whose context ends after 5s, so only a bell, or a try
// at once, can take the lock in time, and returns its Client. setup adjusts the Client first.
func (f *fakeLockServer) acquireWaiting(t *testing.T, setup func(*Client)) *Client {
	t.Helper()
	cl := f.redisClient(t)
	setup(cl)
	l := newLock(t, "jobs", Config{Client: cl, CheckInterval: time.Minute, Timeout: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return cl
}
