package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
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

// The tests against portalocker 4 (protocol 1) run its source with
// Debian's python3 and python3-redis, driven by testdata/py4lock.py. They
// run only when PORTALOCKER4_SRC names a portalocker 4 source tree (the
// directory that holds portalocker/redis.py); CI checks the wire format
// against the peers of peer_test.go instead.

// requirePortalocker4 returns the python3 and the PYTHONPATH that run
// portalocker 4, or skips the test.
func requirePortalocker4(t *testing.T) (python, src string) {
	t.Helper()
	src = os.Getenv("PORTALOCKER4_SRC")
	if src == "" {
		t.Skip("portalocker 4 interop: set PORTALOCKER4_SRC to a portalocker 4 source tree, e.g. git clone -b v4.1.0 https://github.com/wolph/portalocker /tmp/pl4 && PORTALOCKER4_SRC=/tmp/pl4")
	}
	if _, err := os.Stat(filepath.Join(src, "portalocker", "redis.py")); err != nil {
		t.Fatalf("PORTALOCKER4_SRC=%s: %v", src, err)
	}
	return redistest.RequirePython(t), src
}

// startPy4 runs testdata/py4lock.py mode against s for channel with flags
// ("exclusive" or "shared").
func startPy4(t *testing.T, s *redistest.Server, mode, channel, flags string, args ...string) *holderProc {
	t.Helper()
	py, src := requirePortalocker4(t)
	argv := append([]string{"testdata/py4lock.py", mode, "127.0.0.1", strconv.Itoa(s.Port()), channel, flags}, args...)
	cmd := exec.Command(py, argv...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+src)
	return startProc(t, cmd)
}

// holdPy4 starts a portalocker 4 holder and waits until it holds; it
// returns the process and its holder id.
func holdPy4(t *testing.T, s *redistest.Server, channel, flags string) (*holderProc, string) {
	t.Helper()
	p := startPy4(t, s, "hold", channel, flags, "10")
	line := p.expect(t, "held ", 15*time.Second)
	return p, strings.TrimPrefix(line, "held ")
}

// TestInterop4FrozenHolderTakenOver: a SIGSTOPped portalocker 4 holder,
// exclusive or shared, is killed by a waiting Go Acquire, which takes the
// lock within UnavailableTimeout + CheckInterval + 100ms; while it was
// alive, Go's ping did not kill it.
func TestInterop4FrozenHolderTakenOver(t *testing.T) {
	for _, flags := range []string{"exclusive", "shared"} {
		t.Run(flags, func(t *testing.T) {
			requirePortalocker4(t)
			leakCheck(t)
			s := redistest.Redis(t)
			const (
				checkInterval = 100 * time.Millisecond
				unavailable   = 500 * time.Millisecond
			)
			p, id := holdPy4(t, s, "frozen4", flags)
			name := "frozen4-lock-" + id
			before := holderIDs(t, s, name)
			if len(before) != 1 {
				t.Fatalf("portalocker 4 holder connections named %s: %v", name, before)
			}
			g := mustNew(t, "frozen4", Config{URL: s.URL(), CheckInterval: checkInterval, UnavailableTimeout: unavailable})
			if err := g.TryAcquire(context.Background()); !errors.Is(err, ErrAlreadyLocked) {
				t.Fatalf("TryAcquire on a live portalocker 4 holder's lock: %v", err)
			}
			if ids := holderIDs(t, s, name); len(ids) != 1 || ids[0] != before[0] {
				t.Fatalf("live holder's connections after Go's ping: %v, before %v", ids, before)
			}
			p.signal(t, syscall.SIGSTOP)
			start := time.Now()
			mustAcquire(t, g)
			d := time.Since(start)
			t.Logf("SIGSTOPped portalocker 4 %s holder taken over by Go in %v (UnavailableTimeout %v, CheckInterval %v)", flags, d, unavailable, checkInterval)
			if limit := unavailable + checkInterval + 100*time.Millisecond; d > limit {
				t.Errorf("take-over in %v, want at most %v", d, limit)
			}
			if ids := holderIDs(t, s, name); len(ids) != 0 {
				t.Errorf("frozen holder's connection still subscribed: %v", ids)
			}
			if n := numsubOf(t, s, "frozen4"); n != 1 {
				t.Errorf("NUMSUB = %d after take-over", n)
			}
		})
	}
}

