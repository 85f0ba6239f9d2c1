package pubsublock

import (
	"fmt"
	"time"
)

// health is the health-check goroutine of a hold: every interval it PINGs
// the subscribed connection (see probe), and if no answer comes within
// timeout, or an error, it closes the connection, which ends the hold (the
// worker reports the loss). It exits when the worker does.
func (h *hold) health(interval, timeout time.Duration) {
	defer close(h.healthDone)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	pong := make(chan reply, 1)
	for {
		select {
		case <-h.workerDone:
			return
		case <-tick.C:
		}
		if err := h.c.send(pong, h.probe()...); err != nil {
			return // the connection failed: the worker sees it
		}
		t := time.NewTimer(timeout)
		select {
		case r := <-pong:
			t.Stop()
			if r.err != nil {
				h.c.fatal(fmt.Errorf("health check: %w", r.err))
				return
			}
		case <-t.C:
			h.c.fatal(fmt.Errorf("health check: no answer to PING within %v", timeout))
			return
		case <-h.workerDone:
			t.Stop()
			return
		}
	}
}
