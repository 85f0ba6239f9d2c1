//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pubsublock/pubsublock"
	"github.com/pubsublock/pubsublock/resp"
)

// statusTimeout bounds the status query, dial included.
const statusTimeout = 10 * time.Second

// runStatus prints whether the lock is held and by whom, and returns
// exitOK when it is free and exitHeld when it is held.
//
// Held means the channel has a subscriber (PUBSUB NUMSUB), as contenders
// see it. The holders are the pub/sub clients named CHANNEL-lock with a
// subscription (CLIENT LIST TYPE pubsub); servers without CLIENT LIST
// (miniredis, an ACL user without it) show no details.
func runStatus(o *options, stdout, stderr io.Writer) int {
	rep := newReporter(stderr, o.verbose, o.channel)
	l, err := pubsublock.New(o.channel, pubsublock.Config{URL: o.url})
	if err != nil {
		rep.fail(err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	st, err := l.Status(ctx)
	if err != nil {
		rep.errorf("%v", err)
		if errors.Is(err, resp.ErrProtocol) {
			return exitSoftware
		}
		return exitUnavailable
	}
	switch st.Subscribers {
	case 0:
		fmt.Fprintf(stdout, "%s: free\n", o.channel)
		return exitOK
	case 1:
		fmt.Fprintf(stdout, "%s: held\n", o.channel)
	default:
		// Contenders subscribe for a moment while they try.
		fmt.Fprintf(stdout, "%s: held (%d subscribers)\n", o.channel, st.Subscribers)
	}
	if st.ListErr != nil {
		fmt.Fprintf(stdout, "holder: unknown (CLIENT LIST: %v)\n", st.ListErr)
		return exitHeld
	}
	if len(st.Holders) == 0 {
		fmt.Fprintf(stdout, "holder: unknown (no subscribed client named %s)\n", l.ClientName())
	}
	for _, h := range st.Holders {
		fmt.Fprintf(stdout, "holder: id=%d addr=%s age=%v\n", h.ID, h.Addr, h.Age)
	}
	return exitHeld
}
