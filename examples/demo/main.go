//go:build unix

package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if os.Getenv("DEMO_ROLE") == "holder" {
		os.Exit(holderMain())
	}
	os.Exit(run())
}

// run is the demo, returning the exit status: 0 when every fact it prints
// held.
func run() int {
	s, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	defer s.stop()
	// Ctrl-C: stop the server before leaving (children die with us).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		s.stop()
		os.Exit(130)
	}()

	say("server: %s at %s", s.name, s.addr)
	fail := func(part string, err error) int {
		say("FAIL in %s: %v", part, err)
		return 1
	}
	if err := contention(s.url(), 4, 3); err != nil {
		return fail("contention", err)
	}
	if err := crash(s.url()); err != nil {
		return fail("crash", err)
	}
	if _, err := frozen(s); err != nil {
		return fail("frozen holder", err)
	}
	if err := lost(s); err != nil {
		return fail("lost holder", err)
	}
	say("done in %d ms: every fact above held", ms(time.Since(start)))
	return 0
}
