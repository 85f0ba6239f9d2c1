//go:build linux

package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/chaos/oracle"
)

// The analysis on made-up timelines: each case is a few holds and faults,
// in milliseconds from an arbitrary start, and what the report must say.

const ms = int64(time.Millisecond)

// at returns the time of millisecond n of a made-up run.
func at(n int64) int64 { return 1_800_000_000_000*ms + n*ms }

// ev builds a record.
func ev(proc string, kind oracle.Kind, hold string, t int64, edit ...func(*oracle.Event)) record {
	r := record{proc: proc, python: strings.HasPrefix(proc, "p"), Event: oracle.Event{Kind: kind, Hold: hold, Time: at(t)}}
	for _, e := range edit {
		e(&r.Event)
	}
	return r
}

func token(n int64) func(*oracle.Event) { return func(e *oracle.Event) { e.Token = n } }
func inside(holds ...string) func(*oracle.Event) {
	return func(e *oracle.Event) { e.N, e.Others = int64(len(holds)+1), holds }
}

// hold returns the records of a whole hold: acquired, entered, left,
// released at the given milliseconds, with a fencing token.
func hold(proc, name string, tok, acq, enter, leave, rel int64, enterEdit ...func(*oracle.Event)) []record {
	return []record{
		ev(proc, oracle.Acquired, name, acq, token(tok)),
		ev(proc, oracle.Enter, name, enter, append([]func(*oracle.Event){token(tok)}, enterEdit...)...),
		ev(proc, oracle.Leave, name, leave),
		ev(proc, oracle.Released, name, rel),
	}
}

