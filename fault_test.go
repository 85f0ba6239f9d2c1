package pubsublock_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/internal/redistest"
)

// publishAll publishes msgs on channel from a new connection to addr, in
// one pipeline, and checks every reply.
func publishAll(t *testing.T, addr, channel string, msgs ...string) {
	t.Helper()
	cmds := make([][]string, len(msgs))
	for i, m := range msgs {
		cmds[i] = []string{"PUBLISH", channel, m}
	}
	replies, err := redistest.Pipeline(addr, cmds...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range replies {
		if _, err := strconv.Atoi(r); err != nil {
			t.Fatalf("PUBLISH %d: reply %q", i, r)
		}
	}
}

// The holder process of the fault, peer and interop tests:
// TestFaultHelperProcess runs in a child test binary when
// PUBSUBLOCK_FAULT_HELPER is set. It acquires the lock on
// PUBSUBLOCK_CHANNEL at PUBSUBLOCK_URL (with PUBSUBLOCK_PROTOCOL and
// PUBSUBLOCK_UNAVAILABLE_TIMEOUT when set), prints "held <holder id>", and
// exits after printing "lost" when it sees Lost(), or "released" and
// Release's error when its stdin closes (only the latter with
// PUBSUBLOCK_RELEASE_ONLY=1).
const helperEnv = pubsublock.HolderProcessEnv

func TestFaultHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	cfg := pubsublock.Config{URL: os.Getenv("PUBSUBLOCK_URL"), Timeout: 10 * time.Second}
	if d, err := time.ParseDuration(os.Getenv("PUBSUBLOCK_UNAVAILABLE_TIMEOUT")); err == nil {
		cfg.UnavailableTimeout = d
	}
	cfg.Protocol, _ = strconv.Atoi(os.Getenv("PUBSUBLOCK_PROTOCOL"))
	l, err := pubsublock.New(os.Getenv("PUBSUBLOCK_CHANNEL"), cfg)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("held", l.HolderID())
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	lost := l.Lost()
	if os.Getenv("PUBSUBLOCK_RELEASE_ONLY") == "1" {
		lost = nil // release at the end of stdin, lost or not
	}
	select {
	case <-lost:
		fmt.Println("lost", l.Err())
	case <-stdinClosed:
		fmt.Println("released", l.Release(context.Background()))
	}
	os.Exit(0)
}

// startHolder starts the test binary as a holder process of channel on
// url and waits until it holds the lock.
func startHolder(t *testing.T, url, channel string, env ...string) *redistest.Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "PUBSUBLOCK_URL="+url, "PUBSUBLOCK_CHANNEL="+channel)
	cmd.Env = append(cmd.Env, env...)
	p := redistest.StartProc(t, cmd)
	p.Expect(t, "held", 15*time.Second)
	return p
}

// acquisition is what an Acquire that acquireTimed started returned, and
// when.
type acquisition struct {
	at  time.Time
	err error
}

// acquireTimed starts l.Acquire(ctx) and returns where its result comes.
func acquireTimed(ctx context.Context, l *pubsublock.Lock) <-chan acquisition {
	got := make(chan acquisition, 1)
	go func() {
		err := l.Acquire(ctx)
		got <- acquisition{time.Now(), err}
	}()
	return got
}