// TestInterop4Status: Status names portalocker 4 holders, with their
// holder ids and modes.
func TestInterop4Status(t *testing.T) {
	requirePortalocker4(t)
	leakCheck(t)
	s := redistest.Redis(t)
	_, r1 := holdPy4(t, s, "st4", "shared")
	_, r2 := holdPy4(t, s, "st4", "shared")
	l := mustNew(t, "st4", Config{URL: s.URL()})
	st, err := l.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Subscribers != 2 || len(st.Holders) != 2 {
		t.Fatalf("Status of two portalocker 4 readers: %+v", st)
	}
	for _, h := range st.Holders {
		if (h.HolderID != r1 && h.HolderID != r2) || h.Name != "st4-lock-"+h.HolderID || !h.Answered ||
			h.Mode != ModeShared || h.Protocol != 1 || h.Kind != KindPortalocker4 {
			t.Errorf("holder %+v; readers %s and %s", h, r1, r2)
		}
	}
}

// TestInterop4GoHolds: portalocker 4 contenders, exclusive or shared, find
// a Go holder of either protocol alive and leave it be; once it releases,
// they take the lock.
func TestInterop4GoHolds(t *testing.T) {
	requirePortalocker4(t)
	for _, protocol := range []int{0, 1} {
		t.Run(fmt.Sprintf("protocol%d", protocol), func(t *testing.T) {
			leakCheck(t)
			s := redistest.Redis(t)
			g := mustNew(t, "goheld4", Config{URL: s.URL(), Protocol: protocol})
			mustAcquire(t, g)
			before := holderIDs(t, s, g.ClientName())
			for _, flags := range []string{"exclusive", "shared"} {
				p := startPy4(t, s, "try", "goheld4", flags, "1.5")
				if line := p.expect(t, "", 15*time.Second); line != "locked" {
					t.Errorf("portalocker 4 %s contender while Go holds: %q, want locked", flags, line)
				}
			}
			if err := g.Err(); err != nil {
				t.Fatalf("Go holder: %v", err)
			}
			if after := holderIDs(t, s, g.ClientName()); len(after) != 1 || after[0] != before[0] {
				t.Fatalf("Go holder's connections %v, before %v", after, before)
			}
			if err := g.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
			p := startPy4(t, s, "try", "goheld4", "exclusive", "1")
			if line := p.expect(t, "", 15*time.Second); !strings.HasPrefix(line, "acquired ") {
				t.Errorf("portalocker 4 after Go released: %q, want acquired", line)
			}
		})
	}
}

// TestInterop4FrozenGoHolder: portalocker 4 kills a SIGSTOPped Go holder of
// either protocol and takes the lock.
func TestInterop4FrozenGoHolder(t *testing.T) {
	requirePortalocker4(t)
	for _, protocol := range []int{0, 1} {
		t.Run(fmt.Sprintf("protocol%d", protocol), func(t *testing.T) {
			s := redistest.Redis(t)
			g, name := startGoHolder(t, s.URL(), "gofrozen4", protocol)
			g.signal(t, syscall.SIGSTOP)
			start := time.Now()
			p := startPy4(t, s, "hold", "gofrozen4", "exclusive", "10")
			p.expect(t, "held ", 15*time.Second)
			t.Logf("SIGSTOPped Go holder (Protocol %d) taken over by portalocker 4 within %v (unavailable_timeout 1s, Python start-up included)", protocol, time.Since(start))
			if ids := holderIDs(t, s, name); len(ids) != 0 {
				t.Errorf("frozen Go holder still subscribed: %v", ids)
			}
		})
	}
}

