// Package chaos is the proof of the lock under faults: contender processes
// take one lock over and over while a fault loop kills, pauses, restarts,
// freezes and cuts them off, and an oracle outside the lock checks that no
// two of them work in the critical section together unless the earlier one
// was told, through Lost(), that it had lost the lock.
//
// # Running it
//
//	make chaos                                 # 20,000 acquisitions (a few minutes)
//	make chaos CHAOS_DURATION=60s              # what CI runs
//	make chaos CHAOS_SEED=42 CHAOS_FAULTS=-pause-write,-pause-all
//
// TestChaos runs only when PUBSUBLOCK_CHAOS=1, CHAOS_DURATION or
// CHAOS_ACQUISITIONS is set, so plain go test ./... skips it (the analysis
// has unit tests that always run). Settings, from the environment:
//
//   - CHAOS_DURATION: run this long (a Go duration), or else
//   - CHAOS_ACQUISITIONS: run until this many acquisitions (default 20000;
//     the run fails if they take more than 20 minutes).
//   - CHAOS_SEED: the seed of the fault schedule (default: from the clock).
//     It is printed first; the same seed gives the same schedule of fault
//     kinds, durations and picks (what they hit depends on timing).
//   - CHAOS_FAULTS: the kinds of fault, comma-separated (default all:
//     kill-holder, kill-random, pause-write, pause-all, restart, sigkill,
//     sigstop, blackhole), or kinds to leave out, each with a leading "-",
//     or "none".
//   - CHAOS_RACE=0 builds the Go contender without -race (the default
//     builds it with -race, and GORACE=halt_on_error=1 makes a data race
//     kill the contender, which fails the run).
//   - PUBSUBLOCK_REDIS_SERVER: the redis-server binary (default:
//     redis-server from PATH).
//   - CHAOS_KEEP=1 keeps the logs (servers' logs, contenders' stderr, every
//     event and fault) of a passing run; a failing run always keeps them.
//
// Missing redis-server or Python's portalocker skip the test, or fail it
// when CI=true.
//
// # The contenders
//
// Separate processes built from this repository (contender/main.go, with
// go build, into a temporary directory) contend on one channel through a
// TCP proxy that the test controls: Go ones with a shared Client (one
// process runs two Locks on it) and with Config{URL} only, over RESP3
// and RESP2, with Acquire and TryAcquire, all with fencing on; and two
// Python processes running portalocker 2.2.1's RedisLock
// (contender/contender.py), one waiting and one with fail_when_locked. A
// Go contender checks l.Err() before each step of its critical section and
// stops when the hold is lost; a goroutine prints "told" the moment Lost()
// fires. portalocker has no Lost(): its worker thread interrupts the main
// thread when its connection fails, and that is what the Python contender
// checks.
//
// # The oracle
//
// The critical section lives on a second redis-server (package oracle).
// Entering is an INCR that must return 1; leaving is a DECR; each step is
// a write that the oracle checks against the highest fencing token that
// entered. The oracle's answers carry its clock and the holds inside, so
// every overlap is seen, with who was inside and when. Before the main run
// a self-test runs two holders, Go and Python, that take no lock at all:
// the oracle must see them overlap, and the analysis must call every
// overlap a true violation, or the test fails.
//
// # The faults
//
// One at a time, every 0.2–1.2s, chosen at random: CLIENT KILL of the
// connections named <channel>-lock; CLIENT KILL of a random client; CLIENT
// PAUSE WRITE and CLIENT PAUSE ALL for 0.1–1.5s; a restart of the lock
// server on its port (SHUTDOWN, start; the fence counter is kept in an AOF
// so tokens keep growing); SIGKILL of a holder process, which is replaced;
// SIGSTOP of a holder process for 0.3–3 UnavailableTimeouts, then SIGCONT;
// and a black hole: the proxy stops forwarding a holder's connection both
// ways without closing it, for 0.2–2s, then closes it. Half of the SIGKILL,
// SIGSTOP and black-hole faults are aimed at a contender asked (on its
// standard input) to make its next hold long, once it is inside, so that
// the fault lands in the middle of a critical section.
//
// # The verdict
//
// An overlap is two holds inside together; it is put down to the earlier
// holder (by fencing token). It is explained when that holder was told
// (Lost() fired, or it saw the loss before a step, or its Release said it
// was lost), and the report gives how soon after the later one entered (a
// frozen holder: after SIGCONT). It is a true violation when the earlier
// holder was never told. Overlaps that only portalocker 2.2.1 can cause are
// listed apart and do not fail the run: a portalocker holder that was lost
// to a fault and never told, and a portalocker acquisition of a held lock,
// whose confirming count missed its own SUBSCRIBE (it counts on another
// connection without waiting for the subscription; the contender records
// its counts to show it).
//
// The run fails on: a true violation; a stale write that the fence let
// through; a fencing token that went back; a Go holder frozen by SIGSTOP
// and taken over that, after SIGCONT, was never told, or checked Err()
// after SIGCONT, was not told, and wrote (a write checked before the stop
// cannot be stopped, only fenced); a black-holed Go holder not told within
// HealthCheckInterval + UnavailableTimeout (plus 1s of slack); a server
// that died without the test killing it (its log's "Guru Meditation" is
// printed); no acquisition for 10s after the last fault was undone; a
// contender that died on its own (a data race, a panic); an oracle error.
//
// The report also gives the acquisitions, the faults by kind, SIGKILL and
// SIGSTOP takeover times (fault to the next acquisition), and how fast the
// holders active at each kind of fault were told.
package chaos
