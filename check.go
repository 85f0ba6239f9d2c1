package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	default:
		s.log.Debug("holder gone before the ping")
	}
}

// CheckOrKill pings whoever holds the lock's channel and reports whether it
// answered within UnavailableTimeout. A silent holder's connection is
// killed (CLIENT KILL ID), freeing the lock, and alive is false. With no
// holder at all, alive is false and nothing is killed. Servers without
// CLIENT LIST or CLIENT KILL (miniredis) give an error when a holder is
// silent.
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
	return st == holderAlive, l.opErr("check", err)
}

// holderState is what a contender's check found.
type holderState int

// checkOrKill is the contender's liveness check, using aux for commands
// and a second connection for the reply channel.
func (s *spec) checkOrKill(ctx context.Context, aux *conn) (holderState, error) {
	replyCh := s.cl.replyChannel(s.channel)
	r, err := s.cl.get(ctx, s.channel)
	if err != nil {
		return holderGone, err
	}
	answered := false
	r.onPush = func(v resp.Value) {
		// A subscribe confirmation is not an answer.
		if isKind(v, s.ps.message) && len(v.Elems) == 3 && string(v.Elems[1].Str) == replyCh {
			answered = true
		}
	}
	defer func() {
		// Drain every answer up to the unsubscribe confirmation.
		if r.failed() == nil && unsubscribe(context.WithoutCancel(ctx), r, s.ps.unsubscribe, replyCh) != nil {
			r.close()
		}
		s.cl.put(r)
	}()
	if err := subscribeSync(ctx, r, s.ps, replyCh); err != nil {
		return holderGone, err
	}

	// Who holds it now, and the ping, in one round trip: only clients
	// listed before the ping went out may be killed, so a holder that
	// takes the lock during the check is never killed.
	var (
		before    []clientInfo
		listErr   error
		receivers int64
		published bool
	)
	ping := pingMessage(replyCh)
	err = aux.pipeline(ctx, [][]string{{"CLIENT", "LIST", "TYPE", "pubsub"}, {s.ps.publish, s.channel, ping}},
		func(i int, v resp.Value) error {
			if v.Type == resp.TypeInteger {
				receivers, published = v.Int, true
				return nil
			}
			before, listErr = parseClientList(v.Str)
			return listErr
		})
	var re resp.Error
	if errors.As(err, &re) && published {
		listErr, err = err, nil // CLIENT LIST refused (miniredis, ACL); the ping went out
		s.cl.caps.kill.set(false)
	}
	if err != nil {
		return holderGone, err
	}
	if listErr == nil {
		s.cl.caps.kill.set(true)
	}
	if receivers == 0 {
		return holderGone, nil
	}

	watched, gone := context.WithCancelCause(ctx)
	wait, cancel := context.WithTimeout(watched, s.cfg.UnavailableTimeout)
	stopWatch := s.watchHolder(ctx, aux, before, listErr == nil, gone)
	err = awaitPush(wait, r, func() bool { return answered })
	cancel()
	stopWatch()
	gone(nil)
	switch {
	case answered:
		return holderAlive, nil
	case ctx.Err() != nil:
		return holderGone, ctx.Err()
	case errors.Is(context.Cause(watched), errHolderLeft):
		return holderGone, nil
	case r.failed() != nil && !errors.Is(err, context.DeadlineExceeded):
		return holderGone, err
	case listErr != nil:
		return holderGone, fmt.Errorf("%w: %w", ErrKillUnsupported, listErr)
	}
	killed, err := s.killSilent(ctx, aux, before)
	if err != nil || killed == 0 {
		return holderGone, err // the silent subscribers left on their own
	}
	return holderKilled, nil
}

// errHolderLeft ends a contender's wait for the holder's answer when the
// holder it pinged is gone (crashed, or released).
var errHolderLeft = errors.New("the holder left")

