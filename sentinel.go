package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// Timing of sentinel mode.
const (
	// sentinelTick is how often the watcher PINGs its sentinel and checks
	// whether any connection is left to watch over. A PING unanswered for
	// two ticks makes it reconnect, to the next sentinel if need be.
	sentinelTick = time.Second
	// failoverHold bounds how long the primary whose failover began stays
	// refused when the sentinels report neither the switch nor an abort.
	failoverHold = 30 * time.Second
	// resyncTicks is how many ticks apart the watcher asks its sentinel
	// for the primary, as it does when it subscribes: an event it missed
	// (published while it reconnected, or not at all) is made up for
	// within that time, even while no get asks.
	resyncTicks = 5
	// maxResyncFailures is how many resyncs in a row may fail before the
	// watcher turns to another sentinel.
	maxResyncFailures = 3
	// primaryTries is how often get asks the sentinels again when the
	// server they name turns out not to be a primary (ROLE).
	primaryTries = 3
)

// errFailover is the cause of a hold lost to a sentinel failover.
var errFailover = errors.New("sentinel failover")

// sentinelEvents are the sentinel pub/sub channels the watcher follows:
// the primary found down by a quorum (+odown, which starts a failover),
// the steps of a failover, its end (+switch-master) and its aborts.
var sentinelEvents = []string{
	"+odown", "+try-failover", "+elected-leader", "+failover-state-*", "+selected-slave", "+promoted-slave",
	"+switch-master", "-failover-abort-*",
}

// sentinels finds the primary of a Redis watched by Sentinel, and watches
// the sentinels for failovers of it.
//
// Pub/sub state is not replicated, and a demoted primary keeps its
// subscribers (REPLICAOF disconnects nobody; the sentinel kills the old
// primary's clients only when it reconfigures it, seconds after the
// promotion). A lock held there would stay held while the new primary
// hands the same lock to someone else. So as soon as a sentinel reports
// that a failover of the primary began (or a quorum found it down), every
// connection to it is closed (each hold on it is lost), and no connection
// to it is made again until the sentinels name another primary, or report
// that the failover was aborted, or no longer flag the primary o_down or
// failover_in_progress, or failoverHold has passed.
//
// A connection is handed out only if, once ROLE confirmed it, it goes to
// the primary the Client knows now (primary, not failing), checked under
// mu, which every piece of news about the primary takes: a dial that
// straddles a failover is refused, whichever news came meanwhile. And
// when a sentinel names a primary, every connection to another server is
// closed, even if the Client lost track of where it went.
type sentinels struct {
	master string
	dc     dialConfig // how to dial a sentinel: the servers' TLS and dialer, no auth

	stop     chan struct{}  // closed by close
	watchers sync.WaitGroup // the watcher goroutines, at most one running

	mu       sync.Mutex         // guards the fields below
	addrs    []string           // the sentinels; the last that answered first
	primary  string             // the primary's address; "" when unknown
	failing  string             // a primary being failed over, not to be used; "" none
	failEnd  time.Time          // when failing is forgotten
	live     map[string][]*conn // connections handed out, by server address
	watching bool               // a watcher runs and has not decided to exit
	closed   bool               // close was called
	// resyncEvery is how many ticks apart the watcher resyncs (see
	// resyncTicks; tests change it before the first get), and resyncs how
	// many of its resyncs took effect.
	resyncEvery int
	resyncs     int
	// epoch is the highest config-epoch of the primary a sentinel's
	// answer gave; switched is set when a +switch-master event came after
	// it, so the primary known is newer than epoch. An answer that is
	// older by these is dropped (see namedSince): a sentinel that has not
	// yet heard of a switch (sentinels learn it from each other, a moment
	// later) must not undo it.
	// Sentinels that were reset start again from 0, so the floor lasts
	// failoverHold past the last answer that confirmed it (epochUntil).
	epoch      int64
	switched   bool
	epochUntil time.Time
	// failingBy is the sentinel that reported the failover of failing: no
	// other's answer that does not see it (yet) ends it.
	failingBy string
	// news counts the news taken in: failover events, and answers of the
	// sentinels. An answer to a question asked before the last of them is
	// older news, and is dropped (see namedSince).
	news uint64
}

