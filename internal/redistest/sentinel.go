package redistest

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// masterName is the name the sentinel monitors the primary under.
const masterName = "mymaster"

// sentinelTimeout bounds how long the sentinel may take to see the
// servers, or a failover to finish.
const sentinelTimeout = 30 * time.Second

// SentinelSet is a primary, one replica and one sentinel monitoring them
// on 127.0.0.1, started by [Sentinel].
type SentinelSet struct {
	sentinel *Server

	mu      sync.Mutex // guards primary and replica, swapped by Failover
	primary *Server
	replica *Server
}

// Sentinel starts a primary, a replica of it (--replicaof) and a sentinel
// (redis-server sentinel.conf --sentinel, or the program that
// PUBSUBLOCK_REDIS_SERVER names as for [Redis]) that monitors the primary as
// "mymaster" with quorum 1, down-after-milliseconds 1000, failover-timeout
// 5000 and resolve-hostnames no. The primary and replica run with
// --repl-diskless-sync-delay 0 so that replicas sync at once. Sentinel
// returns once the replica is in sync and the sentinel sees the primary
// and the replica as healthy, so that a failover can start. Everything
// stops with the test. Stopping the primary makes the sentinel fail over
// by itself after about a second.
func Sentinel(t testing.TB) *SentinelSet {
	t.Helper()
	primary := Redis(t, "--repl-diskless-sync-delay", "0")
	replica := Redis(t, "--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port()))
	sentinel := startServer(t, 0, true, func(dir string, ports []int) []string {
		return []string{
			"--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1", "--dir", dir, "--daemonize", "no",
			"--sentinel", "resolve-hostnames", "no",
			"--sentinel", "monitor", masterName, "127.0.0.1", strconv.Itoa(primary.Port()), "1",
			"--sentinel", "down-after-milliseconds", masterName, "1000",
			"--sentinel", "failover-timeout", masterName, "5000",
		}
	})
	s := &SentinelSet{sentinel: sentinel, primary: primary, replica: replica}
	waitFor(t, sentinelTimeout, "replica syncs", func() error { return replicating(replica) })
	waitFor(t, sentinelTimeout, "sentinel sees primary and replica", s.healthy)
	return s
}

// SentinelAddrs returns the sentinels' addresses, "127.0.0.1:<port>".
func (s *SentinelSet) SentinelAddrs() []string { return []string{s.sentinel.Addr()} }

// MasterName returns the name the sentinel knows the primary by,
// "mymaster".
func (s *SentinelSet) MasterName() string { return masterName }

// Primary returns the server that is primary now: the one started as
// primary, or the replica it failed over to with Failover.
func (s *SentinelSet) Primary() *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.primary
}

// Replica returns the server that is not Primary.
func (s *SentinelSet) Replica() *Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.replica
}

// Failover makes the replica primary: SENTINEL FAILOVER mymaster, retried
// while the sentinel is not ready for it, then a wait until
// SENTINEL GET-MASTER-ADDR-BY-NAME names the replica and the replica's
// ROLE says master. Primary and Replica then swap.
//
// Left alone, the sentinel would turn the old primary into a replica only
// about ten seconds later, killing its clients as it does. Failover does
// that at once: REPLICAOF the new primary, then CLIENT KILL ID of every
// client of the old primary but the sentinel's own. It returns once the
// old primary is in sync and the sentinel sees both servers as healthy, so
// Failover can be called again. The sentinel disconnects the clients of
// the promoted replica itself.
func (s *SentinelSet) Failover(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	old, next := s.primary, s.replica
	s.mu.Unlock()
	waitFor(t, sentinelTimeout, "sentinel accepts SENTINEL FAILOVER", func() error {
		// NOGOODSLAVE and INPROG pass with time.
		_, err := do(s.sentinel.Addr(), "SENTINEL", "FAILOVER", masterName)
		return err
	})
	waitFor(t, sentinelTimeout, "failover to "+next.Addr(), func() error {
		if err := s.masterIs(next); err != nil {
			return err
		}
		return hasRole(next, "master")
	})
	// Demote the old primary while the sentinel is still finishing, so that
	// its first look at it as a replica finds a replica: it looks again
	// only every 10s.
	if err := demote(old, next); err != nil {
		t.Fatalf("redistest: make %s a replica of %s: %v", old.Addr(), next.Addr(), err)
	}
	s.mu.Lock()
	s.primary, s.replica = next, old
	s.mu.Unlock()
	waitFor(t, sentinelTimeout, "old primary syncs", func() error { return replicating(old) })
	waitFor(t, sentinelTimeout, "sentinel sees new primary and replica", s.healthy)
}

