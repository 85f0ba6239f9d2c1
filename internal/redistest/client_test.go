package redistest

import (
	"bufio"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestAppendCommand(t *testing.T) {
	got := string(appendCommand([]byte("x"), "SET", "k", ""))
	want := "x*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
	if got != want {
		t.Errorf("appendCommand = %q, want %q", got, want)
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		wire   string
		want   any
		render string
	}{
		{"+OK\r\n", "OK", "OK"},
		{"-ERR no\r\n", replyError("ERR no"), "(error) ERR no"},
		{":-42\r\n", int64(-42), "-42"},
		{"$5\r\nhe\r\nl\r\n", "he\r\nl", "he\r\nl"},
		{"$-1\r\n", nil, ""},
		{"*-1\r\n", nil, ""},
		{"*0\r\n", []any{}, ""},
		{"*2\r\n$1\r\na\r\n*2\r\n:1\r\n-E x\r\n", []any{"a", []any{int64(1), replyError("E x")}}, "a\n1\n(error) E x"},
		{"_\r\n", nil, ""},
		{"#t\r\n", true, "true"},
		{",1.5\r\n", "1.5", "1.5"},
		{"(123456789012345678901234567890\r\n", "123456789012345678901234567890", "123456789012345678901234567890"},
		{"=8\r\ntxt:id=7\r\n", "id=7", "id=7"},
		{"!5\r\nERR x\r\n", replyError("ERR x"), "(error) ERR x"},
		{"%1\r\n+k\r\n:1\r\n", []any{"k", int64(1)}, "k\n1"},
		{">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n", []any{"message", "ch", "m"}, "message\nch\nm"},
		{"|1\r\n+ttl\r\n:3\r\n+v\r\n", "v", "v"},
	} {
		got, err := readReply(bufio.NewReader(strings.NewReader(tc.wire)), 0)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("readReply(%q) = %#v, %v; want %#v", tc.wire, got, err, tc.want)
			continue
		}
		if r := render(got); r != tc.render {
			t.Errorf("render(readReply(%q)) = %q, want %q", tc.wire, r, tc.render)
		}
	}
}

func TestReadReplyErrors(t *testing.T) {
	for _, wire := range []string{
		"",
		"\r\n",
		"+OK\n",
		"+OK",
		"?x\r\n",
		":12a\r\n",
		":99999999999999999999\r\n",
		"$3\r\nab\r\n",
		"$3\r\nabcXY",
		"$-2\r\n",
		"$99999999999\r\n",
		"*99999999999\r\n",
		"*2\r\n+a\r\n",
		"#x\r\n",
		"=2\r\nab\r\n",
		strings.Repeat("*1\r\n", maxDepth+2) + "+a\r\n",
		"+" + strings.Repeat("a", maxLine) + "\r\n",
	} {
		if got, err := readReply(bufio.NewReader(strings.NewReader(wire)), 0); err == nil {
			t.Errorf("readReply(%.40q) = %#v, want an error", wire, got)
		} else if !errors.Is(err, errProtocol) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("readReply(%.40q) error %v, want a protocol error or EOF", wire, err)
		}
	}
}

func TestInfoField(t *testing.T) {
	info := "# Server\r\nredis_version:7.0.15\r\nprocess_id:42\r\n"
	if v, ok := infoField(info, "process_id"); !ok || v != "42" {
		t.Errorf("infoField(process_id) = %q, %v", v, ok)
	}
	if v, ok := infoField(info, "nope"); ok {
		t.Errorf("infoField(nope) = %q, true", v)
	}
}

func TestPipeline(t *testing.T) {
	s := Redis(t)
	vs, err := pipeline(s.Addr(), []string{"SET", "a", "1"}, []string{"INCR", "a"}, []string{"HGET", "a", "x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || vs[0] != "OK" || vs[1] != int64(2) {
		t.Fatalf("pipeline = %#v", vs)
	}
	if e, ok := vs[2].(replyError); !ok || !strings.HasPrefix(string(e), "WRONGTYPE") {
		t.Errorf("third reply %#v, want WRONGTYPE", vs[2])
	}
}
