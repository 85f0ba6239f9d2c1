package pubsublock

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// spec is what a Lock is about, derived once by New from the channel and
// the Config: the names it uses on the server, the commands it sends, its
// timings, its Client and logger. The phases (attempt, hold, check) take a
// spec, not the Lock, and nothing changes it after New.
type spec struct {
	channel  string
	name     string   // client name of the holder connection: channel + "-lock"
	fence    string   // key of the fencing counter: channel + "-fence" (see Client.fenceKey)
	bell     string   // key of the release bell: channel + "-released" (see bell.go)
	ring     []string // the command that rings the bell (see ringCmd)
	waiting  string   // reply channel of a waiter's announcement: channel + "-waiting"
	announce string   // a waiter's announcement: a ping answered on waiting
	cfg      Config   // with defaults applied
	cl       *Client
	ps       pubsub // classic, or sharded on a cluster
	log      *slog.Logger
}

// newSpec derives the spec of a lock on channel; cfg has its defaults.
func newSpec(channel string, cfg Config, cl *Client) *spec {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bell, waiting := cl.bellKey(channel), cl.sideName(channel, "waiting") // on a cluster, searched for once
	return &spec{
		channel:  channel,
		name:     channel + "-lock",
		fence:    cl.fenceKey(channel),
		bell:     bell,
		ring:     ringCmd(bell, cfg.CheckInterval),
		waiting:  waiting,
		announce: pingMessage(waiting),
		cfg:      cfg,
		cl:       cl,
		ps:       cl.pubsub(),
		log:      log.With("channel", channel),
	}
}

// pubsub names the commands and push kinds of classic or sharded pub/sub.
type pubsub struct {
	subscribe, unsubscribe, publish string // SUBSCRIBE, UNSUBSCRIBE, PUBLISH or their S forms
	numsub                          string // PUBSUB subcommand: NUMSUB or SHARDNUMSUB
	subscribed, unsubscribed        string // confirmation push kinds
	message                         string // message push kind
}

// pingMessage is the JSON a contender publishes, byte for byte as Python's
// json.dumps writes it for an ASCII channel.
func pingMessage(replyCh string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(replyCh) // a string always encodes
	return `{"response_channel": ` + strings.TrimSuffix(b.String(), "\n") + `, "message": "ping"}`
}

// maxPing is the largest message parsed as a ping; anything longer is
// ignored. A real ping is about 80 bytes.
const maxPing = 4096

// ping is the JSON a contender publishes on the lock channel.
type ping struct {
	ResponseChannel string `json:"response_channel"`
}

// answerStamp is the answer to a ping: the Unix time in seconds with 7
// decimals, as Python prints time.time().
func answerStamp() string {
	return strconv.FormatFloat(float64(time.Now().UnixNano())/1e9, 'f', 7, 64)
}

// parsePing returns the response_channel of a ping: a JSON object of at
// most maxPing bytes with a non-empty string response_channel. Other keys
// (portalocker sends "message": "ping") are ignored.
func parsePing(payload []byte) (replyCh string, ok bool) {
	if len(payload) > maxPing {
		return "", false
	}
	var p ping
	if err := json.Unmarshal(payload, &p); err != nil || p.ResponseChannel == "" {
		return "", false
	}
	return p.ResponseChannel, true
}

// numsub counts the subscribers of the lock's channel.
func (s *spec) numsub(ctx context.Context, c *conn) (int64, error) {
	v, err := c.do(ctx, "PUBSUB", s.ps.numsub, s.channel)
	if err != nil {
		return 0, err
	}
	return numsubCount(v, s.channel)
}

// numsubCount reads the count of a PUBSUB NUMSUB (or SHARDNUMSUB) reply
// for one channel: a flat array [channel, count] in RESP2 and RESP3.
func numsubCount(v resp.Value, channel string) (int64, error) {
	if (v.Type != resp.TypeArray && v.Type != resp.TypeMap) || len(v.Elems) != 2 ||
		string(v.Elems[0].Str) != channel || v.Elems[1].Type != resp.TypeInteger {
		return 0, fmt.Errorf("%w: unexpected NUMSUB reply %.100s", resp.ErrProtocol, v.String())
	}
	return v.Elems[1].Int, nil
}

var (
	classic = pubsub{"SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH", "NUMSUB", "subscribe", "unsubscribe", "message"}
	sharded = pubsub{"SSUBSCRIBE", "SUNSUBSCRIBE", "SPUBLISH", "SHARDNUMSUB", "ssubscribe", "sunsubscribe", "smessage"}
)
