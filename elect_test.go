package pubsublock

import "testing"

func TestJudge(t *testing.T) {
	const (
		self = "5555"
		low  = "1111"
		high = "9999"
	)
	rec := func(id string, m Mode) answer { return answer{holderID: id, id: id, mode: m} }
	elected := func(id string) answer { a := rec(id, ModePending); a.elected = true; return a }
	legacy := answer{mode: ModeExclusive}
	goLegacy := func(id string, m Mode) answer { return answer{id: id, mode: m, client: "pubsublock"} }
	v41 := func(id string) answer { a := rec(id, ModePending); a.unsaid = true; return a }
	for _, tc := range []struct {
		name      string
		shared    bool
		incumbent bool
		receivers int64
		answers   []answer
		want      verdict
	}{
		{"reader alone", true, false, 1, []answer{rec(self, ModeShared)}, verdictJoin},
		{"reader among readers", true, false, 3, []answer{rec(self, ModeShared), rec(low, ModeShared), rec(high, ModeShared)}, verdictJoin},
		{"reader, one silent", true, false, 3, []answer{rec(self, ModeShared), rec(low, ModeShared)}, verdictUnsure},
		{"reader, a writer pending", true, false, 3, []answer{rec(self, ModeShared), rec(low, ModePending)}, verdictWait},
		{"reader, an exclusive holder", true, false, 2, []answer{rec(self, ModeShared), rec(low, ModeExclusive)}, verdictWait},
		{"reader, a legacy holder", true, false, 2, []answer{rec(self, ModeShared), legacy}, verdictWait},
		{"reader, a Go protocol-0 writer", true, false, 2, []answer{rec(self, ModeShared), goLegacy(low, ModePending)}, verdictWait},
		{"reader, an answer counted once", true, false, 3, []answer{rec(self, ModeShared), rec(low, ModeShared), rec(low, ModeShared)}, verdictUnsure},
		{"writer among readers", false, false, 3, []answer{rec(self, ModePending), rec(low, ModeShared), rec(high, ModeShared)}, verdictElected},
		{"writer, readers, one silent", false, false, 3, []answer{rec(self, ModePending), rec(low, ModeShared)}, verdictUnsure},
		{"writer, an exclusive holder", false, false, 3, []answer{rec(self, ModePending), rec(low, ModeExclusive)}, verdictWait},
		{"writer, a legacy holder", false, false, 2, []answer{rec(self, ModePending), legacy}, verdictWait},
		{"writer, a lower pending writer", false, false, 3, []answer{rec(self, ModePending), rec(low, ModePending), rec(high, ModeShared)}, verdictWait},
		{"writer, a higher pending writer", false, false, 3, []answer{rec(self, ModePending), rec(high, ModePending), rec(low, ModeShared)}, verdictElected},
		{"writer, a higher elected writer", false, false, 2, []answer{rec(self, ModePending), elected(high)}, verdictWait},
		{"incumbent, a lower newcomer", false, true, 2, []answer{rec(self, ModePending), rec(low, ModePending)}, verdictElected},
		{"incumbent, a higher elected writer", false, true, 2, []answer{rec(self, ModePending), elected(high)}, verdictElected},
		{"incumbent, a lower elected writer", false, true, 2, []answer{rec(self, ModePending), elected(low)}, verdictWait},
		{"Go protocol-0 writers elect by id", false, false, 2, []answer{goLegacy(self, ModePending), goLegacy(high, ModePending)}, verdictElected},
		{"writer, a 4.1 writer with a higher id", false, false, 2, []answer{rec(self, ModePending), v41(high)}, verdictWait},
		{"incumbent, a 4.1 writer with a higher id", false, true, 2, []answer{rec(self, ModePending), v41(high)}, verdictElected},
		{"incumbent, a 4.1 writer with a lower id", false, true, 2, []answer{rec(self, ModePending), v41(low)}, verdictWait},
	} {
		s := &spec{self: self, shared: tc.shared}
		p := &probe{receivers: tc.receivers, answers: tc.answers}
		if got := s.judge(p, tc.incumbent); got != tc.want {
			t.Errorf("%s: judge = %d, want %d", tc.name, got, tc.want)
		}
	}
}
