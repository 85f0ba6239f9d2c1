package pubsublock

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReleaseReusesConnection: on a shared Client, Release does not wait
// for the server, and the next Acquire takes the same connection, writing
// behind the release. Over many cycles one connection is dialed, every
// Acquire finds the lock free, and another client never counts two
// subscribers.
func TestReleaseReusesConnection(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		var dials atomic.Int32
		cl, err := NewClient(ClientConfig{URL: url, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		watcher := newLock(t, "reuse", Config{URL: url})
		l := newLock(t, "reuse", Config{Client: cl, FailWhenLocked: true})
		ctx := context.Background()
		for i := range 200 {
			if err := l.Acquire(ctx); err != nil {
				t.Fatalf("cycle %d: %v", i, err)
			}
			if i%20 == 0 {
				st, err := watcher.Status(ctx)
				if err != nil || st.Subscribers != 1 {
					t.Fatalf("cycle %d: Status while held = %+v, %v", i, st, err)
				}
			}
			lost := l.Lost()
			if err := l.Release(ctx); err != nil {
				t.Fatalf("cycle %d: Release: %v", i, err)
			}
			select {
			case <-lost:
			default:
				t.Fatalf("cycle %d: Lost not closed by Release", i)
			}
		}
		// Inline counting (RESP3 on Redis) needs one connection; counting
		// from a second one (miniredis, RESP2) needs two.
		if n := dials.Load(); n > 2 {
			t.Errorf("200 cycles dialed %d connections, want at most 2", n)
		}
		waitFor(t, func() bool { st, err := watcher.Status(ctx); return err == nil && st.Subscribers == 0 })
	})
}

