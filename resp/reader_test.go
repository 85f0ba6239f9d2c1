package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"unsafe"
)

// Constructors for expected values.

func simple(s string) Value    { return Value{Type: TypeSimpleString, Str: []byte(s)} }
func simpleErr(s string) Value { return Value{Type: TypeError, Str: []byte(s)} }
func integer(n int64) Value    { return Value{Type: TypeInteger, Int: n} }
func bulk(s string) Value      { return Value{Type: TypeBulkString, Str: []byte(s)} }
func bulkErr(s string) Value   { return Value{Type: TypeBulkError, Str: []byte(s)} }
func bigNum(s string) Value    { return Value{Type: TypeBigNumber, Str: []byte(s)} }
func double(f float64) Value   { return Value{Type: TypeDouble, Float: f} }
func null() Value              { return Value{Type: TypeNull} }
func array(e ...Value) Value   { return Value{Type: TypeArray, Elems: e} }
func set(e ...Value) Value     { return Value{Type: TypeSet, Elems: e} }
func push(e ...Value) Value    { return Value{Type: TypePush, Elems: e} }
func pairs(e ...Value) Value   { return Value{Type: TypeMap, Elems: e} }

func boolean(b bool) Value {
	v := Value{Type: TypeBoolean}
	if b {
		v.Int = 1
	}
	return v
}

func verbatim(format, s string) Value {
	v := Value{Type: TypeVerbatim, Str: []byte(s)}
	copy(v.Format[:], format)
	return v
}

func withAttrs(v Value, attrs ...Value) Value {
	v.Attrs = attrs
	return v
}

// readAll reads every value of wire with r's settings, cloned, and the error
// that ended the stream.
func readAll(r *Reader) ([]Value, error) {
	var vs []Value
	for {
		v, err := r.Read()
		if err != nil {
			return vs, err
		}
		vs = append(vs, v.Clone())
	}
}

// readOne reads wire, which must hold exactly one value, and returns it.
func readOne(t *testing.T, wire string, lim Limits, keepAttrs bool) Value {
	t.Helper()
	r := NewReader(strings.NewReader(wire), lim)
	r.KeepAttributes = keepAttrs
	v, err := r.Read()
	if err != nil {
		t.Fatalf("Read(%q) = %v", wire, err)
	}
	v = v.Clone()
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("Read(%q) after the value = %v, want io.EOF", wire, err)
	}
	return v
}

// readErr reads wire and returns the first error.
func readErr(wire string, lim Limits, keepAttrs bool) error {
	r := NewReader(strings.NewReader(wire), lim)
	r.KeepAttributes = keepAttrs
	_, err := readAll(r)
	return err
}