// TestFaultSIGKILLedHolder: a holder process killed outright frees the
// lock at once (the server drops its subscription), so a waiter polling
// every 50ms takes it within about that.
func TestFaultSIGKILLedHolder(t *testing.T) {
	pubsublock.LeakCheck(t)
	s := redistest.Redis(t)
	p := startHolder(t, s.URL(), "killed")

	// UnavailableTimeout bounds the rare case where the holder dies between
	// a ping and its answer.
	w := pubsublock.NewLock(t, "killed", pubsublock.Config{URL: s.URL(), Timeout: -1, CheckInterval: 50 * time.Millisecond,
		UnavailableTimeout: 400 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := acquireTimed(ctx, w)
	time.Sleep(300 * time.Millisecond) // the waiter polls, and the holder answers its pings
	select {
	case r := <-got:
		t.Fatalf("waiter returned while the holder lived: %v", r.err)
	default:
	}
	killed := time.Now()
	p.Signal(t, syscall.SIGKILL)
	r := <-got
	if r.err != nil {
		t.Fatalf("waiter: %v", r.err)
	}
	defer w.Release(context.Background())
	d := r.at.Sub(killed)
	t.Logf("SIGKILL to acquired: %v", d)
	if d > time.Second {
		t.Errorf("take-over after SIGKILL took %v, want < 1s", d)
	}
}

// TestFaultSIGSTOPpedHolder: a frozen holder process keeps its
// subscription, so a contender must ping it, wait UnavailableTimeout and
// kill its connection. Resumed, the old holder learns it lost the lock.
func TestFaultSIGSTOPpedHolder(t *testing.T) {
	pubsublock.LeakCheck(t)
	s := redistest.Redis(t)
	p := startHolder(t, s.URL(), "frozen")
	before := s.SubscriberIDs(t, "frozen-lock")
	if len(before) != 1 {
		t.Fatalf("holder connections named frozen-lock: %v", before)
	}

	p.Signal(t, syscall.SIGSTOP)
	stopped := time.Now()
	c := pubsublock.NewLock(t, "frozen", pubsublock.Config{URL: s.URL(), Timeout: 5 * time.Second, CheckInterval: 50 * time.Millisecond,
		UnavailableTimeout: 300 * time.Millisecond})
	pubsublock.MustAcquire(t, c)
	d := time.Since(stopped)
	t.Logf("SIGSTOP to acquired: %v (UnavailableTimeout 300ms)", d)
	if d < 300*time.Millisecond {
		t.Errorf("took over after %v, before UnavailableTimeout", d)
	}
	if d > 2*time.Second {
		t.Errorf("take-over of a frozen holder took %v, want < 2s", d)
	}
	if after := s.SubscriberIDs(t, "frozen-lock"); len(after) != 1 || after[0] == before[0] {
		t.Errorf("holder connections after take-over: %v, before %v", after, before)
	}

	resumed := time.Now()
	p.Signal(t, syscall.SIGCONT)
	line := p.Expect(t, "lost", 5*time.Second)
	t.Logf("resumed holder: %q after %v", line, time.Since(resumed))
	if !strings.Contains(line, pubsublock.ErrLost.Error()) {
		t.Errorf("resumed holder's Err: %q, want ErrLost", line)
	}
	if err := c.Err(); err != nil {
		t.Errorf("new holder's Err() = %v", err)
	}
	if n := s.NumSub(t, "frozen"); n != 1 {
		t.Errorf("NUMSUB frozen = %d after the old holder resumed", n)
	}
}

// TestFaultResumedHolderReleases: a holder process frozen inside its
// critical section, taken over meanwhile, and resumed straight into Release
// (its stdin closed while it was stopped) must hear from Release that it
// lost the lock, though its worker goroutine may not have read the killed
// connection yet: a pooled release returns once written.
func TestFaultResumedHolderReleases(t *testing.T) {
	pubsublock.LeakCheck(t)
	s := redistest.Redis(t)
	for i := range 8 {
		p := startHolder(t, s.URL(), "resumed", "PUBSUBLOCK_RELEASE_ONLY=1")
		p.Signal(t, syscall.SIGSTOP)
		c := pubsublock.NewLock(t, "resumed", pubsublock.Config{URL: s.URL(), Timeout: 5 * time.Second, CheckInterval: 50 * time.Millisecond,
			UnavailableTimeout: 200 * time.Millisecond})
		pubsublock.MustAcquire(t, c)
		p.Stdin.Close()
		time.Sleep(20 * time.Millisecond) // the end of stdin waits, as the kill does
		p.Signal(t, syscall.SIGCONT)
		line := p.Expect(t, "released", 5*time.Second)
		if !strings.Contains(line, pubsublock.ErrLost.Error()) {
			t.Errorf("round %d: the resumed holder's Release said %q, want ErrLost", i, line)
		}
		if err := c.Release(context.Background()); err != nil {
			t.Fatalf("round %d: new holder's Release: %v", i, err)
		}
	}
}

// TestFaultServerRestart: a restart of redis-server ends every
// subscription; the holder must notice, report ErrLost, and be able to
// acquire again.
func TestFaultServerRestart(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("resp"+map[string]string{"": "3", "?protocol=2": "2"}[proto], func(t *testing.T) {
			pubsublock.LeakCheck(t)
			s := redistest.Redis(t)
			l := pubsublock.NewLock(t, "restart", pubsublock.Config{URL: s.URL() + proto})
			pubsublock.MustAcquire(t, l)
			start := time.Now()
			s.Restart(t)
			d := pubsublock.WaitLost(t, l, start, 5*time.Second)
			t.Logf("Lost() %v after Restart began", d)
			if err := l.Err(); !errors.Is(err, pubsublock.ErrLost) {
				t.Errorf("Err() = %v, want ErrLost", err)
			}
			if err := l.Release(context.Background()); !errors.Is(err, pubsublock.ErrLost) {
				t.Errorf("Release after restart = %v, want ErrLost", err)
			}
			pubsublock.MustAcquire(t, l)
			if n := s.NumSub(t, "restart"); n != 1 {
				t.Errorf("NUMSUB after re-acquire = %d", n)
			}
			if err := l.Release(context.Background()); err != nil {
				t.Errorf("Release: %v", err)
			}
		})
	}
}

// TestFaultBlackhole: a connection that goes silent without closing is
// noticed by the health check within HealthCheckInterval plus its deadline.
func TestFaultBlackhole(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("resp"+map[string]string{"": "3", "?protocol=2": "2"}[proto], func(t *testing.T) {
			pubsublock.LeakCheck(t)
			s := redistest.Redis(t)
			px := redistest.NewProxy(t, s.Addr())
			l := pubsublock.NewLock(t, "hole", pubsublock.Config{URL: "redis://" + px.Addr() + proto,
				HealthCheckInterval: 300 * time.Millisecond, UnavailableTimeout: 200 * time.Millisecond})
			pubsublock.MustAcquire(t, l)
			start := time.Now()
			px.Blackhole()
			d := pubsublock.WaitLost(t, l, start, 5*time.Second)
			t.Logf("blackhole detected after %v (HealthCheckInterval 300ms + UnavailableTimeout 200ms)", d)
			if d > 3*time.Second {
				t.Errorf("blackhole detected after %v, want < 3s", d)
			}
			if err := l.Err(); !errors.Is(err, pubsublock.ErrLost) {
				t.Errorf("Err() = %v, want ErrLost", err)
			}
			if err := l.Release(context.Background()); !errors.Is(err, pubsublock.ErrLost) {
				t.Errorf("Release = %v, want ErrLost", err)
			}
		})
	}
}

