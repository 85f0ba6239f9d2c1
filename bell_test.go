package pubsublock

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestBellWakesWaiter: a waiter whose next poll is seconds away takes the
// lock as soon as the holder releases, woken by the bell; the bell is
// taken, so no key is left; the waiter's connections serve the Client's
// next round trips.
func TestBellWakesWaiter(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		cl := newClient(t, ClientConfig{URL: url, MaxIdle: 2})
		ctx := context.Background()
		holder := newLock(t, "jobs", Config{URL: url})
		// Polls every 10s (±25%), and its context ends after 5s: only the
		// bell can wake it in time.
		waiter := newLock(t, "jobs", Config{Client: cl, CheckInterval: 10 * time.Second, Timeout: -1})
		if err := holder.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		got := acquireAsync(ctx, waiter)
		awaitBlocked(t, url, 1)
		start := time.Now()
		if err := holder.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("waiter: %v", err)
		}
		t.Logf("woken by the bell: held %v after Release", time.Since(start))
		if n := serverDo(t, url, "EXISTS", "jobs-released"); n != "0" {
			t.Errorf("EXISTS jobs-released = %s after the bell was taken, want 0", n)
		}
		for range 3 {
			st, err := waiter.Status(ctx)
			if err != nil || st.Subscribers != 1 {
				t.Fatalf("Status through the waiter's connections: %+v, %v", st, err)
			}
		}
	})
}

// TestBellOrder: waiters take the lock in the order they began to wait,
// and each release wakes one of them only: the others stay blocked.
func TestBellOrder(t *testing.T) {
	s := redistest.Redis(t)
	url := s.URL()
	ctx := context.Background()
	cfg := Config{URL: url, CheckInterval: 10 * time.Second, Timeout: 10 * time.Second}
	holder := newLock(t, "jobs", cfg)
	if err := holder.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 4
	waiters := make([]*Lock, n)
	acquired := make(chan int, n)
	for i := range waiters {
		waiters[i] = newLock(t, "jobs", cfg)
		go func() {
			if err := waiters[i].Acquire(ctx); err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
			acquired <- i
		}()
		awaitBlocked(t, url, i+1) // in this order
	}
	current := holder
	for k := range n {
		if err := current.Release(ctx); err != nil {
			t.Fatal(err)
		}
		i := <-acquired
		if i != k {
			t.Fatalf("release %d went to waiter %d, want %d (first come, first served)", k, i, k)
		}
		if got := blockedClients(t, url); got != n-1-k {
			t.Fatalf("after release %d: %d clients blocked, want %d: a release woke more than one waiter", k, got, n-1-k)
		}
		current = waiters[i]
	}
	if err := current.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBellBounded: a release nobody waited for rings no bell, so an
// uncontended lock leaves no key; the last release of a queue rings one,
// which expires after the releasing Lock's CheckInterval.
func TestBellBounded(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		ctx := context.Background()
		cfg := Config{URL: url, CheckInterval: 300 * time.Millisecond}
		l := newLock(t, "jobs", cfg)
		for range 5 {
			mustCycle(t, ctx, l)
		}
		// The last release's replies may still be on their way: a PING
		// through a Client whose round trips queue behind them.
		if _, err := l.Status(ctx); err != nil {
			t.Fatal(err)
		}
		if n := serverDo(t, url, "EXISTS", "jobs-released"); n != "0" {
			t.Fatalf("uncontended releases left the bell: EXISTS %s", n)
		}

		// A queue of one: the waiter, handed the lock, rings on its
		// release although nobody waits any more.
		w := newLock(t, "jobs", cfg)
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		got := acquireAsync(ctx, w)
		awaitBlocked(t, url, 1)
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if err := w.Release(ctx); err != nil {
			t.Fatal(err)
		}
		var pttl int
		waitFor(t, func() bool {
			llen := serverDo(t, url, "LLEN", "jobs-released")
			pttl, _ = strconv.Atoi(serverDo(t, url, "PTTL", "jobs-released"))
			return llen == "1" && pttl > 0
		})
		if pttl > 300 {
			t.Errorf("the bell expires in %dms, want at most CheckInterval (300ms)", pttl)
		}
	})
}

