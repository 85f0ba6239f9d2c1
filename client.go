package pubsublock

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// Client is a source of connections to one Redis server, to the masters of
// a Redis Cluster (ClientConfig.ClusterAddrs), or to the primary that Redis
// Sentinels name (ClientConfig.SentinelAddrs), shared by any number of
// Locks: the Go counterpart of the connection argument of portalocker's
// RedisLock. It dials lazily, and keeps up to ClientConfig.MaxIdle
// connections per server warm between acquisitions, so a lock taken
// through a Client skips the dial and the handshake.
//
// In sentinel mode a Client runs a goroutine, while it has connections,
// that follows the sentinels' failover events; Close stops it.
//
// A Client is safe for concurrent use. Locks never close it; Close it when
// every Lock using it is released.
type Client struct {
	dc       dialConfig
	maxIdle  int         // per server address
	cluster  *clusterMap // cluster mode: the slot map; nil otherwise
	sentinel *sentinels  // sentinel mode: the primary's finder and watcher; nil otherwise

	mu          sync.Mutex         // guards idle, closed, idleTimeout and idleTimer
	idle        map[string][]*conn // idle connections by server address, oldest first
	closed      bool
	idleTimeout time.Duration // idle connections older than this are closed; 0: never
	idleTimer   *time.Timer   // runs expire while connections are idle

	// closing ends when Close is called: it ends the Acquires under way.
	closing context.Context
	close   context.CancelFunc

	caps capabilities // what its servers were found to do
	// server is the server software and version the last RESP3 dial met
	// (from HELLO): when it changes (another server took the address),
	// caps are forgotten. Guarded by mu.
	server string
}

// NewClient returns a Client for the server cfg describes. It checks the
// settings but does not dial.
func NewClient(cfg ClientConfig) (*Client, error) {
	dc, err := cfg.dialConfig()
	if err != nil {
		return nil, err
	}
	topo, err := cfg.topology()
	if err != nil {
		return nil, err
	}
	maxIdle := cfg.MaxIdle
	if maxIdle == 0 {
		maxIdle = 16
	}
	idleTimeout := cfg.IdleTimeout
	if idleTimeout == 0 {
		idleTimeout = DefaultIdleTimeout
	}
	cl := &Client{dc: dc, maxIdle: max(maxIdle, 0), idle: make(map[string][]*conn), idleTimeout: max(idleTimeout, 0)}
	cl.closing, cl.close = context.WithCancel(context.Background())
	switch {
	case topo.cluster != nil:
		cl.cluster = newClusterMap(topo.cluster, dc.tls != nil)
	case topo.sentinels != nil:
		cl.sentinel = newSentinels(topo, dc)
	}
	return cl, nil
}

// Close closes the idle connections, ends the Acquires under way with
// ErrClientClosed, and in sentinel mode stops watching the sentinels.
// Connections in use by held locks stay open until those locks are
// released, and are then closed; from Close on, a failover no longer ends
// their holds at once, only when the old primary drops them.
func (cl *Client) Close() error {
	cl.close()
	cl.mu.Lock()
	idle := cl.idle
	cl.idle, cl.closed = nil, true
	if cl.idleTimer != nil {
		cl.idleTimer.Stop()
	}
	cl.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.close()
		}
	}
	if cl.sentinel != nil {
		cl.sentinel.close()
	}
	return nil
}

// get returns an idle connection or dials a new one, to the server that
// serves channel: the server, the master of the channel's hash slot, or
// the primary.
func (cl *Client) get(ctx context.Context, channel string) (*conn, error) {
	switch {
	case cl.cluster != nil:
		addr, err := cl.cluster.addr(ctx, cl, hashSlot(channel))
		if err != nil {
			return nil, err
		}
		return cl.nodeConn(ctx, addr)
	case cl.sentinel != nil:
		return cl.sentinel.get(ctx, cl)
	}
	return cl.nodeConn(ctx, cl.dc.addr)
}

// getReady is get for a hold's worker: it never returns a connection still
// carrying another hold's release, whose reads wait for that hold's worker
// (two workers could otherwise each wait for the other).
func (cl *Client) getReady(ctx context.Context, channel string) (*conn, error) {
	c, err := cl.get(ctx, channel)
	if err != nil || !c.draining() {
		return c, err
	}
	addr := c.addr
	cl.put(c)
	return cl.dialNode(ctx, addr)
}

// nodeConn returns an idle connection to addr or dials one.
func (cl *Client) nodeConn(ctx context.Context, addr string) (*conn, error) {
	if c := cl.idleConn(addr); c != nil {
		return c, nil
	}
	return cl.dialNode(ctx, addr)
}