// TestFaultHungServer: a server that stops answering (a blackholed
// connection) makes every call return an error, never hang, although the
// callers' contexts have no deadline: Acquire within its Timeout plus
// UnavailableTimeout, other round trips within DialTimeout, and Release
// within UnavailableTimeout.
func TestFaultHungServer(t *testing.T) {
	for _, pooled := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared-client", false: "own-connection"}[pooled], func(t *testing.T) {
			s := redistest.Redis(t)
			px := redistest.NewProxy(t, s.Addr())
			cfg := pubsublock.Config{Timeout: 300 * time.Millisecond, UnavailableTimeout: 200 * time.Millisecond}
			url := "redis://" + px.Addr()
			if pooled {
				cl, err := pubsublock.NewClient(pubsublock.ClientConfig{URL: url, DialTimeout: 500 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				cfg.Client = cl
			} else {
				cfg.URL, cfg.DialTimeout = url, 500*time.Millisecond
			}
			holder := pubsublock.NewLock(t, "hung", cfg)
			waiter := pubsublock.NewLock(t, "hung", cfg)
			ctx := context.Background()
			pubsublock.MustAcquire(t, holder)
			// Warm connections in the shared Client's pool: the calls below
			// first meet a server that stops answering mid-round trip.
			if err := waiter.TryAcquire(ctx); !errors.Is(err, pubsublock.ErrAlreadyLocked) {
				t.Fatalf("TryAcquire while held: %v", err)
			}
			px.Blackhole()
			bounded := func(what string, limit time.Duration, f func() error) error {
				t.Helper()
				start := time.Now()
				done := make(chan error, 1)
				go func() { done <- f() }()
				select {
				case err := <-done:
					t.Logf("%s on a hung server: %v after %v", what, err, time.Since(start).Round(time.Millisecond))
					return err
				case <-time.After(limit):
					t.Fatalf("%s hangs on a hung server (more than %v)", what, limit)
					return nil
				}
			}
			if err := bounded("Status", 5*time.Second, func() error { _, err := waiter.Status(ctx); return err }); err == nil {
				t.Error("Status succeeded on a hung server")
			}
			if err := bounded("TryAcquire", 5*time.Second, func() error { return waiter.TryAcquire(ctx) }); err == nil {
				t.Error("TryAcquire succeeded on a hung server")
			}
			if err := bounded("Acquire", 5*time.Second, func() error { return waiter.Acquire(ctx) }); err == nil ||
				errors.Is(err, pubsublock.ErrAlreadyLocked) {
				t.Errorf("Acquire = %v, want an error that says the server did not answer", err)
			}
			bounded("Release", 5*time.Second, func() error { return holder.Release(ctx) })
		})
	}
}

