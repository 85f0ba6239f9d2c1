package resp

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// loopReader yields prefix, then loop over and over until limit bytes in
// all (forever if limit < 0), then io.EOF. It allocates nothing per Read,
// so it can stand for tens of megabytes of hostile input, and counts what
// was consumed.
type loopReader struct {
	prefix string
	loop   string
	limit  int64
	n      int64 // bytes yielded so far
}

func (l *loopReader) Read(p []byte) (int, error) {
	if l.limit >= 0 && l.n >= l.limit {
		return 0, io.EOF
	}
	if l.limit >= 0 && int64(len(p)) > l.limit-l.n {
		p = p[:l.limit-l.n]
	}
	total := 0
	for len(p) > 0 {
		var m int
		if l.n < int64(len(l.prefix)) {
			m = copy(p, l.prefix[l.n:])
		} else {
			off := (l.n - int64(len(l.prefix))) % int64(len(l.loop))
			m = copy(p, l.loop[off:])
		}
		p = p[m:]
		l.n += int64(m)
		total += m
	}
	return total, nil
}

// allocated returns the bytes f allocated, from the runtime's TotalAlloc.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const mib = 1 << 20

func TestHostileInputs(t *testing.T) {
	tests := []struct {
		name     string
		in       func() io.Reader
		lim      Limits
		maxAlloc uint64 // bytes the reader may allocate
		maxRead  int64  // bytes it may consume from a generated stream, 0 for no check
		want     error
	}{
		// makeslice panic in readers that trust the length.
		{name: "bulk length MaxInt64", in: str("$9223372036854775807\r\n"), maxAlloc: 64 << 10, want: ErrProtocol},
		{name: "bulk length 2^63", in: str("$9223372036854775808\r\n"), maxAlloc: 64 << 10, want: ErrProtocol},
		{name: "verbatim length MaxInt64", in: str("=9223372036854775807\r\n"), maxAlloc: 64 << 10, want: ErrProtocol},
		// OOM in readers that preallocate the announced count.
		{name: "array of a billion", in: str("*1000000000\r\n"), maxAlloc: 64 << 10, want: ErrProtocol},
		{name: "map of a billion", in: str("%1000000000\r\n"), maxAlloc: 64 << 10, want: ErrProtocol},
		{name: "array at the limit, no elements", in: str("*" + strconv.Itoa(maxValues-1) + "\r\n"), maxAlloc: 64 << 10, want: io.ErrUnexpectedEOF},
		{name: "array beyond the reply's values", in: str("*" + strconv.Itoa(maxValues) + "\r\n"), maxAlloc: 64 << 10, want: ErrLimit},
		{name: "map beyond the reply's values", in: str("%" + strconv.Itoa(maxValues/2) + "\r\n"), maxAlloc: 64 << 10, want: ErrLimit},
		{name: "nested arrays at the limit, no elements", in: str(strings.Repeat("*1000\r\n", 64)), maxAlloc: 64 << 10, want: io.ErrUnexpectedEOF},
		// Stack overflow in recursive readers: twenty million "*1\r\n".
		{name: "twenty million nested arrays", in: loop("", "*1\r\n", 20e6*4), maxAlloc: 256 << 10, maxRead: 64 << 10, want: ErrProtocol},
		{name: "twenty million nested maps", in: loop("", "%1\r\n+k\r\n", 20e6*8), maxAlloc: 256 << 10, maxRead: 64 << 10, want: ErrProtocol},
		{name: "bad trailer", in: str("$1\r\naXY"), maxAlloc: 64 << 10, want: ErrProtocol},
		// Attributes before a value, millions of them.
		{name: "attribute chain", in: loop("", "|1\r\n+k\r\n+v\r\n", 3e6*13), maxAlloc: 256 << 10, maxRead: 64 << 10, want: ErrProtocol},
		// A big announced bulk costs memory only as its bytes arrive.
		{name: "32 MiB announced, 3 bytes sent", in: str("$33554432\r\nabc"), maxAlloc: 256 << 10, want: io.ErrUnexpectedEOF},
		{name: "32 MiB announced, 1 MiB sent", in: loop("$33554432\r\n", "x", 11+mib), maxAlloc: 5 * mib, want: io.ErrUnexpectedEOF},
		{name: "32 MiB streamed chunk announced, 3 bytes sent", in: str("$?\r\n;33554432\r\nabc"), maxAlloc: 256 << 10, want: io.ErrUnexpectedEOF},
		{name: "bulk over the limit", in: str("$33554433\r\n"), maxAlloc: 64 << 10, want: ErrProtocol},
		// Lines without end.
		{name: "endless line", in: loop("+", "a", 100*mib), maxAlloc: 512 << 10, maxRead: 128 << 10, want: ErrProtocol},
		{name: "endless header digits", in: loop("$1", "0", 100*mib), maxAlloc: 512 << 10, maxRead: 128 << 10, want: ErrProtocol},
		{name: "endless line small limit", in: loop("-", "E", 100*mib), lim: Limits{MaxLineLen: 100}, maxAlloc: 64 << 10, maxRead: 16 << 10, want: ErrProtocol},
		// Streams without end.
		{name: "streamed string endless one-byte chunks", in: loop("$?\r\n", ";1\r\na\r\n", 100*mib), maxAlloc: 8 * mib, maxRead: 8 * mib, want: ErrProtocol},
		{name: "streamed string endless big chunks", in: loop("$?\r\n", ";65536\r\n"+strings.Repeat("z", 65536)+"\r\n", 100*mib),
			lim: Limits{MaxBulkLen: mib}, maxAlloc: 6 * mib, maxRead: 2 * mib, want: ErrProtocol},
		{name: "streamed array endless", in: loop("*?\r\n", ":1\r\n", 100*mib), lim: Limits{MaxElements: 10000}, maxAlloc: 8 * mib, maxRead: 64 << 10, want: ErrProtocol},
		{name: "streamed map endless", in: loop("%?\r\n", "+k\r\n:1\r\n", 100*mib), lim: Limits{MaxElements: 10000}, maxAlloc: 16 * mib, maxRead: 128 << 10, want: ErrProtocol},
		{name: "endless empty arrays in a streamed array", in: loop("*?\r\n", "*0\r\n", 100*mib), lim: Limits{MaxElements: 10000}, maxAlloc: 8 * mib, maxRead: 64 << 10, want: ErrProtocol},
	}
	for _, tt := range tests {
		for _, keep := range []bool{false, true} {
			name := tt.name
			if keep {
				name += " keeping attributes"
			}
			t.Run(name, func(t *testing.T) {
				in := tt.in()
				var err error
				start := time.Now()
				alloc := allocated(func() {
					r := NewReader(in, tt.lim)
					r.KeepAttributes = keep
					_, err = r.Read()
				})
				elapsed := time.Since(start)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Read = %v, want %v", err, tt.want)
				}
				if tt.want == ErrProtocol || tt.want == ErrLimit {
					var pe *ProtocolError
					if !errors.As(err, &pe) {
						t.Fatalf("Read = %#v, want a *ProtocolError", err)
					}
				}
				if alloc > tt.maxAlloc {
					t.Errorf("allocated %d bytes, want at most %d", alloc, tt.maxAlloc)
				}
				if l, ok := in.(*loopReader); ok && tt.maxRead > 0 && l.n > tt.maxRead {
					t.Errorf("consumed %d bytes before giving up, want at most %d", l.n, tt.maxRead)
				}
				if elapsed > 5*time.Second {
					t.Errorf("took %v", elapsed)
				}
				t.Logf("%v after %v, %d bytes allocated", err, elapsed, alloc)
			})
		}
	}
}

