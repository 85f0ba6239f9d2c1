// Package oneshot runs a single Redis command on a connection of its own:
// the "second client" that programs in this repository use to inspect or
// kill clients of a server they started. It is not a client library.
package oneshot

import (
	"net"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// Timeout bounds the dial and the round trip of Do.
const Timeout = 5 * time.Second

// Do dials addr, sends the command, and returns its reply, detached from
// the connection's buffers. An error reply is returned as the error.
func Do(addr string, args ...string) (resp.Value, error) {
	c, err := net.DialTimeout("tcp", addr, Timeout)
	if err != nil {
		return resp.Value{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(Timeout))
	if _, err := c.Write(resp.AppendCommand(nil, args...)); err != nil {
		return resp.Value{}, err
	}
	v, err := resp.NewReader(c, resp.Limits{}).Read()
	if err != nil {
		return resp.Value{}, err
	}
	if err := v.Err(); err != nil {
		return resp.Value{}, err
	}
	return v.Clone(), nil
}
