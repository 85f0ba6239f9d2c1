"""Drive portalocker's RedisLock (the Python reference) for interop tests.

Usage: pyholder.py MODE HOST PORT CHANNEL [TIMEOUT]

Modes:
  hold  acquire the lock (waiting up to TIMEOUT, default 5 s), print "held",
        then keep it until stdin closes; print "locked" if it cannot.
  try   make one attempt (TIMEOUT 0 by default: portalocker tries once),
        print "acquired" (and release) or "locked".
  ping  send a contender's ping in portalocker's format with redis-py and
        wait up to TIMEOUT (default 2 s) for a real answer (a 'message', not
        the subscribe confirmation that portalocker 2.2.1 mistakes for one);
        print "answer <data>" or "noanswer".
  loop  acquire and release back to back for TIMEOUT seconds, as a cron-like
        worker does; print "ready" first, and start when a line comes on
        stdin; then print "held <Unix time>" for each
        hold, entered with INCR of the oracle key CHANNEL-oracle (a reply
        other than 1 is counted in CHANNEL-oracle-bad), and "done <holds>".

Every line is flushed at once: the Go test reads them as they come.
"""

import json
import random
import sys
import time

import portalocker
import redis


def say(*words):
    print(*words, flush=True)


def lock(host, port, channel, timeout):
    return portalocker.RedisLock(
        channel,
        redis_kwargs=dict(host=host, port=port),
        timeout=timeout,
        unavailable_timeout=1,
    )


def take(host, port, channel, timeout, keep):
    """Acquire; say "held" and keep the lock until stdin closes (keep), or
    say "acquired" and release at once; say "locked" if it is held."""
    lk = lock(host, port, channel, timeout)
    try:
        lk.acquire()
    except portalocker.AlreadyLocked:
        say("locked")
        return
    if keep:
        say("held")
        sys.stdin.read()  # until the test closes stdin, or kills us
    else:
        say("acquired")
    lk.release()


def hold(host, port, channel, timeout):
    take(host, port, channel, timeout, keep=True)


def try_once(host, port, channel, timeout):
    take(host, port, channel, timeout, keep=False)


def ping(host, port, channel, timeout):
    r = redis.Redis(host=host, port=port)
    p = r.pubsub()
    reply = f"{channel}-{random.random()}"
    p.subscribe(reply)
    deadline = time.monotonic() + timeout
    # Wait for the confirmation, so the answer cannot beat our subscription.
    while True:
        m = p.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if m and m["type"] == "subscribe":
            break
        if time.monotonic() >= deadline:
            say("noanswer")
            return
    r.publish(channel, json.dumps(dict(response_channel=reply, message="ping")))
    while time.monotonic() < deadline:
        m = p.get_message(timeout=max(0.0, deadline - time.monotonic()))
        if m and m["type"] == "message":
            say("answer", m["data"].decode())
            p.close()
            return
    say("noanswer")
    p.close()


def loop(host, port, channel, duration):
    r = redis.Redis(host=host, port=port)
    oracle = f"{channel}-oracle"
    lk = lock(host, port, channel, duration)
    say("ready")
    sys.stdin.readline()  # the test starts every loop at once
    end = time.monotonic() + duration
    holds = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            lk.acquire(timeout=left)
        except portalocker.AlreadyLocked:
            break
        if r.incr(oracle) != 1:
            r.incr(oracle + "-bad")
        say("held", repr(time.time()))
        holds += 1
        time.sleep(0.001)
        r.decr(oracle)
        lk.release()
    say("done", holds)


def main():
    mode, host, port, channel = sys.argv[1:5]
    port = int(port)
    defaults = {"hold": 5.0, "try": 0.0, "ping": 2.0, "loop": 20.0}
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else defaults[mode]
    modes = {"hold": hold, "try": try_once, "ping": ping, "loop": loop}
    modes[mode](host, port, channel, timeout)


if __name__ == "__main__":
    main()