func str(s string) func() io.Reader { return func() io.Reader { return strings.NewReader(s) } }

func loop(prefix, body string, limit int64) func() io.Reader {
	return func() io.Reader { return &loopReader{prefix: prefix, loop: body, limit: limit} }
}

// TestLimitsExact checks that every limit accepts its value and rejects one
// more.
func TestLimitsExact(t *testing.T) {
	rep := strings.Repeat
	nested := func(open string, n int, inner string) string { return rep(open, n) + inner }
	lines := func(n int, s string) string { return rep(s, n) }
	tests := []struct {
		name     string
		lim      Limits
		ok, over string
	}{
		{"bulk", Limits{MaxBulkLen: 10}, "$10\r\n0123456789\r\n", "$11\r\n0123456789a\r\n"},
		{"bulk error", Limits{MaxBulkLen: 10}, "!10\r\nERR 456789\r\n", "!11\r\nERR 456789a\r\n"},
		{"verbatim counts its prefix", Limits{MaxBulkLen: 10}, "=10\r\ntxt:456789\r\n", "=11\r\ntxt:456789a\r\n"},
		{"streamed string total", Limits{MaxBulkLen: 10}, "$?\r\n;5\r\n01234\r\n;5\r\n56789\r\n;0\r\n", "$?\r\n;5\r\n01234\r\n;6\r\n56789a\r\n;0\r\n"},
		{"streamed string chunk", Limits{MaxBulkLen: 10}, "$?\r\n;10\r\n0123456789\r\n;0\r\n", "$?\r\n;11\r\n0123456789a\r\n;0\r\n"},
		{"bulk in array", Limits{MaxBulkLen: 3}, "*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n", "*2\r\n$3\r\nabc\r\n$4\r\ndefg\r\n"},

		{"array", Limits{MaxElements: 3}, "*3\r\n" + lines(3, ":1\r\n"), "*4\r\n" + lines(4, ":1\r\n")},
		{"set", Limits{MaxElements: 3}, "~3\r\n" + lines(3, ":1\r\n"), "~4\r\n" + lines(4, ":1\r\n")},
		{"push", Limits{MaxElements: 3}, ">3\r\n" + lines(3, ":1\r\n"), ">4\r\n" + lines(4, ":1\r\n")},
		{"map counts pairs", Limits{MaxElements: 3}, "%3\r\n" + lines(6, ":1\r\n"), "%4\r\n" + lines(8, ":1\r\n")},
		{"attribute counts pairs", Limits{MaxElements: 3}, "|3\r\n" + lines(6, ":1\r\n") + "+OK\r\n", "|4\r\n" + lines(8, ":1\r\n") + "+OK\r\n"},
		{"streamed array", Limits{MaxElements: 3}, "*?\r\n" + lines(3, ":1\r\n") + ".\r\n", "*?\r\n" + lines(4, ":1\r\n") + ".\r\n"},
		{"streamed set", Limits{MaxElements: 3}, "~?\r\n" + lines(3, ":1\r\n") + ".\r\n", "~?\r\n" + lines(4, ":1\r\n") + ".\r\n"},
		{"streamed map", Limits{MaxElements: 3}, "%?\r\n" + lines(6, ":1\r\n") + ".\r\n", "%?\r\n" + lines(8, ":1\r\n") + ".\r\n"},
		{"streamed string chunks", Limits{MaxElements: 3}, "$?\r\n" + lines(3, ";1\r\na\r\n") + ";0\r\n", "$?\r\n" + lines(4, ";1\r\na\r\n") + ";0\r\n"},

		{"depth arrays", Limits{MaxDepth: 3}, nested("*1\r\n", 3, ":1\r\n"), nested("*1\r\n", 4, ":1\r\n")},
		{"depth empty innermost", Limits{MaxDepth: 3}, nested("*1\r\n", 2, "*0\r\n"), nested("*1\r\n", 3, "*0\r\n")},
		{"depth maps", Limits{MaxDepth: 2}, "%1\r\n+k\r\n%1\r\n+k\r\n:1\r\n", "%1\r\n+k\r\n%1\r\n+k\r\n%0\r\n"},
		{"depth streamed", Limits{MaxDepth: 2}, "*?\r\n*?\r\n:1\r\n.\r\n.\r\n", "*?\r\n*?\r\n*?\r\n.\r\n.\r\n.\r\n"},
		{"depth one", Limits{MaxDepth: 1}, "*2\r\n:1\r\n$1\r\na\r\n", "*1\r\n*0\r\n"},
		{"depth attribute chain", Limits{MaxDepth: 3}, lines(3, "|1\r\n+k\r\n+v\r\n") + ":1\r\n", lines(4, "|1\r\n+k\r\n+v\r\n") + ":1\r\n"},
		{"depth attribute adds a level", Limits{MaxDepth: 2}, "|1\r\n+k\r\n+v\r\n*1\r\n:1\r\n", "|1\r\n+k\r\n+v\r\n*1\r\n*0\r\n"},
		{"depth default", Limits{}, nested("*1\r\n", 64, ":1\r\n"), nested("*1\r\n", 65, ":1\r\n")},

		// The line includes its type byte, not its CRLF.
		{"line simple", Limits{MaxLineLen: 8}, "+1234567\r\n", "+12345678\r\n"},
		{"line error", Limits{MaxLineLen: 8}, "-ERR 567\r\n", "-ERR 5678\r\n"},
		{"line header", Limits{MaxLineLen: 3}, "$10\r\n0123456789\r\n", "$100\r\n" + rep("x", 100) + "\r\n"},
		{"line in array", Limits{MaxLineLen: 4}, "*1\r\n+abc\r\n", "*1\r\n+abcd\r\n"},
		{"line beyond bufio buffer", Limits{MaxLineLen: 5000}, "+" + rep("a", 4999) + "\r\n", "+" + rep("a", 5000) + "\r\n"},
		{"line far beyond bufio buffer", Limits{MaxLineLen: 20000}, "+" + rep("a", 19999) + "\r\n", "+" + rep("a", 20000) + "\r\n"},
		{"line default", Limits{}, "+" + rep("a", 64<<10-1) + "\r\n", "+" + rep("a", 64<<10) + "\r\n"},

		// Every value counts, at every depth; the limit is per reply.
		{"reply values", Limits{MaxReplyValues: 4}, "*3\r\n" + lines(3, ":1\r\n"), "*4\r\n" + lines(4, ":1\r\n")},
		{"reply values nested", Limits{MaxReplyValues: 4}, "*2\r\n*1\r\n:1\r\n:1\r\n", "*2\r\n*2\r\n:1\r\n:1\r\n:1\r\n"},
		{"reply values map", Limits{MaxReplyValues: 5}, "%2\r\n" + lines(4, ":1\r\n"), "%2\r\n:1\r\n*1\r\n:1\r\n:1\r\n:1\r\n"},
		{"reply values streamed", Limits{MaxReplyValues: 4}, "*?\r\n" + lines(3, ":1\r\n") + ".\r\n", "*?\r\n" + lines(4, ":1\r\n") + ".\r\n"},
		{"reply values attribute", Limits{MaxReplyValues: 4}, "|1\r\n+k\r\n+v\r\n:1\r\n", "|1\r\n+k\r\n+v\r\n*1\r\n:1\r\n"},
		{"reply values empty attribute", Limits{MaxReplyValues: 1}, ":1\r\n", "|0\r\n:1\r\n"},
		{"reply values per reply", Limits{MaxReplyValues: 2}, lines(3, "*1\r\n:1\r\n"), "*2\r\n:1\r\n:1\r\n"},
		{"reply values default", Limits{}, aggregate("*", maxValues-1, "_\r\n"), "*2\r\n" + aggregate("*", maxValues-2, "_\r\n") + "_\r\n"},

		// Every byte counts, headers and CRLFs too.
		{"reply bytes bulk", Limits{MaxReplyBytes: 12}, "$6\r\nhello!\r\n", "$7\r\nhello!!\r\n"},
		{"reply bytes lines", Limits{MaxReplyBytes: 10}, "*1\r\n+abc\r\n", "*1\r\n+abcd\r\n"},
		{"reply bytes streamed", Limits{MaxReplyBytes: 17}, "$?\r\n;3\r\nabc\r\n;0\r\n", "$?\r\n;4\r\nabcd\r\n;0\r\n"},
		{"reply bytes end of stream", Limits{MaxReplyBytes: 11}, "*?\r\n:1\r\n.\r\n", "*?\r\n:12\r\n.\r\n"},
		{"reply bytes attribute", Limits{MaxReplyBytes: 16}, "|1\r\n+k\r\n+v\r\n:1\r\n", "|1\r\n+k\r\n+v\r\n:12\r\n"},
		{"reply bytes per reply", Limits{MaxReplyBytes: 5}, lines(3, "+OK\r\n"), "+OK!\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, keep := range []bool{false, true} {
				if err := readErr(tt.ok, tt.lim, keep); err != io.EOF {
					t.Errorf("at the limit %+v: Read(%.60q) = %v, want success", tt.lim, tt.ok, err)
				}
				err := readErr(tt.over, tt.lim, keep)
				var pe *ProtocolError
				if !errors.As(err, &pe) || !errors.Is(err, ErrLimit) {
					t.Errorf("over the limit %+v: Read(%.60q) = %v, want a *ProtocolError matching ErrLimit", tt.lim, tt.over, err)
				} else if !strings.Contains(pe.Reason, "limit") || pe.Limit == "" {
					t.Errorf("over the limit: reason %q or field %q does not name the limit", pe.Reason, pe.Limit)
				}
			}
		})
	}
}

