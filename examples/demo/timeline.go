//go:build unix

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

var (
	start   = time.Now()
	printMu sync.Mutex // keeps timeline lines whole
)

// say prints one timeline line, prefixed with the milliseconds since start.
func say(format string, args ...any) {
	printMu.Lock()
	defer printMu.Unlock()
	fmt.Fprintf(os.Stdout, "[%5dms] %s\n", time.Since(start).Milliseconds(), fmt.Sprintf(format, args...))
}

// ms is d in whole milliseconds, for printing.
func ms(d time.Duration) int64 { return d.Milliseconds() }

// timelineHandler puts a Lock's log records of level Info and above on the
// timeline, so what the library does (killing a silent holder, losing a
// lock) shows up where it happens.
type timelineHandler struct {
	who   string
	attrs []slog.Attr
}

// Enabled passes Info and above: the library logs its routine at Debug.
func (h timelineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

// Handle prints the record on the timeline, without the channel attribute.
func (h timelineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(h.who + ": library says " + r.Message)
	add := func(a slog.Attr) bool {
		if a.Key != "channel" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	say("%s", b.String())
	return nil
}

// WithAttrs returns a handler that prints as before with as added.
func (h timelineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], as...)
	return h
}

// WithGroup ignores groups: the timeline is flat.
func (h timelineHandler) WithGroup(string) slog.Handler { return h }
