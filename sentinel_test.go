package pubsublock

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

func TestSentinelURL(t *testing.T) {
	for _, tc := range []struct {
		url       string
		sentinels []string
		master    string
		db        int
		pass      string
	}{
		{"redis+sentinel://s1:26379,s2:26380/mymaster", []string{"s1:26379", "s2:26380"}, "mymaster", 0, ""},
		{"redis+sentinel://:pw@s1,[::1]/my%20master?db=3", []string{"s1:26379", "[::1]:26379"}, "my master", 3, "pw"},
		{"rediss+sentinel://s1:1/m/", []string{"s1:1"}, "m", 0, ""},
	} {
		cc := ClientConfig{URL: tc.url}
		dc, err := cc.dialConfig()
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		topo, err := cc.topology()
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if !slices.Equal(topo.sentinels, tc.sentinels) || topo.master != tc.master || dc.db != tc.db || dc.password != tc.pass || topo.cluster != nil {
			t.Errorf("%s: sentinels %q master %q db %d password %q", tc.url, topo.sentinels, topo.master, dc.db, dc.password)
		}
	}
	for _, bad := range []ClientConfig{
		{URL: "redis+sentinel://u:hunter2@s1:26379"},
		{URL: "redis+sentinel://u:hunter2@s1:26379/"},
		{URL: "redis+sentinel://u:hunter2@s1:26379/a/b"},
		{URL: "redis+sentinel://u:hunter2@s1:26379/m?db=x"},
		{URL: "redis+sentinel://u:hunter2@s1:26379/m", MasterName: "other"},
		{URL: "redis+sentinel://u:hunter2@s1:26379/m", SentinelAddrs: []string{"s:1"}},
		{SentinelAddrs: []string{"s:1"}},
		{MasterName: "m"},
		{SentinelAddrs: []string{"s:1"}, MasterName: "m", Addr: "h:1"},
		{SentinelAddrs: []string{"s"}, MasterName: "m"},
	} {
		_, err := NewClient(bad)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("NewClient(%+v) = %v, want ErrConfig", bad, err)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
	if _, err := NewClient(ClientConfig{URL: "redis+sentinel://s1:26379/m", MasterName: "m"}); err != nil {
		t.Errorf("URL and the same MasterName: %v", err)
	}
}

func TestSentinelEventMaster(t *testing.T) {
	for _, tc := range []struct{ payload, name, addr string }{
		{"master mymaster 127.0.0.1 6379 #quorum 1/1", "mymaster", "127.0.0.1:6379"},
		{"slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379", "mymaster", "127.0.0.1:6379"},
		{"sentinel 3f2a 127.0.0.1 26379 @ m ::1 6379", "m", "[::1]:6379"},
		{"7 1", "", ""},
		{"master m h notaport", "", ""},
	} {
		name, addr := eventMaster(strings.Fields(tc.payload))
		if name != tc.name || addr != tc.addr {
			t.Errorf("eventMaster(%q) = %q, %q", tc.payload, name, addr)
		}
	}
}

// A Redis 7 primary turned into a replica keeps its pub/sub clients
// subscribed: REPLICAOF disconnects nobody. Only the sentinel's own
// CLIENT KILL, when it reconfigures the old primary seconds after the
// promotion, ends their subscriptions; hence the Client's watch of the
// failover events.
func TestSentinelDemotedPrimaryKeepsSubscribers(t *testing.T) {
	old, next := redistest.Redis(t), redistest.Redis(t)
	ctx := context.Background()
	c, err := dialConn(ctx, dialConfig{network: "tcp", addr: old.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := subscribeSync(ctx, c, classic, "jobs"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Do("REPLICAOF", "127.0.0.1", strconv.Itoa(next.Port())); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if role, _ := old.Do("ROLE"); !strings.HasPrefix(role, "slave") {
		t.Fatalf("ROLE of the demoted primary: %q", role)
	}
	if n, err := old.Do("PUBSUB", "NUMSUB", "jobs"); err != nil || n != "jobs\n1" {
		t.Errorf("NUMSUB on the demoted primary = %q, %v; want the subscriber still there", n, err)
	}
	if v, err := c.do(ctx, "PING"); err != nil || string(v.Str) != "PONG" {
		t.Errorf("the subscriber's connection: %v, %v", v, err)
	}
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// fakeSentinel answers every command with the address host:port, as
// SENTINEL GET-MASTER-ADDR-BY-NAME would.
func fakeSentinel(t *testing.T, addr string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	return newFakeServer(t, func(w io.Writer, _ []string) {
		w.Write(resp.AppendCommand(nil, host, port))
	}).addr()
}

func TestSentinel(t *testing.T) {
	start := time.Now()
	s := redistest.Sentinel(t)
	t.Logf("primary, replica and sentinel up in %v", time.Since(start))
	t.Run("ReplicaRefused", func(t *testing.T) {
		l := newLock(t, "jobs", Config{SentinelAddrs: []string{fakeSentinel(t, s.Replica().Addr())}, MasterName: s.MasterName()})
		err := l.Acquire(context.Background())
		if err == nil || !strings.Contains(err.Error(), "is a slave, not the primary") {
			t.Errorf("Acquire on a replica named as primary: %v", err)
		}
	})
	t.Run("WatcherStops", func(t *testing.T) {
		ctx := context.Background()
		before := runtime.NumGoroutine()
		// A Lock's own Client: its watcher exits once the lock is released.
		l := newLock(t, "own", Config{SentinelAddrs: s.SentinelAddrs(), MasterName: s.MasterName()})
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if !sentinelWatching(l.cl) {
			t.Error("no watcher while the lock is held")
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 3*sentinelTick, "watcher exits", func() bool { return !sentinelWatching(l.cl) })
		// A shared Client: Close stops the watcher at once.
		cl, err := NewClient(ClientConfig{SentinelAddrs: s.SentinelAddrs(), MasterName: s.MasterName()})
		if err != nil {
			t.Fatal(err)
		}
		m := newLock(t, "shared", Config{Client: cl})
		mustCycle(t, ctx, m)
		cl.Close()
		waitUntil(t, time.Second, "goroutines end", func() bool { return runtime.NumGoroutine() <= before })
	})
	t.Run("Failover", func(t *testing.T) { testSentinelFailover(t, s) })
	t.Run("DialStraddlesFailover", func(t *testing.T) { testSentinelDialStraddlesFailover(t, s) })
}

func sentinelWatching(cl *Client) bool {
	cl.sentinel.mu.Lock()
	defer cl.sentinel.mu.Unlock()
	return cl.sentinel.watching
}

// A failover ends the hold on the old primary before the sentinel names
// the new one, so that no one can take the lock there while it is still
// held; the next acquisition lands on the new primary.
func testSentinelFailover(t *testing.T, s *redistest.SentinelSet) {
	ctx := context.Background()
	const ch = "jobs"
	// The first sentinel is down: the next one is asked.
	cl := newClient(t, ClientConfig{SentinelAddrs: append([]string{deadAddr(t)}, s.SentinelAddrs()...), MasterName: s.MasterName()})
	l := newLock(t, ch, Config{Client: cl})
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	old := s.Primary()
	if n := old.NumSub(t, ch); n != 1 {
		t.Fatalf("NUMSUB on the primary = %d", n)
	}

	// Note when the sentinel names another primary, and when the hold
	// ends.
	sc, err := dialConn(ctx, dialConfig{network: "tcp", addr: s.SentinelAddrs()[0], resp2: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	pollCtx, stopPoll := context.WithCancel(ctx)
	var named time.Time
	var wg sync.WaitGroup
	wg.Go(func() {
		for pollCtx.Err() == nil {
			v, err := sc.do(pollCtx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName())
			if err != nil {
				return
			}
			if len(v.Elems) == 2 && string(v.Elems[1].Str) != strconv.Itoa(old.Port()) {
				named = time.Now()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	var lost time.Time
	lostCh := make(chan struct{})
	wg.Go(func() {
		select {
		case <-l.Lost():
			lost = time.Now()
			close(lostCh)
		case <-pollCtx.Done():
		}
	})
	// A contender with a Client of its own starts once the hold is lost,
	// while the failover runs: it must wait for the new primary.
	c := newLock(t, ch, Config{SentinelAddrs: s.SentinelAddrs(), MasterName: s.MasterName(), Timeout: 10 * time.Second})
	var contended time.Time
	var contendErr error
	var contendAddr string
	wg.Go(func() {
		select {
		case <-lostCh:
		case <-pollCtx.Done():
			return
		}
		if contendErr = c.Acquire(ctx); contendErr == nil {
			contended = time.Now()
			c.mu.Lock()
			contendAddr = c.h.c.addr
			c.mu.Unlock()
		}
	})
	start := time.Now()
	s.Failover(t)
	took := time.Since(start)
	waitUntil(t, 5*time.Second, "contender acquires", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.h != nil
	})
	stopPoll()
	wg.Wait()
	if lost.IsZero() {
		t.Fatal("Lost() did not fire on failover")
	}
	if named.IsZero() {
		t.Fatal("the sentinel never named another primary")
	}
	t.Logf("failover: Lost() after %v, sentinel named the new primary after %v, Failover returned after %v",
		lost.Sub(start), named.Sub(start), took)
	if !lost.Before(named) {
		t.Errorf("the hold ended %v after the sentinel named the new primary", lost.Sub(named))
	}
	if contendErr != nil {
		t.Fatalf("contender during the failover: %v", contendErr)
	}
	t.Logf("a contender that started when the hold was lost acquired %v after the failover began, on %s", contended.Sub(start), contendAddr)
	if contendAddr != s.Primary().Addr() || contended.Before(named) {
		t.Errorf("the contender acquired on %s at %v, before the sentinel named the new primary %s (at %v)",
			contendAddr, contended.Sub(start), s.Primary().Addr(), named.Sub(start))
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Err(); !errors.Is(err, ErrLost) || !errors.Is(err, errFailover) {
		t.Errorf("Err() = %v, want ErrLost by a failover", err)
	}
	if err := l.Release(ctx); !errors.Is(err, ErrLost) {
		t.Errorf("Release after the failover: %v", err)
	}

	next := s.Primary()
	if next == old {
		t.Fatal("Failover left the primary in place")
	}
	b := newLock(t, ch, Config{Client: cl})
	if err := b.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if n := next.NumSub(t, ch); n != 1 {
		t.Errorf("NUMSUB on the new primary %s = %d", next.Addr(), n)
	}
	if n := old.NumSub(t, ch); n != 0 {
		t.Errorf("NUMSUB on the old primary %s = %d", old.Addr(), n)
	}
	if role, _ := next.Do("ROLE"); !strings.HasPrefix(role, "master") {
		t.Errorf("the new holder's server has ROLE %q", role)
	}
	if err := b.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

// scriptedSentinel is a fake sentinel whose answers a test changes: the
// address it names for the primary, and whether a failover of it runs. It
// confirms PSUBSCRIBE and answers PING, as a sentinel does, but publishes
// nothing: the test hands events to the Client itself.
type scriptedSentinel struct {
	*fakeServer
	mu      sync.Mutex // guards primary, busy, subs and stall
	primary string
	busy    bool
	subs    []net.Conn // the connections that sent PSUBSCRIBE
	// stall, when set, holds up every SENTINEL MASTER until it is closed,
	// after sending the connection to stalled.
	stall   chan struct{}
	stalled chan net.Conn
}

func newScriptedSentinel(t *testing.T, primary string) *scriptedSentinel {
	t.Helper()
	s := &scriptedSentinel{primary: primary}
	s.fakeServer = newFakeServer(t, func(w io.Writer, args []string) {
		s.mu.Lock()
		host, port, _ := net.SplitHostPort(s.primary)
		flags := "master"
		if s.busy {
			flags = "master,failover_in_progress"
		}
		s.mu.Unlock()
		switch {
		case len(args) == 3 && args[0] == "SENTINEL" && args[1] == "GET-MASTER-ADDR-BY-NAME":
			w.Write(resp.AppendCommand(nil, host, port))
		case len(args) == 3 && args[0] == "SENTINEL" && args[1] == "MASTER":
			s.mu.Lock()
			stall, stalled := s.stall, s.stalled
			s.mu.Unlock()
			if stall != nil {
				select {
				case stalled <- w.(net.Conn):
				default:
				}
				<-stall
			}
			w.Write(resp.AppendCommand(nil, "name", args[2], "ip", host, "port", port, "flags", flags))
		case args[0] == "PSUBSCRIBE":
			s.mu.Lock()
			s.subs = append(s.subs, w.(net.Conn))
			s.mu.Unlock()
			for i, p := range args[1:] {
				io.WriteString(w, "*3\r\n$10\r\npsubscribe\r\n$"+strconv.Itoa(len(p))+"\r\n"+p+"\r\n:"+strconv.Itoa(i+1)+"\r\n")
			}
		case args[0] == "PING":
			w.Write(resp.AppendCommand(nil, "pong", ""))
		default:
			io.WriteString(w, "-ERR unexpected "+strings.Join(args, " ")+"\r\n")
		}
	})
	return s
}

func (s *scriptedSentinel) name(primary string, busy bool) {
	s.mu.Lock()
	s.primary, s.busy = primary, busy
	s.mu.Unlock()
}

// subscribed returns how many connections sent PSUBSCRIBE.
func (s *scriptedSentinel) subscribed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// kick closes the subscribed connections, as a network fault would.
func (s *scriptedSentinel) kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.subs {
		c.Close()
	}
}

// fakePrimary is a fake Redis whose ROLE says master, as a primary that a
// failover has not reached yet (cut off, or not yet reconfigured) does.
func fakePrimary(t *testing.T) string {
	t.Helper()
	return newFakeRedis(t, func(w io.Writer, args []string) {
		if args[0] == "ROLE" {
			io.WriteString(w, "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n")
			return
		}
		io.WriteString(w, "-ERR unexpected "+strings.Join(args, " ")+"\r\n")
	}).addr()
}

// A connection to the old primary whose dial and ROLE straddle the news
// of a failover is refused: get asks again and returns a connection to
// the new primary. The news comes as a +switch-master event, or as the
// failover flags seen by another get (which used to move the refused
// address from the old primary to the promoted replica).
func TestSentinelStaleDialRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		news func(t *testing.T, cl *Client, sent *scriptedSentinel, old, next string)
	}{
		{"SwitchMaster", func(t *testing.T, cl *Client, sent *scriptedSentinel, old, next string) {
			sent.name(next, false)
			oh, op, _ := net.SplitHostPort(old)
			nh, np, _ := net.SplitHostPort(next)
			cl.sentinel.event(cl, sent.addr(), "+switch-master", strings.Join([]string{"m", oh, op, nh, np}, " "))
		}},
		{"FailoverRunning", func(t *testing.T, cl *Client, sent *scriptedSentinel, old, next string) {
			oh, op, _ := net.SplitHostPort(old)
			cl.sentinel.event(cl, sent.addr(), "+odown", "master m "+oh+" "+op+" #quorum 1/1")
			// The sentinel names the promoted replica before the failover
			// ends; another get's resolve sees that and waits.
			sent.name(next, true)
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
			defer cancel()
			if addr, err := cl.sentinel.resolve(ctx, cl); err == nil {
				t.Errorf("resolve during the failover returned %s", addr)
			}
			sent.name(next, false)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, next := fakePrimary(t), fakePrimary(t)
			sent := newScriptedSentinel(t, old)
			var cl *Client
			var once sync.Once
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr == old {
					once.Do(func() { tc.news(t, cl, sent, old, next) })
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}
			cl = newClient(t, ClientConfig{SentinelAddrs: []string{sent.addr()}, MasterName: "m", Dial: dial})
			c, err := cl.get(context.Background(), "jobs")
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			if c.addr != next {
				t.Errorf("get returned a connection to %s, the old primary; want %s, the new one", c.addr, next)
			}
			cl.sentinel.mu.Lock()
			live := len(cl.sentinel.live[old])
			cl.sentinel.mu.Unlock()
			if live != 0 {
				t.Errorf("%d connections to the old primary tracked", live)
			}
		})
	}
}

// resyncingWatcher returns a Client of the scripted sentinel sent whose
// watcher resyncs every tick, once it subscribed for held, a connection to
// the primary (closed when t ends).
func resyncingWatcher(t *testing.T, sent *scriptedSentinel, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (*Client, *conn) {
	t.Helper()
	cl := newClient(t, ClientConfig{SentinelAddrs: []string{sent.addr()}, MasterName: "m", Dial: dial, MaxIdle: -1})
	cl.sentinel.resyncEvery = 1
	held, err := cl.get(context.Background(), "jobs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(held.close)
	waitUntil(t, 2*time.Second, "watcher subscribes", func() bool { return sent.subscribed() == 1 })
	return cl, held
}

// A watcher that missed a failover's events, though its link to the
// sentinel held, learns the new primary within a resync: it asks its
// sentinel now and then, and closes the connections to the old primary.
func TestSentinelPeriodicResync(t *testing.T) {
	old, next := fakePrimary(t), fakePrimary(t)
	sent := newScriptedSentinel(t, old)
	cl, held := resyncingWatcher(t, sent, nil)
	sent.name(next, false) // and no event
	waitUntil(t, 4*time.Second, "the Client learns the new primary", func() bool { return cl.sentinel.current() == next })
	if err := held.failed(); !errors.Is(err, errFailover) {
		t.Errorf("held connection to the old primary: %v, want closed with errFailover", err)
	}
	if n := sent.subscribed(); n != 1 {
		t.Errorf("the watcher subscribed %d times; want once (no reconnect)", n)
	}
}

// An answer of a sentinel that may be older than what the Client knows is
// dropped: one to a question asked before other news was taken in (a
// failover event, another answer); one from a sentinel that has not heard
// of a switch yet (a lower config-epoch, or the same one after a
// +switch-master); one that does not see a failover another sentinel
// reported. Sentinels learn of a switch from each other, up to seconds
// apart, and only one runs a failover.
func TestSentinelStaleAnswerDropped(t *testing.T) {
	const s1, s2 = "127.0.0.1:26379", "127.0.0.1:26380" // the sentinels' addresses, as answers name them
	old, next := "127.0.0.1:7001", "127.0.0.1:7002"
	oh, op, _ := net.SplitHostPort(old)
	nh, np, _ := net.SplitHostPort(next)
	type step struct {
		event  string // "" or: channel payload, from s2 (the watcher's sentinel)
		early  bool   // the answer's question was asked before the step before
		expire bool   // failoverHold has passed since the epoch was last confirmed
		ans    sentinelAnswer
		taken  bool   // whether the answer must be taken
		want   string // the primary known after the step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"AskedBeforeAnEvent", []step{
			{ans: sentinelAnswer{from: s1, primary: old, epoch: 1}, taken: true, want: old},
			{event: "+odown master m " + oh + " " + op + " #quorum 1/1", want: ""},
			{early: true, ans: sentinelAnswer{from: s2, primary: old, epoch: 1}, want: ""},
		}},
		{"AskedBeforeAnotherAnswer", []step{
			{ans: sentinelAnswer{from: s1, primary: next, epoch: 2}, taken: true, want: next},
			{early: true, ans: sentinelAnswer{from: s2, primary: old, busy: true, epoch: 1}, want: next},
		}},
		{"LowerEpoch", []step{
			{ans: sentinelAnswer{from: s1, primary: next, epoch: 2}, taken: true, want: next},
			{ans: sentinelAnswer{from: s2, primary: old, epoch: 1}, want: next},
			{ans: sentinelAnswer{from: s2, primary: next, epoch: 2}, taken: true, want: next},
		}},
		{"SameEpochAfterSwitch", []step{
			{ans: sentinelAnswer{from: s1, primary: old, epoch: 1}, taken: true, want: old},
			{event: "+switch-master m " + oh + " " + op + " " + nh + " " + np, want: next},
			{ans: sentinelAnswer{from: s1, primary: old, epoch: 1}, want: next},
			{ans: sentinelAnswer{from: s1, primary: next, epoch: 2}, taken: true, want: next},
		}},
		{"SentinelsReset", []step{ // their epochs start again
			{ans: sentinelAnswer{from: s1, primary: old, epoch: 5}, taken: true, want: old},
			{ans: sentinelAnswer{from: s1, primary: next, epoch: 1}, want: old},
			{expire: true, ans: sentinelAnswer{from: s1, primary: next, epoch: 1}, taken: true, want: next},
			{ans: sentinelAnswer{from: s2, primary: old, epoch: 0}, taken: true, want: old}, // no floor for 0
		}},
		{"FailoverOthersDoNotSee", []step{
			{ans: sentinelAnswer{from: s1, primary: old, epoch: 1}, taken: true, want: old},
			{event: "+odown master m " + oh + " " + op + " #quorum 1/1", want: ""},
			{ans: sentinelAnswer{from: s1, primary: old, epoch: 1}, want: ""},
			// The sentinel that reported it says it is over (an abort
			// whose event was missed).
			{ans: sentinelAnswer{from: s2, primary: old, epoch: 1}, taken: true, want: old},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newClient(t, ClientConfig{SentinelAddrs: []string{s1, s2}, MasterName: "m"})
			s := cl.sentinel
			news := func() uint64 {
				s.mu.Lock()
				defer s.mu.Unlock()
				return s.news
			}
			var prev uint64
			seq := news()
			for i, st := range tc.steps {
				prev, seq = seq, news()
				if st.event != "" {
					channel, payload, _ := strings.Cut(st.event, " ")
					s.event(cl, s2, channel, payload)
				} else {
					asked := seq
					if st.early {
						asked = prev
					}
					if st.expire {
						s.mu.Lock()
						s.epochUntil = time.Now()
						s.mu.Unlock()
					}
					if got := s.namedSince(cl, asked, st.ans, "test"); got != st.taken {
						t.Errorf("step %d: answer %+v taken %v, want %v", i, st.ans, got, st.taken)
					}
				}
				if p := s.current(); p != st.want {
					t.Errorf("step %d: primary %q, want %q", i, p, st.want)
				}
			}
		})
	}
}

// Client.Close ends the watcher's resync under way on a stalled sentinel:
// it returns, the resync's connection is closed, and no goroutine of the
// Client is left. (That the watcher waits for the resync's goroutine is
// not seen here: cancelled, it ends within the leak check's grace.)
func TestSentinelCloseEndsResync(t *testing.T) {
	leakCheck(t)
	sent := newScriptedSentinel(t, fakePrimary(t))
	cl, _ := resyncingWatcher(t, sent, nil)
	stall, stalled := make(chan struct{}), make(chan net.Conn, 1)
	defer close(stall)
	sent.mu.Lock()
	sent.stall, sent.stalled = stall, stalled
	sent.mu.Unlock()
	var c net.Conn
	select {
	case c = <-stalled:
	case <-time.After(5 * time.Second):
		t.Fatal("no resync asked the sentinel")
	}
	closed := make(chan struct{})
	go func() {
		cl.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return while a resync was stalled")
	}
	// Our side of the connection is closed by now: the sentinel reads its
	// end at once.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if n, err := c.Read(make([]byte, 64)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the stalled resync's connection after Close: read %d, %v; want it closed (EOF or a reset)", n, err)
	}
}

// A periodic resync that fails (the sentinel refuses a new connection)
// leaves the watcher's subscription be, unless it fails maxResyncFailures
// times in a row.
func TestSentinelFailedResyncKeepsSubscription(t *testing.T) {
	old := fakePrimary(t)
	sent := newScriptedSentinel(t, old)
	var refuse atomic.Bool
	var refused atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == sent.addr() && refuse.Load() {
			refused.Add(1)
			return nil, errors.New("sentinel at maxclients")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	cl, held := resyncingWatcher(t, sent, dial)
	resyncs := func() int {
		cl.sentinel.mu.Lock()
		defer cl.sentinel.mu.Unlock()
		return cl.sentinel.resyncs
	}
	refuse.Store(true)
	waitUntil(t, 5*time.Second, "two resyncs fail", func() bool { return refused.Load() >= maxResyncFailures-1 })
	refuse.Store(false)
	before := resyncs()
	waitUntil(t, 5*time.Second, "a resync succeeds", func() bool { return resyncs() > before })
	if n := sent.subscribed(); n != 1 {
		t.Errorf("the watcher subscribed %d times; want once (a failed resync must not drop the subscription)", n)
	}
	if err := held.failed(); err != nil {
		t.Errorf("held connection: %v", err)
	}

	// Failing every time, it turns to another sentinel (here the same one,
	// the only one): it subscribes anew.
	refuse.Store(true)
	waitUntil(t, 10*time.Second, "the watcher gives the sentinel up", func() bool { return refused.Load() >= 2*maxResyncFailures })
	refuse.Store(false)
	waitUntil(t, 5*time.Second, "the watcher subscribes again", func() bool { return sent.subscribed() == 2 })
}

// A watcher that reconnects to its sentinel, having missed events, closes
// every connection to a server other than the primary the sentinel names,
// even when the Client no longer knows which primary those connections
// went to (a failed dial made it forget).
func TestSentinelResyncRetiresStale(t *testing.T) {
	old, next := fakePrimary(t), fakePrimary(t)
	sent := newScriptedSentinel(t, old)
	var down atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == old && down.Load() {
			return nil, errors.New("old primary down")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	cl := newClient(t, ClientConfig{SentinelAddrs: []string{sent.addr()}, MasterName: "m", Dial: dial, MaxIdle: -1})
	ctx := context.Background()
	held, err := cl.get(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	defer held.close()
	waitUntil(t, 2*time.Second, "watcher subscribes", func() bool { return sent.subscribed() == 1 })

	// The old primary goes down: another get fails to dial it, and the
	// Client forgets it. The sentinel fails over while the watcher's link
	// to it is cut.
	down.Store(true)
	if c, err := cl.get(ctx, "jobs"); err == nil {
		c.close()
		t.Fatalf("get with the old primary down returned a connection to %s", c.addr)
	}
	sent.name(next, false)
	sent.kick()
	waitUntil(t, 3*time.Second, "the held connection to the old primary is closed", func() bool { return held.failed() != nil })
	if err := held.failed(); !errors.Is(err, errFailover) {
		t.Errorf("held connection closed with %v, want errFailover", err)
	}
}

// A get whose dial to the primary straddles a real failover, and whose
// ROLE still finds a master there, is refused, and returns a connection
// to the new primary. The old primary that still says master is a stand-in
// (a standalone Redis dialed in its place), as a cut-off old primary, or
// one the sentinel has not reconfigured yet, would be: Failover demotes
// the real one at once.
func testSentinelDialStraddlesFailover(t *testing.T, s *redistest.SentinelSet) {
	ctx := context.Background()
	standIn := redistest.Redis(t)
	old, sentinel := s.Primary().Addr(), s.SentinelAddrs()[0]
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	var mu sync.Mutex
	var ours []string // local addresses of the Client's connections to the sentinel
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == old && armed.CompareAndSwap(true, false) {
			close(entered)
			<-release
			addr = standIn.Addr()
		}
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err == nil && addr == sentinel {
			mu.Lock()
			ours = append(ours, nc.LocalAddr().String())
			mu.Unlock()
		}
		return nc, err
	}
	cl := newClient(t, ClientConfig{SentinelAddrs: s.SentinelAddrs(), MasterName: s.MasterName(), Dial: dial,
		DialTimeout: time.Minute})
	// No periodic resync: one during the failover would retire the
	// connection that keeps the watcher running (below).
	cl.sentinel.resyncEvery = math.MaxInt
	// A held lock starts the Client's watcher. Once it has subscribed
	// and asked for the primary (as a failover running then would close
	// every connection), a connection the test files under an address no
	// event names keeps it running through the failover, whose first event
	// closes the hold: the watcher stops a tick after its last connection
	// is gone, and would miss the switch.
	l := newLock(t, "held", Config{Client: cl})
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	sc, err := dialConn(ctx, dialConfig{network: "tcp", addr: sentinel, resp2: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	waitUntil(t, 5*time.Second, "the watcher subscribes and asks for the primary", func() bool {
		v, err := sc.do(ctx, "CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		subscribed, others := 0, 0
		for line := range strings.Lines(string(v.Str)) {
			for _, a := range ours {
				if strings.Contains(line, " addr="+a+" ") {
					if strings.Contains(line, " psub=8 ") {
						subscribed++
					} else {
						others++
					}
				}
			}
		}
		cl.sentinel.mu.Lock()
		resynced := cl.sentinel.resyncs > 0 // else it could retire keep
		cl.sentinel.mu.Unlock()
		return subscribed == 1 && others == 0 && resynced
	})
	keep, err := dialConn(ctx, dialConfig{network: "tcp", addr: standIn.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer keep.close()
	keep.addr = "keep.invalid:1"
	cl.sentinel.mu.Lock()
	cl.sentinel.live[keep.addr] = []*conn{keep}
	cl.sentinel.mu.Unlock()

	armed.Store(true)
	type result struct {
		c   *conn
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := cl.get(ctx, "jobs")
		got <- result{c, err}
	}()
	select {
	case <-entered:
	case r := <-got:
		t.Fatalf("get did not dial the primary: %v, %v", r.c, r.err)
	}
	s.Failover(t)
	next := s.Primary().Addr()
	// A loaded machine may take seconds to run the failover and its events.
	waitUntil(t, 15*time.Second, "the Client learns the new primary", func() bool { return cl.sentinel.current() == next })
	releaseOnce.Do(func() { close(release) })
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.close()
	if r.c.addr != next {
		t.Errorf("get returned a connection to %s, the old primary; want %s, the new one", r.c.addr, next)
	}
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Error("the hold on the old primary was not lost")
	}
}