// idleConn returns an idle connection to addr, or nil.
func (cl *Client) idleConn(addr string) *conn {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	idle := cl.idle[addr]
	for n := len(idle); n > 0; n = len(idle) {
		c := idle[n-1]
		idle[n-1] = nil
		idle = idle[:n-1]
		if c.failed() == nil {
			cl.idle[addr] = idle
			return c
		}
	}
	delete(cl.idle, addr)
	return nil
}

// dialNode dials the server at addr.
func (cl *Client) dialNode(ctx context.Context, addr string) (*conn, error) {
	cl.mu.Lock()
	closed := cl.closed
	cl.mu.Unlock()
	if closed {
		return nil, ErrClientClosed
	}
	dc := cl.dc
	dc.addr = addr
	c, err := dialConn(ctx, dc)
	if err != nil {
		return nil, err
	}
	c.addr = addr
	cl.noteServer(c.server)
	return c, nil
}

// noteServer records the server a dial met (see Client.server), and
// forgets what the Client learnt of its servers when another one answers:
// a Redis upgraded or replaced under the same address, whose ACL may
// differ too. An empty server (RESP2: no HELLO) tells nothing.
func (cl *Client) noteServer(server string) {
	if server == "" {
		return
	}
	cl.mu.Lock()
	changed := cl.server != "" && cl.server != server
	cl.server = server
	cl.mu.Unlock()
	if changed {
		cl.caps.reset()
	}
}

