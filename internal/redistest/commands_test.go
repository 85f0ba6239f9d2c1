package redistest

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	m := Miniredis(t)
	if got, err := Do(m.Addr(), "SET", "k", "v"); err != nil || got != "OK" {
		t.Errorf("Do(SET) on miniredis = %q, %v", got, err)
	}
	if got, err := Do(m.Addr(), "RPUSH", "l", "a", "b"); err != nil || got != "2" {
		t.Errorf("Do(RPUSH) on miniredis = %q, %v", got, err)
	}
	if _, err := Do(m.Addr(), "NOSUCHCOMMAND"); err == nil {
		t.Error("Do(NOSUCHCOMMAND) on miniredis: no error")
	}
	got, err := Pipeline(m.Addr(), []string{"GET", "k"}, []string{"LRANGE", "l", "0", "-1"}, []string{"EXISTS", "none"})
	if err != nil || !slices.Equal(got, []string{"v", "a\nb", "0"}) {
		t.Errorf("Pipeline = %q, %v", got, err)
	}
	if got, err := Pipeline(m.Addr(), []string{"GET", "k"}, []string{"LPUSH", "k", "x"}); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Errorf("Pipeline with an error reply = %q, %v; want WRONGTYPE", got, err)
	}
}

// TestSubscribers: NumSub, ShardNumSub and SubscriberIDs see the
// subscribed clients, and only those named.
func TestSubscribers(t *testing.T) {
	s := Redis(t)
	if n := s.NumSub(t, "ch"); n != 0 {
		t.Fatalf("NumSub of a channel nobody subscribed = %d", n)
	}
	if ids := s.SubscriberIDs(t, "ch-lock"); len(ids) != 0 {
		t.Fatalf("SubscriberIDs with no client = %v", ids)
	}
	var want []int64
	for _, c := range []struct {
		name, subscribe string
		listed          bool
	}{
		{"ch-lock", "SUBSCRIBE", true},
		{"ch-lock", "SSUBSCRIBE", true},
		{"ch-lock", "", false},
		{"other", "SUBSCRIBE", false},
	} {
		cl := dial(t, s.Addr())
		cl.send("CLIENT", "SETNAME", c.name)
		cl.send("CLIENT", "ID")
		replies := 2
		if c.subscribe != "" {
			cl.send(c.subscribe, "ch")
			replies++
		}
		var id int64
		for i := range replies {
			v, err := cl.read(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				id = v.(int64)
			}
		}
		if c.listed {
			want = append(want, id)
		}
	}
	if n := s.NumSub(t, "ch"); n != 2 {
		t.Errorf("NumSub = %d, want 2", n)
	}
	if n := s.ShardNumSub(t, "ch"); n != 1 {
		t.Errorf("ShardNumSub = %d, want 1", n)
	}
	got := s.SubscriberIDs(t, "ch-lock")
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("SubscriberIDs(ch-lock) = %v, want %v", got, want)
	}
}
