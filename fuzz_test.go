package pubsublock

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// FuzzPing feeds arbitrary messages to the holder's ping parser: it must
// never panic, accept only real pings, and read back every ping a
// contender writes.
func FuzzPing(f *testing.F) {
	for _, s := range []string{
		`{"response_channel": "jobs-0.9461501796110964", "message": "ping"}`,
		`{"response_channel":"jobs-1"}`,
		`{"response_channel": 5}`,
		`{"response_channel": ""}`,
		`{"message": "ping"}`,
		`not json`, ``, `null`, `[]`, `{"response_channel": "a\u0000b"}`,
		"\xff\xfe", `{"response_channel": "x", "response_channel": "y"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ch, _, ok := parsePing(payload)
		if ok && (ch == "" || len(payload) > maxPing) {
			t.Fatalf("accepted %q as a ping for %q", payload, ch)
		}
		// Whatever a reply channel is, the ping we write for it parses back,
		// unless it is too long to be taken for a ping.
		msg := pingMessage(string(payload))
		got, status, ok := parsePing([]byte(msg))
		if status {
			t.Fatalf("pingMessage(%q) parses as a status ping", payload)
		}
		if len(payload) > 0 && len(msg) <= maxPing && (!ok || got != toValidUTF8(string(payload))) {
			t.Fatalf("pingMessage(%q) parses as %q, %v", payload, got, ok)
		}
		if len(msg) > maxPing && ok {
			t.Fatalf("a %d-byte ping was accepted", len(msg))
		}
	})
}

// toValidUTF8 is what a JSON round trip does to a Go string.
func toValidUTF8(s string) string {
	var b []rune
	for _, r := range s {
		b = append(b, r)
	}
	return string(b)
}

// FuzzClient runs a lock against a fake server that answers everything
// with the fuzzer's bytes: no panic, no hang, and an error that says what
// went wrong.
func FuzzClient(f *testing.F) {
	hello := "%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"
	for _, s := range []string{
		"",
		"-ERR nope\r\n",
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n",
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:2\r\n",
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$3\r\nxyz\r\n",
		hello + "+OK\r\n>3\r\n$11\r\nunsubscribe\r\n$4\r\njobs\r\n:0\r\n",
		// Held, released (with a ping before the unsubscribe), held again
		// on the same connection.
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n" +
			">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$30\r\n{\"response_channel\": \"jobs-1\"}\r\n" +
			">3\r\n$11\r\nunsubscribe\r\n$4\r\njobs\r\n:0\r\n:1\r\n+OK\r\n" +
			"+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n",
		"$9223372036854775807\r\n", "*1000000000\r\n", "$1\r\naXY",
		hello + "+OK\r\n*2\r\n$4\r\njobs\r\n:1\r\n", hello + ":1\r\n:2\r\n:3\r\n",
		// Held elsewhere, then a try woken by the bell takes it.
		hello + "+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:2\r\n" +
			">3\r\n$11\r\nunsubscribe\r\n$4\r\njobs\r\n:0\r\n+OK\r\n" +
			"*2\r\n$13\r\njobs-released\r\n$1\r\n1\r\n+OK\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n*2\r\n$4\r\njobs\r\n:1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
			return &scriptConn{r: bytes.NewReader(script)}, nil
		}
		cl, err := NewClient(ClientConfig{Dial: dial, MaxIdle: 1, Limits: resp.Limits{MaxBulkLen: 1 << 16, MaxElements: 64, MaxDepth: 8}})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		l, err := New("jobs", Config{Client: cl, HealthCheckInterval: 20 * time.Millisecond, UnavailableTimeout: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		err = l.TryAcquire(ctx)
		if time.Since(start) > 3*time.Second {
			t.Fatalf("TryAcquire took %v", time.Since(start))
		}
		if err == nil {
			// Release without waiting for the server (the connection is
			// pooled), and try again on the same connection, behind the
			// release's replies.
			_ = l.Release(ctx)
			err = l.TryAcquire(ctx)
			if time.Since(start) > 5*time.Second {
				t.Fatalf("Release and TryAcquire took %v", time.Since(start))
			}
		}
		if errors.Is(err, ErrAlreadyLocked) {
			// Wait: the tries are held back by the release bell (BLPOP),
			// whose reply comes from the script too.
			w, werr := New("jobs", Config{Client: cl, Timeout: 30 * time.Millisecond, CheckInterval: 10 * time.Millisecond,
				HealthCheckInterval: 20 * time.Millisecond, UnavailableTimeout: 20 * time.Millisecond})
			if werr != nil {
				t.Fatal(werr)
			}
			l = w
			err = l.Acquire(ctx)
			if time.Since(start) > 6*time.Second {
				t.Fatalf("waiting Acquire took %v", time.Since(start))
			}
		}
		if err == nil {
			// The fake server's script ran out: the hold must end.
			select {
			case <-l.Lost():
			case <-time.After(3 * time.Second):
				t.Fatal("a hold on a closed connection was not lost")
			}
			l.Release(ctx)
			return
		}
		if err.Error() == "" || errors.Is(err, ErrHeld) {
			t.Fatalf("unclear error %q", err)
		}
	})
}

// scriptConn is a connection to a fake server that sends script, whatever
// it is sent, and then hangs up (EOF).
type scriptConn struct {
	mu     sync.Mutex
	r      *bytes.Reader
	closed bool
	dl     time.Time // read deadline
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closed:
		return 0, net.ErrClosed
	case !c.dl.IsZero() && time.Now().After(c.dl):
		return 0, os.ErrDeadlineExceeded
	}
	return c.r.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *scriptConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *scriptConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dl = t
	return nil
}

func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
