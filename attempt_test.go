package pubsublock

import (
	"errors"
	"fmt"
	"testing"

	"github.com/pubsublock/pubsublock/resp"
)

// TestRefusedWhileSubscribed: the refusal of a command on a subscribed
// connection is recognised in each server's wording, and nothing else is.
func TestRefusedWhileSubscribed(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{resp.Error("ERR Can't execute 'pubsub|numsub': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"), true},
		{resp.Error("ERR Can't execute 'incr': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"), true},
		{resp.Error("ERR Can't execute 'pubsub': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT are allowed in this context"), true},
		{fmt.Errorf("wrapped: %w", resp.Error("ERR Can't execute 'x': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT are allowed in this context")), true},
		{resp.Error("NOPERM this user has no permissions to access the 'jobs' channel"), false},
		{resp.Error("ERR unknown command 'only (P'"), false},
		{errors.New("only (P|S)SUBSCRIBE ... allowed in this context"), false},
		{nil, false},
	} {
		if got := refusedWhileSubscribed(c.err); got != c.want {
			t.Errorf("refusedWhileSubscribed(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