// TestReleaseAnswersPingsSeenWhileDraining: a ping that reaches the
// released hold after Release returned, while the next Acquire's commands
// already follow on the same connection, is still answered (from another
// connection, once the release is drained), so the contender that sent it
// does not kill the connection's next hold for its silence.
func TestReleaseAnswersPingsSeenWhileDraining(t *testing.T) {
	ping := pingMessage("jobs-0.5")
	var (
		stash    strings.Builder // replies to the release, held back
		acquires int
	)
	answered := make(chan string, 1)
	f := newFakeLockServer(t, 0, func(w io.Writer, args []string) bool {
		switch strings.Join(args[:min(len(args), 2)], " ") {
		case "CLIENT SETNAME":
			if args[2] == "jobs-lock" {
				acquires++
				if acquires == 2 {
					// The second Acquire's first command arrived: Release
					// did not wait. Now the release's replies, with a ping
					// that came before the unsubscribe.
					io.WriteString(w, stash.String())
				}
				io.WriteString(w, "+OK\r\n")
				return true
			}
			stash.WriteString("+OK\r\n") // the release's name reset
		case "UNSUBSCRIBE jobs":
			stash.WriteString(push("message", "jobs", ping) + push("unsubscribe", "jobs", ":0"))
		case "EVAL " + ringScript: // the release bell
			stash.WriteString(":1\r\n")
		case "PUBLISH jobs-0.5":
			answered <- args[2]
			io.WriteString(w, ":1\r\n")
		default:
			return false
		}
		return true
	})
	l := newLock(t, "jobs", Config{Client: f.redisClient(t), FailWhenLocked: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Acquire(ctx); err != nil {
		t.Fatalf("Acquire behind an unanswered release: %v", err)
	}
	select {
	case ts := <-answered:
		t.Logf("ping seen while draining answered: %s", ts)
	case <-ctx.Done():
		t.Fatal("the ping seen while the release drained was never answered")
	}
}

// TestReleaseUnansweredClosesConnection: a server that never answers the
// release cannot keep the connection, or the lock: Release returns at once
// and the connection is closed within UnavailableTimeout.
func TestReleaseUnansweredClosesConnection(t *testing.T) {
	f := newFakeRedis(t, func(w io.Writer, args []string) {
		switch strings.Join(args[:min(len(args), 2)], " ") {
		case "CLIENT SETNAME":
			if args[2] == "jobs-lock" {
				io.WriteString(w, "+OK\r\n")
			}
		case "SUBSCRIBE jobs":
			io.WriteString(w, push("subscribe", "jobs", ":1"))
		case "PUBSUB NUMSUB":
			io.WriteString(w, "*2\r\n$4\r\njobs\r\n:1\r\n")
		} // the release (UNSUBSCRIBE, PUBLISH, CLIENT SETNAME "") goes unanswered
	})
	cl := f.client(t)
	const unavailable = 200 * time.Millisecond
	l := newLock(t, "jobs", Config{Client: cl, UnavailableTimeout: unavailable})
	ctx := context.Background()
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > unavailable/2 {
		t.Errorf("Release waited %v for a server that does not answer", d)
	}
	select {
	case at := <-f.eofs:
		d := at.Sub(start)
		t.Logf("unanswered release: connection closed after %v", d)
		if d < unavailable/2 {
			t.Errorf("connection closed after %v, before UnavailableTimeout %v", d, unavailable)
		}
	case <-time.After(5 * unavailable):
		t.Fatal("the connection of an unanswered release was not closed")
	}
	// The Client dials again for the next acquisition.
	if err := l.TryAcquire(ctx); err != nil {
		t.Fatalf("TryAcquire after the closed connection: %v", err)
	}
	if err := l.Release(ctx); err != nil && !errors.Is(err, ErrLost) {
		t.Fatal(err)
	}
}

// TestTryAcquireHolderGoneAtPing: TryAcquire counts another subscriber
// (a holder releasing at that moment, as a Release that has not reached
// the server yet), pings it, and finds nobody there any more: it takes
// the lock rather than report it held.
func TestTryAcquireHolderGoneAtPing(t *testing.T) {
	pinged := false
	f := newFakeLockServer(t, 1, func(w io.Writer, args []string) bool {
		switch {
		case args[0] == "PUBLISH":
			pinged = pinged || args[1] == "jobs"
			io.WriteString(w, ":0\r\n") // nobody received it: the holder is gone
		case args[0] == "CLIENT" && args[1] == "LIST":
			io.WriteString(w, "$0\r\n\r\n")
		default:
			return false
		}
		return true
	})
	cl := f.client(t)
	l := newLock(t, "jobs", Config{Client: cl})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.TryAcquire(ctx); err != nil {
		t.Fatalf("TryAcquire with the holder gone by the ping: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !pinged || f.counts != 2 {
		t.Fatalf("pinged %v, counted %d times; want a ping and two counts", pinged, f.counts)
	}
}

// TestLosingTryAnswersPings: a ping that reaches a contender's connection
// while it is subscribed for a try it then loses is answered, as the
// contender that sent it listed that connection subscribed and named.
func TestLosingTryAnswersPings(t *testing.T) {
	ping := pingMessage("jobs-0.25")
	answered := make(chan struct{}, 1)
	f := newFakeRedis(t, func(w io.Writer, args []string) {
		switch {
		case args[0] == "SUBSCRIBE":
			io.WriteString(w, push("subscribe", args[1], ":2")+push("message", args[1], ping))
		case args[0] == "UNSUBSCRIBE":
			io.WriteString(w, push("unsubscribe", args[1], ":0"))
		case args[0] == "PUBSUB":
			io.WriteString(w, "*2\r\n$4\r\njobs\r\n:2\r\n") // a holder is there
		case args[0] == "PUBLISH" && args[1] == "jobs-0.25":
			answered <- struct{}{}
			io.WriteString(w, ":1\r\n")
		case args[0] == "CLIENT" && args[1] == "SETNAME":
			io.WriteString(w, "+OK\r\n")
		default: // no CLIENT LIST: the holder is not pinged
			io.WriteString(w, "-ERR unknown command\r\n")
		}
	})
	cl := f.client(t)
	l := newLock(t, "jobs", Config{Client: cl})
	if err := l.TryAcquire(context.Background()); !errors.Is(err, ErrAlreadyLocked) {
		t.Fatalf("TryAcquire = %v, want ErrAlreadyLocked", err)
	}
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the ping seen by a losing try was not answered")
	}
}
