//go:build linux

package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock/internal/chaos/oracle"
)

// faulter is the fault loop: one fault at a time, at random intervals.
// Every random choice comes from rnd, drawn in the same order whatever
// happens, so a seed gives the same schedule of kinds, durations and picks
// (what they hit depends on timing).
type faulter struct {
	rnd     *rand.Rand
	kinds   []string
	gap     [2]time.Duration // the pause before each fault: uniform in [gap[0], gap[1])
	lock    *server
	proxy   *proxy
	oracle  *oracle.Client // owned by the loop's goroutine
	ln      *launcher
	tl      *timeline
	channel string
	tm      timing

	mu      sync.Mutex            // guards procs, log and lastEnd
	procs   map[string]*contender // the current incarnation of each spec, by name
	log     []fault               // the faults injected so far
	lastEnd time.Time             // when the last fault was undone
	specs   []spec                // in a fixed order, for picks
	stopped chan struct{}         // closed to end the loop
}

// draws are the random choices of one fault, all drawn up front.
type draws struct {
	kind     string
	duration float64 // in [0,1): where the fault's duration falls in its range
	pick     float64 // in [0,1): which target, among those there are
	long     bool    // aim at a hold asked to last long, rather than whoever holds
}

// loop injects faults until stopped is closed. An error is a failure of
// the test's own machinery (the server did not come back).
func (f *faulter) loop() error {
	if len(f.kinds) == 0 {
		<-f.stopped
		return nil
	}
	for {
		gap := f.gap[0] + time.Duration(f.rnd.Int64N(int64(f.gap[1]-f.gap[0])))
		d := draws{kind: f.kinds[f.rnd.IntN(len(f.kinds))], duration: f.rnd.Float64(), pick: f.rnd.Float64(), long: f.rnd.IntN(2) == 0}
		select {
		case <-f.stopped:
			return nil
		case <-time.After(gap):
		}
		flt, err := f.inject(d)
		f.mu.Lock()
		f.log = append(f.log, flt)
		f.lastEnd = time.Now()
		f.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%s: %w", d.kind, err)
		}
	}
}

// faults returns the faults so far and when the last one was undone.
func (f *faulter) faults() ([]fault, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log), f.lastEnd
}

// contenders returns the current incarnation of every spec.
func (f *faulter) contenders() []*contender {
	f.mu.Lock()
	defer f.mu.Unlock()
	cs := make([]*contender, 0, len(f.specs))
	for _, s := range f.specs {
		cs = append(cs, f.procs[s.name])
	}
	return cs
}

// span returns lo + x*(hi-lo).
func span(x float64, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(x*float64(hi-lo))
}

