package pubsublock

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestCRC16(t *testing.T) {
	// The check value of CRC-16/XMODEM, and the example of the Redis
	// Cluster specification.
	if got := crc16(0, "123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#04x, want 0x31c3", got)
	}
	if got := crc16(crc16(0, "1234"), "56789"); got != 0x31C3 {
		t.Errorf("crc16 in two parts = %#04x, want 0x31c3", got)
	}
}

func TestSlot(t *testing.T) {
	for _, tc := range []struct {
		key  string
		slot int
	}{
		// From CLUSTER KEYSLOT of redis-server 7.0.
		{"foo", 12182},
		{"bar", 5061},
		{"", 0},
		{"jobs", 9631},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"user1000", 3443},
		{"{}", 15257},             // empty tag: the whole key
		{"foo{}{bar}", 8363},      // first '{' closed at once: the whole key
		{"foo{{bar}}zap", 4015},   // tag "{bar"
		{"foo{bar}{zap}", 5061},   // tag "bar"
		{"{bar", 4015},            // never closed: the whole key
		{"}bar{", 1498},           // '}' before '{': the whole key
		{"a{b}c", hashSlot("b")},  // tag "b"
		{"{a}{b}", hashSlot("a")}, // first tag wins
		{"x{}y{z}", 15453},        // only the first '{' counts: no tag
	} {
		if got := hashSlot(tc.key); got != tc.slot {
			t.Errorf("hashSlot(%q) = %d, want %d", tc.key, got, tc.slot)
		}
	}
}

// slotNames are channel names with and without braces in every position.
func slotNames(r *rand.Rand, n int) []string {
	names := []string{"jobs", "a", "{", "}", "{}", "}{", "{a}", "a{b}c", "a}b", "a{}b", "a{b", "}a{", "{}}", "}}", "{{}}",
		"x{}y{z}", "{a{b}c}", "a-0.5", strings.Repeat("}", 1024)}
	const chars = "ab{}-.0"
	for range n {
		b := make([]byte, 1+r.IntN(12))
		for i := range b {
			b[i] = chars[r.IntN(len(chars))]
		}
		names = append(names, string(b))
	}
	return names
}

func TestSameSlot(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, ch := range slotNames(r, 5000) {
		for _, suffix := range []string{"fence", strconv.FormatFloat(r.Float64(), 'f', -1, 64)} {
			name := sameSlot(ch, suffix)
			if hashSlot(name) != hashSlot(ch) {
				t.Fatalf("sameSlot(%q, %q) = %q in slot %d, channel in slot %d", ch, suffix, name, hashSlot(name), hashSlot(ch))
			}
			if !strings.HasPrefix(name, ch) && !strings.HasPrefix(name, "{"+ch+"}") {
				t.Fatalf("sameSlot(%q, %q) = %q does not start with the channel", ch, suffix, name)
			}
			if name == ch {
				t.Fatalf("sameSlot(%q, %q) is the channel itself", ch, suffix)
			}
		}
	}
	if a, b := sameSlot("a}b", "fence"), sameSlot("a}b", "fence"); a != b {
		t.Errorf("sameSlot is not deterministic: %q, %q", a, b)
	}
	for _, tc := range []struct{ ch, want string }{
		{"jobs", "{jobs}-x"},
		{"a{b}c", "a{b}c-x"},
		{"a{b", "{a{b}-x"},
	} {
		if got := sameSlot(tc.ch, "x"); got != tc.want {
			t.Errorf("sameSlot(%q, x) = %q, want %q", tc.ch, got, tc.want)
		}
	}
}

func BenchmarkForceSlot(b *testing.B) {
	for i := range b.N {
		forceSlot("a}b-0.123-", i%slotCount)
	}
}
