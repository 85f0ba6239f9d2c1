package pubsublock

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

func TestClusterURL(t *testing.T) {
	for _, tc := range []struct {
		url   string
		seeds []string
		user  string
		pass  string
		tls   bool
		resp2 bool
	}{
		{"redis+cluster://h1:7000,h2:7001", []string{"h1:7000", "h2:7001"}, "", "", false, false},
		{"redis+cluster://u:p%40ss@h1:7000,h2", []string{"h1:7000", "h2:6379"}, "u", "p@ss", false, false},
		{"redis+cluster://secret@h1:7000/", []string{"h1:7000"}, "", "secret", false, false},
		{"rediss+cluster://[::1]:7000,[::1]:7001?protocol=2", []string{"[::1]:7000", "[::1]:7001"}, "", "", true, true},
		{"redis+cluster://[::1]", []string{"[::1]:6379"}, "", "", false, false},
	} {
		cc := ClientConfig{URL: tc.url}
		dc, err := cc.dialConfig()
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		topo, err := cc.topology()
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if !slices.Equal(topo.cluster, tc.seeds) || topo.sentinels != nil || dc.username != tc.user ||
			dc.password != tc.pass || (dc.tls != nil) != tc.tls || dc.resp2 != tc.resp2 {
			t.Errorf("%s: seeds %q user %q pass %q tls %v resp2 %v", tc.url, topo.cluster, dc.username, dc.password, dc.tls != nil, dc.resp2)
		}
	}
	for _, bad := range []ClientConfig{
		{URL: "redis+cluster://u:hunter2@h1:7000,,h2:7001"},
		{URL: "redis+cluster://u:hunter2@h1:7000/3"},
		{URL: "redis+cluster://u:hunter2@h1:7000?db=1"},
		{URL: "redis+cluster://u:hunter2@h1:notaport"},
		{URL: "redis+cluster://u:hunter2@h1:7000?x=1"},
		{URL: "redis+cluster://u:hunter2@h1:7000#frag"},
		{URL: "redis+cluster://u:hunter2%zz@h1:7000"},
		{URL: "redis+cluster://u:hunter2@h1:7000", ClusterAddrs: []string{"h:1"}},
		{URL: "redis://u:hunter2@h1:7000", ClusterAddrs: []string{"h:1"}},
		{Addr: "h:1", ClusterAddrs: []string{"h:1"}},
		{ClusterAddrs: []string{}},
		{ClusterAddrs: []string{"nohostport"}},
		{ClusterAddrs: []string{"h:1"}, DB: 2},
		{ClusterAddrs: []string{"h:1"}, SentinelAddrs: []string{"h:2"}, MasterName: "m"},
	} {
		_, err := NewClient(bad)
		if !errors.Is(err, ErrConfig) {
			t.Errorf("NewClient(%+v) = %v, want ErrConfig", bad, err)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats the password: %v", err)
		}
	}
	cl, err := NewClient(ClientConfig{ClusterAddrs: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if cl.pubsub() != sharded || cl.fenceKey("jobs") != "{jobs}-fence" {
		t.Errorf("cluster Client: pubsub %v, fence key %q", cl.pubsub(), cl.fenceKey("jobs"))
	}
	if _, err := New("jobs", Config{ClusterAddrs: []string{"h:1"}, Client: cl}); !errors.Is(err, ErrConfig) {
		t.Errorf("New with Client and ClusterAddrs: %v", err)
	}
}

func TestClusterParseReplies(t *testing.T) {
	str := func(s string) resp.Value { return resp.Value{Type: resp.TypeBulkString, Str: []byte(s)} }
	num := func(n int64) resp.Value { return resp.Value{Type: resp.TypeInteger, Int: n} }
	arr := func(vs ...resp.Value) resp.Value { return resp.Value{Type: resp.TypeArray, Elems: vs} }
	node := func(endpoint, ip string, port, tlsPort int64, role string) resp.Value {
		return arr(str("id"), str("abc"), str("port"), num(port), str("tls-port"), num(tlsPort),
			str("ip"), str(ip), str("endpoint"), str(endpoint), str("role"), str(role), str("health"), str("online"))
	}
	shards := arr(
		arr(str("slots"), arr(num(0), num(99), num(200), num(16383)), str("nodes"),
			arr(node("10.0.0.2", "10.0.0.2", 7001, 0, "replica"), node("?", "10.0.0.1", 7000, 8000, "master"))),
		arr(str("slots"), arr(num(100), num(199)), str("nodes"), arr(node("", "", 7002, 0, "master"))),
		arr(str("slots"), arr(), str("nodes"), arr(node("h", "h", 7003, 0, "master"))),
	)
	got, err := parseClusterShards(shards, "seed", false)
	want := []slotRange{{0, 99, "10.0.0.1:7000"}, {200, 16383, "10.0.0.1:7000"}, {100, 199, "seed:7002"}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseClusterShards = %v, %v; want %v", got, err, want)
	}
	if got, _ := parseClusterShards(shards, "seed", true); got[0].addr != "10.0.0.1:8000" {
		t.Errorf("with TLS: %v, want the tls-port", got)
	}
	for _, bad := range []resp.Value{
		str("x"),
		arr(arr(str("slots"), arr(num(0)), str("nodes"), arr(node("h", "h", 1, 0, "master")))),
		arr(arr(str("slots"), arr(num(5), num(1)), str("nodes"), arr(node("h", "h", 1, 0, "master")))),
		arr(arr(str("slots"), arr(num(0), num(16384)), str("nodes"), arr(node("h", "h", 1, 0, "master")))),
		arr(arr(str("slots"), arr(num(0), num(1)), str("nodes"), arr(node("h", "h", 1, 0, "replica")))),
		arr(),
	} {
		if got, err := parseClusterShards(bad, "seed", false); err == nil {
			t.Errorf("parseClusterShards(%v) = %v, want an error", bad, got)
		}
	}
	slots := arr(arr(num(0), num(5460), arr(str(""), num(7000), str("id"))), arr(num(5461), num(16383), arr(str("10.0.0.3"), num(7001))))
	got, err = parseClusterSlots(slots, "seed")
	want = []slotRange{{0, 5460, "seed:7000"}, {5461, 16383, "10.0.0.3:7001"}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseClusterSlots = %v, %v; want %v", got, err, want)
	}
	for _, tc := range []struct {
		e    string
		slot int
		addr string
		ok   bool
	}{
		{"MOVED 3999 127.0.0.1:6381", 3999, "127.0.0.1:6381", true},
		{"ASK 1 :7000", 1, "seed:7000", true},
		{"MOVED 2 ?:7000", 2, "seed:7000", true},
		{"MOVED 3 [::1]:7000", 3, "[::1]:7000", true},
		{"MOVED 16384 h:1", 0, "", false},
		{"MOVED x h:1", 0, "", false},
		{"ERR MOVED", 0, "", false},
	} {
		slot, addr, ok := parseRedirect(resp.Error(tc.e), "seed:1")
		if slot != tc.slot || addr != tc.addr || ok != tc.ok {
			t.Errorf("parseRedirect(%q) = %d, %q, %v", tc.e, slot, addr, ok)
		}
	}
}

// clusterEnv is one 3-master cluster shared by the subtests of TestCluster,
// as starting one takes seconds.
type clusterEnv struct {
	c *redistest.ClusterServers
}

// owner returns the node serving channel and another node.
func (e clusterEnv) owner(t *testing.T, channel string) (owner, other *redistest.Server) {
	t.Helper()
	owner = e.c.Owner(t, hashSlot(channel))
	for _, n := range e.c.Nodes() {
		if n != owner {
			return owner, n
		}
	}
	t.Fatal("one node only")
	return nil, nil
}

// seedsFrom returns the cluster's addresses starting with first.
func (e clusterEnv) seedsFrom(first *redistest.Server) []string {
	addrs := e.c.Addrs()
	i := slices.Index(addrs, first.Addr())
	return append(addrs[i:], addrs[:i]...)
}

func TestCluster(t *testing.T) {
	start := time.Now()
	e := clusterEnv{redistest.Cluster(t, 3)}
	t.Logf("cluster of 3 masters up in %v", time.Since(start))
	t.Run("SlotsMatchRedis", e.testSlotsMatchRedis)
	t.Run("PipelineMovedInSync", e.testPipelineMovedInSync)
	t.Run("AcquireViaNonOwnerSeed", e.testAcquireViaNonOwnerSeed)
	t.Run("MutualExclusion", e.testMutualExclusion)
	t.Run("BellHandsOver", e.testBellHandsOver)
	t.Run("FrozenHolderKilled", e.testFrozenHolderKilled)
	t.Run("Fencing", e.testFencing)
	t.Run("SlotMigrationLosesLock", e.testSlotMigration)
	t.Run("FencingDuringMigration", e.testFencingDuringMigration)
}

// hashSlot and the same-slot names agree with CLUSTER KEYSLOT.
func (e clusterEnv) testSlotsMatchRedis(t *testing.T) {
	s := e.c.Nodes()[0]
	r := rand.New(rand.NewPCG(3, 4))
	keys := append(slotNames(r, 30), "foo", "", "\x00\xff{\x80}", "{user1000}.following")
	for _, k := range keys {
		names := []string{k}
		if k != "" {
			names = append(names, sameSlot(k, "fence"), sameSlot(k, "0.123"))
		}
		for _, name := range names {
			out, err := s.Do("CLUSTER", "KEYSLOT", name)
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := strconv.Atoi(out); hashSlot(name) != want || hashSlot(name) != hashSlot(k) {
				t.Errorf("hashSlot(%q) = %d, CLUSTER KEYSLOT says %d; channel %q in slot %d", name, hashSlot(name), want, k, hashSlot(k))
			}
		}
	}
}

// An SSUBSCRIBE refused with MOVED in the middle of a pipeline does not
// shift the replies of the commands after it.
func (e clusterEnv) testPipelineMovedInSync(t *testing.T) {
	ctx := context.Background()
	_, other := e.owner(t, "sync")
	for _, resp2 := range []bool{false, true} {
		c, err := dialConn(ctx, dialConfig{network: "tcp", addr: other.Addr(), resp2: resp2})
		if err != nil {
			t.Fatal(err)
		}
		var n int64 = -1
		err = c.pipeline(ctx, [][]string{{"CLIENT", "SETNAME", "sync-lock"}, {"SSUBSCRIBE", "sync"}, {"PUBSUB", "SHARDNUMSUB", "sync"}},
			func(i int, v resp.Value) error {
				if i == 1 {
					n = v.Elems[1].Int
				}
				return nil
			})
		if code, ok := isRedirect(err); !ok || code != "MOVED" || n != 0 {
			t.Errorf("resp2=%v: pipeline = %v, count %d; want MOVED and 0", resp2, err, n)
		}
		if v, err := c.do(ctx, "ECHO", "next"); err != nil || string(v.Str) != "next" {
			t.Errorf("resp2=%v: the next command got %v, %v", resp2, v, err)
		}
		c.close()
	}
}

// A lock whose seeds start with a node that does not serve its slot is
// taken on the slot's master, with sharded pub/sub and a client name
// there only.
func (e clusterEnv) testAcquireViaNonOwnerSeed(t *testing.T) {
	ctx := context.Background()
	const ch = "seeded"
	owner, other := e.owner(t, ch)
	var firsts []time.Duration
	for i := range 5 {
		l := newLock(t, ch, Config{ClusterAddrs: e.seedsFrom(other)})
		start := time.Now()
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, time.Since(start))
		if n := owner.ShardNumSub(t, ch); n != 1 {
			t.Fatalf("SHARDNUMSUB on the owner = %d", n)
		}
		if n := other.ShardNumSub(t, ch); n != 0 {
			t.Fatalf("SHARDNUMSUB on another node = %d", n)
		}
		if i == 0 {
			list, _ := owner.Do("CLIENT", "LIST")
			if !strings.Contains(list, "name="+ch+"-lock ") {
				t.Errorf("owner's CLIENT LIST has no holder:\n%s", list)
			}
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(firsts)
	t.Logf("acquire through a non-owner seed (fresh Lock: slot map, dial, handshake, SSUBSCRIBE): median %v, max %v", firsts[2], firsts[4])

	// With a shared Client the map and the connections are kept: later
	// acquisitions cost one round trip to the owner.
	cl := newClient(t, ClientConfig{ClusterAddrs: []string{other.Addr()}})
	l := newLock(t, ch, Config{Client: cl})
	var warm []time.Duration
	for range 20 {
		start := time.Now()
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		warm = append(warm, time.Since(start))
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(warm)
	t.Logf("acquire through a shared Client seeded with a non-owner: fastest %v, median of 20 %v", warm[0], warm[10])
	cl.mu.Lock()
	for addr, conns := range cl.idle {
		if addr != owner.Addr() && addr != other.Addr() {
			t.Errorf("idle connections to %s, which was not used", addr)
		}
		for _, c := range conns {
			if c.addr != addr || c.nc.RemoteAddr().String() != addr {
				t.Errorf("connection to %s (%s) pooled under %s", c.addr, c.nc.RemoteAddr(), addr)
			}
		}
	}
	if len(cl.idle[owner.Addr()]) == 0 {
		t.Errorf("no idle connection to the owner %s: %v", owner.Addr(), cl.idle)
	}
	cl.mu.Unlock()
}

// A waiter whose polls are a minute apart takes the lock at the release,
// woken by the bell, which lives in the channel's slot on its owner (as the
// waiter's announcement, a sharded message, does).
func (e clusterEnv) testBellHandsOver(t *testing.T) {
	ctx := context.Background()
	const ch = "belled"
	owner, other := e.owner(t, ch)
	holder := newLock(t, ch, Config{ClusterAddrs: e.seedsFrom(other)})
	waiter := newLock(t, ch, Config{ClusterAddrs: e.seedsFrom(other), CheckInterval: time.Minute, Timeout: -1})
	if err := holder.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	got := acquireAsync(ctx, waiter)
	awaitBlocked(t, owner.URL(), 1)
	if err := holder.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiter: %v", err)
	}
	if n := owner.ShardNumSub(t, ch); n != 1 {
		t.Fatalf("SHARDNUMSUB on the owner = %d, want the waiter alone", n)
	}
	if err := waiter.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// The waiter had waited, so its release rang too: the bell is on the
	// owner, under a name in the channel's slot.
	bell := sameSlot(ch, "released")
	if hashSlot(bell) != hashSlot(ch) {
		t.Fatalf("bell %q in slot %d, channel in %d", bell, hashSlot(bell), hashSlot(ch))
	}
	waitFor(t, func() bool { n, _ := owner.Do("EXISTS", bell); return n == "1" })
}

// Contenders that reach the cluster through different seeds exclude each
// other.
func (e clusterEnv) testMutualExclusion(t *testing.T) {
	ctx := context.Background()
	const ch = "mutex"
	var holders, acquired, maxHolders atomic.Int32
	var wg sync.WaitGroup
	nodes := e.c.Nodes()
	const contenders, rounds = 6, 15
	start := time.Now()
	for i := range contenders {
		cl := newClient(t, ClientConfig{ClusterAddrs: e.seedsFrom(nodes[i%len(nodes)])})
		l := newLock(t, ch, Config{Client: cl, Timeout: 20 * time.Second, CheckInterval: 5 * time.Millisecond})
		wg.Go(func() {
			for range rounds {
				if err := l.Acquire(ctx); err != nil {
					t.Error(err)
					return
				}
				n := holders.Add(1)
				for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
				}
				acquired.Add(1)
				time.Sleep(time.Millisecond)
				holders.Add(-1)
				if err := l.Release(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if m := maxHolders.Load(); m != 1 {
		t.Errorf("%d holders at once", m)
	}
	if n := acquired.Load(); n != contenders*rounds {
		t.Errorf("%d acquisitions, want %d", n, contenders*rounds)
	}
	t.Logf("%d acquisitions by %d contenders through 3 seeds in %v", acquired.Load(), contenders, time.Since(start))
}

// A holder that stopped reading is pinged on the owner, killed there after
// UnavailableTimeout, and the lock taken over.
func (e clusterEnv) testFrozenHolderKilled(t *testing.T) {
	ctx := context.Background()
	const ch = "frozen"
	owner, other := e.owner(t, ch)
	nc := silentHolder(t, owner, "SSUBSCRIBE", ch)
	l := newLock(t, ch, Config{ClusterAddrs: e.seedsFrom(other), UnavailableTimeout: 200 * time.Millisecond,
		CheckInterval: 20 * time.Millisecond})
	start := time.Now()
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("frozen holder killed and lock taken in %v", time.Since(start))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := readAll(nc); err != nil {
		t.Errorf("the frozen holder's connection was not closed: %v", err)
	}
	if n := owner.ShardNumSub(t, ch); n != 1 {
		t.Errorf("SHARDNUMSUB = %d", n)
	}
	// A live holder is not killed.
	b := newLock(t, ch, Config{ClusterAddrs: e.seedsFrom(other), UnavailableTimeout: 2 * time.Second})
	if err := b.TryAcquire(ctx); !errors.Is(err, ErrAlreadyLocked) {
		t.Errorf("TryAcquire against a live holder: %v", err)
	}
	if err := l.Err(); err != nil {
		t.Errorf("the live holder lost its lock: %v", err)
	}
}

// readAll reads until EOF (nil) or another error.
func readAll(nc net.Conn) (int, error) {
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := nc.Read(buf)
		total += n
		if err != nil {
			if strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "reset") {
				return total, nil
			}
			return total, err
		}
	}
}

// Fencing tokens come from a key in the channel's slot, so the owner
// serves them in the same round trip.
func (e clusterEnv) testFencing(t *testing.T) {
	ctx := context.Background()
	const ch = "fenced"
	owner, other := e.owner(t, ch)
	l := newLock(t, ch, Config{ClusterAddrs: e.seedsFrom(other), Fencing: true})
	var last int64
	for range 3 {
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if tok := l.Token(); tok <= last {
			t.Fatalf("token %d after %d", tok, last)
		}
		last = l.Token()
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := owner.Do("GET", "{"+ch+"}-fence"); err != nil || got != strconv.FormatInt(last, 10) {
		t.Errorf("fence key on the owner = %q, %v; want %d", got, err, last)
	}
}

// Moving the lock's slot to another master ends the hold (the old master
// sends sunsubscribe), and the lock can be taken again on the new master.
func (e clusterEnv) testSlotMigration(t *testing.T) {
	ctx := context.Background()
	const ch = "migrating"
	owner, other := e.owner(t, ch)
	cl := newClient(t, ClientConfig{ClusterAddrs: e.seedsFrom(owner)})
	for _, resp2 := range []bool{false, true} {
		cfg := Config{Client: cl}
		if resp2 {
			cl2 := newClient(t, ClientConfig{URL: "redis+cluster://" + strings.Join(e.seedsFrom(owner), ",") + "?protocol=2"})
			cfg.Client = cl2
		}
		l := newLock(t, ch, cfg)
		if err := l.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		lost := make(chan time.Time, 1)
		go func() {
			<-l.Lost()
			lost <- time.Now()
		}()
		start := time.Now()
		e.c.MigrateSlot(t, hashSlot(ch), owner, other)
		moved := time.Since(start)
		var lostAfter time.Duration
		select {
		case at := <-lost:
			lostAfter = at.Sub(start)
		case <-time.After(5 * time.Second):
			t.Fatal("Lost() did not fire after the slot moved")
		}
		t.Logf("resp2=%v: slot moved in %v (MigrateSlot, until every node agrees); Lost() %v after the move began",
			resp2, moved, lostAfter)
		if err := l.Err(); !errors.Is(err, ErrLost) || !errors.Is(err, errUnsubscribed) {
			t.Errorf("Err() = %v, want ErrLost by an unsubscribe", err)
		}
		if err := l.Release(ctx); !errors.Is(err, ErrLost) {
			t.Errorf("Release after the loss: %v", err)
		}

		// The Client's map is stale: the next acquisition meets MOVED and
		// lands on the new owner.
		var logs lockedBuffer
		bcfg := cfg
		bcfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		b := newLock(t, ch, bcfg)
		if err := b.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "msg=redirected") {
			t.Errorf("no redirect logged:\n%s", logs.String())
		}
		if n := other.ShardNumSub(t, ch); n != 1 {
			t.Errorf("SHARDNUMSUB on the new owner = %d", n)
		}
		if got := cfg.Client.cluster.current(hashSlot(ch)); got != other.Addr() {
			t.Errorf("the map says %s serves the slot, not %s", got, other.Addr())
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
		owner, other = other, owner
	}
}

// While the lock's slot is being migrated, its fence key may already sit on
// the importing node: the INCR gets ASK and is retried there after ASKING,
// while the channel is still served by the migrating node. When the
// migration ends the hold is lost, and the next token comes from the new
// owner, larger.
func (e clusterEnv) testFencingDuringMigration(t *testing.T) {
	ctx := context.Background()
	const ch = "asked"
	from, to := e.owner(t, ch)
	slot := strconv.Itoa(hashSlot(ch))
	fromID, _ := from.Do("CLUSTER", "MYID")
	toID, _ := to.Do("CLUSTER", "MYID")
	mustDo(t, to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	mustDo(t, from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	var logs lockedBuffer
	l := newLock(t, ch, Config{ClusterAddrs: e.seedsFrom(to), Fencing: true,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := l.Acquire(ctx); err != nil {
		t.Fatalf("Acquire during the migration: %v\n%s", err, logs.String())
	}
	if l.Token() != 1 {
		t.Errorf("token %d, want 1", l.Token())
	}
	for s, want := range map[*redistest.Server]string{from: "0", to: "1"} {
		if got, _ := s.Do("CLUSTER", "COUNTKEYSINSLOT", slot); got != want {
			t.Errorf("%s holds %s keys of the slot, want %s: the INCR did not follow ASK", s.Addr(), got, want)
		}
	}
	if n := from.ShardNumSub(t, ch); n != 1 {
		t.Errorf("SHARDNUMSUB on the migrating node = %d, want 1 (it serves the channel until the end)", n)
	}
	if n := to.ShardNumSub(t, ch); n != 0 {
		t.Errorf("SHARDNUMSUB on the importing node = %d, want 0", n)
	}
	e.c.MigrateSlot(t, hashSlot(ch), from, to)
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Lost() did not fire when the migration ended")
	}
	_ = l.Release(ctx)
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if l.Token() != 2 {
		t.Errorf("token after the migration %d, want 2", l.Token())
	}
	if n := to.ShardNumSub(t, ch); n != 1 {
		t.Errorf("SHARDNUMSUB on the new owner = %d", n)
	}
}

// A master cut off from the rest of the cluster keeps its shard
// subscribers; the holder's health check notices once the node reports
// CLUSTERDOWN, and the hold ends.
func TestClusterPartitionedHolder(t *testing.T) {
	c := redistest.Cluster(t, 2)
	ctx := context.Background()
	const ch = "cutoff"
	owner := c.Owner(t, hashSlot(ch))
	l := newLock(t, ch, Config{ClusterAddrs: []string{owner.Addr()}, HealthCheckInterval: 100 * time.Millisecond})
	if err := l.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, n := range c.Nodes() {
		if n != owner {
			n.Stop()
		}
	}
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("Lost() did not fire")
	}
	t.Logf("holder on a master left alone lost the lock %v after the other master stopped (node timeout 2s)", time.Since(start))
	if err := l.Err(); !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), "CLUSTERDOWN") {
		t.Errorf("Err() = %v, want a loss by CLUSTERDOWN", err)
	}
}

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
	var waiters []*Lock
	var got []<-chan error
	for _, proto := range []string{"", "?protocol=2"} {
		cl := newClient(t, ClientConfig{URL: url + proto})
		w := newLock(t, "jobs", Config{Client: cl, CheckInterval: 30 * time.Millisecond, Timeout: -1})
		waiters = append(waiters, w)
		got = append(got, acquireAsyncWithin(ctx, w, 30*time.Second))
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
	takeInTurn(t, waiters, got)
}
