package pubsublock_test

import (
	"context"
	"errors"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/internal/redistest"
)

// The Python side of these tests is portalocker's RedisLock, driven by
// testdata/pyholder.py (see its doc string for the modes).

// startPy runs testdata/pyholder.py mode against s for channel.
func startPy(t *testing.T, s *redistest.Server, mode, channel string, args ...string) *redistest.Proc {
	t.Helper()
	py := redistest.RequirePython(t)
	argv := append([]string{"testdata/pyholder.py", mode, "127.0.0.1", strconv.Itoa(s.Port()), channel}, args...)
	return redistest.StartProc(t, exec.Command(py, argv...))
}

// runPy runs pyholder.py to its end and returns its one line of output.
func runPy(t *testing.T, s *redistest.Server, mode, channel string, args ...string) string {
	t.Helper()
	p := startPy(t, s, mode, channel, args...)
	var line string
	select {
	case l, ok := <-p.Lines:
		if !ok {
			t.Fatalf("pyholder.py %s printed nothing; stderr:\n%s", mode, p.Stderr())
		}
		line = l
	case <-time.After(15 * time.Second):
		t.Fatalf("pyholder.py %s: no output within 15s; stderr:\n%s", mode, p.Stderr())
	}
	for range p.Lines {
	}
	if err := p.Cmd.Wait(); err != nil {
		t.Fatalf("pyholder.py %s: %v; stderr:\n%s", mode, err, p.Stderr())
	}
	return line
}

// checkAnswer checks a pinger's output: "answer" and a Unix time close to
// now.
func checkAnswer(t *testing.T, line string) {
	t.Helper()
	ts, ok := strings.CutPrefix(line, "answer ")
	if !ok {
		t.Fatalf("pinger: %q, want an answer", line)
	}
	f, err := strconv.ParseFloat(ts, 64)
	if err != nil {
		t.Fatalf("answer %q is not a float: %v", ts, err)
	}
	if !strings.Contains(ts, ".") {
		t.Errorf("answer %q is not a decimal with a fraction, as Python's str(time.time())", ts)
	}
	now := float64(time.Now().UnixNano()) / 1e9
	if math.Abs(now-f) > 5 {
		t.Errorf("answer %q is %.3fs away from now", ts, now-f)
	}
}

// TestInteropPythonHolds: a live Python holder answers Go's ping, so Go
// neither gets the lock nor kills the holder.
func TestInteropPythonHolds(t *testing.T) {
	pubsublock.LeakCheck(t)
	s := redistest.Redis(t)
	if got := runPy(t, s, "try", "pyheld"); got != "acquired" {
		t.Fatalf("Python on a free lock: %q, want acquired", got)
	}
	p := startPy(t, s, "hold", "pyheld")
	p.Expect(t, "held", 15*time.Second)
	before := s.SubscriberIDs(t, "pyheld-lock")
	if len(before) != 1 {
		t.Fatalf("Python holder connections: %v", before)
	}
	checkAnswer(t, runPy(t, s, "ping", "pyheld")) // the pinger works

	for _, proto := range []string{"", "?protocol=2"} {
		g := pubsublock.NewLock(t, "pyheld", pubsublock.Config{URL: s.URL() + proto})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := g.TryAcquire(ctx)
		t.Logf("Go%s TryAcquire on a Python-held lock: %v after %v", proto, err, time.Since(start))
		if !errors.Is(err, pubsublock.ErrAlreadyLocked) {
			t.Errorf("TryAcquire%s = %v, want ErrAlreadyLocked", proto, err)
			_ = g.Release(ctx)
		}
		alive, err := g.CheckOrKill(ctx)
		cancel()
		if err != nil || !alive {
			t.Errorf("CheckOrKill%s = %v, %v; want alive", proto, alive, err)
		}
	}

	if after := s.SubscriberIDs(t, "pyheld-lock"); len(after) != 1 || after[0] != before[0] {
		t.Errorf("Python holder connections after Go tried: %v, before %v", after, before)
	}
	if n := s.NumSub(t, "pyheld"); n != 1 {
		t.Errorf("NUMSUB = %d, want the Python holder alone", n)
	}
	if err := syscall.Kill(p.Cmd.Process.Pid, 0); err != nil {
		t.Errorf("Python holder gone: %v", err)
	}
	select {
	case line, ok := <-p.Lines:
		t.Errorf("Python holder printed %q (open %v)", line, ok)
	default:
	}
}

