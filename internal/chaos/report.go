//go:build linux

package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/pubsublock/pubsublock/internal/chaos/oracle"
)

// This file turns the records of a run into its verdict: every overlap the
// oracle saw is classified, and every fault aimed at a holder is followed
// to its end. It only reads records, so it is tested on made-up ones.

// timing is what the contenders were configured with, which bounds how
// late a holder may be told.
type timing struct {
	unavailable time.Duration // Config.UnavailableTimeout
	health      time.Duration // Config.HealthCheckInterval
	// slack is added to every bound, for a machine shared with other work.
	slack time.Duration
}

// The kinds of fault.
const (
	killHolder = "kill-holder" // CLIENT KILL of the connections named <channel>-lock
	killRandom = "kill-random" // CLIENT KILL of a random client
	pauseWrite = "pause-write" // CLIENT PAUSE <ms> WRITE
	pauseAll   = "pause-all"   // CLIENT PAUSE <ms> ALL
	restart    = "restart"     // stop and start the lock server on its port
	sigkill    = "sigkill"     // SIGKILL of a holder process, which is then replaced
	sigstop    = "sigstop"     // SIGSTOP of a holder process, SIGCONT later
	blackhole  = "blackhole"   // a holder's connection stops flowing both ways, and is closed later
)

// faultKinds are all kinds, in the order the report lists them.
var faultKinds = []string{killHolder, killRandom, pauseWrite, pauseAll, restart, sigkill, sigstop, blackhole}

