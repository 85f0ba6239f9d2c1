package pubsublock

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// TestReleaseReusesConnection: on a shared Client, Release does not wait
// for the server, and the next Acquire takes the same connection, writing
// behind the release. Over many cycles one connection is dialed, every
// Acquire finds the lock free, and another client never counts two
// subscribers.
func TestReleaseReusesConnection(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		var dials atomic.Int32
		cl := newClient(t, ClientConfig{URL: url, Dial: countingDial(&dials)})
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
// does not kill the connection's next hold for its silence; and, as it is
// a portalocker poller's, the yield window is opened for it.
func TestReleaseAnswersPingsSeenWhileDraining(t *testing.T) {
	// The released hold's worker reads them, or, when it has not started
	// (see lazyStart), the next Acquire does, in its own goroutine.
	for _, lazy := range []time.Duration{0, time.Hour} {
		t.Run("lazyStart="+lazy.String(), func(t *testing.T) {
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
			l.lazyStart = lazy
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			mustCycle(t, ctx, l)
			if err := l.Acquire(ctx); err != nil {
				t.Fatalf("Acquire behind an unanswered release: %v", err)
			}
			select {
			case ts := <-answered:
				t.Logf("ping seen while draining answered: %s", ts)
			case <-ctx.Done():
				t.Fatal("the ping seen while the release drained was never answered")
			}
			// The ping was portalocker's, which polls: the worker opened
			// the yield window the release knew nothing of, and the Lock's
			// next Acquire is told to wait it out.
			waitUntil(t, 5*time.Second, "the Lock records the late yield window", func() bool {
				return l.yieldUntil.Load() != 0
			})
		})
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
	// Roomy, so that a stall on a loaded machine does not pass for
	// Release waiting.
	const unavailable = time.Second
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
	case <-f.eofs:
		t.Fatal("Release returned after the connection was closed: it waited for the server")
	default:
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

// TestUnsolicitedUnsubscribeDuringRelease: an unsubscribe the server sends
// once Release has begun but before its own UNSUBSCRIBE is written ends
// the hold as lost, and the connection, which still has the release's
// replies to come, is retired, never pooled.
func TestUnsolicitedUnsubscribeDuringRelease(t *testing.T) {
	s := redistest.Redis(t)
	cl := newClient(t, ClientConfig{URL: s.URL()})
	l := newLock(t, "jobs", Config{Client: cl})
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	h := l.h
	l.mu.Unlock()
	h.releasing.Store(true) // Release has begun, and not yet written
	// The server unsubscribes the holder: an UNSUBSCRIBE the worker did
	// not send through the hold.
	if _, err := h.c.nc.Write(resp.AppendCommand(nil, "UNSUBSCRIBE", "jobs")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the hold did not end")
	}
	if err := l.Err(); !errors.Is(err, ErrLost) {
		t.Fatalf("Err() = %v, want ErrLost", err)
	}
	if h.c.failed() == nil {
		t.Fatal("the connection with the release's replies still to come was kept")
	}
	if err := l.Release(context.Background()); !errors.Is(err, ErrLost) {
		t.Fatalf("Release = %v, want ErrLost", err)
	}
}

// TestFaultUnsolicitedUnsubscribe: an unsubscribe push the holder did not
// ask for (what a cluster sends on a slot migration) ends the hold. Real
// Redis sends none for classic pub/sub, so a proxy in front of a real
// server injects one into the holder's idle connection; the holder must
// report the loss and close the connection, so that the server does not
// keep a subscription nobody answers for.
func TestFaultUnsolicitedUnsubscribe(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("resp"+map[string]string{"": "3", "?protocol=2": "2"}[proto], func(t *testing.T) {
			leakCheck(t)
			s := redistest.Redis(t)
			px := redistest.NewProxy(t, s.Addr())
			l := newLock(t, "unsub", Config{URL: "redis://" + px.Addr() + proto})
			mustAcquire(t, l)
			if n := s.NumSub(t, "unsub"); n != 1 {
				t.Fatalf("NUMSUB = %d while held", n)
			}
			head := "*3"
			if proto == "" {
				head = ">3"
			}
			start := time.Now()
			px.Inject(head + "\r\n$11\r\nunsubscribe\r\n$5\r\nunsub\r\n:0\r\n")
			d := waitLost(t, l, start, 2*time.Second)
			t.Logf("Lost() %v after the unsubscribe push", d)
			if err := l.Err(); !errors.Is(err, ErrLost) || !errors.Is(err, errUnsubscribed) {
				t.Errorf("Err() = %v, want ErrLost wrapping errUnsubscribed", err)
			}
			// The server still counted the subscription: the holder must
			// drop its connection.
			waitUntil(t, 2*time.Second, "the server drops the holder's subscription after the loss",
				func() bool { return s.NumSub(t, "unsub") == 0 })
			if err := l.Release(context.Background()); !errors.Is(err, ErrLost) {
				t.Errorf("Release = %v, want ErrLost", err)
			}
		})
	}
}