func TestReadValid(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want Value
	}{
		{"simple", "+OK\r\n", simple("OK")},
		{"simple empty", "+\r\n", simple("")},
		{"simple spaces", "+hello world\r\n", simple("hello world")},
		{"simple bare CR inside", "+a\rb\r\n", simple("a\rb")},
		{"simple PONG", "+PONG\r\n", simple("PONG")},

		{"error", "-ERR unknown command 'foo'\r\n", simpleErr("ERR unknown command 'foo'")},
		{"error MOVED", "-MOVED 5258 127.0.0.1:17001\r\n", simpleErr("MOVED 5258 127.0.0.1:17001")},

		{"int zero", ":0\r\n", integer(0)},
		{"int one", ":1\r\n", integer(1)},
		{"int negative", ":-1\r\n", integer(-1)},
		{"int plus sign", ":+7\r\n", integer(7)},
		{"int minus zero", ":-0\r\n", integer(0)},
		{"int 1000", ":1000\r\n", integer(1000)},
		{"int max", ":9223372036854775807\r\n", integer(math.MaxInt64)},
		{"int min", ":-9223372036854775808\r\n", integer(math.MinInt64)},
		{"int max-1", ":9223372036854775806\r\n", integer(math.MaxInt64 - 1)},
		{"int min+1", ":-9223372036854775807\r\n", integer(math.MinInt64 + 1)},

		{"bulk", "$5\r\nhello\r\n", bulk("hello")},
		{"bulk empty", "$0\r\n\r\n", bulk("")},
		{"bulk binary CRLF inside", "$6\r\na\r\nb\x00\xff\r\n", bulk("a\r\nb\x00\xff")},
		{"bulk null RESP2", "$-1\r\n", null()},

		{"array empty", "*0\r\n", array()},
		{"array numsub", "*2\r\n$4\r\njobs\r\n:1\r\n", array(bulk("jobs"), integer(1))},
		{"array numsub two", "*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:0\r\n",
			array(bulk("a"), integer(1), bulk("b"), integer(0))},
		{"array null RESP2", "*-1\r\n", null()},
		{"array pong RESP2", "*2\r\n$4\r\npong\r\n$0\r\n\r\n", array(bulk("pong"), bulk(""))},
		{"array with nulls", "*3\r\n$-1\r\n*-1\r\n_\r\n", array(null(), null(), null())},
		{"array nested", "*2\r\n*1\r\n:1\r\n*2\r\n+a\r\n*0\r\n",
			array(array(integer(1)), array(simple("a"), array()))},
		{"array RESP2 message", "*3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$4\r\nping\r\n",
			array(bulk("message"), bulk("jobs"), bulk("ping"))},

		{"null", "_\r\n", null()},
		{"true", "#t\r\n", boolean(true)},
		{"false", "#f\r\n", boolean(false)},

		{"double", ",1.5\r\n", double(1.5)},
		{"double negative", ",-1.5\r\n", double(-1.5)},
		{"double integral", ",10\r\n", double(10)},
		{"double zero", ",0\r\n", double(0)},
		{"double pi", ",3.141592653589793\r\n", double(math.Pi)},
		{"double inf", ",inf\r\n", double(math.Inf(1))},
		{"double +inf", ",+inf\r\n", double(math.Inf(1))},
		{"double -inf", ",-inf\r\n", double(math.Inf(-1))},
		{"double nan", ",nan\r\n", double(math.NaN())},
		{"double exp", ",1e10\r\n", double(1e10)},
		{"double Exp negative", ",1.5E-3\r\n", double(1.5e-3)},
		{"double exp plus", ",-2.5e+3\r\n", double(-2500)},
		{"double overflow saturates", ",1e400\r\n", double(math.Inf(1))},
		{"double underflow", ",1e-400\r\n", double(0)},
		{"double trailing dot", ",5.\r\n", double(5)},

		{"big number", "(3492890328409238509324850943850943825024385\r\n",
			bigNum("3492890328409238509324850943850943825024385")},
		{"big number negative", "(-12345678901234567890\r\n", bigNum("-12345678901234567890")},

		{"bulk error", "!21\r\nSYNTAX invalid syntax\r\n", bulkErr("SYNTAX invalid syntax")},
		{"bulk error empty", "!0\r\n\r\n", bulkErr("")},

		{"verbatim", "=15\r\ntxt:Some string\r\n", verbatim("txt", "Some string")},
		{"verbatim empty text", "=4\r\nmkd:\r\n", verbatim("mkd", "")},
		{"verbatim client list", "=52\r\ntxt:id=7 addr=127.0.0.1:5 name=jobs-lock sub=1\nid=8\n\r\n",
			verbatim("txt", "id=7 addr=127.0.0.1:5 name=jobs-lock sub=1\nid=8\n")},

		{"map", "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n",
			pairs(simple("first"), integer(1), simple("second"), integer(2))},
		{"map empty", "%0\r\n", pairs()},
		{"map duplicate keys kept in order", "%3\r\n+a\r\n:1\r\n+b\r\n:2\r\n+a\r\n:3\r\n",
			pairs(simple("a"), integer(1), simple("b"), integer(2), simple("a"), integer(3))},
		{"map aggregate key", "%1\r\n*1\r\n:1\r\n~1\r\n#t\r\n", pairs(array(integer(1)), set(boolean(true)))},

		{"set", "~3\r\n+a\r\n:1\r\n+a\r\n", set(simple("a"), integer(1), simple("a"))},
		{"set empty", "~0\r\n", set()},

		{"push message", ">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$4\r\nping\r\n",
			push(bulk("message"), bulk("jobs"), bulk("ping"))},
		{"push subscribe", ">3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n",
			push(bulk("subscribe"), bulk("jobs"), integer(1))},
		{"push sunsubscribe RESP2", "*3\r\n$12\r\nsunsubscribe\r\n$4\r\njobs\r\n:0\r\n",
			array(bulk("sunsubscribe"), bulk("jobs"), integer(0))},

		{"attribute dropped", "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
			array(integer(2039123), integer(9543892))},
		{"attribute dropped in element", "*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nx\r\n:2\r\n", array(bulk("x"), integer(2))},
		{"attribute empty", "|0\r\n+OK\r\n", simple("OK")},

		{"streamed string", "$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n", bulk("Hello word")},
		{"streamed string empty", "$?\r\n;0\r\n", bulk("")},
		{"streamed string binary chunk", "$?\r\n;3\r\n\r\n\x00\r\n;0\r\n", bulk("\r\n\x00")},
		{"streamed array", "*?\r\n:1\r\n:2\r\n:3\r\n.\r\n", array(integer(1), integer(2), integer(3))},
		{"streamed array empty", "*?\r\n.\r\n", array()},
		{"streamed map", "%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n", pairs(simple("a"), integer(1), simple("b"), integer(2))},
		{"streamed set", "~?\r\n+a\r\n+b\r\n.\r\n", set(simple("a"), simple("b"))},
		{"streamed nested", "*?\r\n*?\r\n:1\r\n.\r\n$?\r\n;1\r\nx\r\n;0\r\n.\r\n",
			array(array(integer(1)), bulk("x"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readOne(t, tt.wire, Limits{}, false)
			if !got.Equal(tt.want) || got.Type != tt.want.Type {
				t.Errorf("Read(%q) = %v (%v), want %v (%v)", tt.wire, got, got.Type, tt.want, tt.want.Type)
			}
			// The same bytes split across reads of one byte decode the same.
			r := NewReader(&oneByteReader{s: tt.wire}, Limits{})
			got, err := r.Read()
			if err != nil || !got.Equal(tt.want) {
				t.Errorf("Read(%q) one byte at a time = %v, %v", tt.wire, got, err)
			}
		})
	}
}

