package pubsublock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// peer is a holder of another implementation on raw RESP2 connections, so
// that the wire format of portalocker 4 is checked without Python: a
// protocol-1 peer names its connection "<channel>-lock-<uuid4 hex>" and
// answers a ping with its holder record, byte for byte as portalocker 4.1's
// json.dumps writes it; a legacy peer (portalocker 2.x and 3.x) names it
// "<channel>-lock" and answers with the Unix time as Python prints it. A
// frozen peer stays subscribed and answers nothing, as a SIGSTOPped
// process.
type peer struct {
	channel  string
	id       string // "" for a legacy peer
	name     string
	clientID int64
	mode     atomic.Value // Mode it answers with
	sub, pub net.Conn
	frozen   atomic.Bool
	answered atomic.Int64 // pings answered
	done     chan struct{}
}

// startPeer subscribes a peer to channel on the server at addr: a
// protocol-1 one answering with mode, or a legacy one when mode is "". It
// takes no lock: it subscribes at once, whoever holds the channel.
func startPeer(t testing.TB, addr, channel string, mode Mode) *peer {
	t.Helper()
	p := &peer{channel: channel, name: channel + "-lock", done: make(chan struct{})}
	if mode != "" {
		p.id = newHolderID()
		p.name += "-" + p.id
		p.mode.Store(mode)
	}
	var err error
	if p.sub, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if p.pub, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	rd := resp.NewReader(p.sub, resp.Limits{})
	cmds := resp.AppendCommand(nil, "CLIENT", "SETNAME", p.name)
	cmds = resp.AppendCommand(cmds, "CLIENT", "ID")
	cmds = resp.AppendCommand(cmds, "SUBSCRIBE", channel)
	_ = p.sub.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.sub.Write(cmds); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		v, err := rd.Read()
		if err == nil {
			err = v.Err()
		}
		if err != nil {
			t.Fatalf("peer %s: reply %d: %v", p.name, i, err)
		}
		if i == 1 {
			p.clientID = v.Int
		}
	}
	_ = p.sub.SetDeadline(time.Time{})
	go p.serve(rd)
	t.Cleanup(p.close)
	return p
}

// serve reads the subscribed connection and answers pings until it
// closes.
func (p *peer) serve(rd *resp.Reader) {
	defer close(p.done)
	pr := bufio.NewReader(p.pub)
	for {
		v, err := rd.Read()
		if err != nil {
			return
		}
		if !isKind(v, "message") || len(v.Elems) != 3 || p.frozen.Load() {
			continue
		}
		replyCh, _, ok := parsePing(v.Elems[2].Str)
		if !ok {
			continue
		}
		ans := pythonTime()
		if p.id != "" {
			ans = fmt.Sprintf(`{"holder_id": "%s", "mode": "%s", "protocol": 1}`, p.id, p.mode.Load())
		}
		_ = p.pub.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := p.pub.Write(resp.AppendCommand(nil, "PUBLISH", replyCh, ans)); err != nil {
			return
		}
		if _, err := pr.ReadString('\n'); err != nil {
			return
		}
		p.answered.Add(1)
	}
}

// pythonTime is the Unix time as Python's str(time.time()) prints it: the
// shortest decimal that reads back as the same float.
func pythonTime() string {
	return strconv.FormatFloat(float64(time.Now().UnixMicro())/1e6, 'f', -1, 64)
}

// freeze makes the peer stop answering; it stays subscribed.
func (p *peer) freeze() { p.frozen.Store(true) }

func (p *peer) close() {
	p.sub.Close()
	p.pub.Close()
	<-p.done
}

// alive reports whether the peer's subscribed connection is still open:
// the server closes it when the peer is killed.
func (p *peer) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// waitKilled waits up to limit for the server to close the peer's
// subscribed connection.
func (p *peer) waitKilled(t testing.TB, limit time.Duration) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("peer %s not killed within %v", p.name, limit)
	}
}

