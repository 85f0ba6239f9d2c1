//go:build unix

package main

import (
	"context"
	"errors"
	"time"

	"github.com/pubsublock/pubsublock"
)

// lost takes a lock in this process and has a second client kill its
// connection (CLIENT KILL; on miniredis, which lacks it, a server
// restart): the holder's Lost channel fires and Err says why.
func lost(s *server) error {
	say("4. a holder's connection is killed from outside")
	l, err := pubsublock.New("told", lockConfig(s.url()))
	if err != nil {
		return err
	}
	if err := l.Acquire(context.Background()); err != nil {
		return err
	}
	defer l.Release(context.Background())
	say("   this process holds lock %q", "told")
	var killed time.Time
	if s.real {
		id, err := holderID(s.addr, "told")
		if err != nil {
			return err
		}
		killed = time.Now()
		if _, err := do(s.addr, "CLIENT", "KILL", "ID", id); err != nil {
			return err
		}
		say("   a second client ran CLIENT KILL ID %s (the holder's connection)", id)
	} else {
		killed = time.Now()
		s.mini.Close() // miniredis has no CLIENT KILL: drop every connection
		if err := s.mini.Restart(); err != nil {
			return err
		}
		say("   miniredis has no CLIENT KILL: restarted the server instead, dropping every connection")
	}
	select {
	case <-l.Lost():
	case <-time.After(5 * time.Second):
		return errors.New("Lost() did not fire within 5s")
	}
	if !errors.Is(l.Err(), pubsublock.ErrLost) {
		return errors.New("Err() does not match ErrLost")
	}
	say("   lost holder told: Lost() fired %d ms after the kill; Err() = %v", ms(time.Since(killed)), l.Err())
	return nil
}
