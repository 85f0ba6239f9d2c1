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
// finds a subscriber publishes a ping naming a reply channel; a live holder
// answers, a silent one (frozen process, dead network) is killed with
// CLIENT KILL after UnavailableTimeout and the lock taken over. When the
// holder's process or connection dies, Redis drops its subscription and the
// lock is free within about one CheckInterval of a waiter.
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
// Pub/sub state is not replicated: a Redis failover frees every lock. On a
// Redis Cluster, use cluster mode, which runs the lock on sharded pub/sub
// (classic PUBSUB NUMSUB counts only one node there and is unsafe); cluster
// mode is not wire-compatible with Python portalocker 2.x.
//
// # Concurrency
//
// All methods of Lock and Client are safe for concurrent use. A Lock holds
// at most one acquisition at a time: Acquire on a held Lock, or during
// another Acquire, returns ErrHeld. Lost and Err may be called from any
// goroutine, typically one watching the hold. Release returns only after
// the hold's goroutines have exited; a Lock can then be acquired again.
// Every hold runs two goroutines (the worker and the health check), both
// stopped by Release or by the loss of the hold.
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
// With Redis ACLs the lock needs, on the lock channel, its reply channels
// and (for fencing) the fence key:
//
//	ACL SETUSER locker on >secret resetchannels &jobs &jobs-* ~jobs-fence
//	    +subscribe +unsubscribe +publish +pubsub|numsub +client|setname
//	    +client|list +client|kill +ping +hello +incr +select
//
// Without +client|list and +client|kill a contender cannot kill a silent
// holder (ErrKillUnsupported), but everything else works.
package pubsublock
