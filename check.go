package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

func (s *spec) logCheck(st holderState, err error) {
	switch {
	case err != nil:
		s.log.Warn("cannot check holder", "err", err)
	case st == holderAlive:
		s.log.Debug("holder alive")
	case st == holderKilled:
		s.log.Info("killed silent holder")
	case st == holderUnkillable:
		s.log.Warn("the channel is taken by a subscriber not named like a holder; it cannot be killed", "name", s.name)
	default:
		s.log.Debug("holder gone before the ping")
	}
}

// CheckOrKill pings whoever holds the lock's channel and reports whether
// every holder answered within UnavailableTimeout. The connections of
// silent holders are killed (CLIENT KILL ID), freeing the lock, and alive
// is false. With no holder at all, alive is false and nothing is killed.
// A silent subscriber not named like a holder is not killed:
// ErrUnknownSubscriber. Servers without CLIENT LIST or CLIENT KILL
// (miniredis) give an error when a holder is silent.
func (l *Lock) CheckOrKill(ctx context.Context) (alive bool, err error) {
	c, err := l.cl.get(ctx, l.channel)
	if err != nil {
		return false, err
	}
	defer l.cl.put(c)
	if n, err := l.numsub(ctx, c); err != nil || n == 0 {
		return false, l.opErr("check", err)
	}
	st, err := l.checkOrKill(ctx, c)
	l.logCheck(st, err)
	if err == nil && st == holderUnkillable {
		err = ErrUnknownSubscriber
	}
	return st == holderAlive, l.opErr("check", err)
}

// holderState is what a contender's check found.
type holderState int

// checkOrKill is the contender's liveness check, using aux for commands
// and a second connection for the reply channel: it pings, and kills the
// holders that stay silent (see probe.silent).
func (s *spec) checkOrKill(ctx context.Context, aux *conn) (holderState, error) {
	p, err := s.ping(ctx, aux, false, nil, nil)
	switch {
	case err != nil:
		return holderGone, err
	case p.receivers == 0:
		return holderGone, nil
	case p.complete():
		return holderAlive, nil
	case p.left:
		return holderGone, nil
	case !p.listed:
		return holderGone, fmt.Errorf("%w: %w", ErrKillUnsupported, p.listErr)
	}
	killed, err := s.killSilent(ctx, aux, p)
	switch {
	case err != nil:
		return holderGone, err
	case killed > 0:
		return holderKilled, nil
	}
	// Nobody to kill: the silent subscribers left on their own, or they
	// are not named like holders (a plain SUBSCRIBE of the channel), and
	// keep it taken where nothing may kill them.
	if n, err := s.numsub(ctx, aux); err != nil || n > 0 {
		return holderUnkillable, err
	}
	return holderGone, nil
}

// probe is what a ping of the lock's channel found.
type probe struct {
	// listed says that CLIENT LIST answered (else listErr says why). Then
	// holders are the connections named as holders of the lock (see
	// spec.holderOf) and subscribed when the ping went out, so each
	// received it.
	listed    bool
	listErr   error
	holders   []clientInfo
	receivers int64 // subscribers of the channel that received the ping
	// self is the client id of the pinger's own subscribed connection (a
	// tentative hold's, see attempt.contend), which is never silent; 0
	// when the pinger is not subscribed, or its id is unknown (RESP2).
	// selfID is the id its own answers carry (spec.self), which cover its
	// own connection only; "" when it is not subscribed. selfLegacy says
	// that its connection has the legacy name: when self is unknown, no
	// connection of that name can be told silent, as one of them is its
	// own.
	self       int64
	selfID     string
	selfLegacy bool
	// left says that the wait for answers ended because the holders that
	// had not answered were gone (see spec.watchHolder).
	left bool

	mu      sync.Mutex // guards answers: the watch reads them
	answers []answer   // in the order they came, at most maxAnswers
}

// maxAnswers bounds the answers a probe keeps; a channel has one per
// subscriber.
const maxAnswers = 1024

func (p *probe) add(a answer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.answers) < maxAnswers {
		p.answers = append(p.answers, a)
	}
}

// answerOf returns the answer of ci, a listed holder, if it answered: a
// protocol-1 holder's by its id, and for one named "<channel>-lock" any
// legacy answer, as legacy answers name nobody (portalocker 4 counts them
// so too).
func (p *probe) answerOf(ci clientInfo) (answer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range p.answers {
		if a.holderID == ci.holderID && (ci.holderID != "" || p.selfID == "" || a.id != p.selfID) {
			return a, true
		}
	}
	return answer{}, false
}

