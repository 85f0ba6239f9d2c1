//go:build unix

package main

// usage is the --help text. Keep it in step with doc.go.
const usage = `Usage:
  pubsublock [flags] CHANNEL [--] COMMAND [ARGS...]
  pubsublock [flags] status CHANNEL

Run COMMAND while holding the Redis pub/sub lock CHANNEL (the lock of Python
portalocker's RedisLock), and release the lock once COMMAND has exited.

COMMAND runs in its own process group, with PUBSUBLOCK_CHANNEL (and, with
--fencing, PUBSUBLOCK_TOKEN) in its environment. The signals INT, TERM, HUP,
QUIT, USR1 and USR2 sent to pubsublock are forwarded to that process group.
pubsublock watches the lock while COMMAND runs: if it is lost (its connection
killed by a contender that found it silent, a server restart, a failed health
check), the whole process group gets SIGTERM, then SIGKILL after --kill-after,
and pubsublock exits 75.

"status CHANNEL" prints whether CHANNEL is held and, where the server's
CLIENT LIST shows it, the holder's client id, address and connection age.

Flags (they go before CHANNEL):
      --url URL               the Redis server (default $REDIS_URL, else
                              redis://127.0.0.1:6379); also rediss:// (TLS)
                              and unix:///path, with [[user]:password@]
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
  -v, --verbose               log acquisition, signals, loss and kills to stderr
      --version               print the version and exit
  -h, --help                  print this help and exit

DURATION is a number of seconds, as flock takes it (10, 0.5), or a Go duration
(1m30s, 250ms). Flags cannot be combined (-nv): write -n -v.

Exit status:
  N        COMMAND exited with status N
  128+N    COMMAND was killed by signal N; or pubsublock got signal N while
           waiting for the lock, and COMMAND never ran
  1        the lock is held elsewhere (-n) or was not obtained within -w;
           change it with -E
  64       usage error: bad flags or arguments, invalid URL or channel name
  69       the Redis server cannot be reached or used (dial, TLS, AUTH, ACL)
  70       internal error: COMMAND could not be started, unexpected reply
  75       the lock was lost while COMMAND ran, and its process group was
           terminated
  126      COMMAND was found but cannot be executed
  127      COMMAND was not found
  status:  0 free, 1 held, 64, 69 or 70 as above

Examples:
  # A cron job that runs on many hosts, one at a time, skipping a run while
  # another host's is still going:
  pubsublock -n --url redis://redis.internal:6379 nightly-report -- \
      /usr/local/bin/report --all

  # Wait up to 30 seconds for the lock, exit 42 if it stays held:
  pubsublock -w 30s -E 42 deploy -- make deploy

  # Who holds it?
  pubsublock status nightly-report
`
