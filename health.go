package pubsublock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// healthCheck PINGs a hold's subscribed connection every interval (see
// probe); when no answer comes within timeout, or an error does, it closes
// the connection, which ends the hold (the worker reports the loss).
//
// It runs on timers rather than a goroutine of its own, so a held lock
// costs one parked goroutine (the worker), not two: each timer callback
// does a moment's work and returns. stop ends it for good.
type healthCheck struct {
	h                 *hold
	interval, timeout time.Duration
	pong              chan reply // answer to the PING in flight

	mu      sync.Mutex // guards timer and stopped; held while a callback works
	timer   *time.Timer
	stopped bool
}

func newHealthCheck(h *hold, interval, timeout time.Duration) *healthCheck {
	hc := &healthCheck{h: h, interval: interval, timeout: timeout, pong: make(chan reply, 1)}
	hc.mu.Lock()
	hc.timer = time.AfterFunc(interval, hc.ping)
	hc.mu.Unlock()
	return hc
}

// ping sends the probe and schedules its check.
func (hc *healthCheck) ping() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.stopped {
		return
	}
	if err := hc.h.c.send(hc.pong, hc.h.probe()...); err != nil {
		return // the connection failed: the worker sees it
	}
	hc.timer = time.AfterFunc(hc.timeout, hc.check)
}

// check looks for the answer and schedules the next ping.
func (hc *healthCheck) check() {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.stopped {
		return
	}
	select {
	case r := <-hc.pong:
		if r.err != nil {
			hc.h.c.fatal(fmt.Errorf("health check: %w", r.err))
			return
		}
	default:
		hc.h.c.fatal(fmt.Errorf("health check: no answer to PING within %v", hc.timeout))
		return
	}
	hc.timer = time.AfterFunc(max(hc.interval-hc.timeout, 0), hc.ping)
}

// stop ends the health check. When it returns, no callback is running or
// will act.
func (hc *healthCheck) stop() {
	if hc == nil {
		return
	}
	hc.mu.Lock()
	hc.stopped = true
	hc.timer.Stop()
	hc.mu.Unlock()
}

// probe returns the command the health check sends on the holder's
// connection: PING; or on a cluster, where a subscribed RESP3 connection
// may run it, EXISTS on a key in the lock's slot. A master cut off from
// the majority of the masters keeps its shard subscribers until the
// partition heals (and serves shard pub/sub meanwhile, as
// cluster-allow-pubsubshard-when-down is yes by default), while the
// majority may promote its replica, where someone else takes the lock. But
// once its cluster_state is fail, after the cluster's node timeout, it
// refuses reads of keys with CLUSTERDOWN (unless
// cluster-allow-reads-when-down is yes), which ends the hold. MOVED,
// should the node stop serving the slot without unsubscribing the holder,
// ends it too.
func (h *hold) probe() []string {
	if h.s.cl.cluster != nil && h.c.resp3 && h.s.cl.caps.subCmds.yes() {
		return []string{"EXISTS", h.s.fence}
	}
	return []string{"PING"}
}

// verify sends the probe on the hold's connection and waits, up to
// timeout, for the answer: a hold whose connection answers still holds
// (the server would have ended the subscription, or the connection, first:
// the worker reads in order). No answer, or an error, ends the hold.
func (h *hold) verify(ctx context.Context, timeout time.Duration) error {
	if err := h.lostErr(); err != nil {
		return err
	}
	if h.releasing.Load() {
		return ErrNotHeld // a Check that raced Release
	}
	h.start()
	answer := make(chan reply, 1)
	if err := h.c.send(answer, h.probe()...); err != nil {
		if errors.Is(err, errReleased) {
			// Released meanwhile: the connection may be another's now.
			return ErrNotHeld
		}
		h.c.fatal(fmt.Errorf("check: %w", err))
		<-h.lost
		return h.lostErr()
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-answer:
		if r.err == nil {
			return nil
		}
		h.c.fatal(fmt.Errorf("check: %w", r.err))
	case <-t.C:
		h.c.fatal(fmt.Errorf("check: no answer within %v", timeout))
	case <-ctx.Done():
		return ctxCause(ctx)
	case <-h.lost:
	}
	<-h.lost
	if err := h.lostErr(); err != nil {
		return err
	}
	return ErrNotHeld // released meanwhile
}