// garbage is what TestFaultGarbage publishes on a held channel: nothing of
// it is a ping the holder can answer.
func garbage() []string {
	msgs := []string{
		"not json",
		"",
		`{"message": "ping"}`,
		`{"response_channel": 42, "message": "ping"}`,
		`{"response_channel": ["a"], "message": "ping"}`,
		`{"response_channel": null}`,
		`{"response_channel": ""}`,
		`{"response_channel": {"x": 1}}`,
		`[1, 2, 3]`,
		`"just a string"`,
		`null`,
		`{"response_channel": "unterminated`,
		"\x00\xff\xfe\r\n*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n",
		">3\r\n$11\r\nunsubscribe\r\n$7\r\ngarbage\r\n:0\r\n",
		"\xc3\x28 invalid utf-8 \xa0\xa1",
		strings.Repeat("x", 1<<20),
		`{"response_channel": "garbage-big", "pad": "` + strings.Repeat("y", 1<<20) + `"}`,
	}
	for i := range 1000 { // a flood: junk, and pings nobody listens to
		if i%2 == 0 {
			msgs = append(msgs, "flood "+strconv.Itoa(i))
		} else {
			msgs = append(msgs, `{"response_channel": "garbage-flood-`+strconv.Itoa(i)+`", "message": "ping"}`)
		}
	}
	return msgs
}

// TestFaultGarbage: whatever is published on the lock channel, the holder
// keeps the lock and keeps answering pings.
func TestFaultGarbage(t *testing.T) {
	run := func(t *testing.T, url, addr string) {
		h := pubsublock.NewLock(t, "garbage", pubsublock.Config{URL: url})
		pubsublock.MustAcquire(t, h)
		start := time.Now()
		publishAll(t, addr, "garbage", garbage()...)
		t.Logf("published %d messages in %v", len(garbage()), time.Since(start))

		c := pubsublock.NewLock(t, "garbage", pubsublock.Config{URL: url, UnavailableTimeout: 2 * time.Second})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		alive, err := c.CheckOrKill(ctx)
		if err != nil || !alive {
			t.Errorf("CheckOrKill after garbage = %v, %v; want alive", alive, err)
		}
		if err := c.TryAcquire(ctx); !errors.Is(err, pubsublock.ErrAlreadyLocked) {
			t.Errorf("TryAcquire after garbage = %v, want ErrAlreadyLocked", err)
			_ = c.Release(ctx)
		}
		if err := h.Err(); err != nil {
			t.Errorf("holder's Err() = %v", err)
		}
		select {
		case <-h.Lost():
			t.Error("holder's Lost() closed")
		default:
		}
		if err := h.Release(ctx); err != nil {
			t.Errorf("Release: %v", err)
		}
	}
	t.Run("miniredis", func(t *testing.T) {
		pubsublock.LeakCheck(t)
		m := redistest.Miniredis(t)
		run(t, "redis://"+m.Addr(), m.Addr())
	})
	t.Run("redis", func(t *testing.T) {
		pubsublock.LeakCheck(t)
		s := redistest.Redis(t)
		run(t, s.URL(), s.Addr())
	})
	t.Run("redis-resp2", func(t *testing.T) {
		pubsublock.LeakCheck(t)
		s := redistest.Redis(t)
		run(t, s.URL()+"?protocol=2", s.Addr())
	})
}

