// Package pubsublock is a distributed lock on Redis that is held by a
// pub/sub subscription instead of a key with a TTL, so a crashed holder
// frees the lock at once rather than when a TTL runs out. It is a Go port
// of Python portalocker's RedisLock and speaks the same protocol: Go and
// Python holders on the same channel exclude each other.
//
// # How it works
//
// The holder SUBSCRIBEs to the lock channel on a connection named
// "<channel>-lock" and checks, with PUBSUB NUMSUB, that it is the only
// subscriber. While it holds the lock a worker goroutine answers pings on
// the channel and a health check PINGs the connection. A contender that
// finds a subscriber publishes a ping naming a reply channel; every live
// holder answers, and the holders that stay silent (frozen process, dead
// network) for UnavailableTimeout are killed with CLIENT KILL and the lock
// taken over. Holders of every portalocker version are recognised by their
// connection's name, matched whole: "<channel>-lock" (portalocker 2.x and
// 3.x) or "<channel>-lock-<holder id>" (portalocker 4, whose holders answer
// with a record naming their id). When the
// holder's process or connection dies, Redis drops its subscription and the
// lock is free within about one CheckInterval of a waiter.
//
// # Shared locks
//
// With Config.Shared a Lock is a reader's: any number of readers hold the
// lock at once, Go ones and portalocker 4's RedisLock with
// flags=LockFlags.SHARED alike, while a writer (any other holder) holds it
// alone. A reader that finds others subscribed pings them and joins only
// when every one of them answers as a reader. A writer that waits for
// readers stays subscribed as "pending", which keeps new readers out, so
// a stream of readers cannot starve it; when several writers wait, one is
// elected to, as portalocker 4 does, and the others wait without
// subscribing. (A Go writer gives way to a waiting portalocker 4.1 writer,
// which may starve among readers, and so may wait with it: see the
// README.) A writer takes the lock only when its count finds it alone,
// so the election decides who waits, never who holds. Shared locks speak
// portalocker 4's protocol 1 (Config.Protocol).
//
// # Example
//
//	l, err := pubsublock.New("nightly-backup", pubsublock.Config{
//		URL: "redis://127.0.0.1:6379",
//	})
//	if err != nil {
//		return err
//	}
//	if err := l.Acquire(ctx); err != nil {
//		return err // errors.Is(err, pubsublock.ErrAlreadyLocked): held elsewhere
//	}
//	defer l.Release(context.Background())
//
//	work, cancel := l.Context(ctx) // ends as soon as the lock is lost
//	defer cancel()
//	return backup(work) // context.Cause(work) matches ErrLost, and says why
//
// # Guarantees, and what is not guaranteed
//
// On a single Redis server, at most one exclusive Lock holds a channel at
// a time, and never together with a reader: an exclusive hold means having
// observed NUMSUB == 1 after subscribing, and every later contender
// subscribes after that observation and so sees two. A reader (see Shared
// locks) holds alone the same way, or joins others when every subscriber
// its ping reached, subscribed after its own subscription was confirmed,
// answered as a reader; a writer that took the lock answers as exclusive
// from its count on, so no reader joins it.
//
// A holder learns that it lost the lock only when its connection fails, is
// killed, or its health check goes unanswered; until then it may still be
// running. A holder that was paused (SIGSTOP, a long GC pause, a suspended
// VM) can be killed by a contender while its code still runs, and resume
// believing it holds the lock for a moment. That is why fencing exists:
// with Config.Fencing each acquisition gets a strictly increasing token
// (Lock.Token) that the protected resource should check, refusing any write
// that carries a smaller token than one it has already seen.
//
// Pub/sub state is not replicated: a Redis failover frees every lock.
//
// Release does not wait for the server: it writes the unsubscribe and
// returns, and the server frees the lock when it reads it, about half a
// round trip later (or when the connection closes, if the server stays
// silent for UnavailableTimeout). Until then another client may still find
// the lock held; a waiting Acquire is woken by the release bell, a
// TryAcquire that pings the leaving holder and finds it gone takes the
// lock, and an Acquire through the same Client queues its commands behind
// the release on the same connection.
//
// # Redis Cluster and Sentinel
//
// Cluster mode (Config.ClusterAddrs, or a redis+cluster:// URL) runs each
// lock on the master that serves its channel's hash slot, with sharded
// pub/sub (SSUBSCRIBE, SPUBLISH, PUBSUB SHARDNUMSUB). The seeds may be any
// nodes: the slot map is learnt from them (CLUSTER SHARDS, or CLUSTER SLOTS)
// and corrected by MOVED redirects. Reply channels, the fence key and the
// release bell are named to fall in the channel's slot ("{jobs}-0.42",
// "{jobs}-fence", "{jobs}-released"). When
// the slot migrates or its master fails over, the master unsubscribes the
// holder and the hold is lost; a master cut off from the rest of the
// cluster is noticed by the health check once it answers CLUSTERDOWN.
//
// Cluster mode is not wire-compatible with Python portalocker 2.x, which
// uses classic pub/sub: classic PUBSUB NUMSUB counts one node only, so
// portalocker is unsafe on a cluster, and Go and Python lockers there do
// not see each other. Never mix them on one channel.
//
// Sentinel mode (Config.SentinelAddrs and MasterName, or a
// redis+sentinel:// URL) asks the sentinels for the primary and confirms it
// with ROLE. Pub/sub state is not replicated and a demoted primary keeps
// its subscribers for seconds, so the Client follows the sentinels'
// failover events: every hold on the old primary ends as soon as a failover
// of it begins, and new acquisitions wait (up to DialTimeout) until the
// sentinels name the new primary. A holder whose Client cannot hear the
// sentinels (a network partition) may keep holding on an old primary; use
// fencing.
//
// # Concurrency
//
// All methods of Lock and Client are safe for concurrent use. A Lock holds
// at most one acquisition at a time: Acquire on a held Lock, or during
// another Acquire, returns ErrHeld. Lost, Err and Context may be called
// from any goroutine, typically one watching the hold. Once Release
// returns the Lock can be acquired again. Every hold runs one goroutine,
// which ends with the hold; a waiting Acquire runs none. A quiet hold (an
// Acquire that did not wait and saw no contender, on Linux, not over TLS,
// with an UnavailableTimeout of 100 ms or more) starts its goroutine 1 ms
// after Acquire; released sooner, the release's replies are read by
// whoever comes first: the connection's next user, in its own goroutine,
// or the 1 ms timer. How the lock works inside (the release bell, the
// worker, the health check) is told in docs/DESIGN.md.
//
// # Errors
//
// Test errors with errors.Is and errors.As:
//
//   - ErrAlreadyLocked: held elsewhere for all of Config.Timeout (or at the
//     first try, with TryAcquire or FailWhenLocked). The text names the
//     channel.
//   - ErrLost (from Err, Release, and as Context's cause): the hold ended
//     without Release; it wraps the cause. ErrNotHeld: nothing to release.
//     ErrHeld: this Lock holds already.
//   - ErrConfig: a bad channel name, Config or URL (never repeating the
//     URL's password).
//   - context.Canceled, context.DeadlineExceeded: ctx ended, during a
//     dial too; a cause given to context.WithCancelCause matches as well. A
//     server that stops answering gives DeadlineExceeded within DialTimeout.
//   - ErrClientClosed: the Client was closed under a waiting Acquire.
//   - ErrKillUnsupported: a silent holder must be killed, and the server
//     refuses CLIENT LIST or CLIENT KILL (miniredis, an ACL).
//   - resp.Error: the server refused a command (WRONGPASS, NOPERM, OOM...);
//     its Code method gives the code.
//   - resp.ErrProtocol: the server sent what is not RESP, or more than the
//     reply limits allow (resp.ErrLimit).
//   - *net.OpError: the server could not be reached.
//
// # Contexts and connections
//
// Every blocking method takes a context. When a context ends during a
// command the connection is closed, never reused: its reply could still
// arrive. For a hold this frees the lock, so a Release whose context ends
// still leaves the lock free.
//
// # Redis permissions
//
// With Redis ACLs the lock needs, on the lock channel, its reply channels,
// the release bell, the waiters' wake lists and the yield window (keys
// "jobs-wake-*"), and (for fencing) the fence key:
//
//	ACL SETUSER locker on >secret resetchannels &jobs &jobs-* ~jobs-released ~jobs-fence
//	    ~jobs-wake-* +subscribe +unsubscribe +publish +pubsub|numsub +client|setname
//	    +client|list +client|kill +blpop +eval +lpush +ltrim +pexpire
//	    +type +llen +lindex +get +set +pttl +ping +hello +incr +select
//
// Without +client|list and +client|kill a contender cannot kill a silent
// holder (ErrKillUnsupported); without the bell's commands waiters poll;
// without +get +set +pttl Go waiters do not hold back for portalocker's
// pollers after a hold they pinged (the yield window); everything else
// works.
package pubsublock