func join(parts ...[]record) []record {
	var all []record
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

var testTiming = timing{unavailable: 500 * time.Millisecond, health: 500 * time.Millisecond, slack: time.Second}

func TestAnalyzeUntoldOverlapIsViolation(t *testing.T) {
	recs := join(
		hold("g1.0", "g1.0.0.1", 1, 0, 1, 100, 101),
		hold("g2.0", "g2.0.0.1", 2, 50, 51, 60, 61, inside("g1.0.0.1")),
	)
	rp := analyze("t", recs, nil, testTiming)
	if rp.overlaps != 1 || len(rp.violations) != 1 || rp.explained != 0 {
		t.Fatalf("overlaps %d, violations %q, explained %d; want one violation", rp.overlaps, rp.violations, rp.explained)
	}
	if !strings.Contains(rp.violations[0], "g1.0.0.1") {
		t.Errorf("the violation should name the earlier holder: %s", rp.violations[0])
	}
	if len(rp.failures()) != 1 {
		t.Errorf("failures %q", rp.failures())
	}
}

func TestAnalyzeToldOverlapIsExplained(t *testing.T) {
	recs := join(
		hold("g1.0", "g1.0.0.1", 1, 0, 1, 100, 101),
		[]record{ev("g1.0", oracle.Told, "g1.0.0.1", 70)},
		hold("g2.0", "g2.0.0.1", 2, 50, 51, 60, 61, inside("g1.0.0.1")),
	)
	faults := []fault{{kind: killHolder, start: at(40), end: at(41), hit: true}}
	rp := analyze("t", recs, faults, testTiming)
	if rp.explained != 1 || len(rp.violations) != 0 {
		t.Fatalf("explained %d, violations %q; want one explained", rp.explained, rp.violations)
	}
	if got := rp.toldLatency[0]; got != 19*time.Millisecond {
		t.Errorf("told latency %v, want 19ms (entry at 51, told at 70)", got)
	}
	if rp.explainedBy[killHolder] != 1 {
		t.Errorf("explained by %v, want kill-holder", rp.explainedBy)
	}
	if got := rp.toldAfter[killHolder]; len(got) != 1 || got[0] != 30*time.Millisecond {
		t.Errorf("told after kill-holder: %v, want [30ms]", got)
	}
}

func TestAnalyzeSIGKILLedLeftoverIsNoOverlap(t *testing.T) {
	recs := join(
		[]record{ev("g1.0", oracle.Acquired, "g1.0.0.1", 0, token(1)), ev("g1.0", oracle.Enter, "g1.0.0.1", 1, token(1))},
		hold("g2.1", "g2.1.0.1", 2, 50, 51, 60, 61, inside("g1.0.0.1")),
	)
	faults := []fault{{kind: sigkill, proc: "g1.0", hold: "g1.0.0.1", start: at(20), end: at(21), hit: true}}
	rp := analyze("t", recs, faults, testTiming)
	if rp.overlaps != 0 || rp.deadLeftovers != 1 {
		t.Fatalf("overlaps %d, dead leftovers %d; want 0 and 1", rp.overlaps, rp.deadLeftovers)
	}
	if len(rp.killTakeover) != 1 || rp.killTakeover[0] != 30*time.Millisecond {
		t.Errorf("SIGKILL takeovers %v, want [30ms]", rp.killTakeover)
	}
	if len(rp.failures()) != 0 {
		t.Errorf("failures %q", rp.failures())
	}
}

func TestAnalyzePortalockerPhantom(t *testing.T) {
	recs := join(
		hold("g1.0", "g1.0.0.1", 1, 0, 1, 100, 101),
		hold("p1.0", "p1.0.0.1", 2, 50, 51, 60, 61, inside("g1.0.0.1")),
	)
	recs[4].Counts = []int64{0, 1, 2} // p1's acquired record
	rp := analyze("t", recs, nil, testTiming)
	if len(rp.reference) != 1 || len(rp.violations) != 0 {
		t.Fatalf("reference %q, violations %q; want the overlap put down to portalocker", rp.reference, rp.violations)
	}
	// A fault on another process is no excuse for the earlier holder, and
	// changes nothing.
	other := []fault{{kind: sigstop, proc: "g9.0", hold: "g9.0.0.1", start: at(20), end: at(70), hit: true}}
	if rp := analyze("t", recs, other, testTiming); len(rp.reference) != 1 {
		t.Errorf("with a SIGSTOP of another process: reference %q, violations %q", rp.reference, rp.violations)
	}
	// A fault that could have ended the earlier holder makes it a violation
	// (the holder, lost or not, was never told).
	mine := []fault{{kind: killHolder, start: at(20), end: at(21), hit: true}}
	if rp := analyze("t", recs, mine, testTiming); len(rp.violations) != 1 {
		t.Errorf("with a CLIENT KILL: violations %q, want one", rp.violations)
	}
	// Without portalocker's tell-tale count, the same overlap is a violation.
	recs[4].Counts = []int64{0, 2, 2}
	if rp := analyze("t", recs, nil, testTiming); len(rp.violations) != 1 {
		t.Errorf("with counts [0 2 2]: violations %q, want one", rp.violations)
	}
}

func TestAnalyzeResumedHolder(t *testing.T) {
	stop := fault{kind: sigstop, proc: "g1.0", hold: "g1.0.0.1", start: at(10), end: at(1000), hit: true}
	base := join(
		[]record{ev("g1.0", oracle.Acquired, "g1.0.0.1", 0, token(1)), ev("g1.0", oracle.Enter, "g1.0.0.1", 1, token(1))},
		hold("g2.0", "g2.0.0.1", 2, 520, 521, 530, 531, inside("g1.0.0.1")),
	)
	stale := func(t, checked int64) record {
		return ev("g1.0", oracle.StepSeen, "g1.0.0.1", t, func(e *oracle.Event) {
			e.Superseded, e.Refused, e.Checked = true, true, at(checked)
		})
	}
	end := []record{ev("g1.0", oracle.Leave, "g1.0.0.1", 1030), ev("g1.0", oracle.Released, "g1.0.0.1", 1031)}
	cases := []struct {
		name       string
		recs       []record
		toldLate   int
		neverTold  int
		frozen     int
		violations int
	}{
		{"told before any write", join(base, []record{ev("g1.0", oracle.Told, "g1.0.0.1", 1005), ev("g1.0", oracle.Abort, "g1.0.0.1", 1006)}, end), 0, 0, 0, 0},
		{"a write checked before the stop", join(base, []record{stale(1001, 5), ev("g1.0", oracle.Told, "g1.0.0.1", 1005)}, end), 0, 0, 1, 0},
		{"a write checked after SIGCONT", join(base, []record{stale(1010, 1008), ev("g1.0", oracle.Told, "g1.0.0.1", 1020)}, end), 1, 0, 0, 0},
		{"never told", join(base, []record{stale(1010, 1008)}, end), 1, 1, 0, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rp := analyze("t", c.recs, []fault{stop}, testTiming)
			if rp.resumed != 1 || len(rp.resumedToldLate) != c.toldLate || len(rp.resumedNeverTold) != c.neverTold ||
				rp.resumedFrozenWrite != c.frozen || len(rp.violations) != c.violations {
				t.Errorf("resumed %d, told late %q, never told %q, frozen writes %d, violations %q; want 1, %d, %d, %d, %d",
					rp.resumed, rp.resumedToldLate, rp.resumedNeverTold, rp.resumedFrozenWrite, rp.violations,
					c.toldLate, c.neverTold, c.frozen, c.violations)
			}
			if len(rp.stopTakeover) != 1 || rp.stopTakeover[0] != 510*time.Millisecond {
				t.Errorf("SIGSTOP takeovers %v, want [510ms]", rp.stopTakeover)
			}
		})
	}
}