// TestDroppedAttributesCostNothing reads many attributed elements without
// keeping the attributes: the reader's memory must not grow with them.
func TestDroppedAttributesCostNothing(t *testing.T) {
	const n = 5000 // 4 values each, within MaxReplyValues
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(n) + "\r\n")
	for range n {
		b.WriteString("|1\r\n$20\r\n" + strings.Repeat("k", 20) + "\r\n$100\r\n" + strings.Repeat("v", 100) + "\r\n:1\r\n")
	}
	wire := b.String()
	r := NewReader(strings.NewReader(wire), Limits{})
	v, err := r.Read()
	if err != nil || len(v.Elems) != n {
		t.Fatalf("Read = %d elements, %v", len(v.Elems), err)
	}
	if len(r.arena) != 0 {
		t.Errorf("arena holds %d bytes of dropped attributes", len(r.arena))
	}
	// The one list of n values, in the long array; no chunk carved.
	if s := r.slab; s.longOff != n || s.ci != 0 || s.off != 0 {
		t.Errorf("slab holds %d values of the long array and %d of %d chunks; want only the list of %d", s.longOff, s.off, s.ci+1, n)
	}
}

// allocInput is a hostile stream for TestReplyAllocBound.
type allocInput struct {
	name string
	wire string
	keep bool // KeepAttributes
}