// oneByteReader returns one byte per Read.
type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestReadInvalid(t *testing.T) {
	proto, short := ErrProtocol, io.ErrUnexpectedEOF
	tests := []struct {
		name string
		wire string
		want error
	}{
		// Line framing: every line ends in CRLF.
		{"bare LF", "+OK\n", proto},
		{"LF only", "\n", proto},
		{"missing CR then more", "+OK\n+OK\r\n", proto},
		{"CR CR", "+OK\r\r", short},
		{"empty line", "\r\n", proto},
		{"no CRLF at EOF", "+OK", short},
		{"CR at EOF", "+OK\r", short},
		{"header LF only", "$1\na\r\n", proto},
		{"integer LF only", ":1\n", proto},
		{"unknown type", "?x\r\n", proto},
		{"inline command", "PING\r\n", proto},
		{"end marker at top", ".\r\n", proto},
		{"chunk at top", ";1\r\n", proto},

		// Integers, strictly.
		{"int empty", ":\r\n", proto},
		{"int lone minus", ":-\r\n", proto},
		{"int lone plus", ":+\r\n", proto},
		{"int leading zero", ":01\r\n", proto},
		{"int double zero", ":00\r\n", proto},
		{"int negative leading zero", ":-01\r\n", proto},
		{"int max+1", ":9223372036854775808\r\n", proto},
		{"int min-1", ":-9223372036854775809\r\n", proto},
		{"int 2^64", ":18446744073709551616\r\n", proto},
		{"int 2^64-1", ":18446744073709551615\r\n", proto},
		{"int huge", ":99999999999999999999999999\r\n", proto},
		{"int garbage suffix", ":1a\r\n", proto},
		{"int leading space", ": 1\r\n", proto},
		{"int trailing space", ":1 \r\n", proto},
		{"int hex", ":0x10\r\n", proto},
		{"int float", ":1.0\r\n", proto},
		{"int double sign", ":--1\r\n", proto},
		{"int underscore", ":1_000\r\n", proto},

		// Lengths: digits, -1 where null is allowed, ? where streaming is.
		{"bulk length empty", "$\r\n", proto},
		{"bulk length garbage", "$x\r\n", proto},
		{"bulk length -2", "$-2\r\n", proto},
		{"bulk length plus", "$+1\r\na\r\n", proto},
		{"bulk length minus zero", "$-0\r\n\r\n", proto},
		{"bulk length leading zero", "$01\r\na\r\n", proto},
		{"bulk length space", "$ 1\r\na\r\n", proto},
		{"bulk length overflow", "$99999999999999999999\r\n", proto},
		{"bulk error null", "!-1\r\n", proto},
		{"bulk error streamed", "!?\r\n", proto},
		{"verbatim null", "=-1\r\n", proto},
		{"verbatim streamed", "=?\r\n", proto},
		{"array length -2", "*-2\r\n", proto},
		{"array length plus", "*+1\r\n:1\r\n", proto},
		{"array length leading zero", "*01\r\n:1\r\n", proto},
		{"map null", "%-1\r\n", proto},
		{"set null", "~-1\r\n", proto},
		{"push null", ">-1\r\n", proto},
		{"push streamed", ">?\r\n", proto},
		{"attribute null", "|-1\r\n", proto},
		{"attribute streamed", "|?\r\n", proto},

		// Bulk trailers.
		{"bulk bad trailer", "$1\r\naXY", proto},
		{"bulk LF trailer", "$1\r\na\n\n", proto},
		{"bulk longer than declared", "$1\r\nab\r\n", proto},
		{"bulk shorter than declared", "$3\r\na\r\n", short},
		{"bulk error bad trailer", "!1\r\naXY", proto},
		{"verbatim bad trailer", "=5\r\ntxt:aXY", proto},
		{"bulk trailer CR then EOF", "$1\r\na\r", short},
		{"bulk trailer wrong byte then EOF", "$1\r\naX", proto},
		{"bulk trailer nothing then EOF", "$21\r\n000000000000000000000", short},
		{"bulk trailer one wrong byte then EOF", "!21\r\n0000000000000000000000", proto},
		{"bulk data then EOF", "$5\r\nhel", short},
		{"bulk data complete then EOF", "$5\r\nhello", short},

		// Scalars.
		{"null with body", "_x\r\n", proto},
		{"boolean upper", "#T\r\n", proto},
		{"boolean word", "#true\r\n", proto},
		{"boolean empty", "#\r\n", proto},
		{"boolean tt", "#tt\r\n", proto},
		{"double hex", ",0x10\r\n", proto},
		{"double hex float", ",0x1p-2\r\n", proto},
		{"double underscore", ",1_000.5\r\n", proto},
		{"double Infinity", ",Infinity\r\n", proto},
		{"double infinity", ",infinity\r\n", proto},
		{"double Inf", ",Inf\r\n", proto},
		{"double NaN", ",NaN\r\n", proto},
		{"double empty", ",\r\n", proto},
		{"double dot", ",.\r\n", proto},
		{"double sign", ",-\r\n", proto},
		{"double exp no digits", ",1e\r\n", proto},
		{"double exp sign only", ",1e+\r\n", proto},
		{"double exp only", ",e10\r\n", proto},
		{"double two dots", ",1.2.3\r\n", proto},
		{"double space", ", 1\r\n", proto},
		{"double suffix", ",1e10x\r\n", proto},
		{"double double sign", ",--1\r\n", proto},
		{"big number empty", "(\r\n", proto},
		{"big number sign only", "(-\r\n", proto},
		{"big number garbage", "(12a\r\n", proto},
		{"big number fraction", "(1.5\r\n", proto},
		{"verbatim no format", "=3\r\ntxt\r\n", proto},
		{"verbatim no colon", "=5\r\ntxt-x\r\n", proto},
		{"verbatim empty", "=0\r\n\r\n", proto},

		// Aggregates cut short or misframed.
		{"array short", "*2\r\n:1\r\n", short},
		{"array no elements", "*1\r\n", short},
		{"map key only", "%1\r\n+a\r\n", short},
		{"attribute without value", "|1\r\n+a\r\n+b\r\n", short},
		{"element bad", "*1\r\n:x\r\n", proto},
		{"element partial line", "*1\r\n+OK", short},

		// Streaming.
		{"streamed string no chunk marker", "$?\r\nfoo\r\n", proto},
		{"streamed string empty chunk header", "$?\r\n\r\n", proto},
		{"streamed string null chunk", "$?\r\n;-1\r\n", proto},
		{"streamed string streamed chunk", "$?\r\n;?\r\n", proto},
		{"streamed string chunk leading zero", "$?\r\n;01\r\na\r\n;0\r\n", proto},
		{"streamed string bad trailer", "$?\r\n;2\r\nabc\r\n", proto},
		{"streamed string unterminated", "$?\r\n;1\r\na\r\n", short},
		{"streamed array unterminated", "*?\r\n:1\r\n", short},
		{"streamed end with body", "*?\r\n.x\r\n", proto},
		{"streamed end LF only", "*?\r\n.\n", proto},
		{"streamed map ends after key", "%?\r\n+a\r\n.\r\n", proto},
		{"end marker in counted array", "*1\r\n.\r\n", proto},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := readErr(tt.wire, Limits{}, false)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read(%q) = %v, want %v", tt.wire, err, tt.want)
			}
			if tt.want == ErrProtocol {
				var pe *ProtocolError
				if !errors.As(err, &pe) || pe.Reason == "" {
					t.Fatalf("Read(%q) = %#v, want a *ProtocolError with a reason", tt.wire, err)
				}
			} else if err != tt.want {
				t.Fatalf("Read(%q) = %#v, want exactly %v", tt.wire, err, tt.want)
			}
		})
	}
}