// TestPeerFrozenHolderTakenOver: a frozen portalocker 4 holder (named with
// its holder id) is killed by a waiting Go Acquire, which takes the lock
// within UnavailableTimeout + CheckInterval + 100ms.
func TestPeerFrozenHolderTakenOver(t *testing.T) {
	for _, mode := range []Mode{ModeExclusive, ModeShared, ""} {
		name := string(mode)
		if mode == "" {
			name = "legacy"
		}
		t.Run(name, func(t *testing.T) {
			leakCheck(t)
			s := redistest.Redis(t)
			const (
				checkInterval = 100 * time.Millisecond
				unavailable   = 500 * time.Millisecond
			)
			p := startPeer(t, s.Addr(), "frozen4", mode)
			g := newLock(t, "frozen4", Config{URL: s.URL(), CheckInterval: checkInterval, UnavailableTimeout: unavailable})
			if err := g.TryAcquire(context.Background()); !errors.Is(err, ErrAlreadyLocked) {
				t.Fatalf("TryAcquire on a live peer's lock: %v", err)
			}
			if !p.alive() || p.answered.Load() == 0 {
				t.Fatalf("live peer killed (%v) or not pinged (%d answers)", !p.alive(), p.answered.Load())
			}
			p.freeze()
			start := time.Now()
			mustAcquire(t, g)
			d := time.Since(start)
			t.Logf("frozen %s peer taken over in %v (UnavailableTimeout %v, CheckInterval %v)", p.name, d, unavailable, checkInterval)
			if limit := unavailable + checkInterval + 100*time.Millisecond; d > limit {
				t.Errorf("take-over in %v, want at most %v", d, limit)
			}
			p.waitKilled(t, time.Second)
		})
	}
}

// TestPeerKillsOnlySilent: among several holders (shared portalocker 4
// readers, a legacy holder), a Go contender kills exactly those that do not
// answer: a protocol-1 holder by its id, the legacy name only when no
// legacy answer came. Connections that only look like holders, and the
// holders of channel "kill-lock-x" (whose names start with "kill-lock-"),
// are never touched.
func TestPeerKillsOnlySilent(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	cfg := Config{URL: s.URL(), UnavailableTimeout: 300 * time.Millisecond}
	live := startPeer(t, s.Addr(), "kill", ModeShared)
	frozen := startPeer(t, s.Addr(), "kill", ModeShared)
	frozen.freeze()
	legacy := startPeer(t, s.Addr(), "kill", "")
	// Holders of another channel whose names extend "kill-lock-"
	// (portalocker 4.1 killed them: upstream #142), frozen.
	other := startPeer(t, s.Addr(), "kill-lock-x", ModeShared)
	other.freeze()
	// A frozen subscriber of "kill" named like a holder, but without a
	// holder id: not a holder.
	lookalike := rawSubscriber(t, s.Addr(), "kill", "kill-lock-notanid")

	g := newLock(t, "kill", cfg)
	alive, err := g.CheckOrKill(context.Background())
	if err != nil || alive {
		t.Fatalf("CheckOrKill = %v, %v; want not alive (one holder silent)", alive, err)
	}
	frozen.waitKilled(t, time.Second)
	for _, p := range []*peer{live, legacy, other} {
		if !p.alive() {
			t.Errorf("%s killed", p.name)
		}
	}
	if !lookalike.alive() {
		t.Error("a subscriber named kill-lock-notanid was killed")
	}

	// Now the legacy holder is frozen: no legacy answer comes, so the
	// legacy name is silent.
	legacy.freeze()
	if alive, err := g.CheckOrKill(context.Background()); err != nil || alive {
		t.Fatalf("CheckOrKill = %v, %v; want not alive (legacy holder silent)", alive, err)
	}
	legacy.waitKilled(t, time.Second)
	if !live.alive() || !other.alive() || !lookalike.alive() {
		t.Errorf("live %v, other channel %v, lookalike %v: want all alive", live.alive(), other.alive(), lookalike.alive())
	}
	if alive, err := g.CheckOrKill(context.Background()); err != nil || !alive {
		t.Fatalf("CheckOrKill = %v, %v; want alive (the live reader)", alive, err)
	}
}

