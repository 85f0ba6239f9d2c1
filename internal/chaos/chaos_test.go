//go:build linux

package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/chaos/oracle"
	"github.com/pubsublock/pubsublock/internal/redistest"
)

// The contenders of the main run. Go ones cover a shared Client and
// Config{URL} only, RESP3 and RESP2, Acquire and TryAcquire; all use
// fencing.
var roster = []spec{
	{name: "g1", args: []string{"-shared", "-workers", "2"}, about: "Go, shared Client with 2 Locks, RESP3, Acquire"},
	{name: "g2", resp2: true, args: []string{"-shared"}, about: "Go, shared Client, RESP2, Acquire"},
	{name: "g3", about: "Go, Config{URL} only, RESP3, Acquire"},
	{name: "g4", resp2: true, args: []string{"-mode", "try"}, about: "Go, Config{URL} only, RESP2, TryAcquire"},
	{name: "g5", args: []string{"-shared", "-mode", "try"}, about: "Go, shared Client, RESP3, TryAcquire"},
	{name: "g6", resp2: true, about: "Go, Config{URL} only, RESP2, Acquire"},
	{name: "p1", python: true, args: []string{"--mode", "acquire"}, about: "portalocker 2.2.1, timeout 2s"},
	{name: "p2", python: true, args: []string{"--mode", "try"}, about: "portalocker 2.2.1, fail_when_locked"},
}

// The self-test's "holders", which take no lock.
var unlocked = []spec{
	{name: "s1", args: []string{"-mode", "nolock"}, about: "Go, no lock"},
	{name: "s2", python: true, args: []string{"--mode", "nolock"}, about: "Python, no lock"},
}

// The contenders' lock settings, and the bounds derived from them.
var tm = timing{unavailable: 500 * time.Millisecond, health: 500 * time.Millisecond, slack: time.Second}

const (
	channel = "chaos"
	// stallBound: with contenders alive, no acquisition for this long after
	// the last fault was undone means a takeover that never happened.
	stallBound = 10 * time.Second
	// selfTestTime is how long the self-test's two unlocked holders run.
	selfTestTime = 2 * time.Second
)

// params are a run's settings, from the environment (see doc.go).
type params struct {
	duration     time.Duration // run this long; 0: until acquisitions
	acquisitions int
	limit        time.Duration // give up on acquisitions after this long
	seed         uint64
	kinds        []string
	race         bool
	serverBin    string
}

func getParams(t *testing.T) params {
	t.Helper()
	dur, acq := os.Getenv("CHAOS_DURATION"), os.Getenv("CHAOS_ACQUISITIONS")
	if os.Getenv("PUBSUBLOCK_CHAOS") != "1" && dur == "" && acq == "" {
		t.Skip("the chaos test runs with PUBSUBLOCK_CHAOS=1, CHAOS_DURATION or CHAOS_ACQUISITIONS set: make chaos")
	}
	p := params{acquisitions: 20000, limit: 20 * time.Minute, race: os.Getenv("CHAOS_RACE") != "0"}
	var err error
	if dur != "" {
		if p.duration, err = time.ParseDuration(dur); err != nil {
			t.Fatalf("CHAOS_DURATION: %v", err)
		}
	} else if acq != "" {
		if p.acquisitions, err = strconv.Atoi(acq); err != nil {
			t.Fatalf("CHAOS_ACQUISITIONS: %v", err)
		}
	}
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		if p.seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
	} else {
		p.seed = uint64(time.Now().UnixNano() % 1e9)
	}
	if p.kinds, err = parseKinds(os.Getenv("CHAOS_FAULTS")); err != nil {
		t.Fatalf("CHAOS_FAULTS: %v", err)
	}
	bin := os.Getenv("PUBSUBLOCK_REDIS_SERVER")
	if bin == "" {
		bin = "redis-server"
	}
	p.serverBin = redistest.RequireBinary(t, bin, "redis-server")
	return p
}

