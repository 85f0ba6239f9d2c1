package redistest

import (
	"net"
	"strconv"
	"testing"
	"time"
)

func TestSentinel(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s := Sentinel(t)
	t.Logf("sentinel set up in %v", time.Since(start))
	if s.MasterName() != "mymaster" || len(s.SentinelAddrs()) != 1 {
		t.Fatalf("MasterName() = %q, SentinelAddrs() = %v", s.MasterName(), s.SentinelAddrs())
	}
	first, second := s.Primary(), s.Replica()
	if err := hasRole(first, "master"); err != nil {
		t.Fatal(err)
	}
	if err := hasRole(second, "slave"); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Do("SET", "k", "v"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "replica has k", func() error {
		if v, err := second.Do("GET", "k"); err != nil || v != "v" {
			return &net.AddrError{Err: "GET k = " + strconv.Quote(v), Addr: second.Addr()}
		}
		return nil
	})

	// A subscriber of the old primary is disconnected, as the
	// sentinel would do.
	sub := dial(t, first.Addr())
	sub.send("SUBSCRIBE", "jobs")
	if _, err := sub.read(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	s.Failover(t)
	t.Logf("failover in %v", time.Since(start))
	if s.Primary() != second || s.Replica() != first {
		t.Fatal("Primary and Replica did not swap")
	}
	if err := s.masterIs(second); err != nil {
		t.Fatal(err)
	}
	if err := hasRole(second, "master"); err != nil {
		t.Fatal(err)
	}
	if err := hasRole(first, "slave"); err != nil {
		t.Fatal(err)
	}
	if v, err := sub.read(5 * time.Second); err == nil {
		t.Errorf("subscriber of the old primary still connected, read %#v", v)
	}

	start = time.Now()
	s.Failover(t)
	t.Logf("failover back in %v", time.Since(start))
	if s.Primary() != first {
		t.Fatal("second Failover did not return to the first primary")
	}
	if v, err := first.Do("GET", "k"); err != nil || v != "v" {
		t.Errorf("GET k on the first primary = %q, %v", v, err)
	}
}
