package pubsublock

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

func TestStatus(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		ctx := context.Background()
		a := newLock(t, "status", Config{URL: url})
		st, err := a.Status(ctx)
		if err != nil || st.Held() || len(st.Holders) != 0 {
			t.Fatalf("free lock: %+v %v", st, err)
		}
		if err := a.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		st, err = a.Status(ctx)
		if err != nil || st.Subscribers != 1 {
			t.Fatalf("held lock: %+v %v", st, err)
		}
		if strings.HasSuffix(t.Name(), "miniredis") {
			if st.ListErr == nil {
				t.Fatal("miniredis listed clients")
			}
		} else if st.ListErr != nil || len(st.Holders) != 1 || st.Holders[0].ID == 0 || st.Holders[0].Addr == "" {
			t.Fatalf("holders: %+v", st)
		}
	})
}

// TestTryAcquireTakesOverSilentHolder: one TryAcquire pings a holder that
// never answers, kills it, and takes the lock.
func TestTryAcquireTakesOverSilentHolder(t *testing.T) {
	s := redistest.Redis(t)
	silentHolder(t, s, "SUBSCRIBE", "tk") // it cannot answer pings
	l := newLock(t, "tk", Config{URL: s.URL(), UnavailableTimeout: 200 * time.Millisecond})
	start := time.Now()
	if err := l.TryAcquire(context.Background()); err != nil {
		t.Fatalf("TryAcquire against a silent holder: %v", err)
	}
	t.Logf("silent holder killed and lock taken in %v", time.Since(start))
	if n := s.NumSub(t, "tk"); n != 1 {
		t.Fatalf("NUMSUB after take-over: %d", n)
	}
}

// TestUnknownSubscriberNotKilled: a silent subscriber of the channel that
// is not named like a holder (a plain SUBSCRIBE) keeps the lock taken. It
// is never killed; CheckOrKill says so with ErrUnknownSubscriber, a
// TryAcquire pings it once, not twice, and an Acquire whose Timeout passes
// returns ErrAlreadyLocked.
func TestUnknownSubscriberNotKilled(t *testing.T) {
	s := redistest.Redis(t)
	plain, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Write(resp.AppendCommand(nil, "SUBSCRIBE", "jobs")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return s.NumSub(t, "jobs") == 1 })
	ctx := context.Background()
	const unavailable = 300 * time.Millisecond
	l := newLock(t, "jobs", Config{URL: s.URL(), UnavailableTimeout: unavailable, CheckInterval: 50 * time.Millisecond,
		Timeout: 500 * time.Millisecond})
	// pings counts the pings the plain subscriber got so far. (A Reader's error sticks: one each
	// time.)
	pings := func() int {
		n := 0
		rd := resp.NewReader(plain, resp.Limits{})
		for {
			_ = plain.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			v, err := rd.Read()
			if err != nil {
				return n
			}
			if !isKind(v, "message") || len(v.Elems) != 3 {
				continue
			}
			// A waiter's announcement awaits no answer: no ping.
			if replyCh, _, ok := parsePing(v.Elems[2].Str); ok && replyCh != l.waiting {
				n++
			}
		}
	}
	if alive, err := l.CheckOrKill(ctx); alive || !errors.Is(err, ErrUnknownSubscriber) {
		t.Errorf("CheckOrKill = %v, %v; want false, ErrUnknownSubscriber", alive, err)
	}
	pings()
	if err := l.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Errorf("TryAcquire = %v, want ErrAlreadyLocked", err)
	}
	if n := pings(); n != 1 {
		t.Errorf("TryAcquire pinged the subscriber %d times, want once", n)
	}
	if err := l.Acquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Errorf("Acquire = %v, want ErrAlreadyLocked", err)
	}
	if n := s.NumSub(t, "jobs"); n != 1 {
		t.Errorf("the plain subscriber is gone: NUMSUB %d", n)
	}
}

// TestParseClientList reads CLIENT LIST as Redis and Valkey write it: the
// fields the check uses, whatever their order and whatever else is there,
// CRLF or LF, and a subscription to a channel or a shard channel (a
// pattern one is no hold).
func TestParseClientList(t *testing.T) {
	text := "id=3 addr=127.0.0.1:50432 laddr=127.0.0.1:6379 fd=8 name=jobs-lock age=12 idle=0 flags=P db=0 sub=1 psub=0 ssub=0 multi=-1\r\n" +
		"id=4 addr=[::1]:50433 name= age=0 sub=0 psub=2 ssub=0\n" +
		"\n" +
		"ssub=1 name=jobs-lock id=5 addr=10.0.0.2:1\r\n"
	got, err := parseClientList([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := []clientInfo{
		{id: 3, addr: "127.0.0.1:50432", name: "jobs-lock", age: 12 * time.Second, sub: 1},
		{id: 4, addr: "[::1]:50433"},
		{id: 5, addr: "10.0.0.2:1", name: "jobs-lock", ssub: 1},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("parseClientList = %+v\nwant %+v", got, want)
	}
	for i, subscribed := range []bool{true, false, true} {
		if got[i].subscribed() != subscribed {
			t.Errorf("client %d: subscribed() = %v", got[i].id, !subscribed)
		}
	}
	if got, err := parseClientList(nil); err != nil || len(got) != 0 {
		t.Errorf("parseClientList of nothing = %+v, %v", got, err)
	}
	if _, err := parseClientList([]byte("id=x name=a\n")); !errors.Is(err, resp.ErrProtocol) {
		t.Errorf("parseClientList with a bad id: %v, want resp.ErrProtocol", err)
	}
}
