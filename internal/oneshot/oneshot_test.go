package oneshot

import (
	"testing"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

func TestDo(t *testing.T) {
	m := redistest.Miniredis(t)
	v, err := Do(m.Addr(), "PING")
	if err != nil || string(v.Str) != "PONG" {
		t.Fatalf("PING: %v %v", v, err)
	}
	_, err = Do(m.Addr(), "NOSUCHCOMMAND")
	if re, ok := err.(resp.Error); !ok || re.Code() != "ERR" {
		t.Fatalf("unknown command: %v", err)
	}
	if _, err := Do("127.0.0.1:1", "PING"); err == nil {
		t.Fatal("no error from a closed port")
	}
}