// rawSubscriber subscribes a connection named name to channel and never
// reads from it again.
func rawSubscriber(t *testing.T, addr, channel, name string) *peer {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{channel: channel, name: name, sub: c, pub: c, done: make(chan struct{})}
	if _, err := c.Write(resp.AppendCommand(resp.AppendCommand(nil, "CLIENT", "SETNAME", name), "SUBSCRIBE", channel)); err != nil {
		t.Fatal(err)
	}
	// Read up to the confirmation, then only watch for EOF.
	go func() {
		defer close(p.done)
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	waitFor(t, func() bool {
		out, err := redistestDo(addr, "PUBSUB", "NUMSUB", channel)
		return err == nil && !strings.HasSuffix(out, "\n0")
	})
	t.Cleanup(p.close)
	return p
}

// redistestDo runs one command on a fresh connection to addr and returns
// its reply as text.
func redistestDo(addr string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialConn(ctx, dialConfig{network: "tcp", addr: addr, dialTimeout: 5 * time.Second})
	if err != nil {
		return "", err
	}
	defer c.close()
	v, err := c.do(ctx, args...)
	if err != nil {
		return "", err
	}
	return v.String(), nil
}

// TestPeerStatus: Status lists each holder with its id, mode, protocol and
// kind, whatever its version, and tells a silent one.
func TestPeerStatus(t *testing.T) {
	leakCheck(t)
	s := redistest.Redis(t)
	reader := startPeer(t, s.Addr(), "st", ModeShared)
	legacy := startPeer(t, s.Addr(), "st", "")
	frozen := startPeer(t, s.Addr(), "st", ModePending)
	frozen.freeze()
	l := newLock(t, "st", Config{URL: s.URL(), UnavailableTimeout: 300 * time.Millisecond})
	st, err := l.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Subscribers != 3 || len(st.Holders) != 3 {
		t.Fatalf("Status = %+v", st)
	}
	want := map[int64]Holder{
		reader.clientID: {Name: reader.name, HolderID: reader.id, Answered: true, Mode: ModeShared, Protocol: 1, Kind: KindPortalocker4},
		legacy.clientID: {Name: legacy.name, Answered: true, Mode: ModeExclusive, Protocol: 0, Kind: KindLegacy},
		frozen.clientID: {Name: frozen.name, HolderID: frozen.id},
	}
	for _, h := range st.Holders {
		w, ok := want[h.ID]
		if !ok || h.Addr == "" {
			t.Errorf("unexpected holder %+v", h)
			continue
		}
		w.ID, w.Addr, w.Age = h.ID, h.Addr, h.Age
		if h != w {
			t.Errorf("holder %+v, want %+v", h, w)
		}
	}
	if !frozen.alive() {
		t.Error("Status killed a silent holder")
	}
}

// The Go holder process of the peer and interop tests:
// TestPeerHelperProcess runs in a child test binary when
// PUBSUBLOCK_PEER_HELPER is set. It acquires the lock on
// PUBSUBLOCK_CHANNEL at PUBSUBLOCK_URL with PUBSUBLOCK_PROTOCOL, prints
// "held <holder id>", and releases when its stdin closes.
const peerHelperEnv = "PUBSUBLOCK_PEER_HELPER"

func TestPeerHelperProcess(t *testing.T) {
	if os.Getenv(peerHelperEnv) != "1" {
		return
	}
	cfg := Config{URL: os.Getenv("PUBSUBLOCK_URL"), Timeout: 10 * time.Second}
	cfg.Protocol, _ = strconv.Atoi(os.Getenv("PUBSUBLOCK_PROTOCOL"))
	l, err := New(os.Getenv("PUBSUBLOCK_CHANNEL"), cfg)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := l.Acquire(ctx); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("held", l.HolderID())
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = l.Release(context.Background())
	os.Exit(0)
}

// startGoHolder starts the test binary as a Go holder of channel on url
// speaking protocol, waits until it holds the lock, and returns it with
// its client name.
func startGoHolder(t *testing.T, url, channel string, protocol int) (*redistest.Proc, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeerHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), peerHelperEnv+"=1", "PUBSUBLOCK_URL="+url, "PUBSUBLOCK_CHANNEL="+channel,
		"PUBSUBLOCK_PROTOCOL="+strconv.Itoa(protocol))
	p := redistest.StartProc(t, cmd)
	id := strings.TrimSpace(strings.TrimPrefix(p.Expect(t, "held", 15*time.Second), "held"))
	name := channel + "-lock"
	if id != "" {
		name += "-" + id
	}
	return p, name
}

// rawPing publishes a ping for the reply channel replyCh on channel and
// returns the answers that come within wait.
func rawPing(t *testing.T, addr, channel, replyCh string, wait time.Duration) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := resp.NewReader(c, resp.Limits{})
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(resp.AppendCommand(nil, "SUBSCRIBE", replyCh)); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Read(); err != nil { // the confirmation
		t.Fatal(err)
	}
	if _, err := redistest.Do(addr, "PUBLISH", channel, pingMessage(replyCh)); err != nil {
		t.Fatal(err)
	}
	var out []string
	_ = c.SetDeadline(time.Now().Add(wait))
	for {
		v, err := rd.Read()
		if err != nil {
			return out
		}
		if isKind(v, "message") && len(v.Elems) == 3 {
			out = append(out, string(v.Elems[2].Str))
		}
	}
}

