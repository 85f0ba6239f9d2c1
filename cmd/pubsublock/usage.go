//go:build unix

package main

// usage is the --help text. Keep it in step with doc.go.
const usage = `Usage:
  pubsublock [flags] CHANNEL [--] COMMAND [ARGS...]
  pubsublock [flags] CHANNEL -c 'SHELL COMMAND'
  pubsublock [flags] status CHANNEL

Run COMMAND while holding the Redis pub/sub lock CHANNEL (the lock of Python
portalocker's RedisLock), and release the lock once COMMAND has exited.

COMMAND runs in its own process group, with pubsublock's environment
(REDIS_URL and REDISCLI_AUTH included) plus PUBSUBLOCK_CHANNEL and, with
--fencing, PUBSUBLOCK_TOKEN. The signals INT, TERM, HUP, QUIT, USR1 and USR2
sent to pubsublock are forwarded to that process group. pubsublock watches
the lock while COMMAND runs: if it is lost (its connection killed by a
contender that found it silent, a server restart, a failed health check),
the whole process group gets SIGTERM, then SIGKILL after --kill-after, and
pubsublock exits 75.

Run from a terminal, COMMAND gets its foreground, as a shell's job does, so
it may read it. Ctrl-Z (or SIGTSTP to pubsublock) stops COMMAND, then
pubsublock. A stopped holder answers no ping: a contender takes the lock
after --unavailable-timeout. So once continued (fg, bg), pubsublock checks
that it still holds the lock before COMMAND runs again; if it does not,
COMMAND's process group gets SIGKILL and pubsublock exits 75.

"status CHANNEL" prints whether CHANNEL is held and, where the server's
CLIENT LIST shows it, each holder's client id, address, connection age and
name, and what it answered a status ping: its mode (exclusive, shared, or
pending: a writer waiting), protocol (0: portalocker 2.x/3.x's, 1:
portalocker 4's) and what it looks like (pubsublock, portalocker 4,
portalocker 2/3). It also counts subscribers that are not holders (a redis-cli SUBSCRIBE CHANNEL):
they keep the lock taken, and no contender ever kills them.

Flags (they go before CHANNEL):
      --url URL               the Redis server (default $REDIS_URL, else
                              redis://127.0.0.1:6379); also rediss:// (TLS)
                              and unix:///path, with [[user]:password@]
      --password-file FILE    read the password from FILE (one line); it
                              wins over the URL's, which wins over
                              $REDISCLI_AUTH
      --cacert FILE           TLS: trust the CA certificates in FILE (PEM)
                              rather than the system's
      --cert FILE, --key FILE TLS: present this client certificate and key
      --sni NAME              TLS: check the server's certificate against
                              NAME rather than the URL's host
      --dial-timeout DURATION bound each connection's dial and handshake,
                              and each reply (default 5s)
  -c, --command STRING        run STRING with $SHELL -c (else /bin/sh), as
                              flock; also after CHANNEL
  -w, --timeout DURATION      give up if the lock is not obtained within
                              DURATION (default: wait forever); 0 makes one
                              try, as -n
  -n, --nonblock              give up at once if the lock is held
  -E, --conflict-exit-code N  exit status when giving up (default 1)
      --check-interval DURATION
                              pause between tries while waiting (default 250ms)
      --unavailable-timeout DURATION
                              how long a holder may take to answer a ping
                              before its connection is killed (default 1s)
      --health-check-interval DURATION
                              how often the holder pings the server; 0
                              disables (default 10s)
      --kill-after DURATION   grace between SIGTERM and SIGKILL when the lock
                              is lost (default 10s)
      --fencing               take a fencing token (INCR CHANNEL-fence) and
                              pass it to COMMAND as PUBSUBLOCK_TOKEN
  -s, --shared                take a shared (reader's) lock: readers hold it
                              together, Go ones and portalocker 4's
                              LockFlags.SHARED alike; a writer waits for them
  -v, --verbose               log the server, acquisition, signals, stops,
                              loss and kills to stderr
      --version               print the version and exit
  -h, --help                  print this help and exit

DURATION is a number of seconds, as flock takes it (10, 0.5), or a Go duration
(1m30s, 250ms). Flags cannot be combined (-nv): write -n -v.

-n and -w are not exact. A try that finds a holder pings it and waits up to
--unavailable-timeout for the answer: so -n takes that long (1s) when the
holder is silent, then kills it and runs COMMAND, and -w may run over by as
much. A subscriber that is not a holder is pinged by each try too, in vain:
-n then gives up after about twice --unavailable-timeout.

Environment:
  REDIS_URL      the server, when --url is not given
  REDISCLI_AUTH  the password, when neither --password-file nor the URL
                 gives one (redis-cli's variable); COMMAND sees it too
  SHELL          the shell of -c

Exit status:
  N        COMMAND exited with status N
  128+N    COMMAND was killed by signal N; or pubsublock got signal N while
           waiting for the lock, and COMMAND never ran
  1        the lock is held elsewhere (-n) or was not obtained within -w;
           change it with -E
  64       usage error: bad flags or arguments, invalid URL or channel name,
           unreadable --password-file, --cacert, --cert or --key
  69       the Redis server cannot be reached or used (dial, TLS, AUTH, ACL,
           a reply that is not Redis protocol)
  70       internal error: COMMAND could not be started
  75       the lock was lost while COMMAND ran or was stopped, and its process
           group was terminated; or lost while pubsublock was stopped, before
           COMMAND started
  126      COMMAND was found but cannot be executed
  127      COMMAND was not found
  status:  0 free, 1 held, 64 or 69 as above

Examples:
  # A cron job that runs on many hosts, one at a time, skipping a run while
  # another host's is still going:
  pubsublock -n --url redis://redis.internal:6379 nightly-report -- \
      /usr/local/bin/report --all

  # Wait up to 30 seconds for the lock, exit 42 if it stays held:
  pubsublock -w 30s -E 42 deploy -c 'make deploy && make smoke-test'

  # TLS with a private CA, the password kept off the command line:
  pubsublock --url rediss://redis.internal:6380 --cacert /etc/redis/ca.crt \
      --password-file /etc/redis/password backup -- /usr/local/bin/backup

  # Who holds it?
  pubsublock status nightly-report
`