// TestFaultClientKill: CLIENT KILL of the holder's connection ends the
// hold at once.
func TestFaultClientKill(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("resp"+map[string]string{"": "3", "?protocol=2": "2"}[proto], func(t *testing.T) {
			pubsublock.LeakCheck(t)
			s := redistest.Redis(t)
			l := pubsublock.NewLock(t, "victim", pubsublock.Config{URL: s.URL() + proto})
			pubsublock.MustAcquire(t, l)
			ids := s.SubscriberIDs(t, "victim-lock")
			if len(ids) != 1 {
				t.Fatalf("holder connections named victim-lock: %v", ids)
			}
			start := time.Now()
			if out, err := s.Do("CLIENT", "KILL", "ID", strconv.FormatInt(ids[0], 10)); err != nil || out != "1" {
				t.Fatalf("CLIENT KILL = %q, %v", out, err)
			}
			d := pubsublock.WaitLost(t, l, start, time.Second)
			t.Logf("Lost() %v after CLIENT KILL", d)
			if err := l.Err(); !errors.Is(err, pubsublock.ErrLost) {
				t.Errorf("Err() = %v, want ErrLost", err)
			}
			if err := l.Release(context.Background()); !errors.Is(err, pubsublock.ErrLost) {
				t.Errorf("Release = %v, want ErrLost", err)
			}
		})
	}
}

// TestCrashTakeoverTail: 50 holder processes are SIGKILLed while a waiter
// polls every 20ms; half of them are first frozen, so that the waiter's
// ping is outstanding when the holder dies. A waiter that pinged a holder
// which then died does not wait UnavailableTimeout for an answer that
// cannot come: it watches the holder, and every takeover comes within a
// few CheckIntervals of the kill (the target, on an idle machine without
// the race detector, is 2 × CheckInterval + 10ms; this test allows for a
// loaded one, and logs the figures).
func TestCrashTakeoverTail(t *testing.T) {
	if testing.Short() {
		t.Skip("50 holder processes")
	}
	const (
		kills         = 50
		checkInterval = 20 * time.Millisecond
		unavailable   = 2 * time.Second
	)
	s := redistest.Redis(t)
	var took []time.Duration
	for i := range kills {
		p := startHolder(t, s.URL(), "crash")
		w := pubsublock.NewLock(t, "crash", pubsublock.Config{URL: s.URL(), Timeout: -1, CheckInterval: checkInterval, UnavailableTimeout: unavailable})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got := acquireTimed(ctx, w)
		time.Sleep(time.Duration(rand.IntN(int(3 * checkInterval))))
		if i%2 == 1 {
			// Frozen: the waiter's next ping goes unanswered.
			p.Signal(t, syscall.SIGSTOP)
			time.Sleep(3 * checkInterval)
		}
		killed := time.Now()
		p.Signal(t, syscall.SIGKILL)
		r := <-got
		cancel()
		if r.err != nil {
			t.Fatalf("kill %d: waiter: %v", i, r.err)
		}
		took = append(took, r.at.Sub(killed))
		_ = w.Release(context.Background())
	}
	slices.Sort(took)
	p50, worst := took[len(took)/2], took[len(took)-1]
	t.Logf("SIGKILL to takeover over %d kills: p50 %v, p90 %v, max %v", kills, p50, took[len(took)*9/10], worst)
	if worst >= unavailable/2 {
		t.Errorf("a takeover took %v: the waiter waited for the dead holder's answer (UnavailableTimeout %v)", worst, unavailable)
	}
}
