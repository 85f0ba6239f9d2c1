package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/pubsublock/pubsublock/resp"
)

// maxRedirects bounds how many MOVED or ASK redirects one command follows
// before it fails.
const maxRedirects = 5

// clusterMap is a Client's view of a Redis Cluster: which master serves
// each hash slot. It is loaded from the nodes it knows and the seeds on
// first use (CLUSTER SHARDS, or CLUSTER SLOTS before Redis 7), corrected
// slot by slot by MOVED redirects, and loaded again after one.
type clusterMap struct {
	seeds []string
	tls   bool // dialed with TLS: prefer the nodes' TLS ports

	loading sync.Mutex // held during a load, so that one runs at a time

	mu     sync.Mutex        // guards addrs, owners, loads, stale and prefer
	addrs  []string          // the masters; owners holds index+1
	owners [slotCount]uint16 // the master of each slot, 0 when unknown
	loads  uint64            // count of finished loads, to skip a load another just did
	stale  bool              // a MOVED came since the last load
	prefer string            // the master a MOVED named: asked first, as it has seen the move
}

func newClusterMap(seeds []string, tls bool) *clusterMap {
	return &clusterMap{seeds: seeds, tls: tls}
}

// addr returns the address of the master that serves slot, loading the map
// first when the slot is unknown or a MOVED made the map stale.
func (m *clusterMap) addr(ctx context.Context, cl *Client, slot int) (string, error) {
	m.mu.Lock()
	idx, stale, loads := m.owners[slot], m.stale, m.loads
	m.mu.Unlock()
	if idx != 0 && !stale {
		return m.current(slot), nil
	}
	err := m.load(ctx, cl, loads)
	if a := m.current(slot); a != "" {
		return a, nil // a failed reload keeps what MOVED taught
	}
	if err == nil {
		err = fmt.Errorf("no master serves slot %d", slot)
	}
	return "", fmt.Errorf("cluster: %w", err)
}

// current returns the address of slot's master as known now, or "".
func (m *clusterMap) current(slot int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if idx := m.owners[slot]; idx != 0 {
		return m.addrs[idx-1]
	}
	return ""
}

