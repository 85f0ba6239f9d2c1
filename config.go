package pubsublock

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// Config configures a [Lock]. The zero value locks on a Redis at
// 127.0.0.1:6379 with portalocker's defaults.
//
// How the parameters of portalocker's RedisLock map here:
//
//   - channel: the channel argument of [New].
//   - connection: Client, a [Client] shared by many locks; the lock never
//     closes it.
//   - timeout: Timeout; check_interval: CheckInterval; fail_when_locked:
//     FailWhenLocked; unavailable_timeout: UnavailableTimeout.
//   - redis_kwargs: URL, Addr, Username, Password, DB, TLSConfig,
//     DialTimeout; its health_check_interval: HealthCheckInterval.
//   - thread_sleep_time has no equivalent: the goroutine that owns the
//     subscribed connection blocks in a read and wakes when a message
//     arrives, so there is no polling to tune.
type Config struct {
	// URL locates the server: redis://[user:password@]host[:port][/db],
	// rediss:// for TLS, or unix://[user:password@]/path/to/socket[?db=N].
	// The query parameter protocol=2 makes the client speak RESP2 only.
	// The user info ends at the last '@', so a password may hold '/', '?',
	// '#', '@' and ':' as they are; '%' starts a percent-encoding (%25 for
	// a '%' itself). Errors about the URL never repeat the user info.
	// It may not be combined with Addr.
	URL string
	// Addr is host:port, or the path of a unix socket. Default
	// 127.0.0.1:6379 when URL is empty too.
	Addr string
	// Username and Password authenticate (ACL user, or the default user
	// when Username is empty). They override those of URL.
	Username, Password string
	// DB is the database to SELECT. Pub/sub ignores databases, so locks on
	// the same channel in different DBs exclude each other; only the fence
	// counter lives in DB.
	DB int
	// TLSConfig turns on TLS with this configuration (rediss:// turns it on
	// with defaults).
	TLSConfig *tls.Config
	// DialTimeout bounds dialing and the handshake, and then every command's
	// round trip whose context has no earlier deadline: a server that stops
	// answering is taken for dead, its connection closed, and the call
	// returns an error instead of hanging. Default 5s.
	DialTimeout time.Duration

	// ClusterAddrs turns on cluster mode. They are host:port addresses of
	// some nodes of a Redis Cluster (7.0 or later), the seeds from which
	// the lock learns which master serves each hash slot (CLUSTER SHARDS,
	// or CLUSTER SLOTS). The lock then runs on the master of its channel's
	// slot with sharded pub/sub (SSUBSCRIBE, SPUBLISH, PUBSUB SHARDNUMSUB),
	// following MOVED and ASK redirects, at most 5 per command. A slot
	// migration or a failover of that master ends the hold (see Lost), and
	// so does, at the next health check, the master's cluster_state turning
	// to fail when it is cut off from the other masters (RESP3 only). The
	// URL form is redis+cluster://[user:password@]host1:port1,host2:port2
	// (rediss+cluster:// for TLS). Not with Addr, a plain URL, DB or the
	// sentinel fields.
	//
	// Cluster mode is not wire-compatible with Python portalocker 2.x,
	// which uses classic pub/sub and is unsafe on a cluster (PUBSUB NUMSUB
	// counts the subscribers of one node only): never let both lock the
	// same channel on a cluster.
	ClusterAddrs []string
	// SentinelAddrs turns on sentinel mode: host:port addresses of the
	// Redis Sentinels that monitor the primary named MasterName. The lock
	// runs on the primary they name, after ROLE has confirmed it. Pub/sub
	// state is not replicated, so a failover ends every hold: the lock's
	// Client watches the sentinels and closes its connections to the old
	// primary as soon as a failover of it begins, and waits for the new
	// primary before it locks again. The URL form is
	// redis+sentinel://[user:password@]host1:port1,host2:port2/mastername[?db=N]
	// (rediss+sentinel:// for TLS; port 26379 when omitted). User and
	// password are those of the Redis servers; the sentinels are asked
	// without authentication. Not with Addr or a plain URL.
	SentinelAddrs []string
	// MasterName is the name under which the sentinels monitor the
	// primary; it is needed with SentinelAddrs.
	MasterName string

	// Client is a shared source of connections to use instead of dialing
	// by URL or Addr, which must then be empty. The lock never closes it.
	//
	// Without it, the Lock uses a Client of the package's own for its
	// connection settings, shared by every Lock made with the same
	// settings, as net/http's DefaultTransport is: it keeps up to 16 idle
	// connections per server warm between holds, so the second
	// acquisition dials nothing, and closes each after DefaultIdleTimeout.
	// A long-running process thus sees a few idle connections to its
	// Redis between holds; CloseIdleConnections closes them at once.
	// In sentinel mode it keeps none. Give a Client of your own for your
	// own limits (ClientConfig.MaxIdle, IdleTimeout) or to close it.
	Client *Client

	// HealthCheckInterval is how often the holder PINGs its subscribed
	// connection; an unanswered PING (within UnavailableTimeout) ends the
	// hold. Default 10s, portalocker's health_check_interval; negative
	// disables the check.
	HealthCheckInterval time.Duration
	// Timeout is how long Acquire waits for the lock before it returns
	// ErrAlreadyLocked. Default 5s; negative waits until the context ends.
	// A server that stops answering ends Acquire at most UnavailableTimeout
	// later, with an error matching context.DeadlineExceeded.
	Timeout time.Duration
	// CheckInterval is the pause between tries while waiting, jittered by
	// ±25% so contenders that start together do not stay in step. Default
	// 250ms. A Go holder's release wakes the first waiter at once (the
	// release bell, see the package documentation); the tries at the end
	// of each pause find holders that crashed, and Python holders, which
	// ring no bell. A release's bell expires after the releasing Lock's
	// CheckInterval.
	CheckInterval time.Duration
	// FailWhenLocked makes Acquire return ErrAlreadyLocked after the first
	// failed try instead of waiting.
	FailWhenLocked bool
	// UnavailableTimeout is how long a contender waits for the holder to
	// answer a ping before it kills the holder's connection, and how long
	// the holder waits for its own health-check PING, and for the replies
	// to its release. Default 1s, as in portalocker. A holder with 100ms
	// or more may answer a ping up to 1ms late (a quiet hold starts its
	// reader 1ms after Acquire: see "How it works" in the README); one
	// below 100ms starts it at once. If a lock's contenders use an
	// UnavailableTimeout below 100ms, give its Go holders one below 100ms
	// too (though a GC pause or a busy host can hold up any holder's
	// answer for milliseconds).
	UnavailableTimeout time.Duration
	// Protocol is the portalocker lock protocol a Go holder speaks, which
	// decides the name of its connection and how it answers pings:
	//
	//   - 0, the default: the name "<channel>-lock", and the Unix time as
	//     the answer to every ping, as portalocker 2.x and 3.x, and
	//     pubsublock before protocol 1. Every contender that can kill a
	//     frozen holder kills it: portalocker 4 and pubsublock of any
	//     version. Portalocker 4 counts it as a legacy holder, exclusive.
	//   - 1, portalocker 4's protocol: the name "<channel>-lock-<holder
	//     id>" (see HolderID), and its holder record, {"holder_id": id,
	//     "mode": "exclusive", "protocol": 1, "client": "pubsublock"}, as
	//     the answer to the pings of portalocker 4 and of pubsublock, whose
	//     reply channels end in a 32-hex id; the pings of portalocker 2.x
	//     and 3.x, which take any message for an answer, get the Unix
	//     time. Portalocker 4 sees it as a peer (and kills it when it
	//     freezes), and so do pubsublock contenders of this version;
	//     pubsublock contenders of earlier versions kill only holders
	//     named "<channel>-lock", so they cannot take over from a frozen
	//     one. Shared locks speak it.
	//
	// A Go contender kills frozen holders of both names, and Go holders of
	// either protocol, and Python ones of any version, exclude each other.
	Protocol int
	// Shared makes the Lock a reader's: any number of shared holders hold
	// the lock at once, Go Locks with Shared and portalocker 4's RedisLock
	// with flags=LockFlags.SHARED alike, while an exclusive holder (a Lock
	// without Shared, any portalocker's default) holds it alone. A writer
	// that waits keeps new readers out until it has had the lock, so
	// readers cannot starve it. A shared Lock speaks protocol 1 (see
	// Protocol), whatever Protocol says: portalocker 2.x and 3.x, which do
	// not know shared locks, see each reader as an exclusive holder and
	// wait for all of them. Lost, Token, the health check and cluster mode
	// work as for exclusive holds.
	Shared bool
	// Fencing hands out a fencing token with each acquisition (see
	// Lock.Token), from INCR on the key "<channel>-fence".
	Fencing bool
	// Logger receives debug and warning records about the lock's life.
	// Nil: silent.
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultHealthCheckInterval = 10 * time.Second
	DefaultTimeout             = 5 * time.Second
	DefaultCheckInterval       = 250 * time.Millisecond
	DefaultUnavailableTimeout  = time.Second
	DefaultDialTimeout         = 5 * time.Second
	DefaultAddr                = "127.0.0.1:6379"
	// DefaultIdleTimeout is how long a Client keeps an idle connection
	// (ClientConfig.IdleTimeout), the Clients of Locks made without
	// Config.Client included.
	DefaultIdleTimeout = 60 * time.Second
)

