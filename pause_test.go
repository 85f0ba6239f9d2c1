package pubsublock

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestWaitersSurvivePause: contenders wait for the lock while the server
// goes through write pauses (CLIENT PAUSE WRITE, CLIENT PAUSE ALL, and the
// pause FAILOVER makes). A waiter must never send what can crash the
// server: CLIENT UNBLOCK on a BLPOP held back by a write pause kills
// Redis 7.0, 8.0 and Valkey 8.1 ("Unknown btype in
// replyToBlockedClientTimedOut"). The server survives, and the waiters
// get the lock after the pauses and the release.
func TestWaitersSurvivePause(t *testing.T) {
	for _, pause := range []string{"WRITE", "ALL", "FAILOVER"} {
		t.Run(pause, func(t *testing.T) {
			s := redistest.Redis(t, "--repl-diskless-sync-delay", "0")
			var replica *redistest.Server
			if pause == "FAILOVER" {
				replica = redistest.Redis(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Port()),
					"--repl-diskless-sync-delay", "0")
			}
			ctx := context.Background()
			holder := newLock(t, "jobs", Config{URL: s.URL()})
			if err := holder.Acquire(ctx); err != nil {
				t.Fatal(err)
			}
			var got []<-chan error
			var waiters []*Lock
			for _, proto := range []string{"", "?protocol=2", "", "?protocol=2"} {
				cl, err := NewClient(ClientConfig{URL: s.URL() + proto})
				if err != nil {
					t.Fatal(err)
				}
				defer cl.Close()
				w := newLock(t, "jobs", Config{Client: cl, CheckInterval: 30 * time.Millisecond, Timeout: -1})
				waiters = append(waiters, w)
				got = append(got, acquireAsync(ctx, w))
			}
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
				var err error
				if pause == "FAILOVER" {
					// To the replica and back: each pauses the primary's
					// writes until the other has caught up.
					failover(t, s, replica)
					failover(t, replica, s)
				} else {
					ms := 20 + rand.IntN(150)
					_, err = s.Do("CLIENT", "PAUSE", strconv.Itoa(ms), pause)
					time.Sleep(time.Duration(ms+rand.IntN(40)) * time.Millisecond)
				}
				if err != nil {
					t.Fatalf("pause: %v", err)
				}
				if _, err := s.Do("PING"); err != nil {
					t.Fatalf("the server died during the pauses: %v\n%s", err, strings.Join(lastLines(s), "\n"))
				}
			}
			if err := holder.Release(ctx); err != nil {
				t.Logf("release: %v", err)
			}
			// The waiters take the lock in turn.
			type result struct {
				i   int
				err error
			}
			results := make(chan result, len(got))
			for i, g := range got {
				go func() { results <- result{i, <-g} }()
			}
			for range got {
				r := <-results
				if r.err != nil {
					t.Errorf("waiter %d: %v", r.i, r.err)
					continue
				}
				_ = waiters[r.i].Release(ctx)
			}
			if _, err := s.Do("PING"); err != nil {
				t.Fatalf("the server died: %v", err)
			}
		})
	}
}

// lastLines returns the last lines of s's log.
func lastLines(s *redistest.Server) []string {
	b, _ := os.ReadFile(s.Logfile())
	lines := strings.Split(string(b), "\n")
	return lines[max(len(lines)-20, 0):]
}

// failover makes replica the primary with FAILOVER on primary, and waits
// until both have switched roles.
func failover(t *testing.T, primary, replica *redistest.Server) {
	t.Helper()
	waitFor(t, func() bool {
		info, _ := primary.Do("INFO", "replication")
		return strings.Contains(info, "state=online")
	})
	if _, err := primary.Do("FAILOVER", "TO", "127.0.0.1", strconv.Itoa(replica.Port()), "TIMEOUT", "2000"); err != nil {
		t.Fatalf("FAILOVER: %v", err)
	}
	waitFor(t, func() bool {
		a, _ := primary.Do("ROLE")
		b, _ := replica.Do("ROLE")
		return strings.HasPrefix(a, "slave") && strings.HasPrefix(b, "master")
	})
}
