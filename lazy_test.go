package pubsublock

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// The tests of a quiet hold, whose worker starts only after lazyStart or
// when its connection's next user needs it (see hold.drainInline).

// quietLock is newLock with the workers of its holds deferred by d (see
// lazyStart).
func quietLock(t *testing.T, channel string, cfg Config, d time.Duration) *Lock {
	t.Helper()
	l := newLock(t, channel, cfg)
	l.lazyStart = d
	return l
}

// heldBy returns l's current hold.
func heldBy(t *testing.T, l *Lock) *hold {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h == nil {
		t.Fatal("not held")
	}
	return l.h
}

// workerEnded reports whether h's worker has returned.
func workerEnded(h *hold) bool {
	select {
	case <-h.workerDone:
		return true
	default:
		return false
	}
}

// pinger subscribes a connection to a reply channel of its own on the
// server at url (or addr) and pings the holders of a lock as a contender
// does.
type pinger struct {
	addr, replyCh string
	nc            net.Conn
	answers       chan string
}

func newPinger(t *testing.T, url, replyCh string) *pinger {
	t.Helper()
	addr := strings.TrimPrefix(url, "redis://")
	addr, _, _ = strings.Cut(addr, "?")
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := &pinger{addr: addr, replyCh: replyCh, nc: nc, answers: make(chan string, 16)}
	t.Cleanup(p.close)
	if _, err := nc.Write(resp.AppendCommand(nil, "SUBSCRIBE", replyCh)); err != nil {
		t.Fatal(err)
	}
	rd := resp.NewReader(bufio.NewReader(nc), resp.Limits{})
	if v, err := rd.Read(); err != nil || pushKind(v) != "subscribe" {
		t.Fatalf("SUBSCRIBE %s: %v %v", replyCh, v.String(), err)
	}
	go func() {
		for {
			v, err := rd.Read()
			if err != nil {
				return
			}
			if pushKind(v) == "message" && len(v.Elems) == 3 {
				select {
				case p.answers <- string(v.Elems[2].Str):
				default: // more than any test awaits
				}
			}
		}
	}()
	return p
}

// ping publishes a ping on channel and fails t unless one subscriber
// received it: it waits, unread, in the holder's socket.
func (p *pinger) ping(t *testing.T, channel string) {
	t.Helper()
	out, err := redistestDo(p.addr, "PUBLISH", channel, pingMessage(p.replyCh))
	if err != nil || out != "1" {
		t.Fatalf("PUBLISH ping = %q, %v; want 1 receiver", out, err)
	}
}

// close ends the pinger's subscription, and its reading goroutine.
func (p *pinger) close() { p.nc.Close() }

// collect returns the answers: it waits up to 5s for want of them, and then
// rawPingMore for any more (a subscriber that answers twice, or one more
// than it should).
func (p *pinger) collect(want int) []string {
	var out []string
	limit := time.After(5 * time.Second)
	for len(out) < want {
		select {
		case a := <-p.answers:
			out = append(out, a)
		case <-limit:
			return out
		}
	}
	more := time.After(rawPingMore)
	for {
		select {
		case a := <-p.answers:
			out = append(out, a)
		case <-more:
			return out
		}
	}
}

// answer waits up to limit for an answer.
func (p *pinger) answer(t *testing.T, limit time.Duration) string {
	t.Helper()
	select {
	case a := <-p.answers:
		return a
	case <-time.After(limit):
		t.Fatalf("no answer on %s within %v", p.replyCh, limit)
		return ""
	}
}