// TestInteropProtocol1Python2: portalocker 2.2.1 still sees a Go holder
// that speaks protocol 1, and gets the Unix time for its ping.
func TestInteropProtocol1Python2(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	g := mustNew(t, "p1py2", Config{URL: s.URL(), Protocol: 1})
	mustAcquire(t, g)
	if got := runPy(t, s, "try", "p1py2"); got != "locked" {
		t.Errorf("portalocker 2.2.1 while a protocol-1 Go holder holds: %q, want locked", got)
	}
	checkAnswer(t, runPy(t, s, "ping", "p1py2"))
	if err := g.Err(); err != nil {
		t.Errorf("Go holder: %v", err)
	}
}

// TestInterop4Shared: Go and portalocker 4 readers hold the lock together;
// writers of either wait for all of them, and a waiting writer of either
// keeps new readers of both out.
func TestInterop4Shared(t *testing.T) {
	requirePortalocker4(t)
	leakCheck(t)
	s := redistest.Redis(t)
	ctx := context.Background()
	py1, _ := holdPy4(t, s, "sh4", "shared")
	g := mustNew(t, "sh4", Config{URL: s.URL(), Shared: true})
	if err := g.TryAcquire(ctx); err != nil {
		t.Fatalf("Go reader with a portalocker 4 reader: %v", err)
	}
	py2, _ := holdPy4(t, s, "sh4", "shared") // joins the two
	w := mustNew(t, "sh4", Config{URL: s.URL(), Timeout: 10 * time.Second, CheckInterval: 50 * time.Millisecond})
	if err := w.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Fatalf("Go writer among readers: %v", err)
	}
	if line := startPy4(t, s, "try", "sh4", "exclusive", "0.5").expect(t, "", 15*time.Second); line != "locked" {
		t.Fatalf("portalocker 4 writer among readers: %q", line)
	}
	// A Go writer waits, pending: new readers of both keep out.
	got := make(chan error, 1)
	start := time.Now()
	go func() { got <- w.Acquire(ctx) }()
	waitFor(t, func() bool { st, err := g.Status(ctx); return err == nil && anyPending(st, w.HolderID()) })
	if line := startPy4(t, s, "try", "sh4", "shared", "0.5").expect(t, "", 15*time.Second); line != "locked" {
		t.Errorf("portalocker 4 reader while a Go writer waits: %q", line)
	}
	g2 := mustNew(t, "sh4", Config{URL: s.URL(), Shared: true})
	if err := g2.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Errorf("Go reader while a Go writer waits: %v", err)
	}
	py1.stdin.Close()
	py1.expect(t, "released", 15*time.Second)
	py2.stdin.Close()
	py2.expect(t, "released", 15*time.Second)
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("Go writer once the readers left: %v", err)
	}
	t.Logf("Go writer held the lock %v after it began to wait among Go and portalocker 4 readers", time.Since(start))
}

// TestInterop4WriterWaits: a waiting portalocker 4 writer keeps new Go
// readers out, and gets the lock once the Go reader leaves.
func TestInterop4WriterWaits(t *testing.T) {
	requirePortalocker4(t)
	leakCheck(t)
	s := redistest.Redis(t)
	ctx := context.Background()
	g := mustNew(t, "ww4", Config{URL: s.URL(), Shared: true})
	mustAcquire(t, g)
	py := startPy4(t, s, "hold", "ww4", "exclusive", "10")
	waitFor(t, func() bool {
		st, err := g.Status(ctx)
		if err != nil {
			return false
		}
		for _, h := range st.Holders {
			if h.Kind == KindPortalocker4 && h.Mode == ModePending {
				return true
			}
		}
		return false
	})
	g2 := mustNew(t, "ww4", Config{URL: s.URL(), Shared: true})
	if err := g2.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Errorf("Go reader while a portalocker 4 writer waits: %v", err)
	}
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	py.expect(t, "held ", 15*time.Second)
	if err := g2.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Errorf("Go reader while a portalocker 4 writer holds: %v", err)
	}
}