// atLeastMiB repeats reply until the stream is at least 1 MiB long.
func atLeastMiB(reply string) string { return strings.Repeat(reply, (mib+len(reply)-1)/len(reply)) }

// aggregate returns an aggregate of type typ holding n copies of elem (n
// pairs of it for a map).
func aggregate(typ string, n int, elem string) string {
	if typ == "%" {
		return "%" + strconv.Itoa(n) + "\r\n" + strings.Repeat(elem, 2*n)
	}
	return typ + strconv.Itoa(n) + "\r\n" + strings.Repeat(elem, n)
}

// tree returns an array tree of the given depth and fan-out whose leaves are
// leaf.
func tree(depth, fanout int, leaf string) string {
	if depth == 0 {
		return leaf
	}
	return "*" + strconv.Itoa(fanout) + "\r\n" + strings.Repeat(tree(depth-1, fanout, leaf), fanout)
}

// allocBoundInputs are hostile streams of at least 1 MiB in the shapes that
// cost the most memory per byte: many small values, each a whole Value.
// Each small value comes in two forms: a reply that is too large, in
// aggregates of 4096 until 1 MiB, refused when the reply reaches
// MaxReplyValues; and replies that reach the limit without exceeding it
// (16 aggregates of 4094), repeated.
func allocBoundInputs() []allocInput {
	chain := strings.Repeat("|1\r\n+k\r\n+v\r\n", 62) + "_\r\n" // at depth 64 in two arrays
	small := []struct {
		name, wire string
		values     int // values in wire
		kept       bool
	}{
		{"nulls", "_\r\n", 1, false},
		{"RESP2 null bulks", "$-1\r\n", 1, false},
		{"RESP2 null arrays", "*-1\r\n", 1, false},
		{"integers", ":1\r\n", 1, false},
		{"booleans", "#t\r\n", 1, false},
		{"doubles", ",1\r\n", 1, false},
		{"big numbers", "(1\r\n", 1, false},
		{"empty simple strings", "+\r\n", 1, false},
		{"one-byte simple strings", "+a\r\n", 1, false},
		{"empty bulk strings", "$0\r\n\r\n", 1, false},
		{"empty verbatim strings", "=4\r\ntxt:\r\n", 1, false},
		{"empty streamed strings", "$?\r\n;0\r\n", 1, false},
		{"empty arrays", "*0\r\n", 1, false},
		{"empty maps", "%0\r\n", 1, false},
		{"empty streamed arrays", "*?\r\n.\r\n", 1, false},
		{"attributed nulls, attributes dropped", "|1\r\n_\r\n_\r\n_\r\n", 4, false},
		{"attributed nulls, attributes kept", "|1\r\n_\r\n_\r\n_\r\n", 4, true},
		{"nulls after 62 chained attributes, dropped", chain, 187, false},
		{"nulls after 62 chained attributes, kept", chain, 187, true},
	}
	var ins []allocInput
	for _, e := range small {
		over := atLeastMiB(aggregate("*", 4096, e.wire))
		over = "*" + strconv.Itoa(len(over)/(len(e.wire)*4096)) + "\r\n" + over
		n := (maxValues - 17) / 16 / e.values
		atLimit := atLeastMiB("*16\r\n" + strings.Repeat(aggregate("*", n, e.wire), 16))
		ins = append(ins,
			allocInput{name: "arrays of " + e.name + ", over the limit", wire: over, keep: e.kept},
			allocInput{name: "arrays of " + e.name + ", at the limit", wire: atLimit, keep: e.kept})
	}
	for _, typ := range []string{"~", ">", "%"} {
		n := (maxValues - 17) / 16
		if typ == "%" {
			n /= 2
		}
		ins = append(ins,
			allocInput{name: "aggregates " + typ + " of nulls, over the limit", wire: atLeastMiB("*256\r\n" + strings.Repeat(aggregate(typ, 2048, "_\r\n"), 256))},
			allocInput{name: "aggregates " + typ + " of nulls, at the limit", wire: atLeastMiB("*16\r\n" + strings.Repeat(aggregate(typ, n, "_\r\n"), 16))})
	}
	return append(ins,
		// The reply to HELLO, refused at its first inner header.
		allocInput{name: "16 arrays of 65536 nulls", wire: "*16\r\n" + strings.Repeat(aggregate("*", 1<<16, "_\r\n"), 16)},
		// One list as long as the limit allows: it is on the stack whole
		// before it moves to the slab.
		allocInput{name: "one array of nulls", wire: atLeastMiB(aggregate("*", maxValues-1, "_\r\n"))},
		allocInput{name: "one array of nulls in another", wire: atLeastMiB("*1\r\n" + aggregate("*", maxValues-2, "_\r\n"))},
		allocInput{name: "one streamed array of nulls", wire: atLeastMiB("*?\r\n" + strings.Repeat("_\r\n", maxValues-1) + ".\r\n")},
		allocInput{name: "one streamed array of nulls in another", wire: atLeastMiB("*1\r\n*?\r\n" + strings.Repeat("_\r\n", maxValues-2) + ".\r\n")},
		allocInput{name: "a streamed array of nulls without end", wire: "*?\r\n" + strings.Repeat("_\r\n", mib/3+1)},
		allocInput{name: "one map of null pairs", wire: atLeastMiB(aggregate("%", maxValues/2-1, "_\r\n"))},
		// Announced far beyond what is sent.
		allocInput{name: "array at the limit announced, nulls sent to 1 MiB", wire: "*" + strconv.Itoa(maxValues-1) + "\r\n" + strings.Repeat("_\r\n", mib/3+1)},
		allocInput{name: "64 nested arrays of 1000 announced, then nulls", wire: strings.Repeat("*1000\r\n", 64) + strings.Repeat("_\r\n", mib/3+1)},
		allocInput{name: "32 MiB bulk announced, 1 MiB sent", wire: "$33554432\r\n" + strings.Repeat("x", mib)},
		// Nesting.
		allocInput{name: "a tree of empty arrays, fan-out 4, depth 7", wire: atLeastMiB(tree(7, 4, "*0\r\n"))},
		allocInput{name: "a tree of nulls, fan-out 2, depth 15", wire: atLeastMiB(tree(15, 2, "_\r\n"))},
		// Small replies, one after the other.
		allocInput{name: "small replies", wire: atLeastMiB("*3\r\n_\r\n:1\r\n$1\r\nx\r\n")},
		allocInput{name: "streamed strings of one-byte chunks", wire: atLeastMiB("$?\r\n" + strings.Repeat(";1\r\na\r\n", maxValues-1) + ";0\r\n")},
		// Replies at the limit that each need memory in another shape than
		// the ones before: long lists in growing numbers, lists that grow
		// by one, long lists then short ones.
		allocInput{name: "replies of 1, 2, 3... long lists", wire: replies(func(k int) string {
			return "*" + strconv.Itoa(k) + "\r\n" + strings.Repeat(aggregate("*", (maxValues-1-k)/k, "_\r\n"), k)
		})},
		allocInput{name: "replies of one list, one longer each time", wire: replies(func(k int) string {
			return aggregate("*", maxValues/2+k, "_\r\n")
		})},
		allocInput{name: "replies of a long list then of short lists", wire: replies(func(k int) string {
			if k%2 == 1 {
				return aggregate("*", maxValues-1, "_\r\n")
			}
			n := (maxValues - 1) / (longList + 1)
			return "*" + strconv.Itoa(n) + "\r\n" + strings.Repeat(aggregate("*", longList, "_\r\n"), n)
		})},
	)
}