// inject runs one fault to its end.
func (f *faulter) inject(d draws) (fault, error) {
	flt := fault{kind: d.kind, start: oracle.Now()}
	defer func() {
		if flt.end == 0 {
			flt.end = oracle.Now()
		}
	}()
	switch d.kind {
	case killHolder:
		clients, err := f.clients()
		if err != nil {
			flt.detail = err.Error()
			return flt, nil
		}
		flt.start = oracle.Now()
		for _, c := range clients {
			if c["name"] == f.channel+"-lock" {
				if n, _ := f.lock.do("CLIENT", "KILL", "ID", c["id"]); n == "1" {
					flt.hit = true
					flt.detail += " " + c["addr"]
				}
			}
		}
		flt.end = oracle.Now()
		return flt, nil

	case killRandom:
		clients, err := f.clients()
		if err != nil || len(clients) == 0 {
			return flt, nil
		}
		c := clients[int(d.pick*float64(len(clients)))]
		flt.start = oracle.Now()
		n, _ := f.lock.do("CLIENT", "KILL", "ID", c["id"])
		flt.hit = n == "1"
		flt.detail = fmt.Sprintf("name=%s addr=%s", c["name"], c["addr"])
		flt.end = oracle.Now()
		return flt, nil

	case pauseWrite, pauseAll:
		ms := span(d.duration, 100*time.Millisecond, 1500*time.Millisecond).Milliseconds()
		mode := "WRITE"
		if d.kind == pauseAll {
			mode = "ALL"
		}
		flt.start = oracle.Now()
		if _, err := f.lock.do("CLIENT", "PAUSE", strconv.FormatInt(ms, 10), mode); err != nil {
			flt.detail = err.Error()
			return flt, nil
		}
		flt.hit = true
		flt.detail = fmt.Sprintf("%dms", ms)
		f.sleep(time.Duration(ms) * time.Millisecond)
		flt.end = oracle.Now()
		return flt, nil

	case restart:
		flt.start = oracle.Now()
		flt.hit = true
		if err := f.lock.shutdown(); err != nil {
			flt.detail = err.Error()
		}
		flt.at = oracle.Now()
		err := f.lock.restart()
		flt.end = oracle.Now()
		return flt, err

	case sigkill:
		c, hold := f.target(d)
		if c == nil {
			return flt, nil
		}
		flt.proc, flt.hold, flt.long, flt.hit = c.id, hold, d.long, true
		flt.start = oracle.Now()
		c.kill()
		flt.end = oracle.Now()
		// The dead cannot leave the critical section: sweep its holds out,
		// and start its successor.
		if _, err := f.oracle.Sweep(c.id + "."); err != nil {
			return flt, err
		}
		next, err := f.ln.start(c.spec, c.inc+1)
		if err != nil {
			return flt, err
		}
		f.mu.Lock()
		f.procs[c.spec.name] = next
		f.mu.Unlock()
		return flt, nil

	case sigstop:
		c, hold := f.target(d)
		if c == nil {
			return flt, nil
		}
		// Sometimes shorter than UnavailableTimeout (nobody takes over),
		// mostly longer.
		stop := span(d.duration, f.tm.unavailable*3/10, 3*f.tm.unavailable)
		flt.proc, flt.hold, flt.long, flt.hit = c.id, hold, d.long, true
		flt.start = oracle.Now()
		if err := c.signal(syscall.SIGSTOP); err != nil {
			flt.hit = false
			return flt, nil
		}
		f.sleep(stop)
		_ = c.signal(syscall.SIGCONT)
		flt.end = oracle.Now()
		flt.detail = stop.Round(time.Millisecond).String()
		return flt, nil

	case blackhole:
		c, hold := f.target(d)
		if c == nil {
			return flt, nil
		}
		clients, err := f.clients()
		if err != nil {
			return flt, nil
		}
		var links []*link
		flt.start = oracle.Now()
		for _, cl := range clients {
			if cl["name"] == f.channel+"-lock" && cl["sub"] != "0" {
				if l := f.proxy.stall(cl["addr"]); l != nil {
					links = append(links, l)
				}
			}
		}
		if len(links) == 0 {
			return flt, nil
		}
		hole := span(d.duration, 200*time.Millisecond, 2*time.Second)
		flt.proc, flt.hold, flt.long, flt.hit = c.id, hold, d.long, true
		flt.detail = fmt.Sprintf("%d connection(s) for %v", len(links), hole.Round(time.Millisecond))
		f.sleep(hole)
		for _, l := range links {
			l.close()
		}
		flt.end = oracle.Now()
		return flt, nil
	}
	return flt, fmt.Errorf("unknown fault kind %q", d.kind)
}

// target picks a holder to act on: a contender asked to make its next hold
// long, once that hold has entered the critical section (when d.long, and
// it does within 5s), or else whoever holds the lock now. It returns nil
// when nobody holds it within a second.
func (f *faulter) target(d draws) (*contender, string) {
	if d.long {
		cs := f.contenders()
		c := cs[int(d.pick*float64(len(cs)))]
		entered := f.tl.expectLong(c.id)
		c.ask("long")
		select {
		case hold := <-entered:
			return c, hold
		case <-time.After(5 * time.Second):
			f.tl.forgetLong(c.id)
		case <-f.stopped:
			f.tl.forgetLong(c.id)
			return nil, ""
		}
	}
	deadline := time.Now().Add(time.Second)
	for {
		if proc, hold, ok := f.tl.holder(); ok {
			for _, c := range f.contenders() {
				if c.id == proc {
					return c, hold
				}
			}
		}
		if time.Now().After(deadline) {
			return nil, ""
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sleep waits d, or less if the loop is stopped: a fault is undone either
// way.
func (f *faulter) sleep(d time.Duration) {
	select {
	case <-time.After(d):
	case <-f.stopped:
	}
}

// clients returns the lock server's CLIENT LIST, one map of fields per
// client, without the connection that asked.
func (f *faulter) clients() ([]map[string]string, error) {
	out, err := f.lock.do("CLIENT", "LIST")
	if err != nil {
		return nil, err
	}
	var cs []map[string]string
	for line := range strings.Lines(out) {
		c := make(map[string]string)
		for field := range strings.FieldsSeq(line) {
			if k, v, ok := strings.Cut(field, "="); ok {
				c[k] = v
			}
		}
		if c["id"] != "" && c["cmd"] != "client|list" {
			cs = append(cs, c)
		}
	}
	return cs, nil
}
