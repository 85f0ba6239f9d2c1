package redistest

import (
	"strconv"
	"strings"
	"testing"
)

// Do runs one command on a new connection to addr, which may be any RESP
// server (a miniredis too), and returns the reply as text, as [Server.Do]
// does. It is the tests' one-shot client.
func Do(addr string, args ...string) (string, error) {
	v, err := do(addr, args...)
	if err != nil {
		return "", err
	}
	return render(v), nil
}

// Pipeline sends cmds to addr on a new connection, all at once, and returns
// their replies as text, as [Do] does; the first error reply is returned
// as the error. The whole exchange is bounded by 10s.
func Pipeline(addr string, cmds ...[]string) ([]string, error) {
	vs, err := pipeline(addr, cmds...)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		if e, ok := v.(replyError); ok {
			return nil, e
		}
		out[i] = render(v)
	}
	return out, nil
}

// NumSub returns the number of subscribers of channel (PUBSUB NUMSUB), and
// fails the test if the server does not tell.
func (s *Server) NumSub(t testing.TB, channel string) int {
	t.Helper()
	return s.count(t, "NUMSUB", channel)
}

// ShardNumSub returns the number of subscribers of the shard channel
// channel (PUBSUB SHARDNUMSUB), and fails the test if the server does not
// tell.
func (s *Server) ShardNumSub(t testing.TB, channel string) int {
	t.Helper()
	return s.count(t, "SHARDNUMSUB", channel)
}

func (s *Server) count(t testing.TB, sub, channel string) int {
	t.Helper()
	out, err := s.Do("PUBSUB", sub, channel)
	if err != nil {
		t.Fatalf("redistest: %s PUBSUB %s %s: %v", s.Addr(), sub, channel, err)
	}
	n, err := strconv.Atoi(strings.TrimPrefix(out, channel+"\n"))
	if err != nil {
		t.Fatalf("redistest: %s PUBSUB %s %s = %q", s.Addr(), sub, channel, out)
	}
	return n
}

// SubscriberIDs returns the ids of the clients named name that are
// subscribed to a channel or a shard channel, as CLIENT LIST TYPE pubsub
// shows them: the holders of a lock, whose connections are named after
// it. It fails the test if the server does not list its clients.
func (s *Server) SubscriberIDs(t testing.TB, name string) []int64 {
	t.Helper()
	out, err := s.Do("CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		t.Fatalf("redistest: %s CLIENT LIST: %v", s.Addr(), err)
	}
	var ids []int64
	for line := range strings.Lines(out) {
		var id int64 = -1
		named, subscribed := false, false
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				if id, err = strconv.ParseInt(v, 10, 64); err != nil {
					t.Fatalf("redistest: %s CLIENT LIST: id %q", s.Addr(), v)
				}
			case "name":
				named = v == name
			case "sub", "ssub":
				n, _ := strconv.Atoi(v)
				subscribed = subscribed || n > 0
			}
		}
		if id < 0 {
			t.Fatalf("redistest: %s CLIENT LIST: a line without id: %q", s.Addr(), line)
		}
		if named && subscribed {
			ids = append(ids, id)
		}
	}
	return ids
}
