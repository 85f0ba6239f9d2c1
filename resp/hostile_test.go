package resp

import (
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
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
		{name: "array at the limit, no elements", in: str("*1048576\r\n"), maxAlloc: 256 << 10, want: io.ErrUnexpectedEOF},
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
				if tt.want == ErrProtocol {
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
	const n = 10000
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
	if len(r.slab) != n {
		t.Errorf("slab holds %d values, want %d", len(r.slab), n)
	}
}