// watchHolder watches, while a contender waits for the holder's answer to
// its ping, whether the holders listed before the ping (or, where clients
// cannot be listed, any subscriber) are still there, every CheckInterval
// on aux: a holder that crashed after the ping cannot answer, and waiting
// UnavailableTimeout for it would hold the lock up for nothing. When they
// are gone it calls gone(errHolderLeft). stop ends the watch and returns
// once aux is free again.
func (s *spec) watchHolder(ctx context.Context, aux *conn, before []clientInfo, listed bool, gone context.CancelCauseFunc) (stop func()) {
	var ids []int64
	for _, b := range before {
		if b.name == s.name && b.subscribed() {
			ids = append(ids, b.id)
		}
	}
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
			left, err := s.holdersLeft(ctx, aux, ids, listed)
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
// subscribed under the lock's name, or, when they cannot be listed or none
// was, whether the channel has no subscriber left.
func (s *spec) holdersLeft(ctx context.Context, aux *conn, ids []int64, listed bool) (bool, error) {
	if !listed || len(ids) == 0 {
		n, err := s.numsub(ctx, aux)
		return n == 0, err
	}
	v, err := aux.do(ctx, "CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		return false, err
	}
	now, err := parseClientList(v.Str)
	if err != nil {
		return false, err
	}
	for _, n := range now {
		if slices.Contains(ids, n.id) && n.name == s.name && n.subscribed() {
			return false, nil
		}
	}
	return true, nil
}

// killSilent kills the holder connections in before that still hold the
// channel's client name and a subscription, and says how many.
func (s *spec) killSilent(ctx context.Context, aux *conn, before []clientInfo) (killed int, err error) {
	v, err := aux.do(ctx, "CLIENT", "LIST", "TYPE", "pubsub")
	if err != nil {
		return 0, err
	}
	now, err := parseClientList(v.Str)
	if err != nil {
		return 0, err
	}
	var kill [][]string
	for _, b := range before {
		if b.name != s.name || !b.subscribed() {
			continue
		}
		for _, n := range now {
			// Still subscribed and still named: a connection that has
			// left and subscribed again since the list answers pings it
			// saw on the way (see attempt.notePing), so it is not killed.
			if n.id == b.id && n.name == s.name && n.subscribed() {
				kill = append(kill, []string{"CLIENT", "KILL", "ID", strconv.FormatInt(n.id, 10)})
				s.log.Info("killing silent holder", "id", n.id, "addr", n.addr)
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

// Holder is a connection subscribed to a lock's channel under the lock's
// client name, as the server's CLIENT LIST shows it.
type Holder struct {
	ID   int64         // client id, as CLIENT KILL ID takes it
	Addr string        // the holder's address, host:port
	Age  time.Duration // age of the connection: an upper bound on the hold's
}

// Status is what [Lock.Status] found.
type Status struct {
	// Subscribers counts the channel's subscribers: 0 when the lock is free,
	// 1 when held, more for a moment while contenders try.
	Subscribers int64
	// Holders lists the subscribed connections named ClientName(). It is
	// nil, and ListErr says why, when the server refuses CLIENT LIST
	// (miniredis, an ACL user without it).
	Holders []Holder
	ListErr error
}

// Held reports whether someone holds the lock.
func (s Status) Held() bool { return s.Subscribers > 0 }

// Status reports whether the lock is held, and by which connections, in
// one round trip. It neither pings nor disturbs the holder.
func (l *Lock) Status(ctx context.Context) (Status, error) {
	c, err := l.cl.get(ctx, l.channel)
	if err != nil {
		return Status{}, l.opErr("status", err)
	}
	defer l.cl.put(c)
	var st Status
	var listed, counted bool
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
			listed = true
			for _, ci := range clients {
				if ci.name == l.name && ci.subscribed() {
					st.Holders = append(st.Holders, Holder{ID: ci.id, Addr: ci.addr, Age: ci.age})
				}
			}
			return nil
		})
	var re resp.Error
	if errors.As(err, &re) && counted && !listed {
		st.ListErr, err = err, nil
	}
	return st, l.opErr("status", err)
}

const (
	holderGone   holderState = iota // nobody received the ping
	holderAlive                     // the holder answered
	holderKilled                    // silent holders were killed
)
