package redistest

import (
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on 127.0.0.1 that forwards each connection it
// accepts to a target address, and can play a dead network ([Proxy.Blackhole])
// or a reset one ([Proxy.CloseAll]). In record mode ([Proxy.Record]) it
// keeps what the clients send, for a test of the exact bytes; it injects
// bytes of its own into what the clients receive with [Proxy.Inject].
// Create it with [NewProxy]; it stops with the test.
type Proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // counts the accept loop and every connection's goroutines

	mu         sync.Mutex // guards links, forwarding, blackholed, closed, recording and sent
	links      map[*link]struct{}
	forwarding chan struct{} // closed while bytes may flow; open while blackholed
	blackholed bool
	closed     bool
	recording  bool
	sent       []byte // what the clients sent since Record
}

// link is one proxied connection: a client and its connection to the
// target.
type link struct {
	client, server net.Conn
	done           chan struct{} // closed by close
	once           sync.Once
	wmu            sync.Mutex // serialises writes to client: the target's bytes and Inject's
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.server.Close()
	})
}

// NewProxy starts a proxy on a free port of 127.0.0.1 that forwards to
// target (host:port), dialing it once for every connection it accepts. The
// proxy, its connections and its goroutines are stopped with t.Cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy listen: %v", err)
	}
	p := &Proxy{
		target:     target,
		ln:         ln,
		links:      make(map[*link]struct{}),
		forwarding: make(chan struct{}),
	}
	close(p.forwarding)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr returns the address clients dial, "127.0.0.1:<port>".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Blackhole stops forwarding in both directions, silently: nothing is
// closed, bytes already read wait in the proxy, and the sender's writes
// succeed until the kernel buffers fill, as on a network that died. A
// close on either side waits too. Connections accepted meanwhile are
// dialed to the target but carry nothing. Resume undoes it.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.blackholed {
		p.blackholed = true
		p.forwarding = make(chan struct{})
	}
}

// Resume forwards again after Blackhole, delivering what waited in order,
// as TCP does when a network comes back before a connection times out.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blackholed {
		p.blackholed = false
		close(p.forwarding)
	}
}

// CloseAll closes every connection the proxy holds, on both sides, as a
// network reset would. The proxy keeps accepting new connections.
func (p *Proxy) CloseAll() {
	for _, l := range p.linksNow() {
		l.close()
	}
}

// linksNow returns the links the proxy holds.
func (p *Proxy) linksNow() []*link {
	p.mu.Lock()
	defer p.mu.Unlock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	return links
}

// Record turns on record mode: from now on the proxy keeps every byte that
// the clients send, on all connections, in the order it reads them, and
// [Proxy.Sent] returns them. Bytes held back by a blackhole count as sent.
func (p *Proxy) Record() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recording = true
}

// Sent returns the bytes the clients sent since [Proxy.Record].
func (p *Proxy) Sent() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.sent)
}

// Inject writes data to every client connection at once, as if the target
// had sent it, even through a blackhole. It goes between two of the
// proxy's writes of the target's bytes, which may split a reply: inject
// into connections that expect none, such as a subscribed one that is
// idle.
func (p *Proxy) Inject(data string) {
	for _, l := range p.linksNow() {
		_ = l.toClient([]byte(data))
	}
}

// toClient writes b to the link's client.
func (l *link) toClient(b []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_, err := l.client.Write(b)
	return err
}

// close stops the proxy and waits for all its goroutines.
func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.CloseAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed by close
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the target for client c and forwards between them.
func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	l := &link{client: c, server: s, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.pipe(l, true)
	}()
	p.pipe(l, false)
}

// pipe copies from the client to the target (toTarget) or back while
// forwarding is on, recording what the client sends, then closes the link
// when its source ends.
func (p *Proxy) pipe(l *link, toTarget bool) {
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	src, write := l.server, l.toClient
	if toTarget {
		src, write = l.client, func(b []byte) error { _, err := l.server.Write(b); return err }
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if toTarget && n > 0 {
			p.record(buf[:n])
		}
		if !p.wait(l) {
			return
		}
		if n > 0 {
			if err := write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// record keeps b, which a client sent, in record mode.
func (p *Proxy) record(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.recording {
		p.sent = append(p.sent, b...)
	}
}

// wait blocks while the proxy is blackholed. It reports false if the link
// was closed meanwhile.
func (p *Proxy) wait(l *link) bool {
	p.mu.Lock()
	forwarding := p.forwarding
	p.mu.Unlock()
	select {
	case <-forwarding:
		return true
	case <-l.done:
		return false
	}
}