func TestReadEOF(t *testing.T) {
	r := NewReader(strings.NewReader(""), Limits{})
	if _, err := r.Read(); err != io.EOF {
		t.Fatalf("Read of empty stream = %v, want io.EOF", err)
	}
	// io.EOF only between values: after a complete value, and not inside.
	r = NewReader(strings.NewReader(":1\r\n*2\r\n:1\r\n"), Limits{})
	if v, err := r.Read(); err != nil || !v.Equal(integer(1)) {
		t.Fatalf("first Read = %v, %v", v, err)
	}
	if _, err := r.Read(); err != io.ErrUnexpectedEOF {
		t.Fatalf("Read of cut array = %v, want io.ErrUnexpectedEOF", err)
	}
}

type failReader struct{ err error }

func (f failReader) Read([]byte) (int, error) { return 0, f.err }

func TestReadIOErrorPassedThrough(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("*2\r\n:1\r\n"), failReader{boom}), Limits{})
	if _, err := r.Read(); err != boom {
		t.Fatalf("Read = %v, want the I/O error as is", err)
	}
}

func TestReadErrorsAreSticky(t *testing.T) {
	for _, wire := range []string{":01\r\n:1\r\n", "*2\r\n:1\r\n", ""} {
		r := NewReader(strings.NewReader(wire), Limits{})
		_, first := r.Read()
		if first == nil {
			t.Fatalf("Read(%q) succeeded", wire)
		}
		for range 3 {
			if _, err := r.Read(); err != first {
				t.Fatalf("Read(%q) again = %v, want the same error %v", wire, err, first)
			}
		}
	}
}

