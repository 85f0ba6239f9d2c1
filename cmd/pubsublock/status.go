//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/resp"
)

// runStatus prints whether the lock is held and by whom, and returns
// exitOK when it is free and exitHeld when it is held.
//
// Held means the channel has a subscriber (PUBSUB NUMSUB), as contenders
// see it. The holders are the pub/sub clients named CHANNEL-lock with a
// subscription (CLIENT LIST TYPE pubsub); servers without CLIENT LIST
// (miniredis, an ACL user without it) show no details.
func runStatus(o *options, stdout, stderr io.Writer) int {
	rep := newReporter(stderr, o.verbose, o.channel)
	// New checks the channel and the URL exactly as a lock would.
	if _, err := pubsublock.New(o.channel, pubsublock.Config{URL: o.url}); err != nil {
		rep.fail(err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	c, err := dialURL(ctx, o.url)
	if err != nil {
		rep.errorf("status %s: %v", o.channel, err)
		return exitUnavailable
	}
	defer c.Close()
	vs, err := c.pipeline(
		[]string{"PUBSUB", "NUMSUB", o.channel},
		[]string{"CLIENT", "LIST", "TYPE", "pubsub"})
	if err != nil {
		rep.errorf("status %s: %v", o.channel, err)
		if errors.Is(err, resp.ErrProtocol) {
			return exitSoftware
		}
		return exitUnavailable
	}
	if err := vs[0].Err(); err != nil {
		rep.errorf("status %s: PUBSUB NUMSUB: %v", o.channel, err)
		return exitUnavailable
	}
	n, err := numsub(vs[0], o.channel)
	if err != nil {
		rep.errorf("status %s: %v", o.channel, err)
		return exitSoftware
	}
	if n == 0 {
		fmt.Fprintf(stdout, "%s: free\n", o.channel)
		return exitOK
	}
	if n == 1 {
		fmt.Fprintf(stdout, "%s: held\n", o.channel)
	} else {
		// Contenders subscribe for a moment while they try.
		fmt.Fprintf(stdout, "%s: held (%d subscribers)\n", o.channel, n)
	}
	if err := vs[1].Err(); err != nil {
		fmt.Fprintf(stdout, "holder: unknown (CLIENT LIST: %v)\n", err)
		return exitHeld
	}
	holders := lockHolders(vs[1].Str, o.channel+"-lock")
	if len(holders) == 0 {
		fmt.Fprintf(stdout, "holder: unknown (no subscribed client named %s-lock)\n", o.channel)
	}
	for _, h := range holders {
		fmt.Fprintf(stdout, "holder: id=%s addr=%s age=%v\n", h.id, h.addr, h.age)
	}
	return exitHeld
}

// numsub reads the count of a PUBSUB NUMSUB reply for one channel.
func numsub(v resp.Value, channel string) (int64, error) {
	if v.Type != resp.TypeArray || len(v.Elems) != 2 || string(v.Elems[0].Str) != channel ||
		v.Elems[1].Type != resp.TypeInteger {
		return 0, fmt.Errorf("%w: unexpected PUBSUB NUMSUB reply %.100s", resp.ErrProtocol, v.String())
	}
	return v.Elems[1].Int, nil
}

// holder is a client that holds the lock, as CLIENT LIST shows it.
type holder struct {
	id, addr string
	age      time.Duration // of the connection: an upper bound on the hold
}

// lockHolders picks from CLIENT LIST text the clients called name that
// have a subscription.
func lockHolders(text []byte, name string) []holder {
	var out []holder
	for line := range strings.Lines(string(text)) {
		var h holder
		var named, subscribed bool
		for f := range strings.FieldsSeq(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				h.id = v
			case "addr":
				h.addr = v
			case "age":
				s, _ := strconv.ParseInt(v, 10, 64)
				h.age = time.Duration(s) * time.Second
			case "name":
				named = v == name
			case "sub", "ssub":
				if n, _ := strconv.Atoi(v); n > 0 {
					subscribed = true
				}
			}
		}
		if named && subscribed {
			out = append(out, h)
		}
	}
	return out
}
