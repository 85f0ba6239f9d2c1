package resp

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestAppendCommand(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "*0\r\n"},
		{[]string{"PING"}, "*1\r\n$4\r\nPING\r\n"},
		{[]string{"PUBSUB", "NUMSUB", "jobs"}, "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$4\r\njobs\r\n"},
		{[]string{"SET", "k", ""}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{[]string{"", ""}, "*2\r\n$0\r\n\r\n$0\r\n\r\n"},
		{[]string{"PUBLISH", "jobs", "a\r\nb"}, "*3\r\n$7\r\nPUBLISH\r\n$4\r\njobs\r\n$4\r\na\r\nb\r\n"},
		{[]string{"ECHO", "\x00\xff\r\n*1\r\n"}, "*2\r\n$4\r\nECHO\r\n$8\r\n\x00\xff\r\n*1\r\n\r\n"},
		{[]string{"PUBLISH", "jobs", `{"response_channel": "jobs-0.9461501796110964", "message": "ping"}`},
			"*3\r\n$7\r\nPUBLISH\r\n$4\r\njobs\r\n$66\r\n{\"response_channel\": \"jobs-0.9461501796110964\", \"message\": \"ping\"}\r\n"},
		{[]string{strings.Repeat("x", 1000)}, "*1\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n"},
	}
	for _, tt := range tests {
		if got := string(AppendCommand(nil, tt.args...)); got != tt.want {
			t.Errorf("AppendCommand(%q) = %q, want %q", tt.args, got, tt.want)
		}
		bargs := make([][]byte, len(tt.args))
		for i, a := range tt.args {
			bargs[i] = []byte(a)
		}
		if got := string(AppendCommandBytes(nil, bargs...)); got != tt.want {
			t.Errorf("AppendCommandBytes(%q) = %q, want %q", tt.args, got, tt.want)
		}
		// What a server reads back is the same arguments, as bulk strings.
		v := readOne(t, tt.want, Limits{}, false)
		if v.Type != TypeArray || len(v.Elems) != len(tt.args) {
			t.Fatalf("command read back as %v", v)
		}
		for i, e := range v.Elems {
			if e.Type != TypeBulkString || string(e.Str) != tt.args[i] {
				t.Errorf("argument %d read back as %v", i, e)
			}
		}
	}
	// Appends after what dst holds, and pipelines.
	dst := []byte("prefix")
	dst = AppendCommand(dst, "PING")
	dst = AppendCommandBytes(dst, []byte("ECHO"), nil)
	if want := "prefix*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"; string(dst) != want {
		t.Errorf("appended = %q, want %q", dst, want)
	}
}