// ErrConfig is matched (errors.Is) by every error about an invalid
// channel name or Config.
var ErrConfig = errors.New("pubsublock: invalid config")

func configErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
}

// withDefaults fills in the defaults of the lock's own settings and checks
// them. The connection settings are checked once, where they become a
// dialConfig (ClientConfig.dialConfig), whether New builds the Client from
// them or the caller did.
func (c Config) withDefaults() (Config, error) {
	if c.HealthCheckInterval == 0 {
		c.HealthCheckInterval = DefaultHealthCheckInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CheckInterval == 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.UnavailableTimeout == 0 {
		c.UnavailableTimeout = DefaultUnavailableTimeout
	}
	switch {
	case c.CheckInterval < 0:
		return c, configErr("negative CheckInterval %v", c.CheckInterval)
	case c.UnavailableTimeout < 0:
		return c, configErr("negative UnavailableTimeout %v", c.UnavailableTimeout)
	case c.Protocol != 0 && c.Protocol != 1:
		return c, configErr("Protocol %d: want 0 or 1", c.Protocol)
	case c.Client != nil && (c.URL != "" || c.Addr != "" || c.Username != "" || c.Password != "" || c.DB != 0 || c.TLSConfig != nil ||
		c.ClusterAddrs != nil || c.SentinelAddrs != nil || c.MasterName != ""):
		return c, configErr("Client given together with connection settings")
	}
	return c, nil
}

// ClientConfig says how a [Client] reaches the server. Its fields mean what
// the fields of the same names in [Config] mean.
type ClientConfig struct {
	URL, Addr          string
	Username, Password string
	DB                 int
	TLSConfig          *tls.Config
	DialTimeout        time.Duration
	ClusterAddrs       []string
	SentinelAddrs      []string
	MasterName         string
	// ClientName names the Client's connections while they do not hold a
	// lock (a holder's connection is named "<channel>-lock"). Default: no
	// name.
	ClientName string
	// MaxIdle is how many idle connections the Client keeps warm for the
	// next acquisition, per server. Default 16; negative keeps none.
	MaxIdle int
	// IdleTimeout is how long an idle connection is kept before it is
	// closed. Default DefaultIdleTimeout; negative keeps them until Close.
	IdleTimeout time.Duration
	// Limits bound what is read from the server (see resp.Limits): each
	// aggregate, and each reply as a whole, in values and bytes, so that a
	// hostile server cannot make a reply cost memory out of proportion to
	// the bytes it sent. Zero fields take resp's defaults, which fit a
	// lock's largest reply (CLUSTER SHARDS of a cluster of about a thousand
	// nodes).
	Limits resp.Limits
	// Dial, when set, opens connections instead of a net.Dialer: for
	// proxies, custom resolvers or tests. TLS, if configured, is layered on
	// top of the connection it returns.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// clientConfig is the ClientConfig of the Client New builds for a Config
// without one: the one conversion between the two.
func (c Config) clientConfig() ClientConfig {
	return ClientConfig{URL: c.URL, Addr: c.Addr, Username: c.Username, Password: c.Password,
		DB: c.DB, TLSConfig: c.TLSConfig, DialTimeout: c.DialTimeout,
		ClusterAddrs: c.ClusterAddrs, SentinelAddrs: c.SentinelAddrs, MasterName: c.MasterName}
}

// dialConfig resolves the URL and fields into where and how to dial.
func (cc ClientConfig) dialConfig() (dialConfig, error) {
	dc := dialConfig{network: "tcp", addr: DefaultAddr, dialTimeout: cc.DialTimeout, limits: cc.Limits, dial: cc.Dial}
	if dc.dialTimeout == 0 {
		dc.dialTimeout = DefaultDialTimeout
	}
	if cc.DialTimeout < 0 {
		return dc, configErr("negative DialTimeout %v", cc.DialTimeout)
	}
	if cc.URL != "" && cc.Addr != "" {
		return dc, configErr("both URL and Addr given")
	}
	if cc.URL != "" {
		var err error
		if dc, _, err = parseURL(cc.URL, dc); err != nil {
			return dc, err
		}
	}
	if cc.Addr != "" {
		dc.addr = cc.Addr
		if strings.HasPrefix(cc.Addr, "/") || strings.HasPrefix(cc.Addr, "./") {
			dc.network = "unix"
		} else if _, _, err := net.SplitHostPort(cc.Addr); err != nil {
			return dc, configErr("Addr %q: want host:port or a unix socket path", cc.Addr)
		}
	}
	if cc.Username != "" {
		dc.username = cc.Username
	}
	if cc.Password != "" {
		dc.password = cc.Password
	}
	if cc.DB != 0 {
		dc.db = cc.DB
	}
	if cc.ClientName != "" {
		if err := checkName(cc.ClientName); err != nil {
			return dc, configErr("ClientName %w", err)
		}
		dc.name = cc.ClientName
	}
	if cc.TLSConfig != nil {
		dc.tls = cc.TLSConfig
	}
	if dc.db < 0 {
		return dc, configErr("negative DB %d", dc.db)
	}
	return dc, nil
}

// checkChannel refuses channel names that cannot make a valid client name
// "<channel>-lock".
func checkChannel(ch string) error {
	if ch == "" {
		return configErr("empty channel name")
	}
	if err := checkName(ch); err != nil {
		return configErr("channel name %w", err)
	}
	return nil
}

// checkName refuses what CLIENT SETNAME refuses: spaces, newlines and every
// byte outside '!'..'~'; and names over 1024 bytes.
func checkName(s string) error {
	if len(s) > 1024 {
		return errors.New("longer than 1024 bytes")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < '!' || c > '~' {
			return fmt.Errorf("%q: byte %d (%q) is not printable ASCII other than space, as CLIENT SETNAME requires", s, i, c)
		}
	}
	return nil
}

// topology says which servers a Client talks to beyond one address: the
// seeds of a cluster, or the sentinels of a primary.
type topology struct {
	cluster   []string // seed nodes; nil outside cluster mode
	sentinels []string // nil outside sentinel mode
	master    string   // name of the primary the sentinels monitor
}

// topology resolves the cluster and sentinel settings of the URL and
// fields, and checks that they fit together.
func (cc ClientConfig) topology() (topology, error) {
	var t topology
	if cc.URL != "" {
		var err error
		if _, t, err = parseURL(cc.URL, dialConfig{}); err != nil {
			return t, err
		}
	}
	var err error
	if cc.ClusterAddrs != nil {
		if cc.URL != "" {
			return t, configErr("both URL and ClusterAddrs given")
		}
		if t.cluster, err = checkAddrs("ClusterAddrs", cc.ClusterAddrs); err != nil {
			return t, err
		}
	}
	if cc.SentinelAddrs != nil {
		if cc.URL != "" {
			return t, configErr("both URL and SentinelAddrs given")
		}
		if t.sentinels, err = checkAddrs("SentinelAddrs", cc.SentinelAddrs); err != nil {
			return t, err
		}
	}
	if cc.MasterName != "" {
		if t.master != "" && t.master != cc.MasterName {
			return t, configErr("URL and MasterName name different masters")
		}
		t.master = cc.MasterName
	}
	switch {
	case t.cluster != nil && t.sentinels != nil:
		return t, configErr("both cluster and sentinel settings given")
	case (t.cluster != nil || t.sentinels != nil) && cc.Addr != "":
		return t, configErr("Addr given together with cluster or sentinel settings")
	case t.sentinels != nil && t.master == "":
		return t, configErr("SentinelAddrs given without MasterName")
	case t.sentinels == nil && t.master != "":
		return t, configErr("MasterName given without SentinelAddrs")
	case t.cluster != nil && cc.DB != 0:
		return t, configErr("DB %d: a Redis Cluster has only database 0", cc.DB)
	}
	return t, nil
}

// checkAddrs checks a list of host:port addresses and copies it.
func checkAddrs(field string, addrs []string) ([]string, error) {
	if len(addrs) == 0 {
		return nil, configErr("%s is empty", field)
	}
	for _, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || !isPort(port) {
			return nil, configErr("%s: %q is not host:port", field, a)
		}
	}
	return append([]string(nil), addrs...), nil
}

func isPort(s string) bool {
	_, err := strconv.ParseUint(s, 10, 16)
	return err == nil
}