func TestReadMultipleInOrder(t *testing.T) {
	wire := ">3\r\n$9\r\nsubscribe\r\n$4\r\njobs\r\n:1\r\n" +
		"*2\r\n$4\r\njobs\r\n:1\r\n" +
		"+PONG\r\n" +
		"-ERR no\r\n" +
		"$-1\r\n" +
		">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$4\r\nping\r\n" +
		":42\r\n"
	want := []Value{
		push(bulk("subscribe"), bulk("jobs"), integer(1)),
		array(bulk("jobs"), integer(1)),
		simple("PONG"),
		simpleErr("ERR no"),
		null(),
		push(bulk("message"), bulk("jobs"), bulk("ping")),
		integer(42),
	}
	got, err := readAll(NewReader(strings.NewReader(wire), Limits{}))
	if err != io.EOF {
		t.Fatalf("readAll = %v, want io.EOF", err)
	}
	if !equalValues(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestReadAttributesKept(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want Value
	}{
		{"top level", "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
			withAttrs(array(integer(2039123), integer(9543892)),
				simple("key-popularity"), pairs(bulk("a"), double(0.1923), bulk("b"), double(0.0012)))},
		{"inside array element", "*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nx\r\n:2\r\n",
			array(withAttrs(bulk("x"), simple("ttl"), integer(3600)), integer(2))},
		{"nested deeper", "*1\r\n%1\r\n+k\r\n|1\r\n+a\r\n+b\r\n~1\r\n:1\r\n",
			array(pairs(simple("k"), withAttrs(set(integer(1)), simple("a"), simple("b"))))},
		{"two pairs", "|2\r\n+a\r\n:1\r\n+a\r\n:2\r\n+OK\r\n",
			withAttrs(simple("OK"), simple("a"), integer(1), simple("a"), integer(2))},
		{"chain merges in order", "|1\r\n+a\r\n:1\r\n|1\r\n+b\r\n:2\r\n:7\r\n",
			withAttrs(integer(7), simple("a"), integer(1), simple("b"), integer(2))},
		{"attribute on attribute key", "|1\r\n|1\r\n+x\r\n+y\r\n+k\r\n+v\r\n_\r\n",
			withAttrs(null(), withAttrs(simple("k"), simple("x"), simple("y")), simple("v"))},
		{"before push", "|1\r\n+a\r\n#t\r\n>1\r\n+p\r\n",
			withAttrs(push(simple("p")), simple("a"), boolean(true))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readOne(t, tt.wire, Limits{}, true)
			if !got.Equal(tt.want) {
				t.Errorf("Read(%q) = %v attrs %v, want %v attrs %v", tt.wire, got, got.Attrs, tt.want, tt.want.Attrs)
			}
			dropped := readOne(t, tt.wire, Limits{}, false)
			if !dropped.Equal(stripAttrs(tt.want)) {
				t.Errorf("Read(%q) without KeepAttributes = %v, want %v", tt.wire, dropped, stripAttrs(tt.want))
			}
		})
	}
}

// stripAttrs returns a copy of v without attributes at any level.
func stripAttrs(v Value) Value {
	v.Attrs = nil
	if v.Elems != nil {
		es := make([]Value, len(v.Elems))
		for i, e := range v.Elems {
			es[i] = stripAttrs(e)
		}
		v.Elems = es
	}
	return v
}

func TestErrorCode(t *testing.T) {
	tests := []struct{ text, code string }{
		{"MOVED 5258 127.0.0.1:17001", "MOVED"},
		{"NOPROTO sorry, this protocol version is not supported", "NOPROTO"},
		{"SYNTAX invalid syntax", "SYNTAX"},
		{"ERR unknown command 'foo'", "ERR"},
		{"ERR", "ERR"},
		{"WRONGPASS invalid username-password pair or user is disabled.", "WRONGPASS"},
		{"CROSSSLOT Keys in request don't hash to the same slot", "CROSSSLOT"},
		{"NOT_BUSY x", "NOT_BUSY"},
		{"ERR2 x", "ERR2"},
		{"err lowercase", ""},
		{"Hello World", ""},
		{"", ""},
		{" ERR leading space", ""},
		{"-1 x", ""},
		{"1ERR x", ""},
	}
	for _, tt := range tests {
		e := Error(tt.text)
		if got := e.Code(); got != tt.code {
			t.Errorf("Error(%q).Code() = %q, want %q", tt.text, got, tt.code)
		}
		if e.Error() != tt.text {
			t.Errorf("Error(%q).Error() = %q", tt.text, e.Error())
		}
	}
}