// snapshot returns the answers so far.
func (p *probe) snapshot() []answer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.answers)
}

// silent returns the listed holders that did not answer, but for the
// pinger's own connection.
func (p *probe) silent() []clientInfo {
	var out []clientInfo
	for _, ci := range p.holders {
		switch {
		case p.self != 0 && ci.id == p.self:
		case p.self == 0 && p.selfLegacy && ci.holderID == "":
		default:
			if _, ok := p.answerOf(ci); !ok {
				out = append(out, ci)
			}
		}
	}
	return out
}

// complete reports whether every listed holder answered; where none was
// listed (a subscriber without a holder's name, or CLIENT LIST refused),
// whether anyone answered.
func (p *probe) complete() bool {
	if len(p.holders) == 0 {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.answers) > 0
	}
	return len(p.silent()) == 0
}

// ping publishes a contender's ping on the lock's channel from aux, the
// holders listed in the same round trip, and collects the answers on a
// reply channel subscribed on a second connection until enough says so
// (by default, until every listed holder has answered), or
// UnavailableTimeout is over, or the holders that did not answer are
// gone. A status ping asks Go holders not to take the pinger for a waiter
// (see pingMessage). from is the pinger's own tentative hold, if it is
// subscribed (see attempt.contend).
func (s *spec) ping(ctx context.Context, aux *conn, status bool, from *hold, enough func(*probe) bool) (*probe, error) {
	replyCh := s.cl.replyChannel(s.channel)
	r, err := s.cl.get(ctx, s.channel)
	if err != nil {
		return nil, err
	}
	p := &probe{}
	if from != nil {
		p.self, p.selfID, p.selfLegacy = from.c.id, s.self, s.id == ""
	}
	if enough == nil {
		enough = (*probe).complete
	}
	r.onPush = func(v resp.Value) {
		// A subscribe confirmation is not an answer.
		if isKind(v, s.ps.message) && len(v.Elems) == 3 && string(v.Elems[1].Str) == replyCh {
			p.add(parseAnswer(v.Elems[2].Str))
		}
	}
	defer func() {
		// Drain every answer up to the unsubscribe confirmation.
		if r.failed() == nil && unsubscribe(context.WithoutCancel(ctx), r, s.ps.unsubscribe, replyCh) != nil {
			r.close()
		}
		r.onPush = nil
		s.cl.put(r)
	}()
	if err := subscribeSync(ctx, r, s.ps, replyCh); err != nil {
		return nil, err
	}

	// Who holds it now, and the ping, in one round trip: only clients
	// listed before the ping went out may be killed, so a holder that
	// takes the lock during the check is never killed.
	published := false
	msg := pingMessage(replyCh)
	if status {
		msg = statusMessage(replyCh)
	}
	err = aux.pipeline(ctx, [][]string{{"CLIENT", "LIST", "TYPE", "pubsub"}, {s.ps.publish, s.channel, msg}},
		func(i int, v resp.Value) error {
			if v.Type == resp.TypeInteger {
				p.receivers, published = v.Int, true
				return nil
			}
			list, err := parseClientList(v.Str)
			if err != nil {
				p.listErr = err
				return err
			}
			p.listed, p.holders = true, s.holders(list)
			return nil
		})
	var re resp.Error
	if errors.As(err, &re) && published && !p.listed {
		p.listErr, err = err, nil // CLIENT LIST refused (miniredis, ACL); the ping went out
		s.cl.caps.kill.set(false)
	}
	if err != nil {
		return nil, err
	}
	if p.listed {
		s.cl.caps.kill.set(true)
	}
	if p.receivers == 0 {
		return p, nil
	}

	watched, gone := context.WithCancelCause(ctx)
	wait, cancel := context.WithTimeout(watched, s.cfg.UnavailableTimeout)
	stopWatch := s.watchHolder(ctx, aux, p, gone)
	err = awaitPush(wait, r, func() bool { return enough(p) })
	cancel()
	stopWatch()
	gone(nil)
	switch {
	case enough(p):
		return p, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case errors.Is(context.Cause(watched), errHolderLeft):
		p.left = true
		return p, nil
	case r.failed() != nil && !errors.Is(err, context.DeadlineExceeded):
		return nil, err
	}
	return p, nil
}

// holders returns the clients of list that are named as holders of the
// lock (see holderOf) and subscribed, each with its holder id.
func (s *spec) holders(list []clientInfo) []clientInfo {
	var out []clientInfo
	for _, ci := range list {
		if id, ok := s.holderOf(ci.name); ok && ci.subscribed() {
			ci.holderID = id
			out = append(out, ci)
		}
	}
	return out
}

