package pubsublock

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// spec is what a Lock is about, derived once by New from the channel and
// the Config: the names it uses on the server, the commands it sends, its
// timings, its Client and logger. The phases (attempt, hold, check) take a
// spec, not the Lock, and nothing changes it after New.
type spec struct {
	channel string
	name    string // client name of the holder connection: legacyName, or legacyName + "-" + id
	// id is the protocol-1 holder id (see Config.Protocol); "" with
	// protocol 0.
	id string
	// self is the id the Lock's answers carry, which tells its own answer
	// among those to its probes: id, or with protocol 0 one of the same
	// form that only pubsublock reads (see answerFor).
	self   string
	shared bool // a reader's lock (Config.Shared)
	// legacyName is channel + "-lock", the holder name of portalocker 2.x
	// and 3.x (see holderOf).
	legacyName string
	fence      string   // key of the fencing counter: channel + "-fence" (see Client.fenceKey)
	bell       string   // key of the release bell: channel + "-released" (see bell.go)
	ring       []string // the command that rings the bell (see ringCmd)
	// yieldKey is the key of the yield window for portalocker's pollers,
	// which yieldCheck reads (see bell.go).
	yieldKey   string
	yieldCheck []string
	waiting    string // reply channel of a waiter's announcement: channel + "-waiting"
	announce   string // a waiter's announcement: a ping answered on waiting
	cfg        Config // with defaults applied
	cl         *Client
	lazyStart  time.Duration // see lazyStart; tests change it
	// yieldUntil is when the yield window that the Lock's last release
	// opened closes (Unix nanoseconds; see bell.go): its next Acquire
	// waits it out. The one field that changes, set by holds (see
	// yielded).
	yieldUntil atomic.Int64
	ps         pubsub // classic, or sharded on a cluster
	log        *slog.Logger
}