// maxValues is the default MaxReplyValues.
const maxValues = DefaultMaxReplyValues

// replies returns reply(1), reply(2)... up to 1 MiB.
func replies(reply func(k int) string) string {
	var b strings.Builder
	for k := 1; b.Len() < mib; k++ {
		b.WriteString(reply(k))
	}
	return b.String()
}

// TestValueSize guards the size of a Value, which the bounds on a reader's
// memory are made for.
func TestValueSize(t *testing.T) {
	if size := unsafe.Sizeof(Value{}); strconv.IntSize == 64 && size != 96 {
		t.Errorf("a Value is %d bytes, want 96", size)
	}
}

// maxAllocPerByte is the most a Reader may allocate per byte of a stream of
// 1 MiB or more.
const maxAllocPerByte = 16

// TestReplyAllocBound reads hostile streams of 1 MiB and more, each a
// shape that turns few bytes into many values, and checks that the reader
// allocates at most maxAllocPerByte bytes per byte of input.
func TestReplyAllocBound(t *testing.T) {
	for _, tt := range allocBoundInputs() {
		t.Run(tt.name, func(t *testing.T) {
			wire := []byte(tt.wire)
			if len(wire) < mib {
				t.Fatalf("input of %d bytes, want at least 1 MiB", len(wire))
			}
			src := bytes.NewReader(wire)
			var err error
			replies := -1
			alloc := allocated(func() {
				r := NewReader(src, Limits{})
				r.KeepAttributes = tt.keep
				for err == nil {
					_, err = r.Read()
					replies++
				}
			})
			consumed := len(wire) - src.Len()
			perByte := float64(alloc) / float64(len(wire))
			t.Logf("%d bytes in, %d consumed, %d replies then %v; %d bytes allocated: %.1f per byte in, %.1f per byte consumed",
				len(wire), consumed, replies, err, alloc, perByte, float64(alloc)/float64(consumed))
			if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrLimit) {
				t.Fatalf("Read = %v", err)
			}
			if perByte > maxAllocPerByte {
				t.Errorf("allocated %d bytes for %d bytes of input: %.1f per byte, want at most %d", alloc, len(wire), perByte, maxAllocPerByte)
			}
		})
	}
}