func newSentinels(t topology, dc dialConfig) *sentinels {
	sdc := dialConfig{network: "tcp", dialTimeout: dc.dialTimeout, tls: dc.tls, dial: dc.dial,
		resp2: true, limits: dc.limits}
	return &sentinels{master: t.master, dc: sdc, addrs: t.sentinels,
		live: make(map[string][]*conn), stop: make(chan struct{}), resyncEvery: resyncTicks}
}

// get returns a connection to the primary: an idle one, or a new one once
// ROLE has confirmed that the server is a primary. It waits (up to the
// dial timeout) while a failover runs.
func (s *sentinels) get(ctx context.Context, cl *Client) (*conn, error) {
	var role string
	for try := 1; ; try++ {
		addr, err := s.resolve(ctx, cl)
		if err != nil {
			return nil, err
		}
		if c := cl.idleConn(addr); c != nil {
			return c, nil
		}
		c, err := cl.dialNode(ctx, addr)
		if err != nil {
			s.forget(addr)
			return nil, err
		}
		if role, err = roleOf(ctx, c); err != nil {
			c.close()
			return nil, err
		}
		if role == "master" && s.track(cl, c) {
			return c, nil
		}
		c.close()
		s.forget(addr)
		if try == primaryTries {
			if role == "master" {
				return nil, fmt.Errorf("sentinel: %s at %s is no longer the primary: a failover of it ran or runs", s.master, addr)
			}
			return nil, fmt.Errorf("sentinel: %s at %s is a %s, not the primary", s.master, addr, role)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// roleOf returns the first element of ROLE: "master", "slave" or
// "sentinel".
func roleOf(ctx context.Context, c *conn) (string, error) {
	v, err := c.do(ctx, "ROLE")
	if err != nil {
		return "", fmt.Errorf("ROLE: %w", err)
	}
	if len(v.Elems) == 0 {
		return "", fmt.Errorf("%w: ROLE reply %.80s", resp.ErrProtocol, v.String())
	}
	return string(v.Elems[0].Str), nil
}

// resolve returns the primary's address, asking the sentinels when it is
// not known, or when no watcher follows their events. While a failover
// runs (an event said so, or the sentinel flags the primary o_down or
// failover_in_progress), no address is returned: resolve asks again every
// 50ms, for at most the dial timeout.
func (s *sentinels) resolve(ctx context.Context, cl *Client) (string, error) {
	deadline := time.Now().Add(s.dc.dialTimeout)
	for {
		s.mu.Lock()
		if s.failing != "" && time.Now().After(s.failEnd) {
			s.failing = ""
		}
		primary, watching, seq := s.currentLocked(), s.watching, s.news
		s.mu.Unlock()
		if primary != "" && watching {
			return primary, nil
		}
		a, err := s.ask(ctx)
		if err != nil {
			return "", err
		}
		addr, busy := a.primary, a.busy
		// An answer older than news taken in meanwhile is dropped; it
		// still serves if the Client agrees with it now.
		fresh := s.namedSince(cl, seq, a, fmt.Sprintf("sentinel %s names %s as primary of %s", a.from, addr, s.master))
		if !busy && (fresh || s.current() == addr) {
			return addr, nil
		}
		if time.Now().After(deadline) {
			if !busy {
				return "", fmt.Errorf("sentinel: no settled primary of %s after %v: the news kept changing", s.master, s.dc.dialTimeout)
			}
			return "", fmt.Errorf("sentinel: failover of %s at %s still running after %v", s.master, addr, s.dc.dialTimeout)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// ask asks the sentinels in turn for the primary's address, and whether a
// failover of it runs (see askOne); it moves the first sentinel that
// answers to the front.
func (s *sentinels) ask(ctx context.Context) (sentinelAnswer, error) {
	s.mu.Lock()
	addrs := append([]string(nil), s.addrs...)
	s.mu.Unlock()
	var errs []error
	for _, a := range addrs {
		ans, err := s.askOne(ctx, a)
		if err == nil {
			s.mu.Lock()
			for i, b := range s.addrs {
				if b == a {
					copy(s.addrs[1:i+1], s.addrs[:i])
					s.addrs[0] = a
					break
				}
			}
			s.mu.Unlock()
			return ans, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return sentinelAnswer{}, fmt.Errorf("sentinel: no sentinel named the primary %s: %w", s.master, errors.Join(errs...))
}

// sentinelAnswer is what a sentinel said of the primary.
type sentinelAnswer struct {
	from    string // the sentinel
	primary string // the primary's address
	// busy: the flags say o_down or failover_in_progress, as a failover
	// is coming or running then. The sentinel names the promoted replica
	// some time before the failover ends: busy too.
	busy  bool
	epoch int64 // the primary's config-epoch; 0 when not given
}

// askOne asks the sentinel at addr for the primary's address (SENTINEL
// GET-MASTER-ADDR-BY-NAME), its flags and its config-epoch (SENTINEL
// MASTER).
func (s *sentinels) askOne(ctx context.Context, addr string) (sentinelAnswer, error) {
	dc := s.dc
	dc.addr = addr
	c, err := dialConn(ctx, dc)
	if err != nil {
		return sentinelAnswer{}, err
	}
	defer c.close()
	a := sentinelAnswer{from: addr}
	var flags string
	err = c.pipeline(ctx, [][]string{{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.master}, {"SENTINEL", "MASTER", s.master}},
		func(i int, v resp.Value) error {
			if i == 0 {
				if v.IsNull() {
					return fmt.Errorf("%s does not monitor %s", addr, s.master)
				}
				if len(v.Elems) != 2 || !isPort(string(v.Elems[1].Str)) || len(v.Elems[0].Str) == 0 {
					return fmt.Errorf("%w: %s: GET-MASTER-ADDR-BY-NAME reply %.80s", resp.ErrProtocol, addr, v.String())
				}
				a.primary = net.JoinHostPort(string(v.Elems[0].Str), string(v.Elems[1].Str))
				return nil
			}
			for j := 0; j+1 < len(v.Elems); j += 2 {
				switch string(v.Elems[j].Str) {
				case "flags":
					flags = string(v.Elems[j+1].Str)
				case "config-epoch":
					a.epoch, _ = strconv.ParseInt(string(v.Elems[j+1].Str), 10, 64)
				}
			}
			return nil
		})
	if err != nil {
		return sentinelAnswer{}, fmt.Errorf("%s: %w", addr, err)
	}
	for f := range strings.SplitSeq(flags, ",") {
		if f == "o_down" || f == "failover_in_progress" {
			a.busy = true
		}
	}
	return a, nil
}

// current returns the primary's address as known now, or "" when it is
// unknown or being failed over.
func (s *sentinels) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.currentLocked()
}

// currentLocked is current with mu held.
func (s *sentinels) currentLocked() string {
	if s.primary == s.failing {
		return ""
	}
	return s.primary
}

// namedSince records a sentinel's answer a: a.primary is the primary, and
// a failover of it runs if a.busy. Connections to any other server, or to
// a.primary too if busy, are closed with errFailover and why. The question
// was asked when s.news was seq. namedSince drops the answer, and reports
// false, when it may be older than what the Client knows: news came since
// (an event, another answer); its config-epoch is below one seen, or
// equal but a switch came since and it names another primary (for
// failoverHold after the last answer that confirmed that epoch); or it
// does not see the failover another sentinel reported.
func (s *sentinels) namedSince(cl *Client, seq uint64, a sentinelAnswer, why string) bool {
	s.mu.Lock()
	floor := a.epoch != 0 && time.Now().Before(s.epochUntil)
	older := s.news != seq ||
		(floor && (a.epoch < s.epoch || a.epoch == s.epoch && s.switched && a.primary != s.primary)) ||
		(!a.busy && a.primary == s.failing && a.from != s.failingBy)
	if older {
		s.mu.Unlock()
		return false
	}
	if a.epoch != 0 {
		if a.epoch > s.epoch || !floor {
			s.epoch, s.switched = a.epoch, false
		}
		s.epochUntil = time.Now().Add(failoverHold)
	}
	stale := s.namedLocked(a.primary, a.busy)
	if a.busy {
		s.failingBy = a.from
	}
	s.mu.Unlock()
	s.retireAll(cl, stale, why)
	return true
}

// namedLocked is namedSince's work, with mu held; it returns the addresses whose
// connections the caller retires (retireAll) once mu is released.
func (s *sentinels) namedLocked(addr string, busy bool) (stale []string) {
	s.news++
	if busy {
		s.primary = ""
		s.failing, s.failEnd = addr, time.Now().Add(failoverHold)
	} else {
		s.primary = addr
		if s.failing == addr {
			s.failing = "" // the sentinel says it is over
		}
	}
	for a := range s.live {
		if busy || a != addr {
			stale = append(stale, a)
		}
	}
	return stale
}

// forget drops addr as the primary, so the next get asks the sentinels.
func (s *sentinels) forget(addr string) {
	s.mu.Lock()
	if s.primary == addr {
		s.primary = ""
	}
	s.mu.Unlock()
}

// track records a new connection to the primary, so that a failover can
// close it, and starts the watcher if it is not running. It refuses (and
// the caller closes c) a connection to any server but the primary known
// now: news of a failover (an event, a sentinel's answer to another get)
// may have come since c's server was resolved, and each takes mu.
func (s *sentinels) track(cl *Client, c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.addr != s.currentLocked() {
		return false
	}
	s.live[c.addr] = append(s.live[c.addr], c)
	if !s.watching && !s.closed {
		s.watching = true
		s.watchers.Add(1)
		go s.watch(cl)
	}
	return true
}

// sweep forgets the connections that were closed. If none is left it
// stops the watch: it reports true, and resolve asks the sentinels again
// as no one follows their events any more.
func (s *sentinels) sweep() (idle bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, conns := range s.live {
		kept := conns[:0]
		for _, c := range conns {
			if c.failed() == nil {
				kept = append(kept, c)
			}
		}
		clear(conns[len(kept):])
		if len(kept) == 0 {
			delete(s.live, addr)
		} else {
			s.live[addr] = kept
		}
	}
	if len(s.live) > 0 && !s.closed {
		return false
	}
	s.watching = false
	return true
}

// retire closes every connection to addr, with cause.
func (s *sentinels) retire(cl *Client, addr string, cause error) {
	s.mu.Lock()
	conns := s.live[addr]
	delete(s.live, addr)
	s.mu.Unlock()
	for _, c := range conns {
		c.fatal(cause)
	}
	cl.dropIdle(addr)
}

// retireAll retires the connections to each of addrs, with errFailover
// and why.
func (s *sentinels) retireAll(cl *Client, addrs []string, why string) {
	for _, a := range addrs {
		s.retire(cl, a, fmt.Errorf("%w: %s", errFailover, why))
	}
}

// close stops the watcher and waits for it.
func (s *sentinels) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	s.watchers.Wait()
}

// watch is the watcher goroutine: it stays subscribed to the failover
// events of a sentinel, and exits when no connection is left to watch
// over or the Client is closed.
func (s *sentinels) watch(cl *Client) {
	defer s.watchers.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for i := 0; ; i++ {
		if s.watchOne(ctx, cl, s.pick(i)) == nil { // nothing left to watch, or closed
			return
		}
		if s.sweep() {
			return
		}
		if sleepCtx(ctx, sentinelTick/4) != nil {
			s.sweep()
			return
		}
	}
}

// pick returns the sentinel for the i-th watch: the first (the last one
// that answered) unless it failed, then the next ones in turn.
func (s *sentinels) pick(i int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[i%len(s.addrs)]
}

// watchOne subscribes to the failover events of the sentinel at addr and
// handles them until the connection fails (an error), or no connection to
// the primary is left or ctx ends (nil).
func (s *sentinels) watchOne(ctx context.Context, cl *Client, addr string) error {
	dc := s.dc
	dc.addr = addr
	c, err := dialConn(ctx, dc)
	if err != nil {
		return err
	}
	defer c.close()
	setup, cancel := context.WithTimeout(ctx, s.dc.dialTimeout)
	defer cancel()
	cmd := append([]string{"PSUBSCRIBE"}, sentinelEvents...)
	if err := c.pipeline(setup, [][]string{cmd}, nil); err != nil {
		return err
	}
	// Events before the subscription were missed: ask for the primary
	// now, and retire every connection to another server (to that one too
	// if a failover of it runs).
	if err := s.resync(setup, cl, addr); err != nil {
		return err
	}

	readDone := make(chan error, 1)
	go func() {
		for {
			v, push, err := c.readFrame()
			if err != nil {
				readDone <- c.fatal(err)
				return
			}
			if !push {
				if err := c.deliver(v); err != nil {
					readDone <- err
					return
				}
				continue
			}
			if isKind(v, "pmessage") && len(v.Elems) == 4 {
				s.event(cl, addr, string(v.Elems[2].Str), string(v.Elems[3].Str))
			}
		}
	}()
	defer func() {
		c.close()
		<-readDone
	}()
	tick := time.NewTicker(sentinelTick)
	defer tick.Stop()
	pong := make(chan reply, 1)
	waiting, ticks := 0, 0
	// The periodic resync runs beside the loop, one at a time, so that a
	// slow sentinel holds up neither the sweep nor the PING; it is ended
	// and waited for when watchOne returns.
	resyncCtx, endResync := context.WithCancel(ctx)
	resyncing := make(chan struct{})
	close(resyncing)                // none under way
	var resyncFailures atomic.Int32 // in a row
	defer func() {
		endResync()
		<-resyncing
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readDone:
			readDone <- err // for the deferred wait
			return err
		case r := <-pong:
			if r.err != nil {
				return r.err
			}
			waiting = 0
		case <-tick.C:
			if s.sweep() {
				return nil
			}
			if ticks++; ticks%s.resyncEvery == 0 && isClosed(resyncing) {
				if n := resyncFailures.Load(); n >= maxResyncFailures {
					// The sentinel answers PING but no question: watch
					// another one.
					return fmt.Errorf("sentinel %s: %d resyncs in a row failed", addr, n)
				}
				done := make(chan struct{})
				resyncing = done
				go func() {
					defer close(done)
					// One failed resync leaves the subscription be: the
					// PING tells whether the link to the sentinel holds.
					if s.resync(resyncCtx, cl, addr) != nil {
						resyncFailures.Add(1)
					} else {
						resyncFailures.Store(0)
					}
				}()
			}
			if waiting > 0 {
				if waiting++; waiting > 2 {
					return fmt.Errorf("sentinel %s: no answer to PING", addr)
				}
				continue
			}
			if err := c.send(pong, "PING"); err != nil {
				return err
			}
			waiting = 1
		}
	}
}

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// resync asks the sentinel at addr for the primary and records what it
// says (see namedSince), as the watcher does when it subscribes.
func (s *sentinels) resync(ctx context.Context, cl *Client, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, s.dc.dialTimeout)
	defer cancel()
	s.mu.Lock()
	seq := s.news
	s.mu.Unlock()
	a, err := s.askOne(ctx, addr)
	if err != nil {
		return err
	}
	why := fmt.Sprintf("sentinel %s names %s as primary of %s", addr, a.primary, s.master)
	if a.busy {
		why = fmt.Sprintf("sentinel %s reports a failover of %s at %s", addr, s.master, a.primary)
	}
	if s.namedSince(cl, seq, a, why) { // or the news was newer
		s.mu.Lock()
		s.resyncs++
		s.mu.Unlock()
	}
	return nil
}

// event handles one failover event of the sentinel at from.
func (s *sentinels) event(cl *Client, from, channel, payload string) {
	f := strings.Fields(payload)
	switch {
	case channel == "+switch-master": // <master> <old ip> <old port> <new ip> <new port>
		if len(f) != 5 || f[0] != s.master || !isPort(f[2]) || !isPort(f[4]) {
			return
		}
		old, primary := net.JoinHostPort(f[1], f[2]), net.JoinHostPort(f[3], f[4])
		s.mu.Lock()
		s.failing = "" // the failover ended
		s.switched = true
		stale := s.namedLocked(primary, false) // news
		s.mu.Unlock()
		s.retireAll(cl, stale, fmt.Sprintf("%s switched from %s to %s", s.master, old, primary))
	case strings.HasPrefix(channel, "-failover-abort"):
		if name, _ := eventMaster(f); name == s.master {
			s.mu.Lock()
			s.news++
			s.failing = ""
			s.mu.Unlock()
		}
	default: // a step of a failover
		name, addr := eventMaster(f)
		if name != s.master || addr == "" {
			return
		}
		s.mu.Lock()
		s.news++
		s.failing, s.failEnd, s.failingBy = addr, time.Now().Add(failoverHold), from
		if s.primary == addr {
			s.primary = ""
		}
		s.mu.Unlock()
		s.retire(cl, addr, fmt.Errorf("%w: failover of %s from %s began (%s)", errFailover, s.master, addr, channel))
	}
}

// eventMaster returns the master name and address of a sentinel event's
// payload: "master <name> <ip> <port> ..." or
// "<type> <name> <ip> <port> @ <master name> <master ip> <master port>".
func eventMaster(f []string) (name, addr string) {
	if len(f) >= 4 && f[0] == "master" && isPort(f[3]) {
		return f[1], net.JoinHostPort(f[2], f[3])
	}
	for i, w := range f {
		if w == "@" && i+3 < len(f) && isPort(f[i+3]) {
			return f[i+1], net.JoinHostPort(f[i+2], f[i+3])
		}
	}
	return "", ""
}
