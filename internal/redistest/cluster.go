package redistest

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterTimeout bounds how long a cluster may take to form or to agree on
// a moved slot.
const clusterTimeout = 30 * time.Second

// ClusterServers is a Redis Cluster of masters without replicas on
// 127.0.0.1, started by [Cluster].
type ClusterServers struct {
	nodes []*Server
	buses []int // cluster bus port of each node
}

// Cluster starts a Redis Cluster of masters (at least 1) without replicas:
// one redis-server per master with --cluster-enabled yes,
// --cluster-config-file nodes.conf and --cluster-node-timeout 2000, each
// on a free port with its cluster bus on another. Three or more masters are
// joined with `redis-cli --cluster create --cluster-replicas 0
// --cluster-yes` (redis-cli from PATH, or the program that the environment
// variable PUBSUBLOCK_REDIS_CLI names), which refuses fewer; one or two get
// their share of slots with CLUSTER ADDSLOTSRANGE and meet with CLUSTER
// MEET. The servers are the program that PUBSUBLOCK_REDIS_SERVER names, if
// set, as for [Redis]. Cluster returns once every node reports
// cluster_state:ok and all agree on who owns each slot. The nodes stop with
// the test. When redis-server or redis-cli is missing the test is skipped,
// or fails when CI is "true".
func Cluster(t testing.TB, masters int) *ClusterServers {
	t.Helper()
	if masters < 1 {
		t.Fatalf("redistest: Cluster needs at least 1 master, not %d", masters)
	}
	cli := ""
	if masters >= 3 {
		cli = envBinary(t, cliEnv, "redis-cli", "redis-tools")
	}
	c := &ClusterServers{buses: make([]int, masters)}
	for i := range masters {
		c.nodes = append(c.nodes, startServer(t, 1, false, func(dir string, ports []int) []string {
			c.buses[i] = ports[1]
			return append(baseArgs(dir, ports[0]),
				"--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", "2000",
				"--cluster-port", strconv.Itoa(ports[1]),
			)
		}))
	}
	if cli != "" {
		args := append([]string{"--cluster", "create"}, c.Addrs()...)
		args = append(args, "--cluster-replicas", "0", "--cluster-yes")
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	} else {
		c.join(t)
	}
	waitFor(t, clusterTimeout, "cluster forms", c.agreed)
	return c
}

