// Package oracle is the referee of the chaos test (see package chaos): a
// critical section kept on a second Redis, outside the lock under test, and
// the records a contender prints about what it did.
//
// A contender that holds the lock enters the critical section with
// [Client.Enter], an INCR that must return 1 (anything else is an overlap:
// another hold is inside), does its work as [Client.Step]s, each a write
// that the oracle checks against a fence of fencing tokens, and leaves with
// [Client.Leave], a DECR. The oracle's functions (oracle.lua, loaded with
// [Load]) run atomically on the oracle's server and stamp each answer with
// its clock, so the order they report is the order that happened.
//
// The Python contender (../contender/contender.py) calls the same functions
// and prints the same [Event] lines.
package oracle

import (
	_ "embed"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/pubsublock/pubsublock/resp"
)

// Library is the source of the oracle's Redis functions (library "chaos":
// enter, step, leave, sweep). [Load] loads it.
//
//go:embed oracle.lua
var Library string

// Timeout bounds each call's dial and round trip. A contender that is
// SIGSTOPped in the middle of a call must still read its answer after
// SIGCONT, so it is well above the longest stop of the test.
const Timeout = 10 * time.Second

// Client is one connection to the oracle's server, redialed after an
// error. It is not safe for concurrent use.
type Client struct {
	addr string
	c    net.Conn
	r    *resp.Reader
	buf  []byte
}

// NewClient returns a Client for the oracle at addr (host:port). It dials
// on first use.
func NewClient(addr string) *Client { return &Client{addr: addr} }

// Close closes the connection.
func (o *Client) Close() error {
	if o.c == nil {
		return nil
	}
	err := o.c.Close()
	o.c = nil
	return err
}

// Do runs one command and returns its reply, detached from the reader's
// buffers. An error reply is returned as the error; after any other error
// the connection is closed and the next call dials again.
func (o *Client) Do(args ...string) (resp.Value, error) {
	if o.c == nil {
		c, err := net.DialTimeout("tcp", o.addr, Timeout)
		if err != nil {
			return resp.Value{}, err
		}
		o.c, o.r = c, resp.NewReader(c, resp.Limits{})
	}
	_ = o.c.SetDeadline(time.Now().Add(Timeout))
	o.buf = resp.AppendCommand(o.buf[:0], args...)
	if _, err := o.c.Write(o.buf); err != nil {
		o.Close()
		return resp.Value{}, err
	}
	v, err := o.r.Read()
	if err != nil {
		o.Close()
		return resp.Value{}, err
	}
	return v.Clone(), v.Err()
}

// Load loads the oracle's functions into the server at addr, replacing
// them if they are loaded already.
func Load(addr string) error {
	o := NewClient(addr)
	defer o.Close()
	_, err := o.Do("FUNCTION", "LOAD", "REPLACE", Library)
	return err
}

// Entered is the oracle's answer to [Client.Enter].
type Entered struct {
	N         int64    // what INCR returned: 1 unless another hold was inside
	Time      int64    // the oracle's clock, Unix nanoseconds
	Regressed bool     // the token was below one that entered before: a stale holder
	Others    []string // the holds that were inside
}

// Enter enters the critical section for hold (a unique name, see
// [Event.Hold]) with its fencing token (0 without fencing).
func (o *Client) Enter(hold string, token int64) (Entered, error) {
	v, err := o.Do("FCALL", "enter", "0", hold, strconv.FormatInt(token, 10))
	if err != nil {
		return Entered{}, err
	}
	if len(v.Elems) < 3 {
		return Entered{}, fmt.Errorf("oracle: enter answered %v", v)
	}
	e := Entered{N: v.Elems[0].Int, Time: v.Elems[1].Int * 1000, Regressed: v.Elems[2].Int == 1}
	for _, h := range v.Elems[3:] {
		e.Others = append(e.Others, string(h.Str))
	}
	return e, nil
}

// Stepped is the oracle's answer to [Client.Step].
type Stepped struct {
	Superseded bool  // a newer hold (a higher token; without fencing, any) entered after this one
	Refused    bool  // the fence turned the write down
	Time       int64 // the oracle's clock, Unix nanoseconds
}

// Step is one write of hold's critical section, carrying its fencing
// token.
func (o *Client) Step(hold string, token int64) (Stepped, error) {
	v, err := o.Do("FCALL", "step", "0", hold, strconv.FormatInt(token, 10))
	if err != nil {
		return Stepped{}, err
	}
	if len(v.Elems) != 3 {
		return Stepped{}, fmt.Errorf("oracle: step answered %v", v)
	}
	return Stepped{Superseded: v.Elems[0].Int == 1, Refused: v.Elems[1].Int == 1, Time: v.Elems[2].Int * 1000}, nil
}

// Leave leaves the critical section for hold and returns the oracle's
// time. Leaving twice, or without having entered, changes nothing.
func (o *Client) Leave(hold string) (int64, error) {
	v, err := o.Do("FCALL", "leave", "0", hold)
	if err != nil {
		return 0, err
	}
	return v.Int * 1000, nil
}

// Sweep takes out of the critical section every hold whose name starts
// with prefix, as a dead process cannot leave, and returns how many there
// were.
func (o *Client) Sweep(prefix string) (int64, error) {
	v, err := o.Do("FCALL", "sweep", "0", prefix)
	if err != nil {
		return 0, err
	}
	return v.Int, nil
}
