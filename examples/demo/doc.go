//go:build unix

// Demo shows pubsublock at work on a short timeline, against an embedded
// Redis: a temporary redis-server when one is on PATH (on a free loopback
// port, in a temporary directory, persistence off, stopped at the end),
// else an in-process miniredis. Set DEMO_MINIREDIS=1 to use miniredis
// even when redis-server is there.
//
// It shows, in this order:
//
//  1. workers in goroutines, each with its own Lock, contending for one
//     lock: the number of acquisitions, and that there was never more
//     than one holder at a time;
//  2. a holder process that crashes (SIGKILL), and how fast the lock
//     moves to a waiter;
//  3. a frozen holder process (SIGSTOP) that is pinged, found silent,
//     killed (CLIENT KILL) and replaced; then, resumed, it is told it lost
//     the lock (real redis-server only: miniredis has no CLIENT KILL);
//  4. a holder in this process whose connection is killed by a second
//     client, and its Lost channel firing.
//
// Holder processes are this program run again with DEMO_ROLE=holder. It
// uses short intervals (CheckInterval 50ms, UnavailableTimeout 300ms,
// HealthCheckInterval 500ms), finishes in a few seconds, and exits 0 when
// every fact it prints held. Run it with:
//
//	make demo    # or: go run ./examples/demo
package main