// TestInterop4Contention: Go and portalocker 4 readers and writers
// contend, each its own process or Lock, with an oracle in Redis (see
// testdata/py4lock.py): no writer ever holds the lock with anyone else.
//
// Portalocker 4.1 kills live participants under contention, its own as
// well (its probes read about 10 answers a second, upstream #138, and
// count a participant that came after the ping as one that did not
// answer, upstream #139), and a killed holder goes on until its thread
// interrupts it. An overlap is the Go side's fault only when no holder was
// killed; the test reports the kills either way.
func TestInterop4Contention(t *testing.T) {
	requirePortalocker4(t)
	s := redistest.Redis(t)
	cycles := 8
	if testing.Short() {
		cycles = 4
	}
	const oracle = "oracle4"
	var procs []*holderProc
	start := time.Now()
	for _, flags := range []string{"shared", "shared", "exclusive"} {
		procs = append(procs, startPy4(t, s, "contend", "c4", flags, strconv.Itoa(cycles), "0.002", oracle))
	}
	var wg sync.WaitGroup
	var goLost atomic.Int64
	var logs lockedBuffer // the Go Locks' kills
	defer func() {
		if l := logs.String(); l != "" {
			t.Logf("Go Locks:\n%s", l)
		}
	}()
	for i := range 3 {
		shared := i < 2
		l := mustNew(t, "c4", Config{URL: s.URL(), Shared: shared, Protocol: 1, Timeout: 30 * time.Second,
			CheckInterval: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
		wg.Add(1)
		go func() {
			defer wg.Done()
			o, err := dialConn(context.Background(), dialConfig{network: "tcp", addr: s.Addr(), dialTimeout: 5 * time.Second})
			if err != nil {
				t.Error(err)
				return
			}
			defer o.close()
			do := func(args ...string) int64 {
				v, err := o.do(context.Background(), args...)
				if err != nil {
					t.Error(err)
				}
				if v.Type == resp.TypeInteger {
					return v.Int
				}
				n, _ := strconv.ParseInt(string(v.Str), 10, 64)
				return n
			}
			for range cycles {
				if err := l.Acquire(context.Background()); err != nil {
					t.Errorf("Go (shared %v): %v", shared, err)
					return
				}
				if shared {
					do("INCR", oracle+"-r")
					if do("GET", oracle+"-w") != 0 {
						do("INCR", oracle+"-bad")
					}
				} else if do("INCR", oracle+"-w") != 1 || do("GET", oracle+"-r") != 0 {
					do("INCR", oracle+"-bad")
				}
				time.Sleep(2 * time.Millisecond)
				if shared {
					do("DECR", oracle+"-r")
				} else {
					do("DECR", oracle+"-w")
				}
				if err := l.Err(); err != nil {
					t.Logf("Go (shared %v): %v", shared, err)
					goLost.Add(1)
				}
				_ = l.Release(context.Background())
			}
		}()
	}
	wg.Wait()
	for i, p := range procs {
		line := p.expect(t, "done ", 120*time.Second)
		t.Logf("portalocker 4 %s: %s", []string{"reader", "reader", "writer"}[i], line)
	}
	bad, err := s.Do("GET", oracle+"-bad")
	if err != nil {
		t.Fatal(err)
	}
	killed, err := s.Do("GET", oracle+"-killed")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("3 Go and 3 portalocker 4 participants (2 readers, 1 writer each), %d cycles each, in %v: overlaps %q; holds killed: portalocker 4 %q, Go %d",
		cycles, time.Since(start), bad, killed, goLost.Load())
	if bad != "" && bad != "0" && (killed == "" || killed == "0") && goLost.Load() == 0 {
		t.Errorf("%s overlaps, and no hold was killed", bad)
	}
}