// TestChaos is the proof under faults described in doc.go: first the
// oracle's self-test, then the contenders under the fault loop.
func TestChaos(t *testing.T) {
	p := getParams(t)
	python := redistest.RequirePython(t)
	// Logs stay when the test fails.
	dir, err := os.MkdirTemp("", "pubsublock-chaos-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("CHAOS_KEEP") == "1" {
			t.Logf("chaos: servers' logs, contenders' stderr, events.txt and faults.txt kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	t.Logf("chaos: seed %d (CHAOS_SEED=%d reproduces the fault schedule); redis-server %s; contenders built with -race: %v",
		p.seed, p.seed, p.serverBin, p.race)

	bin := buildContender(t, dir, p.race)
	script, err := filepath.Abs(filepath.Join("contender", "contender.py"))
	if err != nil {
		t.Fatal(err)
	}
	orc, err := startServer("oracle", p.serverBin, dir, "--appendonly", "no")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(orc.stop)
	if err := oracle.Load(orc.Addr()); err != nil {
		t.Fatalf("load the oracle's functions: %v", err)
	}
	ln := &launcher{dir: dir, goBin: bin, python: python, script: script, seed: p.seed,
		common: []string{"-oracle", orc.Addr(), "-channel", channel,
			"-unavailable", tm.unavailable.String(), "-health", tm.health.String()},
		pyArgs: []string{"--oracle-port", strconv.Itoa(orc.port), "--channel", channel,
			"--unavailable", strconv.FormatFloat(tm.unavailable.Seconds(), 'f', -1, 64)},
	}

	t.Run("oracle-self-test", func(t *testing.T) { selfTest(t, ln) })
	if t.Failed() {
		return
	}
	if _, err := orc.do("FLUSHALL"); err != nil {
		t.Fatal(err)
	}
	mainRun(t, p, ln, orc)
}

// buildContender builds the Go contender into dir.
func buildContender(t *testing.T, dir string, race bool) string {
	t.Helper()
	out := filepath.Join(dir, "contender")
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./contender")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, b)
	}
	return out
}

// selfTest runs two holders, Go and Python, that take no lock: the oracle
// must report their overlaps, and the analysis must call every one a true
// violation, as nobody was ever told anything.
func selfTest(t *testing.T, base *launcher) {
	ln := *base
	ln.tl, ln.died = newTimeline(), make(chan string, 8)
	var cs []*contender
	for _, s := range unlocked {
		c, err := ln.start(s, 0)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		t.Cleanup(c.kill)
	}
	time.Sleep(selfTestTime)
	for _, c := range cs {
		c.finish(5 * time.Second)
	}
	select {
	case msg := <-ln.died:
		t.Fatal(msg)
	default:
	}
	recs, garbled := ln.tl.snapshot()
	rp := analyze("oracle self-test: two holders without a lock", recs, nil, tm)
	rp.maxListed, rp.selfTest = 3, true
	t.Log(rp)
	switch {
	case len(garbled) > 0:
		t.Errorf("contenders printed lines that are not events: %q", garbled)
	case rp.acquisitions < 20:
		t.Errorf("only %d holds in %v", rp.acquisitions, selfTestTime)
	case len(rp.violations) == 0:
		t.Errorf("the oracle saw no overlap of two holders that take no lock: it cannot be trusted")
	case rp.explained != 0 || len(rp.violations) != rp.overlaps:
		t.Errorf("overlaps %d, violations %d, explained %d, put down to portalocker %d: every overlap without a lock must be a violation",
			rp.overlaps, len(rp.violations), rp.explained, len(rp.reference))
	default:
		t.Logf("self-test passed: %d overlaps in %d holds, all reported as true violations", rp.overlaps, rp.acquisitions)
	}
}

