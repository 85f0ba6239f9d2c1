package pubsublock

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// TestNoticeWakesWaiter: a waiter whose next poll is seconds away takes the
// lock as soon as the holder releases, woken by the release notice; its
// notice subscription ends with Acquire, and the connection it used serves
// the Client's next round trips.
func TestNoticeWakesWaiter(t *testing.T) {
	servers(t, func(t *testing.T, url string) {
		cl, err := NewClient(ClientConfig{URL: url, MaxIdle: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx := context.Background()
		holder := newLock(t, "jobs", Config{URL: url})
		// Polls every 10s (±25%), gives up after 5s: only a notice can
		// wake it in time.
		waiter := newLock(t, "jobs", Config{Client: cl, CheckInterval: 10 * time.Second, Timeout: 5 * time.Second})
		if err := holder.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() { got <- waiter.Acquire(ctx) }()
		// The notice channel's subscribers, counted as a lock's.
		noticeCh := newLock(t, "jobs-released", Config{URL: url})
		notices := func() int64 { st, _ := noticeCh.Status(ctx); return st.Subscribers }
		waitFor(t, func() bool { return notices() == 1 }) // the waiter listens
		start := time.Now()
		if err := holder.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("waiter: %v", err)
		}
		t.Logf("woken by the notice: held %v after Release", time.Since(start))
		waitFor(t, func() bool { return notices() == 0 })
		// The Client's one idle connection is the listener's, unsubscribed
		// lazily: its next user reads past the confirmation.
		for range 3 {
			st, err := waiter.Status(ctx)
			if err != nil || st.Subscribers != 1 {
				t.Fatalf("Status through the listener's connection: %+v, %v", st, err)
			}
		}
	})
}

// TestNoticeRefusedFallsBackToPolling: a user the server does not allow on
// the notice channel still waits and takes the lock, by polling; the
// holder's release is not hurt by the refused notice.
func TestNoticeRefusedFallsBackToPolling(t *testing.T) {
	s := redistest.Redis(t, "--user", "locker", "on", ">secret", "resetchannels", "&jobs", "&jobs-0.*",
		"+subscribe", "+unsubscribe", "+publish", "+pubsub|numsub", "+client|setname", "+client|list",
		"+client|kill", "+ping", "+hello")
	url := "redis://locker:secret@" + s.Addr()
	ctx := context.Background()
	cl, err := NewClient(ClientConfig{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	holder := newLock(t, "jobs", Config{Client: cl})
	waiter := newLock(t, "jobs", Config{Client: cl, CheckInterval: 20 * time.Millisecond, Timeout: 5 * time.Second})
	for i := range 3 {
		if err := holder.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() { got <- waiter.Acquire(ctx) }()
		time.Sleep(50 * time.Millisecond) // the waiter polls, its notice subscription refused
		if err := holder.Release(ctx); err != nil {
			t.Fatalf("round %d: Release: %v", i, err)
		}
		if err := <-got; err != nil {
			t.Fatalf("round %d: waiter without notices: %v", i, err)
		}
		if err := waiter.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestUnsubscribeLaterSkipsMessages: the round trip after a lazy
// unsubscribe reads past the messages that came before the confirmation,
// and, in RESP2, still takes the confirmation of its own SUBSCRIBE for one
// although the old confirmation left subscribed mode after it was written.
func TestUnsubscribeLaterSkipsMessages(t *testing.T) {
	for _, tc := range []struct {
		name, hello string
		push        func(parts ...string) string
	}{
		{"resp3", helloReply, push},
		{"resp2", "-ERR unknown command 'HELLO'\r\n", func(parts ...string) string { return "*" + push(parts...)[1:] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeServer(t, answerHello(tc.hello, func(w io.Writer, args []string) {
				switch args[0] {
				case "SUBSCRIBE":
					io.WriteString(w, tc.push("subscribe", args[1], ":1"))
				case "UNSUBSCRIBE":
					io.WriteString(w, tc.push("message", args[1], "")+tc.push("message", args[1], "")+
						tc.push("unsubscribe", args[1], ":0"))
				case "CLIENT":
					io.WriteString(w, "+OK\r\n")
				}
			}))
			ctx := context.Background()
			c, err := dialConn(ctx, dialConfig{network: "tcp", addr: f.addr()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.close()
			if err := subscribeSync(ctx, c, classic, "jobs-released"); err != nil {
				t.Fatal(err)
			}
			if err := c.unsubscribeLater("UNSUBSCRIBE", "jobs-released"); err != nil {
				t.Fatal(err)
			}
			var pushes []string
			c.onPush = func(v resp.Value) { pushes = append(pushes, pushKind(v)+" "+string(v.Elems[1].Str)) }
			if err := c.pipeline(ctx, [][]string{{"CLIENT", "SETNAME", "jobs-lock"}, {"SUBSCRIBE", "jobs"}}, nil); err != nil {
				t.Fatalf("subscribe after a lazy unsubscribe: %v", err)
			}
			if len(pushes) != 1 || pushes[0] != "subscribe jobs" {
				t.Fatalf("pushes seen by the round trip: %q, want only its own confirmation", pushes)
			}
		})
	}
}