// TestInteropGoHolds: a Python contender sees a Go holder and gives up;
// once Go releases, Python gets the lock.
func TestInteropGoHolds(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("resp"+map[string]string{"": "3", "?protocol=2": "2"}[proto], func(t *testing.T) {
			pubsublock.LeakCheck(t)
			s := redistest.Redis(t)
			g := pubsublock.NewLock(t, "goheld", pubsublock.Config{URL: s.URL() + proto})
			pubsublock.MustAcquire(t, g)
			if got := runPy(t, s, "try", "goheld"); got != "locked" {
				t.Errorf("Python while Go holds: %q, want locked", got)
			}
			if got := runPy(t, s, "try", "goheld", "0.5"); got != "locked" {
				t.Errorf("Python waiting 0.5s while Go holds: %q, want locked", got)
			}
			if err := g.Err(); err != nil {
				t.Errorf("Go holder's Err() = %v", err)
			}
			if n := s.NumSub(t, "goheld"); n != 1 {
				t.Errorf("NUMSUB = %d, want the Go holder alone", n)
			}
			if err := g.Release(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := runPy(t, s, "try", "goheld"); got != "acquired" {
				t.Errorf("Python after Go released: %q, want acquired", got)
			}
		})
	}
}

// TestInteropFrozenPythonHolder: a SIGSTOPped Python holder cannot answer;
// a Go contender kills its connection after UnavailableTimeout and takes
// the lock.
func TestInteropFrozenPythonHolder(t *testing.T) {
	pubsublock.LeakCheck(t)
	s := redistest.Redis(t)
	p := startPy(t, s, "hold", "pyfrozen")
	p.Expect(t, "held", 15*time.Second)
	before := s.SubscriberIDs(t, "pyfrozen-lock")
	if len(before) != 1 {
		t.Fatalf("Python holder connections: %v", before)
	}
	p.Signal(t, syscall.SIGSTOP)
	stopped := time.Now()
	g := pubsublock.NewLock(t, "pyfrozen", pubsublock.Config{URL: s.URL(), Timeout: 5 * time.Second, CheckInterval: 50 * time.Millisecond,
		UnavailableTimeout: 300 * time.Millisecond})
	pubsublock.MustAcquire(t, g)
	d := time.Since(stopped)
	t.Logf("SIGSTOPped Python holder taken over by Go in %v (UnavailableTimeout 300ms)", d)
	if d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("take-over in %v, want between UnavailableTimeout and 2s", d)
	}
	after := s.SubscriberIDs(t, "pyfrozen-lock")
	if len(after) != 1 || after[0] == before[0] {
		t.Errorf("holder connections after take-over: %v, before %v", after, before)
	}
	if n := s.NumSub(t, "pyfrozen"); n != 1 {
		t.Errorf("NUMSUB = %d after take-over", n)
	}
	// The Python process stays frozen; the cleanup kills it (a resumed
	// redis-py would reconnect and subscribe again: a defect of the
	// reference, not ours to test).
}

// TestInteropPythonPingsGo: a Go holder answers a ping in portalocker's
// format with the Unix time, as Python's holder does.
func TestInteropPythonPingsGo(t *testing.T) {
	for _, proto := range []string{"", "?protocol=2"} {
		t.Run("resp"+map[string]string{"": "3", "?protocol=2": "2"}[proto], func(t *testing.T) {
			pubsublock.LeakCheck(t)
			s := redistest.Redis(t)
			g := pubsublock.NewLock(t, "goping", pubsublock.Config{URL: s.URL() + proto})
			pubsublock.MustAcquire(t, g)
			line := runPy(t, s, "ping", "goping")
			t.Logf("Python pinger: %q", line)
			checkAnswer(t, line)
			if err := g.Err(); err != nil {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}