// TestBellRefusedFallsBackToPolling: where the server refuses the bell, a
// key of another type under its name, or an ACL without list commands,
// waiters still take the lock, by polling, and releases do not fail.
func TestBellRefusedFallsBackToPolling(t *testing.T) {
	run := func(t *testing.T, url string, clientWide bool) {
		ctx := context.Background()
		cl := newClient(t, ClientConfig{URL: url})
		holder := newLock(t, "jobs", Config{Client: cl})
		waiter := newLock(t, "jobs", Config{Client: cl, CheckInterval: 20 * time.Millisecond, Timeout: 5 * time.Second})
		for i := range 3 {
			if err := holder.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			got := acquireAsync(ctx, waiter)
			time.Sleep(50 * time.Millisecond) // the waiter polls
			if err := holder.Release(ctx); err != nil {
				t.Fatalf("round %d: Release: %v", i, err)
			}
			if err := <-got; err != nil {
				t.Fatalf("round %d: waiter without the bell: %v", i, err)
			}
			if err := waiter.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if cl.caps.bell.no() != clientWide {
			t.Errorf("the Client's noBell = %v, want %v", cl.caps.bell.no(), clientWide)
		}
	}
	t.Run("wrongtype", func(t *testing.T) {
		servers(t, func(t *testing.T, url string) {
			serverDo(t, url, "SET", "jobs-released", "mine")
			run(t, url, false)
			if v := serverDo(t, url, "GET", "jobs-released"); v != "mine" {
				t.Errorf("the user's key jobs-released = %q, want it untouched", v)
			}
			if v := serverDo(t, url, "PTTL", "jobs-released"); v != "-1" {
				t.Errorf("the user's key jobs-released got a TTL: PTTL %s", v)
			}
		})
	})
	t.Run("acl", func(t *testing.T) {
		s := redistest.Redis(t, "--user", "locker", "on", ">secret", "resetchannels", "&jobs", "&jobs-0.*",
			"+subscribe", "+unsubscribe", "+publish", "+pubsub|numsub", "+client|setname", "+client|list",
			"+client|kill", "+ping", "+hello")
		run(t, "redis://locker:secret@"+s.Addr(), true)
	})
	// A list of the user's under the bell's name: waiters neither pop it
	// nor push to it, and it gets no TTL.
	t.Run("userlist", func(t *testing.T) {
		servers(t, func(t *testing.T, url string) {
			serverDo(t, url, "RPUSH", "jobs-released", "a", "b", "c")
			run(t, url, false)
			if got := strings.Split(serverDo(t, url, "LRANGE", "jobs-released", "0", "-1"), "\n"); strings.Join(got, " ") != "a b c" {
				t.Errorf("the user's list jobs-released = %q, want [a b c]", got)
			}
			if v := serverDo(t, url, "PTTL", "jobs-released"); v != "-1" {
				t.Errorf("the user's list jobs-released got a TTL: PTTL %s", v)
			}
		})
	})
}

// TestBellPauseEndsOnTime: an idle Redis ends a BLPOP only every 1/hz
// seconds; a waiter's pause is ended on time by a push to its own wake
// list from its auxiliary connection, never by CLIENT UNBLOCK (which
// crashes a server in a write pause, see TestWaitersSurvivePause).
func TestBellPauseEndsOnTime(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		ctx := context.Background()
		holder := newLock(t, "jobs", Config{URL: url})
		if err := holder.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		cl := newClient(t, ClientConfig{URL: url})
		waiter := newLock(t, "jobs", Config{Client: cl, CheckInterval: 20 * time.Millisecond, Timeout: 300 * time.Millisecond})
		start := time.Now()
		if err := waiter.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
			t.Fatalf("waiter: %v, want ErrAlreadyLocked", err)
		}
		t.Logf("gave up after %v", time.Since(start))
		if cl.caps.wake.no() || cl.caps.bell.no() {
			t.Fatalf("wake refused %v, bell refused %v", cl.caps.wake.no(), cl.caps.bell.no())
		}
		if miniredis := blockedClients(t, url) < 0; miniredis {
			return
		}
		stats := serverDo(t, url, "INFO", "commandstats")
		if strings.Contains(stats, "cmdstat_client|unblock") {
			t.Error("CLIENT UNBLOCK was sent")
		}
		_, rest, found := strings.Cut(stats, "cmdstat_lpush:calls=")
		calls, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		if !found || calls < 3 {
			t.Errorf("LPUSH called %d times, want a wake push per pause", calls)
		}
		if keys := serverDo(t, url, "KEYS", "jobs-wake-*"); strings.Contains(keys, "\n") { // more than one
			t.Errorf("wake keys left: %q", strings.Split(keys, "\n"))
		}
	})
}