func TestAnalyzeUnfencedStaleWrite(t *testing.T) {
	recs := join(
		hold("g1.0", "g1.0.0.1", 1, 0, 1, 100, 101),
		[]record{ev("g1.0", oracle.StepSeen, "g1.0.0.1", 80, func(e *oracle.Event) { e.Superseded = true }),
			ev("g1.0", oracle.Told, "g1.0.0.1", 90)},
		hold("g2.0", "g2.0.0.1", 2, 50, 51, 60, 61, inside("g1.0.0.1")),
	)
	rp := analyze("t", recs, nil, testTiming)
	if len(rp.staleAccepted) != 1 {
		t.Fatalf("stale writes let through: %q, want one", rp.staleAccepted)
	}
}

func TestAnalyzeBlackholedHolder(t *testing.T) {
	hole := fault{kind: blackhole, proc: "g1.0", hold: "g1.0.0.1", start: at(100), end: at(2100), hit: true}
	told := join(hold("g1.0", "g1.0.0.1", 1, 0, 1, 1300, 1301), []record{ev("g1.0", oracle.Told, "g1.0.0.1", 1050)})
	if rp := analyze("t", told, []fault{hole}, testTiming); len(rp.holedTold) != 1 || rp.holedTold[0] != 950*time.Millisecond {
		t.Errorf("told black-holed holder: %v, want [950ms]", rp.holedTold)
	}
	untold := hold("g1.0", "g1.0.0.1", 1, 0, 1, 2500, 2501)
	if rp := analyze("t", untold, []fault{hole}, testTiming); len(rp.holedNeverTold) != 1 {
		t.Errorf("untold black-holed holder: never told %q, want one", rp.holedNeverTold)
	}
}