// errHolderLeft ends a contender's wait for the holders' answers when the
// holders it pinged that have not answered are gone (crashed, or
// released).
var errHolderLeft = errors.New("the holder left")

// watchHolder watches, while a contender waits for the holders' answers to
// its ping, whether the holders listed before the ping that have not
// answered yet (or, where clients cannot be listed or none was, any
// subscriber) are still there, every CheckInterval on aux: a holder that
// crashed after the ping cannot answer, and waiting UnavailableTimeout for
// it would hold the lock up for nothing. When they are gone it calls
// gone(errHolderLeft). stop ends the watch and returns once aux is free
// again.
func (s *spec) watchHolder(ctx context.Context, aux *conn, p *probe, gone context.CancelCauseFunc) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.CheckInterval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			var ids []int64
			if p.listed {
				for _, ci := range p.silent() {
					ids = append(ids, ci.id)
				}
			}
			left, err := s.holdersLeft(ctx, aux, ids, p.listed && len(p.holders) > 0)
			if err != nil {
				return
			}
			if left {
				gone(errHolderLeft)
				return
			}
		}
	}()
	return func() {
		close(quit)
		<-done
	}
}

// holdersLeft reports whether none of the holder connections ids is still
// subscribed under a holder's name, or, when they cannot be listed or none
// was, whether the channel has no subscriber left.
func (s *spec) holdersLeft(ctx context.Context, aux *conn, ids []int64, listed bool) (bool, error) {
	if !listed {
		n, err := s.numsub(ctx, aux)
		return n == 0, err
	}
	if len(ids) == 0 {
		return false, nil // all answered: the wait is over anyway
	}
	v, err := aux.do(ctx, "CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		return false, err
	}
	now, err := parseClientList(v.Str)
	if err != nil {
		return false, err
	}
	for _, n := range s.holders(now) {
		if slices.Contains(ids, n.id) {
			return false, nil
		}
	}
	return true, nil
}

// killSilent kills the connections of the holders that p listed and that
// did not answer its ping, if they still hold the same name and a
// subscription, and says how many.
func (s *spec) killSilent(ctx context.Context, aux *conn, p *probe) (killed int, err error) {
	silent := p.silent()
	if len(silent) == 0 {
		return 0, nil
	}
	v, err := aux.do(ctx, "CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		return 0, err
	}
	now, err := parseClientList(v.Str)
	if err != nil {
		return 0, err
	}
	var kill [][]string
	for _, b := range silent {
		for _, n := range now {
			// Still subscribed and still named: a connection that has
			// left and subscribed again since the list answers pings it
			// saw on the way (see attempt.notePing), so it is not killed.
			if n.id == b.id && n.name == b.name && n.subscribed() {
				kill = append(kill, []string{"CLIENT", "KILL", "ID", strconv.FormatInt(n.id, 10)})
				s.log.Info("killing silent holder", "id", n.id, "addr", n.addr, "name", n.name)
			}
		}
	}
	if len(kill) == 0 {
		return 0, nil
	}
	return len(kill), aux.pipeline(ctx, kill, nil)
}

// clientInfo is one line of CLIENT LIST.
type clientInfo struct {
	id        int64
	addr      string
	name      string
	age       time.Duration
	sub, ssub int
	holderID  string // of a holder's name (see spec.holders); "" for the legacy name
}

func (ci clientInfo) subscribed() bool { return ci.sub > 0 || ci.ssub > 0 }

// parseClientList reads CLIENT LIST text: one client per line, fields
// "key=value" separated by spaces.
func parseClientList(text []byte) ([]clientInfo, error) {
	var out []clientInfo
	for line := range strings.SplitSeq(string(text), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		var ci clientInfo
		for f := range strings.SplitSeq(line, " ") {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				id, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%w: CLIENT LIST id %q", resp.ErrProtocol, v)
				}
				ci.id = id
			case "addr":
				ci.addr = v
			case "name":
				ci.name = v
			case "age":
				s, _ := strconv.ParseInt(v, 10, 64)
				ci.age = time.Duration(s) * time.Second
			case "sub":
				ci.sub, _ = strconv.Atoi(v)
			case "ssub":
				ci.ssub, _ = strconv.Atoi(v)
			}
		}
		out = append(out, ci)
	}
	return out, nil
}

