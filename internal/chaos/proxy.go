//go:build linux

package chaos

import (
	"net"
	"sync"
	"time"
)

// proxy forwards every contender connection to the lock server, and can
// black-hole one of them: stop forwarding both ways without closing
// anything, as a dead network does, and close it later. (redistest.Proxy
// black-holes every connection at once; this test cuts off one holder.)
type proxy struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup // the accept loop and every link's goroutines

	mu    sync.Mutex // guards links
	links map[string]*link
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	// upstream is the local address of the connection to the server: the
	// addr= of the client in the server's CLIENT LIST.
	upstream string

	mu      sync.Mutex    // guards flowing
	flowing chan struct{} // closed while bytes are forwarded
	done    chan struct{} // closed by close
	once    sync.Once
}

// newProxy starts a proxy to target on a free port of 127.0.0.1.
func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{target: target, ln: ln, links: make(map[string]*link)}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address the contenders dial.
func (p *proxy) Addr() string { return p.ln.Addr().String() }

// close stops accepting, closes every link, and waits for the goroutines.
func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for _, l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
}

// stall black-holes the link whose connection to the server has the local
// address upstream, and returns it; nil if there is none.
func (p *proxy) stall(upstream string) *link {
	p.mu.Lock()
	l := p.links[upstream]
	p.mu.Unlock()
	if l == nil {
		return nil
	}
	l.mu.Lock()
	l.flowing = make(chan struct{})
	l.mu.Unlock()
	return l
}

// close closes both sides of the link.
func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.server.Close()
	})
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve dials the server for client c and forwards between them. While
// the server is down the dial fails and c is closed, as a refused
// connection would be.
func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	l := &link{client: c, server: s, upstream: s.LocalAddr().String(),
		flowing: make(chan struct{}), done: make(chan struct{})}
	close(l.flowing)
	p.mu.Lock()
	p.links[l.upstream] = l
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.links, l.upstream)
		p.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Go(func() { l.pipe(s, c) })
	l.pipe(c, s)
	wg.Wait()
}

// pipe copies src to dst while the link flows, and closes the link when
// src ends. Bytes read while the link is black-holed wait here, and so
// does the end of src: the other side sees nothing until close.
func (l *link) pipe(dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		l.mu.Lock()
		flowing := l.flowing
		l.mu.Unlock()
		select {
		case <-flowing:
		case <-l.done:
			return
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
