//go:build unix

package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/pubsublock/pubsublock"
)

// runStatus prints whether the lock is held and by whom, and returns
// exitOK when it is free and exitHeld when it is held.
//
// Held means the channel has a subscriber (PUBSUB NUMSUB), as contenders
// see it. The holders are the pub/sub clients named CHANNEL-lock with a
// subscription (CLIENT LIST TYPE pubsub); servers without CLIENT LIST
// (miniredis, an ACL user without it) show no details.
func runStatus(o *options, srv server, stdout, stderr io.Writer) int {
	rep := newReporter(stderr, o.verbose, o.channel)
	l, err := pubsublock.New(o.channel, o.config(srv, rep.lib))
	if err != nil {
		rep.fail(err)
		return exitUsage
	}
	rep.event("server", "url", redactURL(o.url))
	// A dial and a round trip, each bounded by the dial timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 2*o.dialTimeout)
	defer cancel()
	st, err := l.Status(ctx)
	if err != nil {
		rep.failServer(err, o)
		return exitUnavailable
	}
	fmt.Fprint(stdout, describe(l, st))
	if !st.Held() {
		return exitOK
	}
	return exitHeld
}

// describe writes what Status found, as status prints it:
//
//	CHANNEL: held
//	holder: id=ID addr=HOST:PORT age=DURATION name=NAME mode=MODE protocol=P (KIND)
//
// A count of subscribers that differs from the holders found is given on
// the first line, and subscribers that are not holders get a note.
func describe(l *pubsublock.Lock, st pubsublock.Status) string {
	var b strings.Builder
	ch := l.Channel()
	switch {
	case !st.Held():
		fmt.Fprintf(&b, "%s: free\n", ch)
		return b.String()
	case st.ListErr != nil:
		fmt.Fprintf(&b, "%s: held%s\nholder: unknown (CLIENT LIST: %v)\n", ch, plural(st.Subscribers), st.ListErr)
		return b.String()
	case st.Subscribers == 1 && len(st.Holders) == 1:
		fmt.Fprintf(&b, "%s: held\n", ch)
	default:
		fmt.Fprintf(&b, "%s: held (%s, %d named %s)\n", ch, subscribers(st.Subscribers), len(st.Holders), l.ClientName())
	}
	if len(st.Holders) == 0 {
		fmt.Fprintf(&b, "holder: none (no subscribed client named %s)\n", l.ClientName())
	}
	for _, h := range st.Holders {
		fmt.Fprintf(&b, "holder: id=%d addr=%s age=%v %s\n", h.ID, h.Addr, h.Age, holderDetails(h))
	}
	if n := others(st); n > 0 {
		fmt.Fprintf(&b, "note: %s\n", othersNote(l, n))
	} else if len(st.Holders) > 1 && !readers(st) {
		b.WriteString("note: contenders subscribe under the holder's name for a moment while they try\n")
	}
	return b.String()
}

// holderDetails says who a holder is, from its name and its answer to
// the status ping: "name=NAME mode=MODE protocol=P (KIND)", or "name=NAME
// (no answer)".
func holderDetails(h pubsublock.Holder) string {
	if !h.Answered {
		return "name=" + h.Name + " (no answer)"
	}
	return fmt.Sprintf("name=%s mode=%s protocol=%d (%s)", h.Name, h.Mode, h.Protocol, h.Kind)
}

// readers reports whether every holder answered as a reader: then the
// lock is shared, and several holders are no contenders.
func readers(st pubsublock.Status) bool {
	for _, h := range st.Holders {
		if h.Mode != pubsublock.ModeShared {
			return false
		}
	}
	return true
}

// others counts the channel's subscribers that are not named like a
// holder.
func others(st pubsublock.Status) int64 {
	if st.ListErr != nil {
		return 0
	}
	return max(st.Subscribers-int64(len(st.Holders)), 0)
}

// othersNote explains what n subscribers that are not holders do to the
// lock.
func othersNote(l *pubsublock.Lock, n int64) string {
	return fmt.Sprintf("subscribers not named %s: %d (redis-cli SUBSCRIBE %s, another program); "+
		"they keep the lock taken, yet no contender ever kills one, so the lock is free only once they unsubscribe",
		l.ClientName(), n, l.Channel())
}

func subscribers(n int64) string {
	if n == 1 {
		return "1 subscriber"
	}
	return fmt.Sprintf("%d subscribers", n)
}

// plural is " (N subscribers)" when N is not 1.
func plural(n int64) string {
	if n == 1 {
		return ""
	}
	return " (" + subscribers(n) + ")"
}