// Holder is a connection subscribed to a lock's channel under a holder's
// name, as the server's CLIENT LIST shows it, and what it answered to a
// status ping.
type Holder struct {
	ID   int64         // client id, as CLIENT KILL ID takes it
	Addr string        // the holder's address, host:port
	Age  time.Duration // age of the connection: an upper bound on the hold's
	// Name is the connection's name: "<channel>-lock" (portalocker 2.x and
	// 3.x, pubsublock with Protocol 0) or "<channel>-lock-<holder id>"
	// (portalocker 4, pubsublock with Protocol 1).
	Name string
	// HolderID is the holder id in Name; "" for "<channel>-lock".
	HolderID string
	// Answered says that it answered the status ping within
	// UnavailableTimeout. Mode, Protocol and Kind are then what its
	// answer said; otherwise they are zero (it may be frozen, or it was
	// leaving).
	Answered bool
	Mode     Mode // what it does with the lock; ModeExclusive for a legacy answer
	Protocol int  // 1 for portalocker 4's holder record, 0 for a legacy answer
	Kind     Kind // what it looks like
}

// Kind is what a holder looks like from its name and its answer.
type Kind string

const (
	// KindPubsublock: a Go holder of this package, from the holder record
	// it answers with (or the 9 decimals of its legacy answer).
	KindPubsublock Kind = "pubsublock"
	// KindPortalocker4: portalocker 4, from its holder record.
	KindPortalocker4 Kind = "portalocker 4"
	// KindLegacy: portalocker 2.x or 3.x, from its legacy answer (as
	// pubsublock answered before it spoke protocol 1).
	KindLegacy Kind = "portalocker 2/3"
)

// kindOf says what the author of a looks like.
func kindOf(a answer) Kind {
	switch {
	case a.client == "pubsublock" || a.goStamp:
		return KindPubsublock
	case a.legacy():
		return KindLegacy
	}
	return KindPortalocker4
}

// Status is what [Lock.Status] found.
type Status struct {
	// Subscribers counts the channel's subscribers: 0 when the lock is free,
	// 1 when held by one holder, more when shared, or for a moment while
	// contenders try.
	Subscribers int64
	// Holders lists the subscribed connections named as holders of the
	// lock (see Holder.Name), of any portalocker version. It is nil, and
	// ListErr says why, when the server refuses CLIENT LIST (miniredis, an
	// ACL user without it).
	Holders []Holder
	ListErr error
}

// Held reports whether someone holds the lock.
func (s Status) Held() bool { return s.Subscribers > 0 }

// Status reports whether the lock is held, and by which connections. When
// it is, Status pings the holders with a status ping, which portalocker's
// holders answer as any ping and Go holders do not take for a waiting
// contender, and waits up to UnavailableTimeout for every holder's answer
// (see Holder). It kills nothing.
func (l *Lock) Status(ctx context.Context) (Status, error) {
	c, err := l.cl.get(ctx, l.channel)
	if err != nil {
		return Status{}, l.opErr("status", err)
	}
	defer l.cl.put(c)
	var st Status
	var listed, counted bool
	var holders []clientInfo
	err = c.pipeline(ctx, [][]string{{"PUBSUB", l.ps.numsub, l.channel}, {"CLIENT", "LIST", "TYPE", "pubsub"}},
		func(i int, v resp.Value) error {
			if v.Type == resp.TypeArray || v.Type == resp.TypeMap {
				st.Subscribers, err = numsubCount(v, l.channel)
				counted = err == nil
				return err
			}
			clients, err := parseClientList(v.Str)
			if err != nil {
				return err
			}
			listed, holders = true, l.holders(clients)
			return nil
		})
	var re resp.Error
	if errors.As(err, &re) && counted && !listed {
		st.ListErr, err = err, nil
	}
	if err != nil || len(holders) == 0 {
		return st, l.opErr("status", err)
	}
	p, err := l.ping(ctx, c, true, nil, nil)
	if err != nil {
		return st, l.opErr("status", err)
	}
	for _, ci := range p.holders {
		h := Holder{ID: ci.id, Addr: ci.addr, Age: ci.age, Name: ci.name, HolderID: ci.holderID}
		if a, ok := p.answerOf(ci); ok {
			h.Answered, h.Mode, h.Kind = true, a.mode, kindOf(a)
			if !a.legacy() {
				h.Protocol = 1
			}
		}
		st.Holders = append(st.Holders, h)
	}
	return st, nil
}

const (
	holderGone   holderState = iota // nobody received the ping
	holderAlive                     // every holder answered
	holderKilled                    // silent holders were killed
	// holderUnkillable: silent subscribers not named like a holder keep the
	// channel taken, and are not killed.
	holderUnkillable
)
