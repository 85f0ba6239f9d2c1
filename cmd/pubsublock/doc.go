//go:build unix

// Pubsublock runs a command while holding a distributed lock on Redis: the
// pub/sub lock of Python portalocker's RedisLock, so it excludes Python
// holders of the same channel too. Think of it as flock(1) across hosts.
//
// Usage:
//
//	pubsublock [flags] CHANNEL [--] COMMAND [ARGS...]
//	pubsublock [flags] status CHANNEL
//
// pubsublock takes the lock, runs COMMAND, waits for it, and releases the
// lock once COMMAND has exited and been reaped. It then exits with
// COMMAND's status, or 128+N when COMMAND was killed by signal N.
//
// COMMAND runs in its own process group, with PUBSUBLOCK_CHANNEL set to
// CHANNEL and, with --fencing, PUBSUBLOCK_TOKEN set to the hold's fencing
// token (INCR on CHANNEL-fence; pass it to whatever the lock protects so it
// can refuse writes from an older holder). The signals INT, TERM, HUP,
// QUIT, USR1 and USR2 sent to pubsublock are forwarded to that process
// group; received while pubsublock still waits for the lock, they make it
// give up and exit 128+N without running COMMAND.
//
// The lock is watched while COMMAND runs. If it is lost (a contender found
// this holder silent for --unavailable-timeout and killed its connection,
// the server restarted, the health check went unanswered), the whole
// process group gets SIGTERM, then SIGKILL after --kill-after, and
// pubsublock exits 75. This mends three known failings of similar tools:
// etcdctl lock does not watch its lock while the command runs, consul lock
// signals only the shell it started and leaves that shell's children
// running, and neither forwards every signal.
//
// "status CHANNEL" prints "CHANNEL: free" or "CHANNEL: held", and for each
// holder a line "holder: id=ID addr=HOST:PORT age=DURATION", the client id,
// address and connection age that CLIENT LIST shows for the clients named
// CHANNEL-lock. Servers without CLIENT LIST (miniredis, restricted ACL
// users) show "holder: unknown".
//
// # Flags
//
// Flags go before CHANNEL (or before "status"); parsing stops at CHANNEL or
// at "--". Each has a long name, and the flock ones a short name as well.
//
//	    --url URL               redis://[[user]:password@]host[:port][/db],
//	                            rediss://... (TLS) or unix://[[user]:password@]/path
//	                            (default $REDIS_URL, else redis://127.0.0.1:6379)
//	-w, --timeout DURATION      give up if the lock is not obtained within
//	                            DURATION (default: wait forever; 0: one try)
//	-n, --nonblock              give up at once if the lock is held
//	-E, --conflict-exit-code N  exit status when giving up (default 1)
//	    --check-interval D      pause between tries while waiting (default 250ms)
//	    --unavailable-timeout D how long a holder may take to answer a ping
//	                            before its connection is killed (default 1s)
//	    --health-check-interval D
//	                            how often the holder pings the server; 0
//	                            disables (default 10s)
//	    --kill-after D          grace between SIGTERM and SIGKILL on loss
//	                            (default 10s)
//	    --fencing               pass a fencing token as PUBSUBLOCK_TOKEN
//	-v, --verbose               log acquisition, signals, loss and kills
//	    --version, -h/--help
//
// A DURATION is a number of seconds as flock takes it (10, 0.5) or a Go
// duration (1m30s, 250ms). Unlike portalocker, whose default is 5s,
// pubsublock waits for the lock forever by default, as flock does.
//
// # Exit status
//
//	N       COMMAND exited with status N
//	128+N   COMMAND was killed by signal N; or pubsublock got signal N
//	        while waiting for the lock, and COMMAND never ran
//	1       the lock is held elsewhere (-n) or was not obtained within -w;
//	        -E changes it
//	64      usage error: bad flags or arguments, invalid URL or channel
//	        (EX_USAGE)
//	69      the Redis server cannot be reached or used: dial, TLS, AUTH,
//	        ACL (EX_UNAVAILABLE)
//	70      internal error: COMMAND could not be started, unexpected reply
//	        (EX_SOFTWARE)
//	75      the lock was lost while COMMAND ran, and COMMAND's process
//	        group was terminated (EX_TEMPFAIL)
//	126     COMMAND was found but cannot be executed
//	127     COMMAND was not found
//
// status exits 0 when the lock is free, 1 when it is held, and 64, 69 or 70
// as above. COMMAND's own status passes through unchanged, so it can take
// any of these values too; -v logs which it was.
//
// # Limits
//
// COMMAND runs in a background process group: it may write to a terminal
// but stops (SIGTTIN) if it reads from one. Processes COMMAND leaves
// running after it exits are not waited for, except after a loss, when
// they are terminated with it. If pubsublock itself is killed with
// SIGKILL, its lock is freed by the server at once; on Linux COMMAND then
// gets SIGTERM (but its children do not). A paused holder can be killed
// while COMMAND still runs: the loss is noticed and COMMAND terminated
// within moments, but not atomically, which is what --fencing is for.
// Likewise, pubsublock stopped (Ctrl-Z, SIGSTOP) for longer than
// --unavailable-timeout while a contender waits loses its lock, and
// terminates COMMAND once resumed.
package main