// TestQuietHoldAnswersPings: a ping that reaches a hold before its worker
// started is answered once it starts, and a contender that pinged does
// not take the lock from it.
func TestQuietHoldAnswersPings(t *testing.T) {
	leakCheck(t)
	servers(t, func(t *testing.T, url string) {
		// The timer is fired by hand: a stall of the test on a loaded
		// machine cannot start the worker before it looks.
		l := quietLock(t, "quiet", Config{URL: url}, time.Hour)
		mustAcquire(t, l)
		h := heldBy(t, l)
		if h.started.Load() {
			t.Fatal("the worker of a quiet hold started at once")
		}
		p := newPinger(t, url, "quiet-reply")
		p.ping(t, "quiet")
		time.Sleep(100 * time.Millisecond)
		select {
		case a := <-p.answers:
			t.Fatalf("answered %q before the worker started", a)
		default:
		}
		h.startTimer.Reset(0) // lazyStart is over
		t.Logf("answer: %s", p.answer(t, 5*time.Second))
		if !h.started.Load() {
			t.Fatal("answered, yet the worker did not start")
		}
		c := newLock(t, "quiet", Config{URL: url, UnavailableTimeout: 2 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("contender's TryAcquire = %v, want ErrAlreadyLocked", err)
		}
		if err := l.Err(); err != nil {
			t.Fatalf("holder's Err = %v", err)
		}
	})
}

// TestQuietReleaseDrainedInline: a hold released before its worker
// started leaves the release's replies to the connection's next user,
// which reads them in its own goroutine before its replies, on the same
// connection: no second one is dialed.
func TestQuietReleaseDrainedInline(t *testing.T) {
	leakCheck(t)
	servers(t, func(t *testing.T, url string) {
		var dials atomic.Int32
		cl := newClient(t, ClientConfig{URL: url, Dial: countingDial(&dials)})
		l := quietLock(t, "inline", Config{Client: cl, FailWhenLocked: true}, time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mustAcquire(t, l)
		h := heldBy(t, l)
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if h.started.Load() {
			t.Fatal("Release started the worker")
		}
		before := dials.Load()
		if err := l.Acquire(ctx); err != nil {
			t.Fatalf("Acquire behind an undrained release: %v", err)
		}
		if !h.started.Load() {
			t.Fatal("the next Acquire did not drain the released hold")
		}
		if !workerEnded(h) {
			t.Fatal("Acquire returned before the released hold's replies were read")
		}
		if heldBy(t, l).c != h.c {
			t.Error("the second Acquire took another connection")
		}
		if n := dials.Load() - before; n != 0 {
			t.Errorf("the second Acquire dialed %d connections, want 0", n)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestQuietReleaseReadsUnread: when a ping waits unread in a quiet hold's
// socket at its release, the release has the worker read it first and
// then does what it does for a hold that read it: it rings the bell for a
// contender, not for a status query, and not for a portalocker poller,
// for which it opens the yield window instead. Each ping is answered.
func TestQuietReleaseReadsUnread(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	for _, tc := range []struct {
		name, replyCh, payload string
		ring, yield            bool
	}{
		{"contender", "", "", true, false},
		{"status", "", "status", false, false},
		{"portalocker", "-python", "", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			channel := "unread-" + tc.name
			cl := newClient(t, ClientConfig{URL: s.URL()})
			l := quietLock(t, channel, Config{Client: cl}, time.Hour)
			mustAcquire(t, l)
			h := heldBy(t, l)
			replyCh := cl.replyChannel(channel) // as a Go contender names it
			if tc.replyCh != "" {
				replyCh = channel + tc.replyCh // portalocker's: no bell
			}
			p := newPinger(t, s.URL(), replyCh)
			msg := pingMessage(replyCh)
			if tc.payload == "status" {
				msg = statusMessage(replyCh)
			}
			if out := mustDo(t, s, "PUBLISH", channel, msg); out != "1" {
				t.Fatalf("PUBLISH = %s", out)
			}
			waitUntil(t, 5*time.Second, "the ping waits in the holder's socket", func() bool {
				unread, err := h.c.peerState()
				return err == nil && unread
			})
			if h.started.Load() {
				t.Fatal("the worker started")
			}
			if err := l.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Logf("answer: %s", p.answer(t, 5*time.Second))
			if h.rang.Load() != tc.ring {
				t.Errorf("rang the bell: %v, want %v", h.rang.Load(), tc.ring)
			}
			if bell := mustDo(t, s, "EXISTS", h.s.bell); (bell == "1") != tc.ring {
				t.Errorf("EXISTS %s = %s after the release", h.s.bell, bell)
			}
			if yield := l.yieldUntil.Load() != 0; yield != tc.yield {
				t.Errorf("yield window: %v, want %v", yield, tc.yield)
			}
		})
	}
}

// TestQuietHoldNeedsRoomyTimeout: with an UnavailableTimeout below
// lazyMinUnavailable a hold reads its pings from the start.
func TestQuietHoldNeedsRoomyTimeout(t *testing.T) {
	leakCheck(t)
	m := redistest.Miniredis(t)
	for _, tc := range []struct {
		timeout time.Duration
		lazy    bool
	}{{lazyMinUnavailable - time.Millisecond, false}, {lazyMinUnavailable, true}} {
		l := quietLock(t, "roomy", Config{URL: "redis://" + m.Addr(), UnavailableTimeout: tc.timeout}, time.Hour)
		mustAcquire(t, l)
		if started := heldBy(t, l).started.Load(); started == tc.lazy {
			t.Errorf("UnavailableTimeout %v: worker started at once: %v", tc.timeout, started)
		}
		if err := l.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestQuietReleaseDrainedByTimer: a hold released before its worker
// started, whose connection nobody takes, is drained once lazyStart
// passes, and the connection stays usable.
func TestQuietReleaseDrainedByTimer(t *testing.T) {
	leakCheck(t)
	servers(t, func(t *testing.T, url string) {
		cl := newClient(t, ClientConfig{URL: url})
		l := quietLock(t, "timer", Config{Client: cl}, time.Hour) // fired by hand
		mustAcquire(t, l)
		h := heldBy(t, l)
		if err := l.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
		if h.started.Load() {
			t.Fatal("Release started the worker")
		}
		h.startTimer.Reset(0) // lazyStart is over
		waitUntil(t, 5*time.Second, "the released hold's worker ends", func() bool { return workerEnded(h) })
		if err := h.c.failed(); err != nil {
			t.Fatalf("the drained connection failed: %v", err)
		}
		mustAcquire(t, l)
		if heldBy(t, l).c != h.c {
			t.Error("the next Acquire took another connection")
		}
	})
}

// TestQuietHoldLoss: a quiet hold whose connection is killed before its
// worker started is lost: Err tells at once, Lost is closed once the
// worker starts, and Release reports the loss.
func TestQuietHoldLoss(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	l := quietLock(t, "qloss", Config{URL: s.URL()}, 300*time.Millisecond)
	mustAcquire(t, l)
	lost := l.Lost()
	ids := s.SubscriberIDs(t, "qloss-lock")
	if len(ids) != 1 {
		t.Fatalf("holders %v, want 1", ids)
	}
	since := time.Now()
	mustDo(t, s, "CLIENT", "KILL", "ID", strconv.FormatInt(ids[0], 10))
	waitUntil(t, 5*time.Second, "Err reports the loss", func() bool { return errors.Is(l.Err(), ErrLost) })
	select {
	case <-lost:
		t.Logf("Lost closed %v after the kill", time.Since(since))
	case <-time.After(5 * time.Second):
		t.Fatal("Lost not closed")
	}
	if err := l.Release(context.Background()); !errors.Is(err, ErrLost) {
		t.Fatalf("Release = %v, want ErrLost", err)
	}
}

// TestGetReadyTakesDrainedConnection: a connection whose released hold's
// replies were read already is ready, though its next user has not run
// yet: getReady (which a worker uses to answer pings from a second
// connection) takes it rather than dialing another.
func TestGetReadyTakesDrainedConnection(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	var dials atomic.Int32
	cl := newClient(t, ClientConfig{URL: s.URL(), Dial: countingDial(&dials)})
	l := newLock(t, "ready", Config{Client: cl})
	mustAcquire(t, l)
	h := heldBy(t, l)
	if err := l.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the released hold's replies are read", func() bool { return workerEnded(h) })
	before := dials.Load()
	c, err := cl.getReady(context.Background(), "ready")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.put(c)
	if c != h.c || dials.Load() != before {
		t.Errorf("getReady dialed %d connections (same one: %v), want the drained one", dials.Load()-before, c == h.c)
	}
}