// mainRun runs the contenders through the proxy under the fault loop, then
// prints the report and fails on what it finds.
func mainRun(t *testing.T, p params, ln *launcher, orc *server) {
	dir := ln.dir
	// The fence counter lives on the lock server: keep it across restarts,
	// which are graceful (SIGTERM), or tokens would start again from 1.
	lock, err := startServer("lock", p.serverBin, dir, "--appendonly", "yes", "--appendfsync", "everysec")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lock.stop)
	px, err := newProxy(lock.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.close)
	_, port, _ := strings.Cut(px.Addr(), ":")
	ln.url = "redis://" + px.Addr()
	ln.pyArgs = append(ln.pyArgs, "--port", port)
	ln.tl, ln.died = newTimeline(), make(chan string, len(roster))

	f := &faulter{
		rnd:   rand.New(rand.NewPCG(p.seed, 0x6368616f73)),
		kinds: p.kinds, gap: [2]time.Duration{200 * time.Millisecond, 1200 * time.Millisecond},
		lock: lock, proxy: px, oracle: oracle.NewClient(orc.Addr()), ln: ln, tl: ln.tl,
		channel: channel, tm: tm, procs: make(map[string]*contender), specs: roster,
		stopped: make(chan struct{}), lastEnd: time.Now(),
	}
	defer f.oracle.Close()
	var ids []string
	for _, s := range roster {
		c, err := ln.start(s, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.procs[s.name] = c
		ids = append(ids, c.id)
	}
	t.Cleanup(func() {
		for _, c := range f.contenders() {
			c.kill()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); !ln.tl.allStarted(ids); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the contenders did not start within 30s")
		}
	}
	var about []string
	for _, s := range roster {
		about = append(about, s.name+": "+s.about)
	}
	goal := fmt.Sprintf("%d acquisitions", p.acquisitions)
	if p.duration > 0 {
		goal = p.duration.String()
	}
	t.Logf("chaos: %s on channel %q through a proxy to %s, oracle on %s; faults: %s\n  %s",
		goal, channel, lock.Addr(), orc.Addr(), strings.Join(p.kinds, " "), strings.Join(about, "\n  "))

	loopErr := make(chan error, 1)
	go func() { loopErr <- f.loop() }()

	// Watch until done or broken.
	start := time.Now()
	var trouble []string
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastLog := start
watch:
	for {
		select {
		case c := <-lock.crashes:
			trouble = append(trouble, "SERVER CRASH: "+c.String()+lastFaults(f, 3))
			break watch
		case c := <-orc.crashes:
			trouble = append(trouble, "ORACLE SERVER CRASH: "+c.String())
			break watch
		case msg := <-ln.died:
			trouble = append(trouble, msg)
			break watch
		case err := <-loopErr:
			loopErr = nil // it has ended
			trouble = append(trouble, "fault loop: "+err.Error())
			break watch
		case now := <-tick.C:
			n, last := ln.tl.progress()
			faults, lastFault := f.faults()
			if now.Sub(lastLog) >= 15*time.Second {
				t.Logf("chaos: %v: %d acquisitions, %d faults", now.Sub(start).Round(time.Second), n, len(faults))
				lastLog = now
			}
			if p.duration > 0 && now.Sub(start) >= p.duration || p.duration == 0 && n >= p.acquisitions {
				break watch
			}
			if p.duration == 0 && now.Sub(start) >= p.limit {
				trouble = append(trouble, fmt.Sprintf("only %d of %d acquisitions within %v", n, p.acquisitions, p.limit))
				break watch
			}
			if since := now.Sub(later(last, lastFault)); since > stallBound {
				trouble = append(trouble, fmt.Sprintf("NO TAKEOVER: no acquisition for %v (last at %s, last fault undone at %s) while the contenders live\n%s",
					since.Round(time.Millisecond), last.Format("15:04:05.000"), lastFault.Format("15:04:05.000"), diagnose(lock, orc, ln.tl, f)))
				break watch
			}
		}
	}
	elapsed := time.Since(start)
	close(f.stopped)
	if loopErr != nil {
		if err := <-loopErr; err != nil {
			trouble = append(trouble, "fault loop: "+err.Error())
		}
	}
	for _, c := range f.contenders() {
		c.finish(10 * time.Second)
	}
	// A crash during the wind-down counts too.
	select {
	case c := <-lock.crashes:
		trouble = append(trouble, "SERVER CRASH: "+c.String()+lastFaults(f, 3))
	default:
	}

	recs, garbled := ln.tl.snapshot()
	faults, _ := f.faults()
	rp := analyze(fmt.Sprintf("chaos run: seed %d, %v, %d contender processes (%d SIGKILL replacements)",
		p.seed, elapsed.Round(time.Millisecond), len(roster), countKind(faults, sigkill)), recs, faults, tm)
	rp.other = append(rp.other, trouble...)
	if err := dump(dir, recs, faults); err != nil {
		t.Log(err)
	}
	for _, g := range garbled {
		rp.other = append(rp.other, "not an event: "+g)
	}
	t.Log(rp)
	if fs := rp.failures(); len(fs) > 0 {
		t.Errorf("chaos: %d failures (seed %d); the report above lists them; logs in %s", len(fs), p.seed, dir)
	}
}