func TestParseKinds(t *testing.T) {
	for in, want := range map[string]string{
		"":                        strings.Join(faultKinds, " "),
		"none":                    "",
		"sigstop,blackhole":       "sigstop blackhole",
		"-pause-write,-pause-all": "kill-holder kill-random restart sigkill sigstop blackhole",
	} {
		got, err := parseKinds(in)
		if err != nil || strings.Join(got, " ") != want {
			t.Errorf("parseKinds(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := parseKinds("sigstp"); err == nil {
		t.Error("parseKinds accepted an unknown kind")
	}
}

// TestAnalyzeFenceRegression: as seen in a run, a RESP2 contender whose
// connection was killed between its SUBSCRIBE and its count counted the
// real holder's subscription as its own, took a higher token, entered,
// and was told 0.1ms later; the real holder then entered with the lower
// token, and the fence refused its writes.
func TestAnalyzeFenceRegression(t *testing.T) {
	refused := func(t int64) record {
		return ev("g1.0", oracle.StepSeen, "g1.0.0.1", t, func(e *oracle.Event) { e.Refused = true })
	}
	recs := join(
		[]record{ev("g4.0", oracle.Acquired, "g4.0.0.1", 10, token(9975)),
			ev("g4.0", oracle.Enter, "g4.0.0.1", 11, token(9975)),
			ev("g4.0", oracle.Told, "g4.0.0.1", 12),
			ev("g4.0", oracle.Abort, "g4.0.0.1", 13),
			ev("g4.0", oracle.Leave, "g4.0.0.1", 14),
			ev("g4.0", oracle.Released, "g4.0.0.1", 15, func(e *oracle.Event) { e.Lost = true })},
		hold("g1.0", "g1.0.0.1", 9974, 11, 16, 30, 31, func(e *oracle.Event) { e.Regressed = true }),
		[]record{refused(20), refused(25)},
	)
	rp := analyze("t", recs, []fault{{kind: killHolder, start: at(5), end: at(6), hit: true}}, testTiming)
	if len(rp.regressions) != 1 || !strings.Contains(rp.regressions[0], "g4.0.0.1") {
		t.Fatalf("regressions %q, want g1.0.0.1's, naming g4.0.0.1", rp.regressions)
	}
	if rp.liveRefused != 2 || rp.staleRefused != 0 {
		t.Errorf("live writes refused %d, stale refused %d; want 2 and 0", rp.liveRefused, rp.staleRefused)
	}
	if len(rp.failures()) != 1 {
		t.Errorf("failures %q, want the regression", rp.failures())
	}
}

// TestAnalyzePortalockerPhantomFirst: the portalocker phantom enters the
// section before the real holder, whose entry then finds a higher token:
// one overlap, seen twice, both put down to portalocker.
func TestAnalyzePortalockerPhantomFirst(t *testing.T) {
	recs := join(
		hold("p1.0", "p1.0.0.1", 16309, 10, 11, 30, 31),
		hold("g1.0", "g1.0.0.1", 16307, 12, 13, 20, 21, inside("p1.0.0.1"), func(e *oracle.Event) { e.Regressed = true }),
	)
	recs[0].Counts = []int64{0, 1, 4}
	rp := analyze("t", recs, nil, testTiming)
	if len(rp.reference) != 2 || len(rp.regressions) != 0 || len(rp.failures()) != 0 {
		t.Errorf("reference %q, regressions %q, failures %q; want the overlap and the regression put down to portalocker",
			rp.reference, rp.regressions, rp.failures())
	}
}

// TestAnalyzePortalockerPhantomKilled: as above, and the real holder is
// then SIGKILLed inside, before it could be told: the overlap is the
// SIGKILL's, and the fence regression still portalocker's.
func TestAnalyzePortalockerPhantomKilled(t *testing.T) {
	recs := join(
		hold("p2.1", "p2.1.0.871", 7941, 10, 11, 30, 31),
		[]record{
			ev("g3.1", oracle.Acquired, "g3.1.0.58", 12, token(7940)),
			ev("g3.1", oracle.Enter, "g3.1.0.58", 13, token(7940), inside("p2.1.0.871"), func(e *oracle.Event) { e.Regressed = true }),
		},
	)
	recs[0].Counts = []int64{0, 1, 2}
	faults := []fault{{kind: sigkill, proc: "g3.1", hold: "g3.1.0.58", start: at(14), end: at(20), hit: true}}
	rp := analyze("t", recs, faults, testTiming)
	if rp.killedUntold != 1 || len(rp.regressions) != 0 || len(rp.failures()) != 0 {
		t.Errorf("SIGKILLed untold %d, reference %q, regressions %q, failures %q; want the overlap put down to the SIGKILL and the regression to portalocker",
			rp.killedUntold, rp.reference, rp.regressions, rp.failures())
	}
	// Without portalocker's tell-tale count the regression is a failure.
	recs[0].Counts = []int64{0, 2, 2}
	if rp := analyze("t", recs, faults, testTiming); len(rp.regressions) != 1 {
		t.Errorf("with counts [0 2 2]: regressions %q, want one", rp.regressions)
	}
}

// TestAnalyzePortalockerPhantomExcusesOnlyItsOverlap: a phantom explains
// the overlap of its own acquisition, not a later one in which a fault hit
// a Go holder that was never told.
func TestAnalyzePortalockerPhantomExcusesOnlyItsOverlap(t *testing.T) {
	recs := join(
		hold("g1.0", "g1.0.0.1", 7939, 0, 1, 40, 41),
		hold("p1.0", "p1.0.0.1", 7941, 10, 11, 60, 61, inside("g1.0.0.1")),
		hold("g3.0", "g3.0.0.1", 7940, 20, 30, 50, 51, inside("p1.0.0.1")),
	)
	recs[4].Counts = []int64{0, 1, 2} // p1's acquired record
	faults := []fault{{kind: killHolder, start: at(25), end: at(26), hit: true}}
	rp := analyze("t", recs, faults, testTiming)
	if len(rp.violations) != 1 || !strings.Contains(rp.violations[0], "g3.0.0.1") {
		t.Errorf("violations %q, reference %q; want g3's overlap with p1 a violation", rp.violations, rp.reference)
	}
}
