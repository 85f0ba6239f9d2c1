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
// subscribing. A writer takes the lock only when its count finds it alone,
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
//	work, stop := context.WithCancel(ctx)
//	defer stop()
//	go func() {
//		select {
//		case <-l.Lost(): // connection gone or killed: stop at once
//			stop()
//		case <-work.Done():
//		}
//	}()
//	return backup(work)
//
// # Guarantees, and what is not guaranteed
//
// On a single Redis server, at most one Lock holds a channel at a time:
// holding means having observed NUMSUB == 1 after subscribing, and every
// later contender subscribes after that observation and so sees two.
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
// another Acquire, returns ErrHeld. Lost and Err may be called from any
// goroutine, typically one watching the hold. Once Release returns the
// Lock can be acquired again. Every hold runs one goroutine, the worker
// that owns the subscribed connection, and a health check driven by
// timers. Release stops the health check at once; the worker reads the
// replies to the release (within UnavailableTimeout, or the connection is
// closed) and exits, without Release waiting for it. A lost hold's
// goroutines stop by themselves. A waiting Acquire runs no goroutine of
// its own: its next try waits in the server for the release bell (see
// Config.CheckInterval).
//
// # The release bell
//
// A waiting Acquire sends its next try behind a BLPOP on the list
// "<channel>-released", with the pause as timeout, and a Go holder's
// Release pushes to that list right after it unsubscribes. The server then
// runs the try of the longest waiting contender at once, so the lock
// changes hands in about one trip to the server, waiters are served first
// come, first served, and a release wakes one waiter, not all. A release
// rings only when a contender showed itself (a waiter announces itself
// with a ping when it finds the lock held), so an uncontended lock writes
// no key; the list holds at most one element and expires after
// CheckInterval when nobody waits. It is never the lock, only a wake-up
// call: a try woken by it still subscribes and counts. The waiter also
// blocks on a wake list of its own, "<channel>-wake-<random>", which its
// second connection pushes to when the pause is over: an idle Redis
// applies blocking timeouts only every 1/hz seconds. A push is a write,
// which a write pause (CLIENT PAUSE, FAILOVER) only delays; CLIENT UNBLOCK
// is never sent, as it crashes servers whose BLPOP a write pause holds
// back. The bell is pushed to, and blocked on, only where its key is absent
// or the bell's own one-element list: a key of the user's under that name
// is left alone, and waiters then poll, as portalocker does. So they do
// where the server refuses the bell (an ACL).
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
// the release bell, the waiters' wake lists and (for fencing) the fence key:
//
//	ACL SETUSER locker on >secret resetchannels &jobs &jobs-* ~jobs-released ~jobs-fence
//	    ~jobs-wake-* +subscribe +unsubscribe +publish +pubsub|numsub +client|setname
//	    +client|list +client|kill +blpop +eval +lpush +ltrim +pexpire
//	    +type +llen +lindex +ping +hello +incr +select
//
// Without +client|list and +client|kill a contender cannot kill a silent
// holder (ErrKillUnsupported); without the bell's commands waiters poll;
// everything else works.
package pubsublock