// load asks the known masters, then the seeds, for the slot map, and
// installs the first answer. It does nothing if another load finished
// since the caller saw loads.
func (m *clusterMap) load(ctx context.Context, cl *Client, loads uint64) error {
	m.loading.Lock()
	defer m.loading.Unlock()
	m.mu.Lock()
	if m.loads != loads {
		m.mu.Unlock()
		return nil
	}
	var candidates []string
	seen := make(map[string]bool)
	for _, a := range append(append([]string{m.prefer}, m.addrs...), m.seeds...) {
		if a == "" {
			continue
		}
		if !seen[a] {
			seen[a] = true
			candidates = append(candidates, a)
		}
	}
	m.mu.Unlock()

	var errs []error
	var ranges []slotRange
	for _, a := range candidates {
		r, err := m.ask(ctx, cl, a)
		if err == nil {
			ranges = r
			break
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.loads++
	m.stale, m.prefer = false, ""
	if ranges == nil {
		return fmt.Errorf("no node answered with the slot map: %w", errors.Join(errs...))
	}
	m.addrs = m.addrs[:0:0]
	m.owners = [slotCount]uint16{}
	index := make(map[string]uint16)
	for _, r := range ranges {
		idx, ok := index[r.addr]
		if !ok {
			m.addrs = append(m.addrs, r.addr)
			idx = uint16(len(m.addrs))
			index[r.addr] = idx
		}
		for s := r.first; s <= r.last; s++ {
			m.owners[s] = idx
		}
	}
	return nil
}

// ask fetches the slot map from the node at addr.
func (m *clusterMap) ask(ctx context.Context, cl *Client, addr string) ([]slotRange, error) {
	c, err := cl.nodeConn(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer cl.put(c)
	host, _, _ := net.SplitHostPort(addr)
	v, err := c.do(ctx, "CLUSTER", "SHARDS")
	var re resp.Error
	if errors.As(err, &re) && re.Code() == "ERR" { // before Redis 7
		if v, err = c.do(ctx, "CLUSTER", "SLOTS"); err == nil {
			return parseClusterSlots(v, host)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	r, err := parseClusterShards(v, host, m.tls)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return r, nil
}

// moved records what a MOVED redirect from the node at from says: the
// slot is served by another master now. The rest of the map is reloaded
// at the next lookup.
func (m *clusterMap) moved(e resp.Error, from string) {
	slot, addr, ok := parseRedirect(e, from)
	if !ok {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stale, m.prefer = true, addr
	for i, a := range m.addrs {
		if a == addr {
			m.owners[slot] = uint16(i + 1)
			return
		}
	}
	if len(m.addrs) < slotCount {
		m.addrs = append(m.addrs, addr)
		m.owners[slot] = uint16(len(m.addrs))
	}
}

// parseRedirect reads "MOVED <slot> <host>:<port>" or "ASK ...". An empty
// or unknown ("?") host means the host of the node that answered, from.
func parseRedirect(e resp.Error, from string) (slot int, addr string, ok bool) {
	f := strings.Fields(string(e))
	if len(f) != 3 || (f[0] != "MOVED" && f[0] != "ASK") {
		return 0, "", false
	}
	slot, err := strconv.Atoi(f[1])
	if err != nil || slot < 0 || slot >= slotCount {
		return 0, "", false
	}
	i := strings.LastIndexByte(f[2], ':')
	if i < 0 || !isPort(f[2][i+1:]) {
		return 0, "", false
	}
	host := strings.Trim(f[2][:i], "[]")
	if host == "" || host == "?" {
		host, _, _ = net.SplitHostPort(from)
	}
	return slot, net.JoinHostPort(host, f[2][i+1:]), true
}

// isRedirect reports whether err is a MOVED or ASK reply, and which.
func isRedirect(err error) (code string, ok bool) {
	if err == nil {
		return "", false // before errors.As, whose target escapes
	}
	var re resp.Error
	if errors.As(err, &re) && (re.Code() == "MOVED" || re.Code() == "ASK") {
		return re.Code(), true
	}
	return "", false
}

// slotRange is a range of slots and the address of their master.
type slotRange struct {
	first, last int
	addr        string
}

// parseClusterShards reads a CLUSTER SHARDS reply: per shard, a map (a
// flat key-value array in RESP2) with "slots", a flat list of first and
// last slots, and "nodes", maps with "endpoint", "ip", "port",
// "tls-port" and "role". The master's endpoint is used, or its ip when
// the endpoint is unknown ("?" or empty), or host, that of the node asked.
func parseClusterShards(v resp.Value, host string, tls bool) ([]slotRange, error) {
	if v.Type != resp.TypeArray {
		return nil, fmt.Errorf("%w: CLUSTER SHARDS reply is a %v", resp.ErrProtocol, v.Type)
	}
	var out []slotRange
	for _, shard := range v.Elems {
		var slots []int
		addr := ""
		for i := 0; i+1 < len(shard.Elems); i += 2 {
			val := shard.Elems[i+1]
			switch string(shard.Elems[i].Str) {
			case "slots":
				for _, s := range val.Elems {
					if s.Type != resp.TypeInteger || s.Int < 0 || s.Int >= slotCount {
						return nil, fmt.Errorf("%w: CLUSTER SHARDS slot %.40s", resp.ErrProtocol, s.String())
					}
					slots = append(slots, int(s.Int))
				}
			case "nodes":
				for _, n := range val.Elems {
					if a := shardMaster(n, host, tls); a != "" {
						addr = a
					}
				}
			}
		}
		if len(slots)%2 != 0 {
			return nil, fmt.Errorf("%w: CLUSTER SHARDS has an odd count of slot bounds", resp.ErrProtocol)
		}
		if addr == "" {
			if len(slots) > 0 {
				return nil, fmt.Errorf("%w: CLUSTER SHARDS shard with slots and no master", resp.ErrProtocol)
			}
			continue // a shard without slots (a new, empty master)
		}
		for i := 0; i < len(slots); i += 2 {
			if slots[i] > slots[i+1] {
				return nil, fmt.Errorf("%w: CLUSTER SHARDS slot range %d-%d", resp.ErrProtocol, slots[i], slots[i+1])
			}
			out = append(out, slotRange{slots[i], slots[i+1], addr})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("CLUSTER SHARDS: no slot is served")
	}
	return out, nil
}

// shardMaster returns the address of a node of CLUSTER SHARDS if it is a
// master, else "".
func shardMaster(n resp.Value, host string, tls bool) string {
	var endpoint, ip, role string
	var port, tlsPort int64
	for i := 0; i+1 < len(n.Elems); i += 2 {
		val := n.Elems[i+1]
		switch string(n.Elems[i].Str) {
		case "endpoint":
			endpoint = string(val.Str)
		case "ip":
			ip = string(val.Str)
		case "role":
			role = string(val.Str)
		case "port":
			port = val.Int
		case "tls-port":
			tlsPort = val.Int
		}
	}
	if role != "master" {
		return ""
	}
	if tls && tlsPort > 0 || port <= 0 {
		port = tlsPort
	}
	if port <= 0 || port > 65535 {
		return ""
	}
	return net.JoinHostPort(knownHost(endpoint, knownHost(ip, host)), strconv.FormatInt(port, 10))
}

// knownHost returns h, or fallback when h is empty or "?" (an unknown
// endpoint).
func knownHost(h, fallback string) string {
	if h == "" || h == "?" {
		return fallback
	}
	return h
}

// parseClusterSlots reads a CLUSTER SLOTS reply: per range, the first and
// last slot, then the master as [host, port, id, ...], then the replicas.
func parseClusterSlots(v resp.Value, host string) ([]slotRange, error) {
	if v.Type != resp.TypeArray {
		return nil, fmt.Errorf("%w: CLUSTER SLOTS reply is a %v", resp.ErrProtocol, v.Type)
	}
	var out []slotRange
	for _, e := range v.Elems {
		if len(e.Elems) < 3 || len(e.Elems[2].Elems) < 2 {
			return nil, fmt.Errorf("%w: CLUSTER SLOTS entry %.80s", resp.ErrProtocol, e.String())
		}
		first, last, m := e.Elems[0].Int, e.Elems[1].Int, e.Elems[2].Elems
		port := m[1].Int
		if first < 0 || last < first || last >= slotCount || port <= 0 || port > 65535 {
			return nil, fmt.Errorf("%w: CLUSTER SLOTS entry %.80s", resp.ErrProtocol, e.String())
		}
		addr := net.JoinHostPort(knownHost(string(m[0].Str), host), strconv.FormatInt(port, 10))
		out = append(out, slotRange{int(first), int(last), addr})
	}
	if len(out) == 0 {
		return nil, errors.New("CLUSTER SLOTS: no slot is served")
	}
	return out, nil
}

// doKey runs a command on key on the master of key's slot, following MOVED
// redirects (and learning from them) and ASK redirects (with ASKING before
// the command on the node asked), at most maxRedirects. The Value is a
// copy. Only for keyed commands: shard pub/sub is never sent with ASKING,
// which would let an importing node take subscribers while the migrating
// node still serves the channel.
func (cl *Client) doKey(ctx context.Context, key string, args ...string) (resp.Value, error) {
	slot := hashSlot(key)
	ask := ""
	for redirects := 0; ; redirects++ {
		addr := ask
		if addr == "" {
			var err error
			if addr, err = cl.cluster.addr(ctx, cl, slot); err != nil {
				return resp.Value{}, err
			}
		}
		c, err := cl.nodeConn(ctx, addr)
		if err != nil {
			return resp.Value{}, err
		}
		cmds := [][]string{args}
		if ask != "" {
			cmds = [][]string{{"ASKING"}, args}
		}
		var out resp.Value
		err = c.pipeline(ctx, cmds, func(i int, v resp.Value) error {
			if i == len(cmds)-1 {
				out = v.Clone()
			}
			return nil
		})
		cl.put(c)
		code, redirected := isRedirect(err)
		if !redirected {
			return out, err
		}
		if redirects == maxRedirects {
			return resp.Value{}, fmt.Errorf("cluster: %s: more than %d redirects: %w", args[0], maxRedirects, err)
		}
		ask = ""
		var re resp.Error
		errors.As(err, &re)
		if code == "MOVED" {
			cl.cluster.moved(re, addr)
		} else if _, a, ok := parseRedirect(re, addr); ok {
			ask = a
		}
	}
}
