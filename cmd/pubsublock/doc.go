//go:build unix

// Pubsublock runs a command while holding a distributed lock on Redis: the
// pub/sub lock of Python portalocker's RedisLock, so it excludes Python
// holders of the same channel too. Think of it as flock(1) across hosts.
//
// Usage:
//
//	pubsublock [flags] CHANNEL [--] COMMAND [ARGS...]
//	pubsublock [flags] CHANNEL -c 'SHELL COMMAND'
//	pubsublock [flags] status CHANNEL
//
// pubsublock takes the lock, runs COMMAND, waits for it, and releases the
// lock once COMMAND has exited and been reaped. It then exits with
// COMMAND's status, or 128+N when COMMAND was killed by signal N. With -c,
// as with flock, COMMAND is the one string given, run by $SHELL -c (by
// /bin/sh -c when SHELL is not set).
//
// COMMAND runs in its own process group, with pubsublock's environment plus
// PUBSUBLOCK_CHANNEL set to CHANNEL and, with --fencing, PUBSUBLOCK_TOKEN
// set to the hold's fencing token (INCR on CHANNEL-fence; pass it to
// whatever the lock protects so it can refuse writes from an older holder).
// The signals INT, TERM, HUP, QUIT, USR1 and USR2 sent to pubsublock are
// forwarded to that process group; received while pubsublock still waits
// for the lock, they make it give up and exit 128+N without running
// COMMAND.
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
// # Terminals and job control
//
// Started from a terminal in its foreground, pubsublock gives COMMAND's
// process group the terminal's foreground, as a shell does for a job, so
// COMMAND may read the terminal (a prompt, a password, an editor), and
// takes the foreground back once COMMAND has exited. Ctrl-C and other
// keys that signal then reach COMMAND directly.
//
// Ctrl-Z, or SIGTSTP sent to pubsublock, stops COMMAND's process group
// and, once COMMAND has stopped, pubsublock itself, so that the shell gets
// the terminal back; a COMMAND that ignores SIGTSTP keeps running, and so
// does pubsublock. A COMMAND that reads the terminal while pubsublock runs
// in the background stops (SIGTTIN) and stops pubsublock as well, as a
// shell's job would. The shell then reports pubsublock as "Stopped
// (signal)": it stops itself with SIGSTOP, which, unlike SIGTSTP, the
// kernel never discards.
//
// A stopped holder cannot answer a contender's ping, so a contender takes
// the lock over after --unavailable-timeout. When continued (fg, bg, or
// SIGCONT), pubsublock therefore checks that it still holds the lock
// before COMMAND may run again: the hold's own connection must answer a
// probe within --unavailable-timeout (a connection a contender killed
// cannot, and one that answers is still subscribed). If the lock was
// lost, or the server cannot be asked, COMMAND's process group gets
// SIGKILL at once (a SIGTERM handler would run without the lock) and
// pubsublock exits 75. If the lock is still held, COMMAND is continued,
// in the terminal's foreground when pubsublock was continued there (fg)
// and in the background otherwise (bg). pubsublock checks its hold in the
// same way after any SIGCONT, as after a SIGSTOP it could not catch, but
// COMMAND ran on during such a stop; and before COMMAND starts, if
// pubsublock was stopped while it waited for the lock.
//
// # Credentials and TLS
//
// The password is taken, first found, from --password-file (the file's
// one line; a trailing newline is dropped), from the URL, or from
// $REDISCLI_AUTH, the variable redis-cli reads. A password in the URL is
// visible to other users in ps(1) when given with --url; $REDIS_URL,
// $REDISCLI_AUTH and --password-file are not. With a user name, write
// redis://user:@host and give the password by file or variable.
//
// COMMAND inherits pubsublock's environment unchanged, REDIS_URL and
// REDISCLI_AUTH included, so that a command that talks to the same server
// (redis-cli, a client that reads REDIS_URL) finds it. A password read
// from --password-file is never put in the environment. To keep the
// variables from COMMAND, unset them for it:
// pubsublock jobs env -u REDISCLI_AUTH -u REDIS_URL COMMAND.
//
// A rediss:// URL (rediss+cluster://, rediss+sentinel://) speaks TLS,
// checking the server's certificate against the system's CAs and the URL's
// host. The flags are redis-cli's: --cacert trusts the CA certificates of
// a PEM file instead, --cert and --key present a client certificate (a
// server with tls-auth-clients asks for one), and --sni checks the
// certificate against another name and sends it in the handshake. They
// need a rediss URL. A plain Redis port never answers a TLS handshake: a
// rediss URL against one fails after --dial-timeout, with a hint saying
// so.
//
// # Status
//
// "status CHANNEL" prints "CHANNEL: free" or "CHANNEL: held", and for each
// holder a line "holder: id=ID addr=HOST:PORT age=DURATION name=NAME
// mode=MODE protocol=P (KIND)": the client id, address, connection age and
// name that CLIENT LIST shows for the clients named CHANNEL-lock
// (portalocker 2.x and 3.x) or CHANNEL-lock-<holder id> (portalocker 4),
// and what each answered a status ping: its mode (exclusive, shared, or
// pending: a writer waiting for readers), protocol (0 or 1) and what it
// looks like (pubsublock, portalocker 4, portalocker 2/3); "name=NAME (no
// answer)" for a holder silent for --unavailable-timeout. Servers without CLIENT LIST (miniredis, restricted ACL
// users) show "holder: unknown". When the count of subscribers differs
// from the holders found, the first line says both, "CHANNEL: held (2
// subscribers, 1 named CHANNEL-lock)", and a "note:" line explains:
// contenders subscribe under the holder's name for a moment while they
// try, and a subscriber not named CHANNEL-lock (a redis-cli SUBSCRIBE
// CHANNEL, another program) keeps the lock taken without being a holder.
// No contender ever kills such a subscriber; the lock is free only once
// it unsubscribes. With -v, a waiting pubsublock logs the same.
//
// # Flags
//
// Flags go before CHANNEL (or before "status"); parsing stops at CHANNEL or
// at "--". Each has a long name, and the flock ones a short name as well.
//
//	    --url URL               redis://[[user]:password@]host[:port][/db],
//	                            rediss://... (TLS) or unix://[[user]:password@]/path
//	                            (default $REDIS_URL, else redis://127.0.0.1:6379)
//	    --password-file FILE    the password, on the file's one line
//	    --cacert FILE           TLS: trust the CA certificates in FILE (PEM)
//	    --cert FILE, --key FILE TLS: the client certificate and its key (PEM)
//	    --sni NAME              TLS: check the server's certificate against NAME
//	    --dial-timeout D        bound each dial and handshake, and each reply
//	                            (default 5s)
//	-c, --command STRING        run STRING with $SHELL -c; also after CHANNEL
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
//	-s, --shared                a shared (reader's) lock: readers hold it
//	                            together, a writer waits for all of them
//	-v, --verbose               log the server (without its password),
//	                            acquisition, signals, stops, loss and kills
//	    --version, -h/--help
//
// A DURATION is a number of seconds as flock takes it (10, 0.5) or a Go
// duration (1m30s, 250ms). Unlike portalocker, whose default is 5s,
// pubsublock waits for the lock forever by default, as flock does.
//
// -n and -w are not exact. A try that finds the lock held pings the holder
// and waits up to --unavailable-timeout for its answer, so -n takes that
// long (1s by default) when the holder is silent (frozen, cut off), then
// kills its connection and runs COMMAND; and a wait of -w may end up to
// --unavailable-timeout late. A subscriber that is not a holder is pinged
// in vain by every try: -n then gives up after about twice
// --unavailable-timeout.
//
// # Environment
//
//	REDIS_URL      the server, when --url is not given
//	REDISCLI_AUTH  the password, when neither --password-file nor the URL
//	               gives one
//	SHELL          the shell that runs the command of -c (default /bin/sh)
//
// # Exit status
//
//	N       COMMAND exited with status N
//	128+N   COMMAND was killed by signal N; or pubsublock got signal N
//	        while waiting for the lock, and COMMAND never ran
//	1       the lock is held elsewhere (-n) or was not obtained within -w;
//	        -E changes it
//	64      usage error: bad flags or arguments, invalid URL or channel,
//	        unreadable --password-file, --cacert, --cert or --key (EX_USAGE)
//	69      the Redis server cannot be reached or used: dial, TLS, AUTH,
//	        ACL, a reply that is not Redis protocol (EX_UNAVAILABLE)
//	70      internal error: COMMAND could not be started (EX_SOFTWARE)
//	75      the lock was lost while COMMAND ran or was stopped, and
//	        COMMAND's process group was terminated; or it was lost while
//	        pubsublock was stopped, before COMMAND started (EX_TEMPFAIL)
//	126     COMMAND was found but cannot be executed
//	127     COMMAND was not found
//
// status exits 0 when the lock is free, 1 when it is held, and 64 or 69 as
// above. COMMAND's own status passes through unchanged, so it can take any
// of these values too; -v logs which it was.
//
// # Limits
//
// Processes COMMAND leaves running after it exits are not waited for,
// except after a loss, when they are terminated with it. If pubsublock
// itself is killed with SIGKILL, its lock is freed by the server at once;
// on Linux COMMAND then gets SIGTERM (but its children do not). A paused
// holder can be killed while COMMAND still runs: the loss is noticed and
// COMMAND terminated within moments, but not atomically, which is what
// --fencing is for. Likewise, pubsublock stopped by SIGSTOP alone, which
// it cannot catch, while COMMAND runs on, loses its lock after
// --unavailable-timeout once a contender waits, and terminates COMMAND
// once continued.
package main
