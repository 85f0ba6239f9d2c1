//go:build unix

package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"time"

	"github.com/pubsublock/pubsublock"
)

// frozen starts a holder process and freezes it with SIGSTOP. Its
// connection stays open, so the server keeps its subscription, and only a
// contender's ping can tell: unanswered for UnavailableTimeout, the
// contender kills the holder's connection (CLIENT KILL) and takes the
// lock. Resumed with SIGCONT, the old holder finds its connection closed
// and is told through Lost. It reports whether the kill happened.
func frozen(s *server) (bool, error) {
	say("3. a holder process freezes")
	if !s.real {
		say("   skipped: miniredis has no CLIENT LIST or CLIENT KILL, so a frozen holder cannot be killed " +
			"(and its synchronous PUBLISH would hang on a subscriber that stops reading); use a real redis-server")
		return false, nil
	}
	h, err := spawnHolder(s.url(), "frozen")
	if err != nil {
		return false, err
	}
	defer h.kill()
	pid := h.cmd.Process.Pid
	say("   holder process %d holds lock %q", pid, "frozen")
	h.signal(syscall.SIGSTOP)
	stopped := time.Now()
	say("   SIGSTOP to holder process %d: it still holds the lock, but cannot answer", pid)

	cfg := lockConfig(s.url())
	cfg.Logger = slog.New(timelineHandler{who: "   waiter"})
	l, err := pubsublock.New("frozen", cfg)
	if err != nil {
		return false, err
	}
	if err := l.Acquire(context.Background()); err != nil {
		return false, err
	}
	say("   frozen holder pinged, silent for %v, killed (CLIENT KILL) and replaced: the waiter holds the lock %d ms after the SIGSTOP",
		cfg.UnavailableTimeout, ms(time.Since(stopped)))
	defer l.Release(context.Background())

	h.signal(syscall.SIGCONT)
	resumed := time.Now()
	say("   SIGCONT to holder process %d", pid)
	line, err := h.next(5 * time.Second)
	if err != nil {
		return true, err
	}
	if !strings.HasPrefix(line, "lost ") {
		return true, fmt.Errorf("resumed holder said %q", line)
	}
	say("   lost holder told: the resumed process's Lost() fired %d ms after SIGCONT (%s)",
		ms(time.Since(resumed)), strings.TrimPrefix(line, "lost "))
	return true, nil
}
