package pubsublock

import "testing"

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
		ch, ok := parsePing(payload)
		if ok && (ch == "" || len(payload) > maxPing) {
			t.Fatalf("accepted %q as a ping for %q", payload, ch)
		}
		// Whatever a reply channel is, the ping we write for it parses back,
		// unless it is too long to be taken for a ping.
		msg := pingMessage(string(payload))
		got, ok := parsePing([]byte(msg))
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