func TestErrorReplies(t *testing.T) {
	tests := []struct {
		wire, text, code string
		typ              Type
	}{
		{"-MOVED 5258 127.0.0.1:17001\r\n", "MOVED 5258 127.0.0.1:17001", "MOVED", TypeError},
		{"-NOPROTO sorry, this protocol version is not supported\r\n", "NOPROTO sorry, this protocol version is not supported", "NOPROTO", TypeError},
		{"-ERR Can't execute 'pubsub|numsub': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
			"ERR Can't execute 'pubsub|numsub': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context", "ERR", TypeError},
		{"!21\r\nSYNTAX invalid syntax\r\n", "SYNTAX invalid syntax", "SYNTAX", TypeBulkError},
		{"!13\r\nERR a\r\nline 2\r\n", "ERR a\r\nline 2", "ERR", TypeBulkError},
	}
	for _, tt := range tests {
		v := readOne(t, tt.wire, Limits{}, false)
		if v.Type != tt.typ {
			t.Errorf("Read(%q).Type = %v, want %v", tt.wire, v.Type, tt.typ)
		}
		err := v.Err()
		var re Error
		if !errors.As(err, &re) {
			t.Fatalf("Read(%q).Err() = %#v, want an Error", tt.wire, err)
		}
		if re.Error() != tt.text || re.Code() != tt.code {
			t.Errorf("Read(%q).Err() = %q code %q, want %q code %q", tt.wire, re.Error(), re.Code(), tt.text, tt.code)
		}
		if errors.Is(err, ErrProtocol) {
			t.Errorf("a server error reply must not match ErrProtocol")
		}
	}
	for _, v := range []Value{simple("OK"), bulk("ERR"), integer(0), null(), array(simpleErr("ERR x"))} {
		if err := v.Err(); err != nil {
			t.Errorf("%v.Err() = %v, want nil", v, err)
		}
	}
}

func TestProtocolError(t *testing.T) {
	err := readErr("$9223372036854775807\r\n", Limits{}, false)
	var pe *ProtocolError
	if !errors.As(err, &pe) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("err = %#v, want *ProtocolError matching ErrProtocol", err)
	}
	const want = "resp: protocol error: bulk string length 9223372036854775807 exceeds limit 33554432"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	// Wrapped with context, it still matches.
	if w := fmt.Errorf("conn: %w", err); !errors.Is(w, ErrProtocol) {
		t.Errorf("wrapped error does not match ErrProtocol")
	}
	for _, unrelated := range []error{io.ErrUnexpectedEOF, Error("ERR")} {
		if errors.Is(unrelated, ErrProtocol) || errors.Is(unrelated, ErrLimit) {
			t.Errorf("%v matches ErrProtocol or ErrLimit", unrelated)
		}
	}
	// A limit exceeded matches ErrLimit too, and names the field; bytes that
	// are not RESP do not.
	if !errors.Is(err, ErrLimit) || pe.Limit != "MaxBulkLen" {
		t.Errorf("bulk beyond MaxBulkLen: %#v does not match ErrLimit or name MaxBulkLen", err)
	}
	if err := readErr("$x\r\n", Limits{}, false); !errors.Is(err, ErrProtocol) || errors.Is(err, ErrLimit) {
		t.Errorf("malformed bulk length: %v, want ErrProtocol and not ErrLimit", err)
	}
	err = readErr("*3\r\n:1\r\n:2\r\n:3\r\n", Limits{MaxReplyValues: 3}, false)
	if !errors.As(err, &pe) || !errors.Is(err, ErrLimit) || pe.Limit != "MaxReplyValues" ||
		err.Error() != "resp: protocol error: array of 3 elements exceeds the reply's limit of 3 values" {
		t.Errorf("reply over MaxReplyValues: %#v", err)
	}
}

