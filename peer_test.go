package pubsublock

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/pubsublock/pubsublock/internal/redistest"
	"github.com/pubsublock/pubsublock/resp"
)

// TestPeerClosed: a connection the server closed is seen as closed without
// reading it, even with replies still unread before the close; an open
// one is not.
func TestPeerClosed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("POLLRDHUP is Linux's")
	}
	s := redistest.Redis(t)
	ctx := context.Background()
	c, err := dialConn(ctx, dialConfig{network: "tcp", addr: s.Addr(), dialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	v, err := c.do(ctx, "CLIENT", "ID")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.peerClosed(); err != nil {
		t.Fatalf("an open connection: %v", err)
	}
	// A reply left unread, then the server closes the connection.
	if _, err := c.nc.Write(resp.AppendCommand(nil, "PING")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	mustDo(t, s, "CLIENT", "KILL", "ID", strconv.FormatInt(v.Int, 10))
	waitFor(t, func() bool { return c.peerClosed() != nil })
	if c.failed() == nil {
		t.Error("a connection found closed is not retired")
	}
}

// TestErrSeesClosedConnection: Err reports a hold whose connection the
// server closed as lost, whether or not the worker has read the close.
func TestErrSeesClosedConnection(t *testing.T) {
	s := redistest.Redis(t)
	l := newLock(t, "closed", Config{URL: s.URL()})
	if err := l.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, id := range s.SubscriberIDs(t, "closed-lock") {
		mustDo(t, s, "CLIENT", "KILL", "ID", strconv.FormatInt(id, 10))
	}
	waitFor(t, func() bool { return l.Err() != nil })
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("Err reported the loss, and Lost() is open")
	}
}