// demote makes srv a replica of master and disconnects its clients, but
// not the sentinel's: killing the sentinel's link to the master it is
// switching away from delays its link to the new one past
// down-after-milliseconds, and it then fails back.
func demote(srv, master *Server) error {
	if _, err := do(srv.Addr(), "REPLICAOF", "127.0.0.1", strconv.Itoa(master.Port())); err != nil {
		return err
	}
	v, err := do(srv.Addr(), "CLIENT", "LIST")
	if err != nil {
		return err
	}
	var kills [][]string
	for line := range strings.Lines(render(v)) {
		var id, name, flags string
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				id = v
			case "name":
				name = v
			case "flags":
				flags = v
			}
		}
		// Links to replicas (flag S) and to the master (flag M) stay, and
		// so does the sentinel (names sentinel-<id>-cmd and -pubsub).
		if id == "" || strings.HasPrefix(name, "sentinel-") || strings.ContainsAny(flags, "SM") {
			continue
		}
		kills = append(kills, []string{"CLIENT", "KILL", "ID", id})
	}
	if len(kills) == 0 {
		return nil
	}
	vs, err := pipeline(srv.Addr(), kills...)
	for _, v := range vs {
		if e, ok := v.(error); ok {
			err = errors.Join(err, e)
		}
	}
	return err
}

// masterIs reports nil if the sentinel names srv as the master.
func (s *SentinelSet) masterIs(srv *Server) error {
	v, err := do(s.sentinel.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", masterName)
	if err != nil {
		return err
	}
	addr, _ := v.([]any)
	if len(addr) != 2 || render(addr[0]) != "127.0.0.1" || render(addr[1]) != strconv.Itoa(srv.Port()) {
		return fmt.Errorf("sentinel names %q as master, not %s", render(v), srv.Addr())
	}
	return nil
}

// masterSettled reports nil if the sentinel's master is srv, with no
// trouble or failover flags, and its last ping to it has been answered.
func (s *SentinelSet) masterSettled(srv *Server) error {
	v, err := do(s.sentinel.Addr(), "SENTINEL", "MASTER", masterName)
	if err != nil {
		return err
	}
	m := pairs(v)
	if m["port"] != strconv.Itoa(srv.Port()) || m["flags"] != "master" || m["last-ping-sent"] != "0" {
		return fmt.Errorf("sentinel sees master port %s with flags %q, ping pending for %sms",
			m["port"], m["flags"], m["last-ping-sent"])
	}
	return nil
}

// healthy reports nil once the sentinel names the primary as a master
// without trouble flags and lists the replica as a connected replica whose
// link to the primary is up: the state SENTINEL FAILOVER needs.
func (s *SentinelSet) healthy() error {
	s.mu.Lock()
	primary, replica := s.primary, s.replica
	s.mu.Unlock()
	if err := s.masterIs(primary); err != nil {
		return err
	}
	if err := s.masterSettled(primary); err != nil {
		return err
	}
	v, err := do(s.sentinel.Addr(), "SENTINEL", "REPLICAS", masterName)
	if err != nil {
		return err
	}
	list, _ := v.([]any)
	for _, r := range list {
		m := pairs(r)
		if m["port"] != strconv.Itoa(replica.Port()) {
			continue
		}
		if m["flags"] != "slave" || m["master-link-status"] != "ok" || m["master-port"] != strconv.Itoa(primary.Port()) {
			return fmt.Errorf("sentinel sees replica %s with flags %q, master link %q to port %s",
				replica.Addr(), m["flags"], m["master-link-status"], m["master-port"])
		}
		return nil
	}
	return fmt.Errorf("sentinel does not list replica %s", replica.Addr())
}

// replicating reports nil once srv is a replica whose link to its master is
// up.
func replicating(srv *Server) error {
	v, err := do(srv.Addr(), "INFO", "replication")
	if err != nil {
		return err
	}
	info := render(v)
	role, _ := infoField(info, "role")
	link, _ := infoField(info, "master_link_status")
	if role != "slave" || link != "up" {
		return fmt.Errorf("%s: role:%s master_link_status:%s", srv.Addr(), role, link)
	}
	return nil
}

// hasRole reports nil if the first element of srv's ROLE reply is role.
func hasRole(srv *Server, role string) error {
	v, err := do(srv.Addr(), "ROLE")
	if err != nil {
		return err
	}
	if vs, _ := v.([]any); len(vs) == 0 || render(vs[0]) != role {
		return fmt.Errorf("%s: ROLE is %q, not %s", srv.Addr(), render(v), role)
	}
	return nil
}