// TestValuesValidForWholeReply reads a reply whose strings together span
// several arena growths, long lines and chunked bulks, then checks every
// string at the end: earlier ones must not have been overwritten.
func TestValuesValidForWholeReply(t *testing.T) {
	var wire bytes.Buffer
	var want []Value
	add := func(v Value) { want = append(want, v); wire.Write(AppendValue(nil, v)) }
	longLine := strings.Repeat("L", 10000) // beyond the 4096-byte bufio buffer
	big := make([]byte, 200<<10)           // crosses 64 KiB chunks
	for i := range big {
		big[i] = byte(i * 7)
	}
	for i := range 300 {
		add(bulk(fmt.Sprintf("element-%d-%s", i, strings.Repeat("x", i%50))))
		if i%50 == 0 {
			add(array(simple(fmt.Sprintf("nested-%d", i)), pairs(bulk("k"), bulk(fmt.Sprint(i))),
				set(array(bulk("deep"), integer(int64(i))))))
		}
	}
	add(simple(longLine))
	add(Value{Type: TypeBulkString, Str: big})
	add(simpleErr("ERR " + longLine))
	add(verbatim("txt", longLine))
	add(bulk("last"))
	reply := array(want...)
	wireBytes := AppendValue(nil, reply)

	r := NewReader(bytes.NewReader(append(wireBytes, "+next\r\n"...)), Limits{})
	got, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(reply) {
		t.Fatalf("reply read back differs")
	}
	if s := got.Elems[len(got.Elems)-4].Str; !bytes.Equal(s, big) {
		t.Fatalf("big bulk differs")
	}
	clone := got.Clone()
	if !clone.Equal(reply) {
		t.Fatalf("clone differs")
	}
	// The next reply reuses the reader's memory; the clone must not see it.
	if v, err := r.Read(); err != nil || !v.Equal(simple("next")) {
		t.Fatalf("second Read = %v, %v", v, err)
	}
	if !clone.Equal(reply) {
		t.Fatalf("clone changed by a later Read")
	}
}

func TestCloneDetaches(t *testing.T) {
	r := NewReader(strings.NewReader("*2\r\n$5\r\nfirst\r\n|1\r\n+a\r\n+b\r\n+x\r\n*2\r\n$5\r\nXXXXX\r\n+YYYYYYYY\r\n"), Limits{})
	r.KeepAttributes = true
	v, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	want := array(bulk("first"), withAttrs(simple("x"), simple("a"), simple("b")))
	c := v.Clone()
	if _, err := r.Read(); err != nil {
		t.Fatal(err)
	}
	if !c.Equal(want) {
		t.Fatalf("clone = %v, want %v", c, want)
	}
	// Appending to a returned string must not write into the reader.
	v2 := readOne(t, "*2\r\n+ab\r\n+cd\r\n", Limits{}, false)
	_ = append(v2.Elems[0].Str, "ZZ"...)
	if string(v2.Elems[1].Str) != "cd" {
		t.Fatalf("append to one string overwrote the next: %q", v2.Elems[1].Str)
	}
	if (Value{}).Clone().Str != nil || null().Clone().Elems != nil {
		t.Fatalf("clone of empty value invented storage")
	}
}

