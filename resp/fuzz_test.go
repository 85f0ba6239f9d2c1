package resp

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// fuzzLimits are small, so that the fuzzer reaches every limit with short
// inputs.
var fuzzLimits = Limits{MaxBulkLen: 1024, MaxElements: 32, MaxDepth: 8, MaxLineLen: 256, MaxReplyValues: 256, MaxReplyBytes: 4096}

// fuzzAllocBound is the most a Reader with fuzzLimits may allocate to read
// n bytes: maxAllocPerByte for each, and a constant for tiny inputs, what
// one reply at the limits may take however few its bytes: the reader's
// buffers; for each of its values a Value on the stack and one in the slab,
// each with as much again to spare as they grow; four times its bytes; and
// a line.
func fuzzAllocBound(n int) uint64 {
	const valueSize = int(unsafe.Sizeof(Value{}))
	reply := 8<<10 + 4*valueSize*fuzzLimits.MaxReplyValues + 4*fuzzLimits.MaxReplyBytes + 4*fuzzLimits.MaxLineLen
	return uint64(maxAllocPerByte*n + reply)
}

// fuzzSeeds holds a sample of every type and small versions of the hostile
// inputs. The corpora under testdata/fuzz hold the same and more.
var fuzzSeeds = []string{
	"+OK\r\n",
	"-MOVED 5258 127.0.0.1:17001\r\n",
	":-9223372036854775808\r\n",
	"$5\r\nhello\r\n",
	"$-1\r\n",
	"*2\r\n$4\r\njobs\r\n:1\r\n",
	"*-1\r\n",
	"_\r\n",
	"#t\r\n",
	",1.5E-3\r\n",
	",-inf\r\n",
	",nan\r\n",
	"(3492890328409238509324850943850943825024385\r\n",
	"!21\r\nSYNTAX invalid syntax\r\n",
	"=15\r\ntxt:Some string\r\n",
	"%2\r\n+a\r\n:1\r\n+a\r\n:2\r\n",
	"~2\r\n+a\r\n#f\r\n",
	"|1\r\n+ttl\r\n:3600\r\n*2\r\n|1\r\n+a\r\n+b\r\n$1\r\nx\r\n:2\r\n",
	">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$4\r\nping\r\n",
	"$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n",
	"*?\r\n:1\r\n%?\r\n+k\r\n~?\r\n.\r\n.\r\n.\r\n",
	"+PONG\r\n:1\r\n>3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n",
	// Hostile, small.
	"$9223372036854775807\r\n",
	"*1000000000\r\n",
	strings.Repeat("*1\r\n", 100),
	"$1\r\naXY",
	strings.Repeat("|1\r\n+k\r\n+v\r\n", 50) + ":1\r\n",
	"$33554432\r\nabc",
	strings.Repeat("a", 300),
	"$?\r\n" + strings.Repeat(";1\r\na\r\n", 40),
	// Beyond the reply's limits, in many small values.
	"*8\r\n" + strings.Repeat("*32\r\n"+strings.Repeat("_\r\n", 32), 8),
	"*32\r\n" + strings.Repeat("*32\r\n"+strings.Repeat("_\r\n", 32), 32),
	"*32\r\n" + strings.Repeat("*-1\r\n", 32) + "*9\r\n" + strings.Repeat("$-1\r\n", 9),
	"%32\r\n" + strings.Repeat("%0\r\n*0\r\n", 32),
	"*32\r\n" + strings.Repeat("|1\r\n_\r\n_\r\n_\r\n", 32),
	"*2\r\n" + strings.Repeat("|1\r\n+k\r\n+v\r\n", 7) + ":1\r\n:2\r\n",
	"*4\r\n" + strings.Repeat("$1024\r\n"+strings.Repeat("b", 1024)+"\r\n", 4),
}

// FuzzReader feeds arbitrary bytes to a Reader with small limits. It must
// not panic, must fail only with a *ProtocolError, io.EOF or
// io.ErrUnexpectedEOF, and must allocate in proportion to its input: at
// most fuzzAllocBound for each of the two readings.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var errs [2]error
		var counts [2]int
		for i, keep := range []bool{false, true} {
			src := bytes.NewReader(data)
			r := NewReader(src, fuzzLimits)
			r.KeepAttributes = keep
			for {
				_, err := r.Read()
				if err != nil {
					errs[i] = err
					checkFuzzError(t, err, r, src)
					break
				}
				if counts[i]++; counts[i] > len(data) {
					t.Fatalf("%d values from %d bytes", counts[i], len(data))
				}
			}
		}
		runtime.ReadMemStats(&after)
		if alloc, bound := after.TotalAlloc-before.TotalAlloc, 2*fuzzAllocBound(len(data)); alloc > bound {
			t.Fatalf("reading %d bytes twice allocated %d bytes, more than %d", len(data), alloc, bound)
		}
		// Attributes change what is kept, never what is accepted.
		if counts[0] != counts[1] || errs[0].Error() != errs[1].Error() {
			t.Fatalf("without attributes: %d values then %v; with: %d values then %v", counts[0], errs[0], counts[1], errs[1])
		}
		dropped, _ := readAll(NewReader(bytes.NewReader(data), fuzzLimits))
		kr := NewReader(bytes.NewReader(data), fuzzLimits)
		kr.KeepAttributes = true
		kept, _ := readAll(kr)
		for i := range dropped {
			if !dropped[i].Equal(stripAttrs(kept[i])) {
				t.Fatalf("value %d: %v without attributes, %v with", i, dropped[i], kept[i])
			}
			_ = kept[i].String()
		}
	})
}

func checkFuzzError(t *testing.T, err error, r *Reader, src *bytes.Reader) {
	t.Helper()
	var pe *ProtocolError
	switch {
	case errors.As(err, &pe):
		if !errors.Is(err, ErrProtocol) || pe.Reason == "" {
			t.Fatalf("protocol error %#v", err)
		}
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		// The stream must really have ended; a clean EOF only once every
		// byte was decoded.
		if src.Len() != 0 || err == io.EOF && r.Buffered() != 0 {
			t.Fatalf("%v with %d bytes unread, %d buffered", err, src.Len(), r.Buffered())
		}
	default:
		t.Fatalf("unexpected error %#v", err)
	}
	if _, again := r.Read(); again != err {
		t.Fatalf("error not sticky: %v, then %v", err, again)
	}
}

// FuzzRoundTrip checks that decoding, encoding and decoding again gives the
// same value, and that encoding is stable.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), fuzzLimits)
		r.KeepAttributes = true
		for {
			v, err := r.Read()
			if err != nil {
				return
			}
			enc := AppendValue(nil, v)
			// Default limits: a chain of attributes is encoded as one, which
			// may hold more pairs than fuzzLimits allow.
			r2 := NewReader(bytes.NewReader(enc), Limits{})
			r2.KeepAttributes = true
			w, err := r2.Read()
			if err != nil {
				t.Fatalf("decoding %q (from %v) = %v", enc, v, err)
			}
			if !v.Equal(w) {
				t.Fatalf("round trip changed %v into %v (encoded %q)", v, w, enc)
			}
			if _, err := r2.Read(); err != io.EOF {
				t.Fatalf("encoding of %v left trailing bytes: %v", v, err)
			}
			if enc2 := AppendValue(nil, w); !bytes.Equal(enc, enc2) {
				t.Fatalf("encoding not stable: %q then %q", enc, enc2)
			}
		}
	})
}
