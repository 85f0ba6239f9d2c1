package pubsublock

import (
	"strings"
	"testing"
)

func TestParseAnswer(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		payload string
		want    answer
	}{
		// portalocker 4.1's record, as json.dumps writes it.
		{`{"holder_id": "` + id + `", "mode": "shared", "protocol": 1}`, answer{holderID: id, id: id, mode: ModeShared}},
		{`{"holder_id":"x","mode":"pending","protocol":1.0,"elected":true}`, answer{holderID: "x", id: "x", mode: ModePending, elected: true}},
		{`{"holder_id": "x", "mode": "exclusive", "protocol": 1, "client": "pubsublock"}`, answer{holderID: "x", id: "x", mode: ModeExclusive, client: "pubsublock"}},
		// pubsublock with protocol 0: legacy for portalocker 4, but it says
		// its mode and id.
		{`{"time": 1795634566.046269712, "id": "` + id + `", "mode": "pending", "elected": true, "client": "pubsublock"}`, answer{id: id, mode: ModePending, elected: true, client: "pubsublock"}},
		{`{"time": 1795634566.046269712, "id": "` + id + `", "mode": "pending", "client": "other"}`, answer{mode: ModeExclusive}},
		// Anything else is a legacy answer, exclusive.
		{`1795634566.0462697`, answer{mode: ModeExclusive}},
		{`1795634566.046269712`, answer{mode: ModeExclusive, goStamp: true}},
		{`{"holder_id": "x", "mode": "shared", "protocol": 2}`, answer{mode: ModeExclusive}},
		{`{"holder_id": "x", "mode": "reading", "protocol": 1}`, answer{mode: ModeExclusive}},
		{`{"holder_id": 5, "mode": "shared", "protocol": 1}`, answer{mode: ModeExclusive}},
		{`{"mode": "shared", "protocol": 1}`, answer{mode: ModeExclusive}},
		{`{"holder_id": "x", "mode": "shared", "protocol": "1"}`, answer{mode: ModeExclusive}},
		{`{"holder_id": "x", "mode": "shared", "protocol": 1` + strings.Repeat(" ", maxAnswer) + `}`, answer{mode: ModeExclusive}},
		{``, answer{mode: ModeExclusive}},
		{`null`, answer{mode: ModeExclusive}},
	} {
		if got := parseAnswer([]byte(tc.payload)); got != tc.want {
			t.Errorf("parseAnswer(%.80q) = %+v, want %+v", tc.payload, got, tc.want)
		}
	}
}

func TestHolderOf(t *testing.T) {
	s := &spec{channel: "a", legacyName: "a-lock"}
	const id = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name   string
		id     string
		holder bool
	}{
		{"a-lock", "", true},
		{"a-lock-" + id, id, true},
		{"a-lock-" + strings.ToUpper(id), "", false},
		{"a-lock-" + id[1:], "", false},
		{"a-lock-" + id + "0", "", false},
		{"a-lock-b-lock-" + id, "", false}, // channel "a-lock-b"'s holder (upstream #142)
		{"a-lock-b-lock", "", false},
		{"a-lock-", "", false},
		{"b-lock", "", false},
		{"", "", false},
	} {
		id, ok := s.holderOf(tc.name)
		if ok != tc.holder || id != tc.id {
			t.Errorf("holderOf(%q) = %q, %v; want %q, %v", tc.name, id, ok, tc.id, tc.holder)
		}
	}
	if id := newHolderID(); !isHolderID(id) || id[12] != '4' || !strings.ContainsRune("89ab", rune(id[16])) {
		t.Errorf("newHolderID() = %q, not a uuid4 in hex", id)
	}
}

func TestPingProtocol(t *testing.T) {
	const hex = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		replyCh string
		want    int
	}{
		{"jobs-" + hex, 1},             // portalocker 4, pubsublock
		{"jobs-0.9461501796110964", 0}, // portalocker 2.x and 3.x
		{"{jobs}-" + hex, 1},           // pubsublock on a cluster
		{"jo{b}s-" + hex + "-A7", 1},   // on a cluster, filled up to the channel's slot
		{"jobs-" + hex + "x", 0},
		{"jobs-waiting", 0},
		{"other-" + hex, 0},
		{"jobs-" + strings.ToUpper(hex), 0},
	} {
		channel := "jobs"
		if strings.Contains(tc.replyCh, "jo{b}s") {
			channel = "jo{b}s"
		}
		if got := pingProtocol(channel, tc.replyCh); got != tc.want {
			t.Errorf("pingProtocol(%q, %q) = %d, want %d", channel, tc.replyCh, got, tc.want)
		}
	}
}

// FuzzPing feeds arbitrary messages to the holder's ping parser: it must
// never panic, accept only real pings, and read back every ping a
// contender writes.
func FuzzPing(f *testing.F) {
	for _, s := range []string{
		`{"response_channel": "jobs-0.9461501796110964", "message": "ping"}`,
		`{"response_channel":"jobs-1"}`,
		`{"response_channel": 5}`,
		`{"response_channel": ""}`,
		`{"message": "ping"}`,
		`not json`, ``, `null`, `[]`, `{"response_channel": "a\u0000b"}`,
		"\xff\xfe", `{"response_channel": "x", "response_channel": "y"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		ch, _, ok := parsePing(payload)
		if ok && (ch == "" || len(payload) > maxPing) {
			t.Fatalf("accepted %q as a ping for %q", payload, ch)
		}
		// Whatever a reply channel is, the ping we write for it parses back,
		// unless it is too long to be taken for a ping.
		msg := pingMessage(string(payload))
		got, status, ok := parsePing([]byte(msg))
		if status {
			t.Fatalf("pingMessage(%q) parses as a status ping", payload)
		}
		if len(payload) > 0 && len(msg) <= maxPing && (!ok || got != toValidUTF8(string(payload))) {
			t.Fatalf("pingMessage(%q) parses as %q, %v", payload, got, ok)
		}
		if len(msg) > maxPing && ok {
			t.Fatalf("a %d-byte ping was accepted", len(msg))
		}
	})
}

// toValidUTF8 is what a JSON round trip does to a Go string.
func toValidUTF8(s string) string {
	var b []rune
	for _, r := range s {
		b = append(b, r)
	}
	return string(b)
}

// TestHearsBell: only pubsublock's contenders wait for the release bell;
// portalocker's, of every version, poll.
func TestHearsBell(t *testing.T) {
	s := &spec{channel: "jobs", waiting: "jobs-waiting"}
	const hex = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		payload, replyCh string
		hears            bool
	}{
		{pingMessage("jobs-" + hex), "jobs-" + hex, true},                                     // pubsublock
		{pingMessage("jobs-waiting"), "jobs-waiting", true},                                   // a waiter's announcement
		{`{"message": "ping", "response_channel": "jobs-` + hex + `"}`, "jobs-" + hex, false}, // portalocker 4
		{pingMessage("jobs-0.9461501796110964"), "jobs-0.9461501796110964", false},            // portalocker 2.x, 3.x
	} {
		if got := s.hearsBell([]byte(tc.payload), tc.replyCh); got != tc.hears {
			t.Errorf("hearsBell(%s) = %v, want %v", tc.payload, got, tc.hears)
		}
	}
}