// newSpec derives the spec of a lock on channel; cfg has its defaults.
func newSpec(channel string, cfg Config, cl *Client) *spec {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bell, waiting := cl.bellKey(channel), cl.sideName(channel, "waiting") // on a cluster, searched for once
	yieldKey := cl.sideName(channel, "wake-yield")
	name, id, self := channel+"-lock", "", newHolderID()
	if cfg.Protocol == 1 || cfg.Shared {
		id = self
		name += "-" + id
	}
	return &spec{
		channel:    channel,
		name:       name,
		id:         id,
		self:       self,
		shared:     cfg.Shared,
		legacyName: channel + "-lock",
		fence:      cl.fenceKey(channel),
		bell:       bell,
		ring:       ringCmd(bell, cfg.CheckInterval),
		yieldKey:   yieldKey,
		yieldCheck: []string{"EVAL", yieldCheckScript, "1", yieldKey, yieldValue},
		waiting:    waiting,
		announce:   pingMessage(waiting),
		cfg:        cfg,
		cl:         cl,
		ps:         cl.pubsub(),
		log:        log.With("channel", channel),
		lazyStart:  lazyStart,
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

// hearsBell reports whether the contender that sent the ping payload,
// whose reply channel is replyCh, waits for the release bell: a waiter's
// announcement, or a ping of pubsublock (pingMessage's key order, and a
// reply channel that ends in a 32-hex id). portalocker's contenders, 2.x
// to 4.x, poll.
func (s *spec) hearsBell(payload []byte, replyCh string) bool {
	return replyCh == s.waiting ||
		strings.HasPrefix(string(payload), `{"response_channel": "`) && pingProtocol(s.channel, replyCh) == 1
}

// statusMessage is the ping of Lock.Status: as pingMessage, with
// "message": "status", which Go holders do not take for a waiting
// contender and portalocker's holders (which read only response_channel)
// answer as any ping.
func statusMessage(replyCh string) string {
	return strings.Replace(pingMessage(replyCh), `"message": "ping"`, `"message": "status"`, 1)
}

// maxPing is the largest message parsed as a ping; anything longer is
// ignored. A real ping is about 80 bytes.
const maxPing = 4096

// ping is the JSON a contender publishes on the lock channel.
type ping struct {
	ResponseChannel string `json:"response_channel"`
	Message         string `json:"message"`
}

// answerFor returns the answer of a participant in mode (see Mode) to a
// ping whose reply channel is replyCh. The pings of portalocker 2.x and
// 3.x get the Unix time. Those of portalocker 4 and of pubsublock get,
// with protocol 1, the holder record; with protocol 0, a JSON object
// without holder_id or protocol, which portalocker 4 takes for a legacy
// answer (so that it may kill a frozen holder named "<channel>-lock" only
// when no legacy answer comes), but which tells pubsublock contenders the
// mode and the participant's own id (see answer.id). elected is said of a
// pending writer only.
func (s *spec) answerFor(replyCh string, mode Mode, elected bool) string {
	if pingProtocol(s.channel, replyCh) != 1 {
		return answerStamp()
	}
	var b strings.Builder
	if s.id != "" {
		b.WriteString(`{"holder_id": "` + s.id + `", "mode": "` + string(mode) + `", "protocol": 1`)
	} else {
		b.WriteString(`{"time": ` + answerStamp() + `, "id": "` + s.self + `", "mode": "` + string(mode) + `"`)
	}
	if mode == ModePending {
		b.WriteString(`, "elected": ` + strconv.FormatBool(elected))
	}
	b.WriteString(`, "client": "pubsublock"}`)
	return b.String()
}

// answerStamp is the legacy answer to a ping: the Unix time in seconds,
// as portalocker 2.x and 3.x answer with str(time.time()). It has 9
// decimals, which a Python float of the present time cannot print (it
// keeps 17 significant digits), so a pubsublock holder can be told from a
// Python one (see answer.goStamp).
func answerStamp() string {
	return strconv.FormatFloat(float64(time.Now().UnixNano())/1e9, 'f', 9, 64)
}

// parsePing returns the response_channel of a ping: a JSON object of at
// most maxPing bytes with a non-empty string response_channel. status says
// that it is a status ping (see statusMessage). Other keys and values
// (portalocker sends "message": "ping") are ignored.
func parsePing(payload []byte) (replyCh string, status, ok bool) {
	if len(payload) > maxPing {
		return "", false, false
	}
	var p ping
	if err := json.Unmarshal(payload, &p); err != nil || p.ResponseChannel == "" {
		return "", false, false
	}
	return p.ResponseChannel, p.Message == "status", true
}

// Mode is what a participant says it does with a lock, in its answer to a
// ping (portalocker 4's RedisLockMode, whose values travel on the wire).
type Mode string

const (
	// ModeExclusive: it holds the lock alone. A legacy answer (portalocker
	// 2.x and 3.x, or pubsublock before protocol 1) counts as exclusive.
	ModeExclusive Mode = "exclusive"
	// ModeShared: a reader, holding the lock or trying to, with any number
	// of other readers.
	ModeShared Mode = "shared"
	// ModePending: a writer waiting for the lock; it keeps new readers out.
	ModePending Mode = "pending"
)

// answer is one reply to a contender's ping.
type answer struct {
	// holderID is the id of a protocol-1 answer (portalocker 4's holder
	// record); "" for a legacy answer, which names no holder.
	holderID string
	// id is who answered, where the answer says it: holderID, or the id
	// of a pubsublock participant with protocol 0 (see spec.answerFor);
	// "" for the Unix time.
	id      string
	mode    Mode // a legacy answer's is ModeExclusive, but for pubsublock's
	elected bool // a pending writer that won the writers' election (portalocker 4.2)
	// unsaid marks a pending writer's record without "elected"
	// (portalocker 4.0 and 4.1), which does not say whether it won.
	unsaid bool
	client string
	// goStamp marks the Unix time with 9 decimals, pubsublock's (see
	// answerStamp).
	goStamp bool
}

func (a answer) legacy() bool { return a.holderID == "" }

// maxAnswer is the largest reply parsed as a holder record; a longer one
// is a legacy answer.
const maxAnswer = 4096

// parseAnswer reads a reply to a ping as portalocker 4 does: a JSON object
// with protocol 1, a string holder_id and a known mode is a holder record
// (other keys, of any type, are ignored); anything else (the Unix time of
// portalocker 2.x and 3.x, an unknown mode, a later protocol) is a legacy
// answer, which counts as exclusive, unless it is the JSON of a pubsublock
// participant with protocol 0, which says its mode and id.
func parseAnswer(payload []byte) answer {
	if len(payload) <= maxAnswer && len(payload) > 0 && payload[0] == '{' {
		var r map[string]json.RawMessage
		var id, mode, client string
		var protocol float64
		var elected bool
		if json.Unmarshal(payload, &r) == nil && json.Unmarshal(r["mode"], &mode) == nil {
			_ = json.Unmarshal(r["elected"], &elected) // 4.2 and later
			_ = json.Unmarshal(r["client"], &client)
			m := Mode(mode)
			known := m == ModeExclusive || m == ModeShared || m == ModePending
			switch {
			case !known:
			case json.Unmarshal(r["holder_id"], &id) == nil && len(r["protocol"]) > 0 && r["protocol"][0] != '"' &&
				json.Unmarshal(r["protocol"], &protocol) == nil && protocol == 1:
				return answer{holderID: id, id: id, mode: m, elected: elected, client: client,
					unsaid: m == ModePending && r["elected"] == nil}
			case client == "pubsublock" && r["holder_id"] == nil && r["protocol"] == nil && json.Unmarshal(r["id"], &id) == nil:
				return answer{id: id, mode: m, elected: elected, client: client}
			}
		}
	}
	a := answer{mode: ModeExclusive}
	if _, frac, ok := strings.Cut(string(payload), "."); ok && len(frac) == 9 {
		if _, err := strconv.ParseFloat(string(payload), 64); err == nil {
			a.goStamp = true
		}
	}
	return a
}

// holderIDLen is the length of a protocol-1 holder id: a uuid4 in hex.
const holderIDLen = 32

// isHolderID reports whether id is 32 lowercase hex digits, the form of a
// protocol-1 holder id.
func isHolderID(id string) bool {
	if len(id) != holderIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newHolderID returns a random uuid4 in hex, as portalocker 4 makes its
// holder ids (uuid.uuid4().hex).
func newHolderID() string {
	var b [16]byte
	_, _ = cryptorand.Read(b[:]) // never fails
	b[6] = b[6]&0x0f | 0x40      // version 4
	b[8] = b[8]&0x3f | 0x80      // RFC 4122 variant
	return hex.EncodeToString(b[:])
}

// holderOf says whether name, a connection's name, is that of a holder of
// the lock, and with which id: exactly "<channel>-lock" is a legacy holder
// (portalocker 2.x and 3.x, pubsublock with Protocol 0), id ""; and
// "<channel>-lock-<32 lowercase hex>" a protocol-1 holder (portalocker 4,
// pubsublock with Protocol 1). Names are matched whole, never by prefix:
// "<channel>-lock-<x>-lock-<id>" is a holder of another channel.
func (s *spec) holderOf(name string) (id string, ok bool) {
	if name == s.legacyName {
		return "", true
	}
	id, ok = strings.CutPrefix(name, s.legacyName+"-")
	if !ok || !isHolderID(id) {
		return "", false
	}
	return id, true
}

// pingProtocol says how a ping about channel wants its answer: 1 when its
// reply channel ends in a 32-hex id, as portalocker 4's probes and
// pubsublock's pings name theirs ("<channel>-<uuid4 hex>"; on a cluster
// "{<channel>}-<hex>" or "<channel>-<hex>-<slot filler>", see sameSlot),
// and 0 for the "<channel>-<random float>" of portalocker 2.x and 3.x.
func pingProtocol(channel, replyCh string) int {
	rest, ok := strings.CutPrefix(replyCh, channel+"-")
	if !ok {
		rest, ok = strings.CutPrefix(replyCh, "{"+channel+"}-")
	}
	if len(rest) > holderIDLen && rest[holderIDLen] == '-' {
		rest = rest[:holderIDLen]
	}
	if ok && isHolderID(rest) {
		return 1
	}
	return 0
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