// dropIdle closes the idle connections to addr.
func (cl *Client) dropIdle(addr string) {
	cl.mu.Lock()
	idle := cl.idle[addr]
	delete(cl.idle, addr)
	cl.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// put returns a connection after use; it must be unsubscribed, its name
// cleared and no reply outstanding. A failed connection is closed.
func (cl *Client) put(c *conn) {
	if c == nil {
		return
	}
	cl.mu.Lock()
	if c.failed() == nil && !cl.closed && len(cl.idle[c.addr]) < cl.maxIdle {
		c.onPush = nil
		c.idleSince = time.Now()
		cl.idle[c.addr] = append(cl.idle[c.addr], c)
		if cl.idleTimeout > 0 && cl.idleTimer == nil {
			cl.idleTimer = time.AfterFunc(cl.idleTimeout, cl.expire)
		}
		c = nil
	}
	cl.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// expire closes the connections idle for idleTimeout or longer, and runs
// again when the next one is due; it is the idle timer's callback, so an
// idle Client costs a timer, no goroutine.
func (cl *Client) expire() {
	now := time.Now()
	var old []*conn
	cl.mu.Lock()
	next := time.Duration(0)
	for addr, conns := range cl.idle {
		i := 0
		for i < len(conns) && now.Sub(conns[i].idleSince) >= cl.idleTimeout {
			i++
		}
		old = append(old, conns[:i]...)
		if i == len(conns) {
			delete(cl.idle, addr)
			continue
		}
		cl.idle[addr] = slices.Delete(conns, 0, i)
		if due := cl.idleTimeout - now.Sub(cl.idle[addr][0].idleSince); next == 0 || due < next {
			next = due
		}
	}
	cl.idleTimer = nil
	if next > 0 && !cl.closed {
		cl.idleTimer = time.AfterFunc(next, cl.expire)
	}
	cl.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// CloseIdleConnections closes the Client's idle connections; those in use
// stay open. The Client stays usable.
func (cl *Client) CloseIdleConnections() {
	cl.mu.Lock()
	idle := cl.idle
	cl.idle = make(map[string][]*conn)
	if cl.idleTimer != nil {
		cl.idleTimer.Stop()
		cl.idleTimer = nil
	}
	cl.mu.Unlock()
	for _, conns := range idle {
		for _, c := range conns {
			c.close()
		}
	}
}

// defaultClients are the Clients of the Locks made without Config.Client,
// one per connection setting, so that such Locks keep warm connections
// across holds and share them, as net/http's DefaultTransport does per
// host. It is the package's only global state: it holds only idle
// connections, each closed after DefaultIdleTimeout (see
// CloseIdleConnections).
var defaultClients = struct {
	mu sync.Mutex // guards m
	m  map[clientKey]*Client
}{m: make(map[clientKey]*Client)}

// clientKey is the connection setting of a Config without Client.
type clientKey struct {
	url, addr, username, password string
	db                            int
	tls                           *tls.Config
	dialTimeout                   time.Duration
	cluster, sentinels, master    string
}

// defaultClient returns the shared Client for the connection settings of
// cfg, which has no Client.
func defaultClient(cfg Config) (*Client, error) {
	k := clientKey{url: cfg.URL, addr: cfg.Addr, username: cfg.Username, password: cfg.Password, db: cfg.DB,
		tls: cfg.TLSConfig, dialTimeout: cfg.DialTimeout, cluster: strings.Join(cfg.ClusterAddrs, ","),
		sentinels: strings.Join(cfg.SentinelAddrs, ","), master: cfg.MasterName}
	defaultClients.mu.Lock()
	defer defaultClients.mu.Unlock()
	if cl := defaultClients.m[k]; cl != nil {
		return cl, nil
	}
	cl, err := NewClient(cfg.clientConfig())
	if err != nil {
		return nil, err
	}
	if cl.sentinel != nil {
		// Only a watched connection is closed at a failover, and the
		// watch would have to run while connections are idle: none are
		// kept.
		cl.maxIdle = 0
	}
	defaultClients.m[k] = cl
	return cl, nil
}

// CloseIdleConnections closes the idle connections that Locks made
// without Config.Client keep for their next acquisitions (see
// DefaultIdleTimeout); connections of held locks stay open. A long-running
// process that is done with its locks may call it to close them at once.
func CloseIdleConnections() {
	defaultClients.mu.Lock()
	cls := make([]*Client, 0, len(defaultClients.m))
	for _, cl := range defaultClients.m {
		cls = append(cls, cl)
	}
	defaultClients.mu.Unlock()
	for _, cl := range cls {
		cl.CloseIdleConnections()
	}
}

// pubsub returns the commands locks use on this Client's servers: sharded
// pub/sub on a cluster, where classic pub/sub counts the subscribers of
// one node only.
func (cl *Client) pubsub() pubsub {
	if cl.cluster != nil {
		return sharded
	}
	return classic
}

// fenceKey returns the key of the fencing counter of channel.
func (cl *Client) fenceKey(channel string) string {
	return cl.sideName(channel, "fence")
}

// bellKey returns the key of the release bell of channel: a list a Go
// holder's Release pushes to, and waiters block on with BLPOP.
func (cl *Client) bellKey(channel string) string {
	return cl.sideName(channel, "released")
}

// serves reports whether c is connected to the server that serves
// channel as far as the Client knows now, without asking anyone: false
// once a cluster slot moved or the sentinels named another primary, so that
// a connection kept across tries is replaced.
func (cl *Client) serves(c *conn, channel string) bool {
	switch {
	case cl.cluster != nil:
		a := cl.cluster.current(hashSlot(channel))
		return a == "" || a == c.addr
	case cl.sentinel != nil:
		return cl.sentinel.current() == c.addr
	}
	return true
}

// redirected reports whether err is a MOVED or ASK redirect of a cluster
// node, and learns the slot's new master from a MOVED.
func (cl *Client) redirected(err error, c *conn) bool {
	code, ok := isRedirect(err)
	if !ok || cl.cluster == nil {
		return false
	}
	if code == "MOVED" {
		var re resp.Error
		errors.As(err, &re)
		cl.cluster.moved(re, c.addr)
	}
	return true
}

// replyChannel returns a fresh channel for the answers to a ping about
// channel, in portalocker 4's form "<channel>-<uuid4 hex>", which asks
// protocol-1 holders for their holder records (see pingProtocol).
func (cl *Client) replyChannel(channel string) string {
	return cl.sideName(channel, newHolderID())
}

// sideName names a channel or key that goes with the lock channel (ping
// replies, the fencing counter, the release bell): "<channel>-<suffix>",
// or on a cluster a name in the lock channel's hash slot (see sameSlot),
// so that the lock's node serves it.
func (cl *Client) sideName(channel, suffix string) string {
	if cl.cluster != nil {
		return sameSlot(channel, suffix)
	}
	return channel + "-" + suffix
}

// capabilities is what a Client learnt of its servers as it used them.
type capabilities struct {
	// subCmds: a subscribed RESP3 connection may run commands other than
	// the SUBSCRIBE family (real Redis 6+); not miniredis, nor RESP2.
	subCmds support
	// kill: CLIENT LIST and CLIENT KILL work, so silent holders can be
	// killed; not miniredis, nor an ACL user without them.
	kill support
	// bell: a waiter may block on the release bell; not where an ACL
	// refuses its commands (waiters then poll).
	bell support
	// wake: a waiter's wake push is allowed; where an ACL refuses it, a
	// waiter's pause ends at the server's BLPOP timeout, which an idle
	// Redis applies only every 1/hz seconds.
	wake support
	// yield: the yield window's key may be read and set (see bell.go);
	// not where an ACL or the server refuses the scripts.
	yield support
}

// reset forgets everything found out.
func (cs *capabilities) reset() {
	for _, s := range []*support{&cs.subCmds, &cs.kill, &cs.bell, &cs.wake, &cs.yield} {
		s.v.Store(0)
	}
}

// support is whether a server does one thing: unknown until found out.
type support struct{ v atomic.Int32 } // 0 unknown, 1 yes, -1 no

func (s *support) yes() bool { return s.v.Load() > 0 }
func (s *support) no() bool  { return s.v.Load() < 0 }

// set records what was found.
func (s *support) set(ok bool) {
	if ok {
		s.v.Store(1)
	} else {
		s.v.Store(-1)
	}
}