func TestAppendValue(t *testing.T) {
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"simple", simple("OK"), "+OK\r\n"},
		{"simple empty", simple(""), "+\r\n"},
		{"simple with CR", simple("a\rb"), "+a\rb\r\n"},
		{"simple with LF becomes bulk", simple("a\nb"), "$3\r\na\nb\r\n"},
		{"error", simpleErr("ERR x"), "-ERR x\r\n"},
		{"error with LF becomes bulk error", simpleErr("ERR a\r\nb"), "!8\r\nERR a\r\nb\r\n"},
		{"integer", integer(42), ":42\r\n"},
		{"integer negative", integer(-7), ":-7\r\n"},
		{"integer min", integer(math.MinInt64), ":-9223372036854775808\r\n"},
		{"integer max", integer(math.MaxInt64), ":9223372036854775807\r\n"},
		{"bulk", bulk("hello"), "$5\r\nhello\r\n"},
		{"bulk empty", bulk(""), "$0\r\n\r\n"},
		{"bulk binary", bulk("a\r\nb"), "$4\r\na\r\nb\r\n"},
		{"null", null(), "_\r\n"},
		{"true", boolean(true), "#t\r\n"},
		{"false", boolean(false), "#f\r\n"},
		{"double", double(1.5), ",1.5\r\n"},
		{"double negative", double(-0.25), ",-0.25\r\n"},
		{"double integral", double(10), ",10\r\n"},
		{"double big", double(1e21), ",1e+21\r\n"},
		{"double small", double(1.5e-7), ",1.5e-07\r\n"},
		{"double minus zero", double(math.Copysign(0, -1)), ",-0\r\n"},
		{"double inf", double(math.Inf(1)), ",inf\r\n"},
		{"double -inf", double(math.Inf(-1)), ",-inf\r\n"},
		{"double nan", double(math.NaN()), ",nan\r\n"},
		{"big number", bigNum("-3492890328409238509324850943850943825024385"), "(-3492890328409238509324850943850943825024385\r\n"},
		{"bulk error", bulkErr("SYNTAX invalid syntax"), "!21\r\nSYNTAX invalid syntax\r\n"},
		{"verbatim", verbatim("txt", "Some string"), "=15\r\ntxt:Some string\r\n"},
		{"verbatim empty", verbatim("mkd", ""), "=4\r\nmkd:\r\n"},
		{"array", array(bulk("jobs"), integer(1)), "*2\r\n$4\r\njobs\r\n:1\r\n"},
		{"array empty", array(), "*0\r\n"},
		{"array nested", array(array(null()), set()), "*2\r\n*1\r\n_\r\n~0\r\n"},
		{"set", set(simple("a"), integer(1)), "~2\r\n+a\r\n:1\r\n"},
		{"push", push(bulk("message"), bulk("jobs"), bulk("ping")), ">3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$4\r\nping\r\n"},
		{"map", pairs(simple("a"), integer(1), simple("a"), integer(2)), "%2\r\n+a\r\n:1\r\n+a\r\n:2\r\n"},
		{"map empty", pairs(), "%0\r\n"},
		{"attribute", withAttrs(integer(1), simple("ttl"), integer(3600)), "|1\r\n+ttl\r\n:3600\r\n:1\r\n"},
		{"attribute nested", array(withAttrs(bulk("x"), simple("a"), pairs()), integer(2)),
			"*2\r\n|1\r\n+a\r\n%0\r\n$1\r\nx\r\n:2\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendValue([]byte("x"), tt.v)
			if string(got[1:]) != tt.want || got[0] != 'x' {
				t.Fatalf("AppendValue(%v) = %q, want %q", tt.v, got[1:], tt.want)
			}
			// Reading it back gives the value, apart from the documented
			// simple-to-bulk substitution.
			back := readOne(t, tt.want, Limits{}, true)
			want := tt.v
			if bytes.IndexByte(want.Str, '\n') >= 0 {
				switch want.Type {
				case TypeSimpleString:
					want.Type = TypeBulkString
				case TypeError:
					want.Type = TypeBulkError
				}
			}
			if !back.Equal(want) {
				t.Fatalf("read back %v, want %v", back, want)
			}
		})
	}
}

func TestAppendZeroAlloc(t *testing.T) {
	buf := make([]byte, 0, 512)
	payload := `{"response_channel": "jobs-0.9461501796110964", "message": "ping"}`
	if n := testing.AllocsPerRun(1000, func() {
		buf = AppendCommand(buf[:0], "PUBLISH", "jobs", payload)
	}); n != 0 {
		t.Errorf("AppendCommand allocates %v times per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		buf = AppendCommand(buf[:0], "PUBSUB", "NUMSUB", "jobs")
	}); n != 0 {
		t.Errorf("AppendCommand allocates %v times per call, want 0", n)
	}
	jobs := []byte("jobs")
	if n := testing.AllocsPerRun(1000, func() {
		buf = AppendCommandBytes(buf[:0], []byte("PUBSUB"), []byte("NUMSUB"), jobs)
	}); n != 0 {
		t.Errorf("AppendCommandBytes allocates %v times per call, want 0", n)
	}
	v := push(bulk("message"), bulk("jobs"), bulk(payload), double(1.5), pairs(integer(1), null()))
	if n := testing.AllocsPerRun(1000, func() {
		buf = AppendValue(buf[:0], v)
	}); n != 0 {
		t.Errorf("AppendValue allocates %v times per call, want 0", n)
	}
}
