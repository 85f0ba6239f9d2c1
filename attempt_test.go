package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// TestRefusedWhileSubscribed: the refusal of a command on a subscribed
// connection is recognised in each server's wording, and nothing else is.
func TestRefusedWhileSubscribed(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{resp.Error("ERR Can't execute 'pubsub|numsub': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"), true},
		{resp.Error("ERR Can't execute 'incr': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"), true},
		{resp.Error("ERR Can't execute 'pubsub': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT are allowed in this context"), true},
		{fmt.Errorf("wrapped: %w", resp.Error("ERR Can't execute 'x': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT are allowed in this context")), true},
		{resp.Error("NOPERM this user has no permissions to access the 'jobs' channel"), false},
		{resp.Error("ERR unknown command 'only (P'"), false},
		{errors.New("only (P|S)SUBSCRIBE ... allowed in this context"), false},
		{nil, false},
	} {
		if got := refusedWhileSubscribed(c.err); got != c.want {
			t.Errorf("refusedWhileSubscribed(%v) = %v, want %v", c.err, got, c.want)
		}
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

// TestFailedAcquireLeavesNoSubscription: an Acquire that fails after its
// SUBSCRIBE (here the fencing INCR is refused: OOM, NOPERM, READONLY) gives
// back no connection that is still subscribed or named as a holder, so
// the channel is free for everyone, on RESP3 and RESP2.
func TestFailedAcquireLeavesNoSubscription(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("proto"+proto, func(t *testing.T) {
			s := redistest.Redis(t)
			ctx := context.Background()
			cl := newClient(t, ClientConfig{URL: s.URL() + proto})
			l := newLock(t, "jobs", Config{Client: cl, Fencing: true, Timeout: 200 * time.Millisecond})
			mustDo(t, s, "CONFIG", "SET", "maxmemory-policy", "noeviction")
			mustDo(t, s, "CONFIG", "SET", "maxmemory", "1")
			if err := l.Acquire(ctx); err == nil {
				t.Fatal("Acquire succeeded")
			}
			mustDo(t, s, "CONFIG", "SET", "maxmemory", "0")
			if n := s.NumSub(t, "jobs"); n != 0 {
				t.Errorf("after the failed Acquire, PUBSUB NUMSUB jobs = %d, want 0", n)
			}
			if ids := s.SubscriberIDs(t, "jobs-lock"); len(ids) != 0 {
				t.Errorf("connections still named jobs-lock: %v", ids)
			}
			other := newLock(t, "other", Config{Client: cl})
			if err := other.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			c := newLock(t, "jobs", Config{URL: s.URL(), UnavailableTimeout: 200 * time.Millisecond})
			if err := c.TryAcquire(ctx); err != nil {
				t.Errorf("TryAcquire of jobs, which nobody holds: %v", err)
			}
			_ = other.Release(ctx)
		})
	}
}

// TestCanceledAcquireLeavesNoSubscription: on RESP2 the count comes from a
// second connection after the SUBSCRIBE is confirmed; a context that ends
// while that connection is dialed leaves no subscribed connection behind.
func TestCanceledAcquireLeavesNoSubscription(t *testing.T) {
	s := redistest.Redis(t)
	var dials atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := newClient(t, ClientConfig{URL: s.URL() + "?protocol=2",
		Dial: func(dctx context.Context, network, addr string) (net.Conn, error) {
			if dials.Add(1) == 2 { // the auxiliary connection: stall until canceled
				cancel()
				<-dctx.Done()
				return nil, dctx.Err()
			}
			var d net.Dialer
			return d.DialContext(dctx, network, addr)
		}})
	l := newLock(t, "jobs", Config{Client: cl})
	if err := l.Acquire(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire = %v, want context.Canceled", err)
	}
	waitFor(t, func() bool { return s.NumSub(t, "jobs") == 0 })
	c := newLock(t, "jobs", Config{URL: s.URL(), UnavailableTimeout: 200 * time.Millisecond})
	if err := c.TryAcquire(context.Background()); err != nil {
		t.Errorf("TryAcquire of jobs, which nobody holds: %v", err)
	}
}