// join does by hand what redis-cli --cluster create does, for clusters too
// small for it: spread the slots, give each node its own config epoch, and
// introduce every node to the first.
func (c *ClusterServers) join(t testing.TB) {
	t.Helper()
	n := len(c.nodes)
	for i, s := range c.nodes {
		first, last := i*clusterSlots/n, (i+1)*clusterSlots/n-1
		mustDo(t, s, "CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(first), strconv.Itoa(last))
		mustDo(t, s, "CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i+1))
	}
	for i, s := range c.nodes[1:] {
		mustDo(t, c.nodes[0], "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(s.Port()), strconv.Itoa(c.buses[i+1]))
	}
}

// AddReplica starts a cluster node that replicates master, a node of c,
// and returns once it has synced. It is not one of Nodes: the master keeps
// its slots until a failover (CLUSTER FAILOVER on the replica) promotes
// the replica. It stops with the test.
func (c *ClusterServers) AddReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	var bus int
	r := startServer(t, 1, false, func(dir string, ports []int) []string {
		bus = ports[1]
		return append(baseArgs(dir, ports[0]),
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			"--cluster-port", strconv.Itoa(ports[1]),
			"--repl-diskless-sync-delay", "0",
		)
	})
	id := myID(t, master)
	mustDo(t, master, "CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(r.Port()), strconv.Itoa(bus))
	waitFor(t, clusterTimeout, "replica knows its master", func() error {
		nodes, err := r.Do("CLUSTER", "NODES")
		if err != nil || !strings.Contains(nodes, id) {
			return fmt.Errorf("replica does not know %s yet: %v", id, err)
		}
		return nil
	})
	mustDo(t, r, "CLUSTER", "REPLICATE", id)
	waitFor(t, clusterTimeout, "replica synced", func() error {
		info, err := master.Do("INFO", "replication")
		if err != nil || !strings.Contains(info, "state=online") {
			return fmt.Errorf("replica not online: %v", err)
		}
		return nil
	})
	return r
}

// Addrs returns the nodes' addresses, "127.0.0.1:<port>", in the order of
// Nodes.
func (c *ClusterServers) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Nodes returns the cluster's servers, one per master.
func (c *ClusterServers) Nodes() []*Server { return slices.Clone(c.nodes) }

// Owner returns the node that owns slot, as the first node that answers
// sees it. The slot of a key or channel is CLUSTER KEYSLOT's answer.
func (c *ClusterServers) Owner(t testing.TB, slot int) *Server {
	t.Helper()
	var view clusterView
	var err error
	for _, s := range c.nodes {
		if view, err = readView(s); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: cluster view: %v", err)
	}
	id := view.owner(slot)
	for _, s := range c.nodes {
		if view.nodes[id].addr == s.Addr() {
			return s
		}
	}
	t.Fatalf("redistest: no node owns slot %d", slot)
	return nil
}

// MigrateSlot moves slot from the node that owns it to another node, as
// redis-cli --cluster reshard would: CLUSTER SETSLOT IMPORTING on to,
// MIGRATING on from, MIGRATE of the slot's keys, then NODE on to, from and
// the other nodes. It returns once every node agrees that to owns the slot. Shard
// subscribers of the slot on from get an sunsubscribe push.
func (c *ClusterServers) MigrateSlot(t testing.TB, slot int, from, to *Server) {
	t.Helper()
	fromID, toID := myID(t, from), myID(t, to)
	if owner := c.Owner(t, slot); owner != from {
		t.Fatalf("redistest: MigrateSlot %d: %s does not own it (%s does)", slot, from.Addr(), owner.Addr())
	}
	s := strconv.Itoa(slot)
	mustDo(t, to, "CLUSTER", "SETSLOT", s, "IMPORTING", fromID)
	mustDo(t, from, "CLUSTER", "SETSLOT", s, "MIGRATING", toID)
	host, port, err := net.SplitHostPort(to.Addr())
	if err != nil {
		t.Fatalf("redistest: MigrateSlot: %v", err)
	}
	for {
		v, err := do(from.Addr(), "CLUSTER", "GETKEYSINSLOT", s, "100")
		keys, _ := v.([]any)
		if err != nil || len(keys) == 0 {
			break
		}
		args := []string{"MIGRATE", host, port, "", "0", "5000", "KEYS"}
		for _, k := range keys {
			args = append(args, fmt.Sprint(k))
		}
		mustDo(t, from, args...)
	}
	mustDo(t, to, "CLUSTER", "SETSLOT", s, "NODE", toID)
	mustDo(t, from, "CLUSTER", "SETSLOT", s, "NODE", toID)
	for _, n := range c.nodes {
		if n != from && n != to {
			mustDo(t, n, "CLUSTER", "SETSLOT", s, "NODE", toID)
		}
	}
	waitFor(t, clusterTimeout, "cluster agrees on slot "+s, func() error {
		if err := c.agreed(); err != nil {
			return err
		}
		view, err := readView(c.nodes[0])
		if err != nil {
			return err
		}
		if got := view.owner(slot); got != toID {
			return fmt.Errorf("slot %d is owned by %s, not %s", slot, got, toID)
		}
		return nil
	})
}

// agreed reports nil once every node says cluster_state:ok, knows every
// other node as a connected master, and all see the same owner for every
// slot with no slot half migrated.
func (c *ClusterServers) agreed() error {
	var first clusterView
	for i, s := range c.nodes {
		v, err := do(s.Addr(), "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if state, _ := infoField(render(v), "cluster_state"); state != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", s.Addr(), state)
		}
		view, err := readView(s)
		if err != nil {
			return err
		}
		if len(view.nodes) != len(c.nodes) {
			return fmt.Errorf("%s knows %d nodes, not %d", s.Addr(), len(view.nodes), len(c.nodes))
		}
		for id, n := range view.nodes {
			if n.link != "connected" || !slices.Contains(n.flags, "master") ||
				slices.ContainsFunc(n.flags, func(f string) bool { return f == "handshake" || strings.HasPrefix(f, "fail") }) {
				return fmt.Errorf("%s sees node %s %s as %v, link %s", s.Addr(), id, n.addr, n.flags, n.link)
			}
			if n.pending {
				return fmt.Errorf("%s sees a slot of node %s %s being migrated", s.Addr(), id, n.addr)
			}
		}
		if i == 0 {
			first = view
		} else if !maps.Equal(view.slots(), first.slots()) {
			return fmt.Errorf("%s and %s disagree on slot owners", s.Addr(), c.nodes[0].Addr())
		}
	}
	return nil
}

// clusterView is one node's CLUSTER NODES reply.
type clusterView struct {
	nodes map[string]clusterNode // by node id
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	addr    string   // "ip:port", without the bus port
	flags   []string // e.g. myself, master, fail?
	link    string   // connected or disconnected
	ranges  []string // owned slots, e.g. "0-5460", "5461"
	pending bool     // a slot is being imported or migrated
}

// readView asks s for its CLUSTER NODES.
func readView(s *Server) (clusterView, error) {
	v, err := do(s.Addr(), "CLUSTER", "NODES")
	if err != nil {
		return clusterView{}, err
	}
	return parseNodes(render(v))
}

// parseNodes parses a CLUSTER NODES reply: one node per line, fields
// "<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv>
// <config-epoch> <link-state> <slot>...", where a slot is "n", "n-m", or
// "[n->-id]" / "[n-<-id]" while it moves.
func parseNodes(text string) (clusterView, error) {
	view := clusterView{nodes: make(map[string]clusterNode)}
	for line := range strings.Lines(text) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return view, fmt.Errorf("short CLUSTER NODES line %q", line)
		}
		addr, _, _ := strings.Cut(f[1], "@")
		n := clusterNode{addr: addr, flags: strings.Split(f[2], ","), link: f[7]}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				n.pending = true
				continue
			}
			n.ranges = append(n.ranges, r)
		}
		view.nodes[f[0]] = n
	}
	return view, nil
}

// slots maps each range of slots to the id of its owner.
func (v clusterView) slots() map[string]string {
	m := make(map[string]string)
	for id, n := range v.nodes {
		for _, r := range n.ranges {
			m[r] = id
		}
	}
	return m
}

// owner returns the id of the node that owns slot, or "".
func (v clusterView) owner(slot int) string {
	for id, n := range v.nodes {
		for _, r := range n.ranges {
			lo, hi, _ := strings.Cut(r, "-")
			if hi == "" {
				hi = lo
			}
			first, err1 := strconv.Atoi(lo)
			last, err2 := strconv.Atoi(hi)
			if err1 == nil && err2 == nil && first <= slot && slot <= last {
				return id
			}
		}
	}
	return ""
}

// myID returns the cluster node id of s.
func myID(t testing.TB, s *Server) string {
	t.Helper()
	return mustDo(t, s, "CLUSTER", "MYID")
}

// mustDo runs a command on s and fails the test on error.
func mustDo(t testing.TB, s *Server, args ...string) string {
	t.Helper()
	out, err := s.Do(args...)
	if err != nil {
		t.Fatalf("redistest: %s %s: %v", s.Addr(), strings.Join(args, " "), err)
	}
	return out
}