// dump writes the records and the faults of the run into dir, for
// reading after a failure: events.txt, a line per record ("<proc> <event
// as JSON>"), and faults.txt.
func dump(dir string, recs []record, faults []fault) error {
	var b strings.Builder
	for _, r := range recs {
		j, _ := json.Marshal(r.Event)
		fmt.Fprintf(&b, "%s %s\n", r.proc, j)
	}
	if err := os.WriteFile(filepath.Join(dir, "events.txt"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	b.Reset()
	for _, f := range faults {
		fmt.Fprintf(&b, "%s %s %s hit=%v proc=%s hold=%s long=%v %s\n", stamp(f.start), stamp(f.end), f.kind, f.hit, f.proc, f.hold, f.long, f.detail)
	}
	return os.WriteFile(filepath.Join(dir, "faults.txt"), []byte(b.String()), 0o644)
}

// lastFaults describes the last n faults, for a crash.
func lastFaults(f *faulter, n int) string {
	faults, _ := f.faults()
	s := "\nthe last faults before it:"
	for _, flt := range faults[max(len(faults)-n, 0):] {
		s += fmt.Sprintf("\n  %s %s from %s to %s", flt.kind, flt.detail, stamp(flt.start), stamp(flt.end))
	}
	return s
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func countKind(faults []fault, kind string) int {
	n := 0
	for _, f := range faults {
		if f.kind == kind && f.hit {
			n++
		}
	}
	return n
}

// diagnose describes a stalled run: who subscribes, who is inside, who
// believes it holds, and what each contender printed last.
func diagnose(lock, orc *server, tl *timeline, f *faulter) string {
	var b strings.Builder
	numsub, err := lock.do("PUBSUB", "NUMSUB", channel)
	fmt.Fprintf(&b, "lock server alive %v; PUBSUB NUMSUB %s: %q %v\n", lock.alive(), channel, numsub, err)
	if cs, err := f.clients(); err == nil {
		for _, c := range cs {
			fmt.Fprintf(&b, "  client id=%s name=%s addr=%s sub=%s cmd=%s age=%s idle=%s flags=%s\n",
				c["id"], c["name"], c["addr"], c["sub"], c["cmd"], c["age"], c["idle"], c["flags"])
		}
	}
	inside, _ := orc.do("HKEYS", "inside")
	fmt.Fprintf(&b, "oracle: inside %q\n", inside)
	recs, _ := tl.snapshot()
	last := map[string]record{}
	for _, r := range recs {
		last[r.proc] = r
	}
	for _, c := range f.contenders() {
		r := last[c.id]
		fmt.Fprintf(&b, "  %s last printed %s %s at %s %s; stderr: %s\n", c.id, r.Kind, r.Hold, stamp(r.Time), r.Err, tail(c.stderr, 3))
	}
	return b.String()
}