// parseKinds reads CHAOS_FAULTS: empty for every kind, "none", a list of
// kinds, or a list of kinds to leave out, each with a leading "-".
func parseKinds(s string) ([]string, error) {
	if s == "" {
		return faultKinds, nil
	}
	if s == "none" {
		return nil, nil
	}
	known := func(k string) error {
		for _, f := range faultKinds {
			if f == k {
				return nil
			}
		}
		return fmt.Errorf("unknown fault kind %q (kinds: %s)", k, strings.Join(faultKinds, ", "))
	}
	var add, drop []string
	for _, k := range strings.Split(s, ",") {
		k = strings.TrimSpace(k)
		name, minus := strings.CutPrefix(k, "-")
		if err := known(name); err != nil {
			return nil, err
		}
		if minus {
			drop = append(drop, name)
		} else {
			add = append(add, name)
		}
	}
	if len(add) == 0 {
		add = faultKinds
	}
	var kinds []string
	for _, k := range add {
		if !contains(drop, k) {
			kinds = append(kinds, k)
		}
	}
	return kinds, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fault is one fault the loop injected.
type fault struct {
	kind       string
	start, end int64 // Unix ns; end is when it was undone (SIGCONT, close, pause over)
	// at is when it took effect: start, except for a restart, whose old
	// server serves on for a moment after SIGTERM: there, when it exited.
	at     int64
	proc   string // the contender aimed at (sigkill, sigstop, blackhole)
	hold   string // the hold aimed at, when known
	long   bool   // aimed at a hold that was asked to last long
	hit    bool   // it found something to act on
	detail string
}

// holdInfo is what the records say about one hold.
type holdInfo struct {
	name, proc string
	python     bool
	token      int64
	long       bool
	// Times, Unix ns, 0 when it did not happen: acquired, entered, left,
	// released.
	acq, enter, leave, rel int64
	// end is when the hold ended: released, or its process was SIGKILLed,
	// or else its last record.
	end          int64
	others       []string // inside when it entered
	regressed    bool     // it entered with a token below an earlier one
	enterChecked int64    // when it checked Err() before entering
	counts       []int64  // portalocker's NUMSUB counts (oracle.Event.Counts)
	// told is when the holder was first told that the hold was lost: a
	// told record, an abort, or a release that said lost. 0: never.
	told  int64
	stale []oracle.Event // its steps that the oracle found superseded or refused
}

// inCS says whether the hold was inside the critical section at t.
func (h *holdInfo) inCS(t int64) bool {
	return h.enter != 0 && h.enter <= t && (h.leave == 0 || h.leave > t)
}

// activeAt says whether the hold held the lock, by its own account, at t.
func (h *holdInfo) activeAt(t int64) bool {
	return h.acq != 0 && h.acq <= t && h.end >= t
}

// earlier reports whether a took the lock before b: by fencing token when
// both have one, else by when they said they had it.
func earlier(a, b *holdInfo) bool {
	if a.token > 0 && b.token > 0 {
		return a.token < b.token
	}
	return a.acq < b.acq
}

func collectHolds(recs []record) map[string]*holdInfo {
	holds := make(map[string]*holdInfo)
	get := func(r record) *holdInfo {
		h := holds[r.Hold]
		if h == nil {
			h = &holdInfo{name: r.Hold, proc: r.proc, python: r.python}
			holds[r.Hold] = h
		}
		return h
	}
	told := func(h *holdInfo, t int64) {
		if h.told == 0 || t < h.told {
			h.told = t
		}
	}
	for _, r := range recs {
		if r.Hold == "" {
			continue
		}
		h := get(r)
		h.end = max(h.end, r.Time)
		switch r.Kind {
		case oracle.Acquired:
			h.acq, h.token, h.long, h.counts = r.Time, r.Token, r.Long, r.Counts
		case oracle.Enter:
			h.enter, h.others, h.regressed, h.enterChecked = r.Time, r.Others, r.Regressed, r.Checked
		case oracle.Leave:
			h.leave = r.Time
		case oracle.Released:
			h.rel = r.Time
			if r.Lost {
				told(h, r.Time)
			}
		case oracle.Told, oracle.Abort:
			told(h, r.Time)
		case oracle.StepSeen:
			h.stale = append(h.stale, r.Event)
		}
	}
	return holds
}

// report is the verdict of a run.
type report struct {
	title        string
	acquisitions int
	byProc       map[string]int // acquisitions by contender spec name
	faults       map[string]int // by kind: injected and hit
	missed       map[string]int // by kind: found nothing to act on

	entries       int            // entries that found another hold inside
	overlaps      int            // holds that had a later hold inside with them
	violations    []string       // overlaps whose earlier holder was never told
	explained     int            // overlaps whose earlier holder was told
	explainedBy   map[string]int // the last fault before each, or "no fault"
	toldBefore    int            // ... told before the overlap began (latency 0)
	toldLatency   []time.Duration
	deadLeftovers int // holds found inside that belonged to a SIGKILLed process
	killedUntold  int // overlaps whose earlier holder was SIGKILLed before it was told

	toldAfter     map[string][]time.Duration // fault kind -> holds active at the fault, told after it
	untoldRelease map[string]int             // fault kind -> holds active at the fault, released untold

	notHolding         map[string]int  // SIGKILL or SIGSTOP of a process that had just released
	killTakeover       []time.Duration // SIGKILL -> next acquisition
	stopTakeover       []time.Duration // SIGSTOP -> next acquisition during the stop
	stopNoTakeover     int             // SIGCONT came first
	resumed            int             // stopped holders taken over, then resumed
	resumedTold        []time.Duration // SIGCONT -> told
	resumedFrozenWrite int             // resumed holders that finished a write checked before the stop
	resumedToldLate    []string        // resumed holders that checked after SIGCONT, were not told, and wrote
	resumedOutside     int             // resumed outside the critical section, released untold
	resumedPython      int             // resumed portalocker holders, taken over while stopped
	resumedPythonTold  []time.Duration // their SIGCONT -> told
	resumedNeverTold   []string
	resumedKilled      int // SIGKILLed by a later fault before they were told
	holed              int // black-holed Go holders
	holedTold          []time.Duration
	holedLeft          int // left the critical section before any bound, untold
	holedNeverTold     []string
	holedKilled        int // SIGKILLed by a later fault before they were told
	holedPython        int // black-holed portalocker holders
	holedPythonTold    []time.Duration

	staleRefused  int // steps (or entries) of superseded holders, refused by the fence
	liveRefused   int // steps of live holders refused by the fence, their token having gone back
	staleAccepted []string
	regressions   []string // entries by live holders whose token went back
	reference     []string // overlaps due to the reference client, portalocker

	acquireErrors map[string]int
	oracleErrors  []string
	other         []string // failures found by the driver: crashes, stalls, deaths, garbage
	notes         []string // worth a look, not failures
	maxListed     int      // how many failures String lists; 0: 20
	selfTest      bool     // the oracle's self-test, where failures are what is wanted
}

// analyze classifies the records of a run, given the faults injected
// during it and the contenders' timing.
func analyze(title string, recs []record, faults []fault, tm timing) *report {
	holds := collectHolds(recs)
	rp := &report{title: title, byProc: map[string]int{}, faults: map[string]int{}, missed: map[string]int{},
		explainedBy: map[string]int{}, notHolding: map[string]int{}, toldAfter: map[string][]time.Duration{}, untoldRelease: map[string]int{}, acquireErrors: map[string]int{}}
	kills := map[string]int64{}
	stops := map[string][]fault{}
	for _, f := range faults {
		if !f.hit {
			rp.missed[f.kind]++
			continue
		}
		rp.faults[f.kind]++
		switch f.kind {
		case sigkill:
			kills[f.proc] = f.start
		case sigstop:
			stops[f.proc] = append(stops[f.proc], f)
		}
	}
	for _, h := range holds {
		if k, ok := kills[h.proc]; ok && h.rel == 0 {
			h.end = k
		}
	}
	// touched says whether, between from and to, a fault hit that could
	// have ended h: one on the whole server, a signal to h's process, or a
	// black hole aimed at h.
	touched := func(h *holdInfo, from, to int64) bool {
		for _, f := range faults {
			if !f.hit || f.end < from || f.start > to {
				continue
			}
			switch f.kind {
			case sigkill, sigstop:
				if f.proc == h.proc {
					return true
				}
			case blackhole:
				if f.hold == h.name {
					return true
				}
			default:
				return true
			}
		}
		return false
	}
	// stopsAt describes the SIGSTOP of proc around t, if any.
	stopsAt := func(proc string, t int64) string {
		for _, f := range stops[proc] {
			if f.start <= t && t <= f.end+int64(5*time.Second) {
				return fmt.Sprintf("; its process was SIGSTOPped from %s to %s", stamp(f.start), stamp(f.end))
			}
		}
		return ""
	}
	// resumedAt returns when proc was resumed, if it was stopped at t.
	resumedAt := func(proc string, t int64) int64 {
		for _, f := range stops[proc] {
			if f.start <= t && t <= f.end {
				return f.end
			}
		}
		return 0
	}
	var acqs []record // in time order
	for _, r := range recs {
		switch r.Kind {
		case oracle.Acquired:
			rp.acquisitions++
			rp.byProc[specName(r.proc)]++
			acqs = append(acqs, r)
		case oracle.AcquireError:
			rp.acquireErrors[normalize(r.Err)]++
		case oracle.OracleError:
			rp.oracleErrors = append(rp.oracleErrors, fmt.Sprintf("%s %s: %s", r.proc, r.Hold, r.Err))
		}
	}
	slices.SortFunc(acqs, func(a, b record) int { return cmp.Compare(a.Time, b.Time) })

	// Overlaps: two holds inside together, as the later INCR saw. Each is
	// put down to its earlier holder, which should have been told.
	type overlap struct {
		a    *holdInfo // the earlier holder
		from int64     // when the first later holder entered
		with string    // that later holder
	}
	overlaps := map[*holdInfo]*overlap{}
	phantoms := map[*holdInfo]bool{} // portalocker holds that acquired a held lock
	for _, x := range sortedHolds(holds) {
		if x.enter == 0 || len(x.others) == 0 {
			continue
		}
		rp.entries++
		for _, name := range x.others {
			y := holds[name]
			if y == nil {
				rp.violations = append(rp.violations, fmt.Sprintf("%s entered at %s while %s, a hold nobody reported, was inside", x.name, stamp(x.enter), name))
				continue
			}
			if k, ok := kills[y.proc]; ok && k <= x.enter {
				rp.deadLeftovers++ // not swept out yet
				continue
			}
			a, b := y, x
			if earlier(x, y) {
				a, b = x, y
			}
			if ov := overlaps[a]; ov == nil || x.enter < ov.from {
				overlaps[a] = &overlap{a: a, from: x.enter, with: b.name}
			}
		}
	}
	for _, ov := range slices.SortedFunc(maps.Values(overlaps), func(a, b *overlap) int { return cmp.Compare(a.from, b.from) }) {
		a, b := ov.a, holds[ov.with]
		rp.overlaps++
		// portalocker confirms with a count on another connection than its
		// SUBSCRIBE, which it does not wait for: a count of 1 may miss
		// itself and count the holder. Such a phantom acquisition explains
		// the fence's view of the overlap too, whatever became of a.
		hit := touched(a, a.acq, ov.from)
		phantom := !hit && b.python && len(b.counts) == 3 && b.counts[1] == 1
		if phantom {
			phantoms[b] = true
		}
		switch {
		case a.told != 0:
			rp.explained++
			from := ov.from
			if r := resumedAt(a.proc, from); r != 0 {
				from = r // a frozen holder can be told only once it runs
			}
			if a.told <= from {
				rp.toldBefore++
			}
			rp.toldLatency = append(rp.toldLatency, time.Duration(max(a.told-from, 0)))
			cause := "no fault"
			for _, f := range faults {
				if f.hit && f.start <= ov.from && ov.from-f.end < int64(5*time.Second) {
					cause = f.kind
				}
			}
			rp.explainedBy[cause]++
			if cause == "no fault" {
				rp.notes = append(rp.notes, fmt.Sprintf("%s (%s) was inside with %s from %s with no fault in the 5s before, and was told %v later",
					a.name, procAbout(a), ov.with, stamp(ov.from), time.Duration(a.told-ov.from)))
			}
		case kills[a.proc] != 0 && a.leave == 0:
			rp.killedUntold++
			rp.notes = append(rp.notes, fmt.Sprintf("%s (%s) was inside with %s from %s and was SIGKILLed %v later, before it was told",
				a.name, procAbout(a), ov.with, stamp(ov.from), time.Duration(kills[a.proc]-ov.from)))
		default:
			switch {
			case hit && a.python:
				// portalocker 2.2.1 has no Lost(): it tells its holder only
				// when its worker thread dies of a failed read.
				rp.reference = append(rp.reference, fmt.Sprintf(
					"portalocker's %s (token %d, acquired %s) was inside with %s (%s, token %d) from %s after a fault, and was never told: it had left (%s) before its worker thread noticed",
					a.name, a.token, stamp(a.acq), b.name, procAbout(b), b.token, stamp(ov.from), stamp(a.leave)))
				continue
			case phantom:
				rp.reference = append(rp.reference, fmt.Sprintf(
					"portalocker's %s (token %d, NUMSUB counts %v: before subscribing, to confirm, just after) acquired at %s while %s (%s, token %d, acquired %s) held the lock, with no fault in between",
					b.name, b.token, b.counts, stamp(b.acq), a.name, procAbout(a), a.token, stamp(a.acq)))
				continue
			}
			rp.violations = append(rp.violations, describeViolation(a, b, ov.from, stopsAt(a.proc, ov.from)))
		}
	}

	// Holds lost within moments of being acquired with no fault about:
	// someone killed a fresh holder.
	for _, h := range sortedHolds(holds) {
		if h.acq == 0 || h.told == 0 || h.told-h.acq > int64(5*time.Millisecond) || touched(h, h.acq-int64(2*time.Second), h.told) {
			continue
		}
		rp.notes = append(rp.notes, fmt.Sprintf("%s (%s) was told it lost the lock %v after acquiring it (at %s), with no fault in the 2s before",
			h.name, procAbout(h), time.Duration(h.told-h.acq), stamp(h.acq)))
	}

	// Stale work: steps the oracle found superseded (refused or not by the
	// fence), and entries with a token that went back.
	for _, h := range sortedHolds(holds) {
		for _, s := range h.stale {
			switch {
			case s.Superseded && !s.Refused && h.token > 0:
				rp.staleAccepted = append(rp.staleAccepted, fmt.Sprintf("%s (token %d) wrote at step %d at %s after being superseded, and the fence let it through",
					h.name, h.token, s.Step, stamp(s.Time)))
			case s.Refused && !s.Superseded && h.told == 0:
				rp.liveRefused++ // a live holder whose token went back (see regressions)
			case s.Refused:
				rp.staleRefused++
			}
		}
		if h.regressed {
			if h.told != 0 {
				rp.staleRefused++ // a resumed holder that entered after its take-over
			} else {
				top := higherBefore(h, holds)
				if msg := describeRegression(h, top); top != nil && phantoms[top] {
					// The higher token is a portalocker phantom's, which
					// entered first: the same overlap, seen from the fence.
					rp.reference = append(rp.reference, msg+": a portalocker acquisition of a held lock (above)")
				} else {
					rp.regressions = append(rp.regressions, msg)
				}
			}
		}
	}

	// Holds active when a fault hit: how fast were they told?
	for _, f := range faults {
		if !f.hit {
			continue
		}
		switch f.kind {
		case killHolder, restart, pauseWrite, pauseAll:
			at := cmp.Or(f.at, f.start)
			for _, h := range holds {
				if !h.activeAt(at) {
					continue
				}
				if h.told >= f.start {
					rp.toldAfter[f.kind] = append(rp.toldAfter[f.kind], time.Duration(max(h.told-at, 0)))
				} else if h.told == 0 {
					rp.untoldRelease[f.kind]++
				}
			}
		}
	}

	// SIGKILL: how soon did another process acquire?
	next := func(after int64, not string) (record, bool) {
		i, _ := slices.BinarySearchFunc(acqs, after, func(r record, t int64) int { return cmp.Compare(r.Time, t) })
		for ; i < len(acqs); i++ {
			if acqs[i].proc != not {
				return acqs[i], true
			}
		}
		return record{}, false
	}
	for _, f := range faults {
		if !f.hit {
			continue
		}
		switch f.kind {
		case sigkill, sigstop:
			// A takeover is from a holder: the hold aimed at must still
			// have been held when the signal went.
			h := holds[f.hold]
			if h == nil || !h.activeAt(f.start) {
				rp.notHolding[f.kind]++
				continue
			}
			r, ok := next(f.start, f.proc)
			if f.kind == sigkill {
				if ok {
					rp.killTakeover = append(rp.killTakeover, time.Duration(r.Time-f.start))
				}
				continue
			}
			if !ok || r.Time > f.end {
				rp.stopNoTakeover++
				continue
			}
			rp.stopTakeover = append(rp.stopTakeover, time.Duration(r.Time-f.start))
			if h.python {
				// portalocker tells its main thread only through its worker
				// thread's death: counted, not held to the Go lock's bounds.
				rp.resumedPython++
				if h.told > 0 {
					rp.resumedPythonTold = append(rp.resumedPythonTold, time.Duration(max(h.told-f.end, 0)))
				}
				continue
			}
			rp.resumed++
			deadline := f.end + int64(tm.health+tm.unavailable+tm.slack)
			// Work after SIGCONT, before being told: a write whose check of
			// Err() came before the stop could not have been stopped; one
			// whose check came after SIGCONT was let through by the library.
			var fresh, frozen []int64 // write times
			note := func(at, checked int64) {
				if at > f.end && (h.told == 0 || at < h.told) {
					if checked > f.end {
						fresh = append(fresh, at)
					} else {
						frozen = append(frozen, at)
					}
				}
			}
			for _, s := range h.stale {
				note(s.Time, s.Checked)
			}
			if h.regressed {
				note(h.enter, h.enterChecked)
			}
			if len(frozen) > 0 {
				rp.resumedFrozenWrite++
			}
			if len(fresh) > 0 {
				rp.resumedToldLate = append(rp.resumedToldLate, fmt.Sprintf(
					"%s (%s) resumed at %s, taken over while SIGSTOPped, was told nothing when it checked Err() after SIGCONT and wrote %d time(s) from %s (all fenced: these are the oracle's superseded writes); told: %s",
					h.name, procAbout(h), stamp(f.end), len(fresh), stamp(fresh[0]), stamp(h.told)))
			}
			inside := h.enter != 0 && (h.leave == 0 || h.leave > f.end)
			switch {
			case h.told > 0 && h.told <= deadline:
				rp.resumedTold = append(rp.resumedTold, time.Duration(max(h.told-f.end, 0)))
			case !inside:
				rp.resumedOutside++
			case h.told == 0 && kills[h.proc] != 0 && kills[h.proc] < deadline:
				rp.resumedKilled++ // a later fault SIGKILLed it before the bound
			default:
				did := "then only left the section"
				if n := len(fresh) + len(frozen); n > 0 {
					did = fmt.Sprintf("wrote %d time(s) (fenced) and left", n)
				}
				rp.resumedNeverTold = append(rp.resumedNeverTold, fmt.Sprintf(
					"%s (%s) was SIGSTOPped at %s, taken over at %s, resumed at %s inside the critical section, %s at %s, released at %s, and was not told within %v (told: %s)",
					h.name, procAbout(h), stamp(f.start), stamp(r.Time), stamp(f.end), did, stamp(h.leave), stamp(h.rel), time.Duration(deadline-f.end), stamp(h.told)))
			}
		case blackhole:
			h := holds[f.hold]
			if h == nil || !h.inCS(f.start) {
				continue
			}
			bound := min(f.end, f.start+int64(tm.health+tm.unavailable)) + int64(tm.slack)
			if h.python {
				// portalocker reads without a deadline: it is told when the
				// connection closes, at the end of the black hole.
				rp.holedPython++
				if h.told > 0 {
					rp.holedPythonTold = append(rp.holedPythonTold, time.Duration(h.told-f.start))
				}
				continue
			}
			rp.holed++
			switch {
			case h.told > 0 && h.told <= bound:
				rp.holedTold = append(rp.holedTold, time.Duration(h.told-f.start))
			case h.leave != 0 && h.leave <= bound && (h.told == 0 || h.told > h.leave):
				rp.holedLeft++
			case h.told == 0 && kills[h.proc] != 0 && kills[h.proc] < bound:
				rp.holedKilled++ // a later fault SIGKILLed it before the bound
			default:
				rp.holedNeverTold = append(rp.holedNeverTold, fmt.Sprintf(
					"%s was black-holed at %s for %v and not told within %v (told: %s)",
					h.name, stamp(f.start), time.Duration(f.end-f.start), time.Duration(bound-f.start), stamp(h.told)))
			}
		}
	}
	return rp
}

// describeViolation says what happened to two holds inside together,
// the earlier of which was never told.
func describeViolation(a, b *holdInfo, from int64, more string) string {
	stale, refused := 0, 0
	for _, s := range a.stale {
		if s.Time >= from {
			stale++
			if s.Refused {
				refused++
			}
		}
	}
	if b.told != 0 && b.told-b.acq < int64(50*time.Millisecond) {
		// The later holder's hold was dead on arrival: it had counted the
		// earlier one's subscription as its own.
		more += fmt.Sprintf("; the later holder was told it had lost the lock %v after acquiring it", time.Duration(b.told-b.acq))
	}
	return fmt.Sprintf("TRUE VIOLATION: %s (%s, token %d, acquired %s, entered %s, left %s, released %s) was inside with %s (%s, token %d, acquired %s, entered %s) from %s, and was never told it had lost the lock; it wrote %d steps after that, %d refused by the fence%s",
		a.name, procAbout(a), a.token, stamp(a.acq), stamp(a.enter), stamp(a.leave), stamp(a.rel),
		b.name, procAbout(b), b.token, stamp(b.acq), stamp(b.enter), stamp(from), stale, refused, more)
}

// higherBefore returns the hold with the highest token that entered
// before h with a token above h's, or nil.
func higherBefore(h *holdInfo, holds map[string]*holdInfo) *holdInfo {
	var top *holdInfo
	for _, o := range holds {
		if o.enter != 0 && o.enter < h.enter && o.token > h.token && (top == nil || o.token > top.token) {
			top = o
		}
	}
	return top
}

// describeRegression says that a live holder h entered with a token below
// that of top, which entered before it.
func describeRegression(h, top *holdInfo) string {
	s := fmt.Sprintf("FENCE REGRESSION: %s (%s, acquired %s) entered at %s with token %d and was never lost, but a higher token had entered before",
		h.name, procAbout(h), stamp(h.acq), stamp(h.enter), h.token)
	if top != nil {
		s += fmt.Sprintf(": %s (%s, token %d, acquired %s, entered %s, told it was lost %s)",
			top.name, procAbout(top), top.token, stamp(top.acq), stamp(top.enter), stamp(top.told))
	}
	return s
}

func procAbout(h *holdInfo) string {
	if h.python {
		return "portalocker"
	}
	return "Go"
}

// stamp prints a Unix ns time as a time of day, "-" for 0.
func stamp(t int64) string {
	if t == 0 {
		return "-"
	}
	return time.Unix(0, t).Format("15:04:05.000000")
}

// specName returns the spec name of a process id ("g1.0" -> "g1").
func specName(proc string) string {
	name, _, _ := strings.Cut(proc, ".")
	return name
}

func sortedHolds(holds map[string]*holdInfo) []*holdInfo {
	hs := slices.Collect(maps.Values(holds))
	slices.SortFunc(hs, func(a, b *holdInfo) int { return cmp.Or(cmp.Compare(a.acq, b.acq), cmp.Compare(a.name, b.name)) })
	return hs
}

var numbers = regexp.MustCompile(`[0-9]+`)

// normalize shortens an error for counting: numbers (ports, ids,
// durations) become #.
func normalize(err string) string {
	s := numbers.ReplaceAllString(err, "#")
	if len(s) > 110 {
		s = s[:110] + "..."
	}
	return s
}

// failures lists what makes the run fail.
func (rp *report) failures() []string {
	var fs []string
	fs = append(fs, rp.other...)
	fs = append(fs, rp.violations...)
	fs = append(fs, rp.staleAccepted...)
	fs = append(fs, rp.regressions...)
	fs = append(fs, rp.resumedNeverTold...)
	fs = append(fs, rp.resumedToldLate...)
	fs = append(fs, rp.holedNeverTold...)
	for _, e := range rp.oracleErrors {
		fs = append(fs, "oracle error (its verdict on that hold is unknown): "+e)
	}
	return fs
}

// String prints the report.
func (rp *report) String() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("== %s", rp.title)
	names := slices.Sorted(maps.Keys(rp.byProc))
	var per []string
	for _, n := range names {
		per = append(per, fmt.Sprintf("%s %d", n, rp.byProc[n]))
	}
	p("acquisitions: %d (%s)", rp.acquisitions, strings.Join(per, ", "))
	total := 0
	var fk []string
	for _, k := range faultKinds {
		total += rp.faults[k]
		s := fmt.Sprintf("%s %d", k, rp.faults[k])
		if rp.missed[k] > 0 {
			s += fmt.Sprintf(" (+%d with no target)", rp.missed[k])
		}
		fk = append(fk, s)
	}
	p("faults: %d (%s)", total, strings.Join(fk, ", "))
	p("overlaps (a holder inside with a later one; %d entries found someone inside): %d: true violations %d, explained %d, due to portalocker %d, SIGKILLed before told %d; SIGKILLed holders found inside before the sweep %d",
		rp.entries, rp.overlaps, len(rp.violations), rp.explained, len(rp.reference), rp.killedUntold, rp.deadLeftovers)
	if rp.explained > 0 {
		var by []string
		for _, k := range append(slices.Clone(faultKinds), "no fault") {
			if n := rp.explainedBy[k]; n > 0 {
				by = append(by, fmt.Sprintf("%s %d", k, n))
			}
		}
		p("  explained: the earlier holder was told (%d before the overlap began); by the last fault before: %s", rp.toldBefore, strings.Join(by, ", "))
		p("  told latency, overlap start (SIGCONT for a frozen holder) to told: %s", dist(rp.toldLatency))
	}
	for _, k := range []string{killHolder, restart, pauseWrite, pauseAll} {
		if len(rp.toldAfter[k]) > 0 || rp.untoldRelease[k] > 0 {
			p("  holders active at %s: told %s; released untold %d", k, dist(rp.toldAfter[k]), rp.untoldRelease[k])
		}
	}
	p("SIGKILL takeovers (kill of a holder to the next acquisition): %s; the process had just released %d", dist(rp.killTakeover), rp.notHolding[sigkill])
	p("SIGSTOP takeovers (stop of a holder to the next acquisition): %s; resumed before any takeover %d; the process had just released %d",
		dist(rp.stopTakeover), rp.stopNoTakeover, rp.notHolding[sigstop])
	p("resumed Go holders (taken over while stopped): %d; told %s (SIGCONT to told); wrote after SIGCONT on a check made before the stop %d (fenced); checked after SIGCONT, were not told and wrote %d; outside the section and released untold %d; SIGKILLed first %d; never told %d",
		rp.resumed, dist(rp.resumedTold), rp.resumedFrozenWrite, len(rp.resumedToldLate), rp.resumedOutside, rp.resumedKilled, len(rp.resumedNeverTold))
	if rp.resumedPython > 0 {
		p("resumed portalocker holders (taken over while stopped): %d; told %s (SIGCONT to told)", rp.resumedPython, dist(rp.resumedPythonTold))
	}
	p("black-holed Go holders told (stall to told): %d of %d, %s; left the section first %d; SIGKILLed first %d; never told %d",
		len(rp.holedTold), rp.holed, dist(rp.holedTold), rp.holedLeft, rp.holedKilled, len(rp.holedNeverTold))
	if rp.holedPython > 0 {
		p("black-holed portalocker holders (told only when the connection closes): %d, told %s", rp.holedPython, dist(rp.holedPythonTold))
	}
	if len(rp.reference) > 0 {
		p("overlaps due to portalocker 2.2.1 (defects of the reference client, not failures of this library): %d", len(rp.reference))
		for _, s := range rp.reference[:min(len(rp.reference), 5)] {
			p("  %s", s)
		}
	}
	p("stale writes: refused by the fence %d, let through %d; fence regressions %d (writes of live holders refused for it %d)",
		rp.staleRefused, len(rp.staleAccepted), len(rp.regressions), rp.liveRefused)
	if len(rp.acquireErrors) > 0 {
		p("acquire errors (expected under faults):")
		for _, e := range slices.SortedFunc(maps.Keys(rp.acquireErrors), func(a, b string) int {
			return cmp.Or(cmp.Compare(rp.acquireErrors[b], rp.acquireErrors[a]), cmp.Compare(a, b))
		}) {
			p("  %6d  %s", rp.acquireErrors[e], e)
		}
	}
	for i, s := range rp.notes {
		if i == 10 {
			p("note: ... and %d more", len(rp.notes)-10)
			break
		}
		p("note: %s", s)
	}
	if fs := rp.failures(); len(fs) > 0 {
		if rp.selfTest {
			p("violations found, as the self-test requires (nobody holds a lock): %d", len(fs))
		} else {
			p("FAILURES: %d", len(fs))
		}
		listed := cmp.Or(rp.maxListed, 20)
		for i, f := range fs {
			if i == listed {
				p("  ... and %d more", len(fs)-listed)
				break
			}
			p("  %s", f)
		}
	} else {
		p("verdict: pass")
	}
	return b.String()
}

// dist prints n, p50, p99 and max of ds.
func dist(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Sorted(slices.Values(ds))
	q := func(p float64) time.Duration { return s[min(int(p*float64(len(s))), len(s)-1)] }
	return fmt.Sprintf("n=%d p50 %v p99 %v max %v", len(s), round(q(0.5)), round(q(0.99)), round(s[len(s)-1]))
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
