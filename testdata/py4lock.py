"""Drive portalocker 4's RedisLock (protocol 1) for interop tests.

Run with PYTHONPATH set to a portalocker 4 source tree (PORTALOCKER4_SRC);
it refuses to run on an older portalocker.

Usage: py4lock.py MODE HOST PORT CHANNEL FLAGS [ARGS...]

FLAGS is "exclusive" or "shared" (LockFlags.EXCLUSIVE or LockFlags.SHARED).

Modes:
  hold TIMEOUT   acquire, waiting up to TIMEOUT seconds; print "held ID"
                 (the holder id), keep the lock until stdin closes, release
                 and print "released"; print "locked" if it cannot.
  try TIMEOUT    acquire, waiting up to TIMEOUT seconds (0: one attempt);
                 print "acquired ID" and release, or "locked".
  contend N HOLD ORACLE
                 N times: acquire (waiting up to 10 s), enter the oracle,
                 sleep HOLD seconds, leave it, release. The oracle is two
                 counters in Redis, ORACLE-w (writers) and ORACLE-r
                 (readers): a writer INCRs ORACLE-w and must find it 1 and
                 ORACLE-r 0; a reader INCRs ORACLE-r and must find
                 ORACLE-w 0. Every overlap seen is counted in ORACLE-bad,
                 every hold that learnt it was killed in ORACLE-killed.
                 Prints "done N starved M killed K": M tries gave up after
                 10 s, K were killed (while waiting or holding).

The connection is built as upstream #136 requires (portalocker 4.1's
waiters die of an AssertionError when the lock builds it from
redis_kwargs): redis.Redis(..., health_check_interval=10,
decode_responses=True). Every line is flushed at once.
"""

import sys
import time

import portalocker
import portalocker.redis as plredis
import redis


def say(*words):
    print(*words, flush=True)


def lock(conn, channel, flags, timeout, unavailable=1):
    return portalocker.RedisLock(
        channel,
        connection=conn,
        timeout=timeout,
        check_interval=0.05,
        unavailable_timeout=unavailable,
        flags=flags,
    )


def enter(r, oracle, shared):
    if shared:
        r.incr(oracle + "-r")
        if int(r.get(oracle + "-w") or 0) != 0:
            r.incr(oracle + "-bad")
    else:
        w = r.incr(oracle + "-w")
        if w != 1 or int(r.get(oracle + "-r") or 0) != 0:
            r.incr(oracle + "-bad")


def leave(r, oracle, shared):
    r.decr(oracle + ("-r" if shared else "-w"))


def release(lk):
    try:
        lk.release()
    except (Exception, KeyboardInterrupt):
        pass


def main():
    mode, host, port, channel, flags = sys.argv[1:6]
    args = sys.argv[6:]
    if getattr(plredis, "REDIS_LOCK_PROTOCOL_VERSION", None) != 1:
        sys.exit("py4lock.py: portalocker 4 not found on PYTHONPATH")
    shared = flags == "shared"
    flags = portalocker.LockFlags.SHARED if shared else portalocker.LockFlags.EXCLUSIVE
    conn = redis.Redis(host=host, port=int(port), health_check_interval=10, decode_responses=True)
    if mode in ("hold", "try"):
        lk = lock(conn, channel, flags, float(args[0]))
        try:
            lk.acquire()
        except portalocker.AlreadyLocked:
            say("locked")
            return
        if mode == "hold":
            say("held", lk.holder_id)
            sys.stdin.read()  # until the test closes stdin, or kills us
            lk.release()
            say("released")
        else:
            say("acquired", lk.holder_id)
            lk.release()
    elif mode == "contend":
        n, hold, oracle = int(args[0]), float(args[1]), args[2]
        done = starved = killed = 0
        for _ in range(n):
            # unavailable_timeout 3 s: a 4.1 probe reads about 10 answers
            # a second (upstream #138) and kills the holders whose answers
            # it has not read yet.
            lk = lock(conn, channel, flags, 10, unavailable=3)
            try:
                lk.acquire()
            except portalocker.AlreadyLocked:
                starved += 1
                continue
            except KeyboardInterrupt:
                # A contender killed this one's connection (4.1 kills
                # holders that came after its ping); its thread interrupts
                # the main one.
                killed += 1
                release(lk)
                continue
            try:
                enter(conn, oracle, shared)
                time.sleep(hold)
            except KeyboardInterrupt:
                killed += 1
                r = redis.Redis(host=host, port=int(port), decode_responses=True)
                r.incr(oracle + "-killed")
            finally:
                leave(conn, oracle, shared)
                release(lk)
            done += 1
        say("done", done, "starved", starved, "killed", killed)
    else:
        sys.exit("py4lock.py: unknown mode " + mode)


if __name__ == "__main__":
    main()