// TestBellWaitCanceled: a waiter blocked on the bell returns as soon as its
// context is canceled, and the server lets go of its connection.
func TestBellWaitCanceled(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		holder := newLock(t, "jobs", Config{URL: url})
		if err := holder.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		waiter := newLock(t, "jobs", Config{URL: url, CheckInterval: 10 * time.Second, Timeout: -1})
		ctx, cancel := context.WithCancel(context.Background())
		got := acquireAsync(ctx, waiter)
		awaitBlocked(t, url, 1)
		cancel()
		select {
		case err := <-got:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled waiter: %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a waiter blocked on the bell did not return when canceled")
		}
		if blockedClients(t, url) >= 0 {
			awaitBlocked(t, url, 0)
		}
		// The holder still holds, and its release is not taken by the
		// canceled waiter.
		if st, err := holder.Status(context.Background()); err != nil || st.Subscribers != 1 {
			t.Fatalf("Status: %+v, %v", st, err)
		}
	})
}

// TestBellAnnouncementUnheard: a waiter counts the holder, but the holder
// has released by the time the waiter announces itself (nobody receives
// the announcement), so no bell will ring for it: it tries again at once
// instead of waiting for its next poll, a minute away.
func TestBellAnnouncementUnheard(t *testing.T) {
	announced, blpops := false, 0
	f := newFakeLockServer(t, 1, func(w io.Writer, args []string) bool {
		switch {
		case args[0] == "PUBLISH" && args[1] == "jobs":
			announced = announced || strings.Contains(args[2], `"jobs-waiting"`)
			io.WriteString(w, ":0\r\n") // nobody heard it: the holder left
		case args[0] == "BLPOP":
			blpops++
			io.WriteString(w, "-ERR not expected\r\n")
		default:
			return false
		}
		return true
	})
	f.acquireWaiting(t, func(*Client) {})
	f.mu.Lock()
	defer f.mu.Unlock()
	if !announced || f.counts != 2 || blpops != 0 {
		t.Fatalf("announced %v, counted %d times, %d BLPOPs; want an announcement, two counts and no wait", announced, f.counts, blpops)
	}
}

