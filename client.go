package pubsublock

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Client is a source of connections to one Redis server, shared by any
// number of Locks: the Go counterpart of the connection argument of
// portalocker's RedisLock. It dials lazily, and keeps up to
// ClientConfig.MaxIdle connections warm between acquisitions, so a lock
// taken through a Client skips the dial and the handshake.
//
// A Client is safe for concurrent use. Locks never close it; Close it when
// every Lock using it is released.
type Client struct {
	dc      dialConfig
	maxIdle int

	mu     sync.Mutex // guards idle and closed
	idle   []*conn
	closed bool

	// subCmds is 1 when a subscribed RESP3 connection may run commands
	// other than the SUBSCRIBE family (real Redis 6+), 0 until known,
	// -1 when it may not (miniredis, RESP2).
	subCmds atomic.Int32
}

// ErrClientClosed is returned when a closed Client is asked for a
// connection.
var ErrClientClosed = errors.New("pubsublock: client closed")

// NewClient returns a Client for the server cfg describes. It checks the
// settings but does not dial.
func NewClient(cfg ClientConfig) (*Client, error) {
	dc, err := cfg.dialConfig()
	if err != nil {
		return nil, err
	}
	maxIdle := cfg.MaxIdle
	if maxIdle == 0 {
		maxIdle = 16
	}
	return &Client{dc: dc, maxIdle: max(maxIdle, 0)}, nil
}

// Close closes the idle connections. Connections in use by held locks stay
// open until those locks are released, and are then closed.
func (cl *Client) Close() error {
	cl.mu.Lock()
	idle := cl.idle
	cl.idle, cl.closed = nil, true
	cl.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
	return nil
}

// get returns an idle connection or dials a new one, to the server that
// serves channel.
func (cl *Client) get(ctx context.Context, channel string) (*conn, error) {
	cl.mu.Lock()
	if cl.closed {
		cl.mu.Unlock()
		return nil, ErrClientClosed
	}
	for n := len(cl.idle); n > 0; n = len(cl.idle) {
		c := cl.idle[n-1]
		cl.idle = cl.idle[:n-1]
		if c.failed() == nil {
			cl.mu.Unlock()
			return c, nil
		}
	}
	cl.mu.Unlock()
	return dialConn(ctx, cl.dc)
}

// put returns a connection after use; it must be unsubscribed, its name
// cleared and no reply outstanding. A failed connection is closed.
func (cl *Client) put(c *conn) {
	if c == nil {
		return
	}
	cl.mu.Lock()
	if c.failed() == nil && !cl.closed && len(cl.idle) < cl.maxIdle {
		c.onPush = nil
		cl.idle = append(cl.idle, c)
		c = nil
	}
	cl.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// pubsub returns the commands locks use on this Client's server.
func (cl *Client) pubsub() pubsub { return classic }

// replyChannel returns a fresh channel for the answer to a ping about
// channel, in portalocker's form "<channel>-<random float>".
func (cl *Client) replyChannel(channel string) string {
	return cl.sideChannel(channel, strconv.FormatFloat(rand.Float64(), 'f', -1, 64))
}

// noticeChannel is where a Go holder announces its release, so waiters
// try at once instead of at their next poll.
func (cl *Client) noticeChannel(channel string) string {
	return cl.sideChannel(channel, "released")
}

// sideChannel names a channel that goes with the lock channel (ping
// replies, release notices): "<channel>-<suffix>", kept in the lock
// channel's hash slot on a cluster.
func (cl *Client) sideChannel(channel, suffix string) string {
	return channel + "-" + suffix
}

// pubsub names the commands and push kinds of classic or sharded pub/sub.
type pubsub struct {
	subscribe, unsubscribe, publish string // SUBSCRIBE, UNSUBSCRIBE, PUBLISH or their S forms
	numsub                          string // PUBSUB subcommand: NUMSUB or SHARDNUMSUB
	subscribed, unsubscribed        string // confirmation push kinds
	message                         string // message push kind
}

var (
	classic = pubsub{"SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "NUMSUB", "subscribe", "unsubscribe", "message"}
	sharded = pubsub{"SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH", "SHARDNUMSUB", "ssubscribe", "sunsubscribe", "smessage"}
)

// pingMessage is the JSON a contender publishes, byte for byte as Python's
// json.dumps writes it for an ASCII channel.
func pingMessage(replyCh string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(replyCh) // a string always encodes
	return `{"response_channel": ` + strings.TrimSuffix(b.String(), "\n") + `, "message": "ping"}`
}