// TestPeerGoHolderAnswers: a Go holder answers in the pinger's dialect:
// with Protocol 1 it is named "<channel>-lock-<holder id>" and answers the
// pings of portalocker 4 (reply channel "<channel>-<32 hex>") with its
// holder record, and the pings of portalocker 2.x and 3.x (reply channel
// "<channel>-<float>") with the Unix time; with Protocol 0 it is named
// "<channel>-lock" and answers every ping with the Unix time.
func TestPeerGoHolderAnswers(t *testing.T) {
	for _, url := range []string{"", "?protocol=2"} {
		for _, protocol := range []int{0, 1} {
			t.Run(fmt.Sprintf("protocol%d%s", protocol, url), func(t *testing.T) {
				leakCheck(t)
				s := redistest.Redis(t)
				l := newLock(t, "ans", Config{URL: s.URL() + url, Protocol: protocol})
				mustAcquire(t, l)
				if ids := s.SubscriberIDs(t, l.ClientName()); len(ids) != 1 {
					t.Fatalf("connections named %s: %v", l.ClientName(), ids)
				}
				record := `{"holder_id": "` + l.HolderID() + `", "mode": "exclusive", "protocol": 1, "client": "pubsublock"}`
				if protocol == 0 {
					if l.ClientName() != "ans-lock" || l.HolderID() != "" {
						t.Fatalf("Protocol 0: ClientName %q, HolderID %q", l.ClientName(), l.HolderID())
					}
					record = ""
				} else if !isHolderID(l.HolderID()) || l.ClientName() != "ans-lock-"+l.HolderID() {
					t.Fatalf("Protocol 1: ClientName %q, HolderID %q", l.ClientName(), l.HolderID())
				}
				v4 := rawPing(t, s.Addr(), "ans", "ans-"+newHolderID(), 300*time.Millisecond)
				v2 := rawPing(t, s.Addr(), "ans", "ans-0.5", 300*time.Millisecond)
				if len(v4) != 1 || len(v2) != 1 {
					t.Fatalf("answers: %q to a portalocker 4 ping, %q to a 2.x ping", v4, v2)
				}
				if a := parseAnswer([]byte(v2[0])); !a.legacy() || !a.goStamp {
					t.Errorf("answer to a 2.x ping: %q, want the Unix time with 9 decimals", v2[0])
				}
				if record == "" {
					if a := parseAnswer([]byte(v4[0])); !a.legacy() || !a.goStamp {
						t.Errorf("Protocol 0: answer to a portalocker 4 ping: %q, want the Unix time", v4[0])
					}
				} else if v4[0] != record {
					t.Errorf("answer to a portalocker 4 ping:\n%s\nwant\n%s", v4[0], record)
				}
			})
		}
	}
}

// TestPeerFrozenGoHolder: a frozen Go holder of either protocol is killed
// by a Go contender, which takes the lock.
func TestPeerFrozenGoHolder(t *testing.T) {
	for _, protocol := range []int{0, 1} {
		t.Run(fmt.Sprintf("protocol%d", protocol), func(t *testing.T) {
			leakCheck(t)
			s := redistest.Redis(t)
			p, name := startGoHolder(t, s.URL(), "frozengo", protocol)
			if ids := s.SubscriberIDs(t, name); len(ids) != 1 {
				t.Fatalf("holder connections named %s: %v", name, ids)
			}
			p.Signal(t, syscall.SIGSTOP)
			g := newLock(t, "frozengo", Config{URL: s.URL(), Protocol: 1 - protocol, CheckInterval: 100 * time.Millisecond,
				UnavailableTimeout: 300 * time.Millisecond})
			start := time.Now()
			mustAcquire(t, g)
			t.Logf("frozen Go holder (Protocol %d) taken over in %v", protocol, time.Since(start))
			if ids := s.SubscriberIDs(t, name); len(ids) != 0 {
				t.Errorf("frozen holder still subscribed: %v", ids)
			}
		})
	}
}