// TestReleaseRingsForLateAnnouncement: a waiter's announcement that
// reaches the hold after its Release was written (which rang no bell:
// nobody had shown up) makes the worker ring once the release is drained,
// from another connection.
func TestReleaseRingsForLateAnnouncement(t *testing.T) {
	announce := pingMessage("jobs-waiting")
	rang := make(chan []string, 4)
	f := newFakeLockServer(t, 0, func(w io.Writer, args []string) bool {
		switch strings.Join(args[:min(len(args), 2)], " ") {
		case "UNSUBSCRIBE jobs":
			// The announcement came just before the unsubscribe.
			io.WriteString(w, push("message", "jobs", announce)+push("unsubscribe", "jobs", ":0"))
		case "EVAL " + ringScript:
			rang <- args
			io.WriteString(w, ":1\r\n")
		default:
			return false
		}
		return true
	})
	l := newLock(t, "jobs", Config{Client: f.redisClient(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mustCycle(t, ctx, l)
	select {
	case args := <-rang:
		if args[3] != "jobs-released" {
			t.Fatalf("rang %q, want the bell jobs-released", args[3])
		}
	case <-ctx.Done():
		t.Fatal("a waiter announced during the release, and no bell rang")
	}
	select {
	case <-rang:
		t.Fatal("the bell rang twice")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestBellWaitInterrupted: a BLPOP ended by a change of the server's state
// (-UNBLOCKED, as after a failover) is not a refusal: the waiter tries
// again on a new connection and keeps the bell.
func TestBellWaitInterrupted(t *testing.T) {
	blpops := 0
	f := newFakeLockServer(t, 1, func(w io.Writer, args []string) bool {
		switch args[0] {
		case "PUBLISH":
			io.WriteString(w, ":1\r\n") // the holder heard the announcement
		case "BLPOP":
			blpops++
			if blpops == 1 {
				io.WriteString(w, "-UNBLOCKED force unblock from blocking operation, instance state changed\r\n")
			} else {
				io.WriteString(w, "*2\r\n$13\r\njobs-released\r\n$1\r\n1\r\n")
			}
		default:
			return false
		}
		return true
	})
	// No pause ends here: the BLPOPs answer at once.
	cl := f.acquireWaiting(t, func(cl *Client) { cl.caps.wake.set(false) })
	f.mu.Lock()
	defer f.mu.Unlock()
	if blpops != 2 || cl.caps.bell.no() {
		t.Fatalf("%d BLPOPs, bell refused %v; want a second wait and the bell kept", blpops, cl.caps.bell.no())
	}
}

// TestWaitersSurvivePause: contenders wait for the lock while the server
// goes through write pauses (CLIENT PAUSE WRITE, CLIENT PAUSE ALL, and the
// pause FAILOVER makes). A waiter must never send what can crash the
// server: CLIENT UNBLOCK on a BLPOP held back by a write pause kills
// Redis 7.0, 8.0 and Valkey 8.1 ("Unknown btype in
// replyToBlockedClientTimedOut"). The server survives, and the waiters
// get the lock after the pauses and the release.
func TestWaitersSurvivePause(t *testing.T) {
	for _, pause := range []string{"WRITE", "ALL", "FAILOVER"} {
		t.Run(pause, func(t *testing.T) {
			s := redistest.Redis(t, "--repl-diskless-sync-delay", "0")
			var replica *redistest.Server
			if pause == "FAILOVER" {
				replica = redistest.Redis(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Port()),
					"--repl-diskless-sync-delay", "0")
			}
			ctx := context.Background()
			holder := newLock(t, "jobs", Config{URL: s.URL()})
			if err := holder.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			var got []<-chan error
			var waiters []*Lock
			for _, proto := range []string{"", "?protocol=2", "", "?protocol=2"} {
				cl := newClient(t, ClientConfig{URL: s.URL() + proto})
				w := newLock(t, "jobs", Config{Client: cl, CheckInterval: 30 * time.Millisecond, Timeout: -1})
				waiters = append(waiters, w)
				got = append(got, acquireAsyncWithin(ctx, w, 30*time.Second))
			}
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
				var err error
				if pause == "FAILOVER" {
					// To the replica and back: each pauses the primary's
					// writes until the other has caught up.
					failover(t, s, replica)
					failover(t, replica, s)
				} else {
					ms := 20 + rand.IntN(150)
					_, err = s.Do("CLIENT", "PAUSE", strconv.Itoa(ms), pause)
					time.Sleep(time.Duration(ms+rand.IntN(40)) * time.Millisecond)
				}
				if err != nil {
					t.Fatalf("pause: %v", err)
				}
				if _, err := s.Do("PING"); err != nil {
					t.Fatalf("the server died during the pauses: %v\n%s", err, strings.Join(lastLines(s), "\n"))
				}
			}
			if err := holder.Release(ctx); err != nil {
				t.Logf("release: %v", err)
			}
			takeInTurn(t, waiters, got)
			if _, err := s.Do("PING"); err != nil {
				t.Fatalf("the server died: %v", err)
			}
		})
	}
}

// lastLines returns the last lines of s's log.
func lastLines(s *redistest.Server) []string {
	b, _ := os.ReadFile(s.Logfile())
	lines := strings.Split(string(b), "\n")
	return lines[max(len(lines)-20, 0):]
}

// failover makes replica the primary with FAILOVER on primary, and waits
// until both have switched roles.
func failover(t *testing.T, primary, replica *redistest.Server) {
	t.Helper()
	waitFor(t, func() bool {
		info, _ := primary.Do("INFO", "replication")
		return strings.Contains(info, "state=online")
	})
	if _, err := primary.Do("FAILOVER", "TO", "127.0.0.1", strconv.Itoa(replica.Port()), "TIMEOUT", "2000"); err != nil {
		t.Fatalf("FAILOVER: %v", err)
	}
	waitFor(t, func() bool {
		a, _ := primary.Do("ROLE")
		b, _ := replica.Do("ROLE")
		return strings.HasPrefix(a, "slave") && strings.HasPrefix(b, "master")
	})
}

// TestYieldCheckErrorCostsOneAttempt: a yield check that fails for a
// reason that is no refusal (none is known; a fake server makes one up)
// costs only that attempt the yield window: the attempt takes the lock
// without it, and the Client does not give the window up.
func TestYieldCheckErrorCostsOneAttempt(t *testing.T) {
	checks := 0
	f := newFakeLockServer(t, 1, func(w io.Writer, args []string) bool {
		switch {
		case args[0] == "PUBLISH" && args[1] == "jobs":
			io.WriteString(w, ":1\r\n") // the holder heard the announcement
		case args[0] == "BLPOP":
			io.WriteString(w, "*2\r\n$13\r\njobs-released\r\n$15\r\n"+bellValue+"\r\n") // rung
		case args[0] == "EVAL" && args[1] == yieldCheckScript:
			checks++
			io.WriteString(w, "-ERR something odd\r\n")
		default:
			return false
		}
		return true
	})
	cl := f.acquireWaiting(t, func(*Client) {})
	f.mu.Lock()
	defer f.mu.Unlock()
	if checks != 1 || cl.caps.yield.no() {
		t.Fatalf("%d yield checks, Client gave the window up: %v; want 1 check, and the window kept", checks, cl.caps.yield.no())
	}
}
