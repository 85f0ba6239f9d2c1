package pubsublock

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

// TestClusterFailoverWithWaiters: contenders wait for a lock on a cluster
// while its master goes through CLUSTER FAILOVER, which pauses the
// master's writes until the replica has caught up. Both servers survive,
// the holder is told of the loss, and the waiters get the lock from the
// new master in turn.
func TestClusterFailoverWithWaiters(t *testing.T) {
	c := redistest.Cluster(t, 1)
	master := c.Nodes()[0]
	replica := c.AddReplica(t, master)
	url := "redis+cluster://" + master.Addr() + "," + replica.Addr()
	ctx := context.Background()
	holder := newLock(t, "jobs", Config{URL: url})
	if err := holder.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	type result struct {
		i   int
		err error
	}
	var waiters []*Lock
	results := make(chan result, 2)
	for i, proto := range []string{"", "?protocol=2"} {
		cl, err := NewClient(ClientConfig{URL: url + proto})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		w := newLock(t, "jobs", Config{Client: cl, CheckInterval: 30 * time.Millisecond, Timeout: -1})
		waiters = append(waiters, w)
		got := acquireAsync(ctx, w)
		go func() { results <- result{i, <-got} }()
	}
	time.Sleep(200 * time.Millisecond) // the waiters wait on the bell
	mustDo(t, replica, "CLUSTER", "FAILOVER")
	waitFor(t, func() bool {
		role, _ := replica.Do("ROLE")
		return strings.HasPrefix(role, "master")
	})
	for _, s := range []*redistest.Server{master, replica} {
		if _, err := s.Do("PING"); err != nil {
			t.Fatalf("%s died in the failover: %v", s.Addr(), err)
		}
	}
	select {
	case <-holder.Lost():
	case <-time.After(5 * time.Second):
		t.Error("the holder on the old master was not told")
	}
	for range waiters {
		r := <-results
		if r.err != nil {
			t.Errorf("waiter %d: %v", r.i, r.err)
			continue
		}
		_ = waiters[r.i].Release(ctx)
	}
}
