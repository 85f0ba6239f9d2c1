//go:build unix

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
)

func TestStatus(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	r := runBin(t, s.URL(), "status", "ch")
	r.want(t, 0)
	if r.stdout != "ch: free\n" {
		t.Errorf("status of a free lock: %q", r.stdout)
	}

	release := hold(t, s.URL(), "ch")
	line := holderLine(t, s, "ch")
	r = runBin(t, s.URL(), "status", "ch")
	r.want(t, 1)
	want := "ch: held\nholder: id=" + field(line, "id") + " addr=" + field(line, "addr") + " age="
	if !strings.HasPrefix(r.stdout, want) {
		t.Errorf("status of a held lock:\n%s\nwant it to start with:\n%s", r.stdout, want)
	}
	// Flags may come after "status" too.
	runBin(t, "redis://127.0.0.1:1", "status", "--url", s.URL(), "ch").want(t, 1)
	runBin(t, s.URL(), "status", "other").want(t, 0)

	release()
	runBin(t, s.URL(), "status", "ch").want(t, 0)
}

// TestStatusMiniredis: without CLIENT LIST the holder is unknown, but held
// and free are still told apart.
func TestStatusMiniredis(t *testing.T) {
	t.Parallel()
	m := redistest.Miniredis(t)
	url := "redis://" + m.Addr()
	runBin(t, url, "status", "ch").want(t, 0)
	hold(t, url, "ch")
	r := runBin(t, url, "status", "ch")
	r.want(t, 1)
	if !strings.HasPrefix(r.stdout, "ch: held\nholder: unknown") {
		t.Errorf("status on miniredis: %q", r.stdout)
	}
	runBin(t, url, "-n", "ch", "true").want(t, 1)
}

func TestStatusAuth(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t) // the harness cannot start one with --requirepass: it PINGs
	if _, err := s.Do("CONFIG", "SET", "requirepass", "sesame"); err != nil {
		t.Fatal(err)
	}
	url := "redis://:sesame@" + s.Addr()
	runBin(t, url, "status", "ch").want(t, 0)
	hold(t, url, "ch")
	runBin(t, url, "status", "ch").want(t, 1)
	runBin(t, "redis://sesame@"+s.Addr(), "status", "ch").want(t, 1) // lone user info is the password
	r := runBin(t, "redis://:wrong@"+s.Addr(), "status", "ch")
	r.want(t, 69)
	r = runBin(t, s.URL(), "status", "ch")
	r.want(t, 69)
	if !strings.Contains(r.stderr, "NOAUTH") {
		t.Errorf("stderr: %q", r.stderr)
	}
}

// subscribe subscribes a client that is no lock holder to channel, as
// redis-cli SUBSCRIBE does, until the test ends.
func subscribe(t *testing.T, addr, channel string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(channel), channel)
	var got []byte
	buf := make([]byte, 256)
	for !bytes.HasSuffix(got, []byte(":1\r\n")) {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("SUBSCRIBE %s: %v (read %q)", channel, err, got)
		}
		got = append(got, buf[:n]...)
	}
	_ = c.SetReadDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, c) }() // the pings of contenders
}

// TestStatusOtherSubscribers: a subscriber that is no holder keeps the
// lock; status and -v say so.
func TestStatusOtherSubscribers(t *testing.T) {
	t.Parallel()
	s := redistest.Redis(t)
	subscribe(t, s.Addr(), "ch")
	r := runBin(t, s.URL(), "status", "ch")
	r.want(t, 1)
	want := "ch: held (1 subscriber, 0 named ch-lock)\nholder: none (no subscribed client named ch-lock)\n" +
		"note: subscribers not named ch-lock: 1 "
	if !strings.HasPrefix(r.stdout, want) {
		t.Errorf("status:\n%s\nwant it to start with:\n%s", r.stdout, want)
	}
	r = runBin(t, s.URL(), "-v", "-n", "ch", "touch", "ran")
	r.want(t, 1)
	if n := strings.Count(r.stderr, "subscribers not named ch-lock: 1"); n != 1 {
		t.Errorf("-v -n tells %d times of the subscriber that is no holder:\n%s", n, r.stderr)
	}
	// While waiting, too, once.
	r = runBin(t, s.URL(), "-v", "-w", "2", "--unavailable-timeout", "0.2", "--check-interval", "0.1", "ch", "touch", "ran")
	r.want(t, 1)
	if n := strings.Count(r.stderr, "subscribers not named ch-lock: 1"); n != 1 {
		t.Errorf("-v -w 2 tells %d times of the subscriber that is no holder:\n%s", n, r.stderr)
	}

	hold(t, s.URL(), "ch2")
	subscribe(t, s.Addr(), "ch2")
	r = runBin(t, s.URL(), "status", "ch2")
	r.want(t, 1)
	if !strings.HasPrefix(r.stdout, "ch2: held (2 subscribers, 1 named ch2-lock)\nholder: id=") ||
		!strings.Contains(r.stdout, "\nnote: subscribers not named ch2-lock: 1 ") {
		t.Errorf("status of a lock with a holder and another subscriber:\n%s", r.stdout)
	}
}

// garbageServer answers every connection with something that is not
// RESP, and returns its URL.
func garbageServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\n\r\n")
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return "redis://" + l.Addr().String()
}

// TestGarbageReply: a server that does not speak RESP cannot be used:
// status and a locked run both exit 69, naming the protocol error once.
func TestGarbageReply(t *testing.T) {
	t.Parallel()
	url := garbageServer(t)
	for _, args := range [][]string{{"status", "ch"}, {"ch", "touch", "ran"}, {"-n", "ch", "true"}} {
		r := runBin(t, url, args...)
		r.want(t, 69)
		if !strings.Contains(r.stderr, "protocol") || strings.Contains(r.stderr, "pubsublock: pubsublock:") {
			t.Errorf("pubsublock %q: stderr %q", args, r.stderr)
		}
	}
}