func TestReaderUsesGivenBufio(t *testing.T) {
	br := bufio.NewReaderSize(strings.NewReader("+OK\r\n:1\r\n"), 16)
	r := NewReader(br, Limits{})
	if v, err := r.Read(); err != nil || !v.Equal(simple("OK")) {
		t.Fatalf("Read = %v, %v", v, err)
	}
	if r.Buffered() != 4 || br.Buffered() != 4 {
		t.Fatalf("Buffered = %d, bufio has %d, want 4", r.Buffered(), br.Buffered())
	}
	// With a 16-byte buffer, a 40-byte line and a streamed string still read.
	long := "+" + strings.Repeat("y", 40) + "\r\n"
	r = NewReader(bufio.NewReaderSize(strings.NewReader(long+"$?\r\n;20\r\n01234567890123456789\r\n;3\r\nabc\r\n;0\r\n"), 16), Limits{})
	vs, err := readAll(r)
	if err != io.EOF || len(vs) != 2 || !vs[0].Equal(simple(strings.Repeat("y", 40))) || !vs[1].Equal(bulk("01234567890123456789abc")) {
		t.Fatalf("readAll = %v, %v", vs, err)
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := NewReader(strings.NewReader(""), Limits{}).Limits()
	want := Limits{MaxBulkLen: 32 << 20, MaxElements: 1 << 15, MaxDepth: 64, MaxLineLen: 64 << 10,
		MaxReplyValues: 1 << 15, MaxReplyBytes: 64 << 20}
	if got != want {
		t.Fatalf("Limits() = %+v, want %+v", got, want)
	}
	custom := Limits{MaxBulkLen: 1, MaxElements: 2, MaxDepth: 3, MaxLineLen: 4, MaxReplyValues: 5, MaxReplyBytes: 6}
	if got := NewReader(strings.NewReader(""), custom).Limits(); got != custom {
		t.Fatalf("Limits() = %+v, want %+v", got, custom)
	}
	if got := NewReader(strings.NewReader(""), Limits{MaxBulkLen: -1}).Limits(); got != want {
		t.Fatalf("negative limit not defaulted: %+v", got)
	}
	// MaxElements follows MaxReplyValues: one aggregate may fill a reply.
	if got := NewReader(strings.NewReader(""), Limits{MaxReplyValues: 10}).Limits(); got.MaxElements != 10 {
		t.Fatalf("MaxElements = %d with MaxReplyValues 10, want 10", got.MaxElements)
	}
	// An absurd element limit stays usable (map lengths are doubled).
	r := NewReader(strings.NewReader("%?\r\n+a\r\n:1\r\n.\r\n"), Limits{MaxElements: math.MaxInt})
	if v, err := r.Read(); err != nil || len(v.Elems) != 2 {
		t.Fatalf("Read with MaxElements=MaxInt = %v, %v", v, err)
	}
}

func TestTypeString(t *testing.T) {
	names := map[Type]string{
		TypeSimpleString: "simple string", TypeError: "simple error", TypeInteger: "integer",
		TypeBulkString: "bulk string", TypeArray: "array", TypeNull: "null", TypeBoolean: "boolean",
		TypeDouble: "double", TypeBigNumber: "big number", TypeBulkError: "bulk error",
		TypeVerbatim: "verbatim string", TypeMap: "map", TypeSet: "set", TypeAttribute: "attribute",
		TypePush: "push", Type('x'): "type 'x'", Type(0): `type '\x00'`,
	}
	for typ, want := range names {
		if got := typ.String(); got != want {
			t.Errorf("Type(%q).String() = %q, want %q", byte(typ), got, want)
		}
	}
}

func TestValueString(t *testing.T) {
	tests := []struct {
		v    Value
		want string
	}{
		{array(bulk("jobs"), integer(1)), `["jobs" 1]`},
		{push(bulk("message"), bulk("jobs"), bulk("ping")), `>["message" "jobs" "ping"]`},
		{pairs(simple("a"), double(1.5)), `("a" 1.5)`},
		{set(boolean(true), null()), `{true nil}`},
		{simpleErr("ERR x"), `(error "ERR x")`},
		{bigNum("-123"), `-123`},
		{verbatim("txt", "a\n"), `"a\n"`},
		{Value{Type: TypeAttribute}, `attribute`},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("String() = %s, want %s", got, tt.want)
		}
	}
	if !null().IsNull() || bulk("").IsNull() || (Value{}).IsNull() {
		t.Errorf("IsNull wrong")
	}
}

func TestValueEqual(t *testing.T) {
	distinct := []Value{
		simple("a"), simple("b"), bulk("a"), simpleErr("a"), bulkErr("a"), bigNum("1"),
		integer(1), integer(2), boolean(true), boolean(false), double(1), double(2), double(math.NaN()),
		null(), verbatim("txt", "a"), verbatim("mkd", "a"),
		array(), array(integer(1)), set(integer(1)), push(integer(1)), pairs(integer(1), integer(1)),
		withAttrs(integer(1), simple("a"), simple("b")),
	}
	for i, a := range distinct {
		for j, b := range distinct {
			if got := a.Equal(b); got != (i == j) {
				t.Errorf("%v (%v).Equal(%v (%v)) = %v", a, a.Type, b, b.Type, got)
			}
		}
	}
	if !bulk("").Equal(Value{Type: TypeBulkString}) {
		t.Errorf("empty and nil strings differ")
	}
}

// TestShrink: a Reader drops the storage a large reply left, keeps what a
// small one needs, and reads on; the last value read stays valid.
func TestShrink(t *testing.T) {
	big := "*40\r\n" + strings.Repeat(":1\r\n", 40)
	in := big + "+OK\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nq\r\n"
	r := NewReader(strings.NewReader(in), Limits{})
	last, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	want := last.String()
	if n, min := r.Retained(), 4096+40*int(unsafe.Sizeof(Value{})); n < min {
		t.Errorf("after a 40-element reply, Retained says %d bytes, want at least %d", n, min)
	}
	r.Shrink()
	if n := r.Retained(); n != 4096+cap(r.arena) {
		t.Errorf("after Shrink, Retained says %d bytes, want the read buffer and the arena: %d", n, 4096+cap(r.arena))
	}
	if last.String() != want {
		t.Errorf("the last value changed with Shrink: %v, was %v", last, want)
	}
	if n := r.slab.kept() + r.stack.room; n != 0 {
		t.Errorf("after a 40-element reply, Shrink kept %d values", n)
	}
	for _, w := range []string{"OK", "p", "q"} {
		v, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(v.String(), w) {
			t.Errorf("after Shrink read %v, want %q in it", v, w)
		}
		kept := r.slab.kept()
		r.Shrink()
		if w != "OK" && (r.slab.kept() != kept || kept == 0 || kept > shrinkValues) {
			t.Errorf("Shrink after a small reply: kept %d values of %d, want them kept (at most %d)", r.slab.kept(), kept, shrinkValues)
		}
	}
}
