"""One Python contender of the chaos test: the reference client,
portalocker 2.2.1's RedisLock, doing what contender/main.go does.

It takes the lock over and over and, while it holds it, works in the
oracle's critical section (see ../oracle/oracle.lua), printing one JSON
event a line as oracle.Event describes (kinds: start acqerr acq told enter
step abort leave rel oerr exit).

portalocker 2.2.1 has no fencing and no Lost(). The fencing token is taken
as pubsublock takes it (INCR <channel>-fence, on the lock's server). As for
being told: when the connection of portalocker's worker thread fails, the
thread calls _thread.interrupt_main(), which runs our SIGINT handler in the
main thread; that is the only notice portalocker gives, and this contender
checks it before each step, as the Go one checks l.Err().

Standard input: a line "long" makes the next hold long; end of input ends
the process after its current hold.

Usage: contender.py --id p1.0 --port LOCKPORT --oracle-port PORT
       [--mode acquire|try|nolock] [--channel chaos] ...
"""

import argparse
import json
import os
import random
import signal
import sys
import threading
import time

import portalocker
import redis


def now():
    return time.time_ns()


def emit(**event):
    """Print one event in one write, so a kill loses none printed."""
    os.write(1, (json.dumps(event) + "\n").encode())


class Notice:
    """What the SIGINT handler learnt: when the lock's worker thread died,
    for the hold current then."""

    def __init__(self):
        self.hold = None  # the hold being worked, or None
        self.lost = None  # when the worker thread died during it, or None

    def on_interrupt(self, signum, frame):
        if self.lost is None:
            self.lost = now()
            if self.hold is not None:
                emit(ev="told", hold=self.hold, t=self.lost, err="portalocker worker thread died")


def reset(lk):
    """Forget a lock whose release failed (the server is gone), so that
    acquire does not assert that it is still active."""
    if lk.pubsub is not None:
        try:
            lk.pubsub.reset()
        except Exception:
            pass
    lk.pubsub = None
    lk.thread = None


def critical(o, args, notice, hold, token, long):
    """Enter the oracle's critical section, work, leave; check before each
    step, entering included, that the hold is not lost."""
    checked = now()
    if notice.lost is not None:
        emit(ev="abort", hold=hold, t=checked, err="lost")
        return
    try:
        r = o.execute_command("FCALL", "enter", 0, hold, token)
    except Exception as e:
        emit(ev="oerr", hold=hold, t=now(), err=repr(e))
        leave(o, hold, 0)
        return
    others = [h.decode() for h in r[3:]]
    emit(ev="enter", hold=hold, t=r[1] * 1000, token=token, long=long, n=r[0],
         others=others, regressed=r[2] == 1, checked=checked)
    steps, pause = args.steps, args.step
    if long:
        steps, pause = int(args.long / args.long_step), args.long_step
    done = 0
    for i in range(1, steps + 1):
        time.sleep(pause)
        checked = now()
        if notice.lost is not None:
            emit(ev="abort", hold=hold, t=checked, step=i, err="lost")
            break
        try:
            superseded, refused, t = o.execute_command("FCALL", "step", 0, hold, token)
        except Exception as e:
            emit(ev="oerr", hold=hold, t=now(), step=i, err=repr(e))
            break
        done += 1
        if superseded or refused:
            emit(ev="step", hold=hold, t=t * 1000, step=i,
                 superseded=superseded == 1, refused=refused == 1, checked=checked)
    leave(o, hold, done)


def leave(o, hold, done):
    try:
        t = o.execute_command("FCALL", "leave", 0, hold)
    except Exception as e:
        emit(ev="oerr", hold=hold, t=now(), err=repr(e))
        return
    emit(ev="leave", hold=hold, t=t * 1000, step=done)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--id", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--oracle-port", type=int, required=True)
    ap.add_argument("--channel", default="chaos")
    ap.add_argument("--mode", default="acquire", choices=["acquire", "try", "nolock"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--step", type=float, default=0.0003)
    ap.add_argument("--long", type=float, default=2.5)
    ap.add_argument("--long-step", type=float, default=0.05)
    ap.add_argument("--idle", type=float, default=0.005)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--check", type=float, default=0.05)
    ap.add_argument("--unavailable", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    notice = Notice()
    signal.signal(signal.SIGINT, notice.on_interrupt)
    stop = threading.Event()
    want_long = threading.Event()

    def read_input():
        for line in sys.stdin:
            if line.strip() == "long":
                want_long.set()
        stop.set()

    o = redis.Redis(host=args.host, port=args.oracle_port, socket_timeout=10)
    lk = None
    counts = []  # the NUMSUB counts portalocker takes, for the record
    if args.mode != "nolock":
        conn = redis.Redis(host=args.host, port=args.port, socket_timeout=5,
                           socket_connect_timeout=5)
        numsub = conn.pubsub_numsub

        def counting_numsub(*a, **kw):
            """Record what portalocker counts, changing nothing."""
            r = numsub(*a, **kw)
            counts.append(r[0][1])
            return r
        conn.pubsub_numsub = counting_numsub
        try_once = args.mode == "try"
        lk = portalocker.RedisLock(
            args.channel, connection=conn,
            timeout=0 if try_once else args.timeout,
            check_interval=args.check, fail_when_locked=try_once,
            unavailable_timeout=args.unavailable)

    emit(ev="start", t=now())
    threading.Thread(target=read_input, daemon=True).start()
    seq = 0
    while not stop.is_set():
        hold = f"{args.id}.0.{seq}"
        seq += 1
        notice.hold, notice.lost = None, None
        token = 0
        counts.clear()
        if lk is not None:
            try:
                lk.acquire()
            except portalocker.AlreadyLocked:
                if args.mode == "try":
                    time.sleep(rnd.uniform(0.002, 0.02))
                continue
            except Exception as e:
                emit(ev="acqerr", t=now(), err=repr(e))
                reset(lk)
                time.sleep(0.01)
                continue
            try:
                token = conn.incr(args.channel + "-fence")
                # portalocker's last two counts, and one more after the fact.
                seen = counts[-2:] + [numsub(args.channel)[0][1]]
            except Exception as e:
                emit(ev="acqerr", t=now(), err="fence: " + repr(e))
                try:
                    lk.release()
                except Exception:
                    reset(lk)
                continue
        long = want_long.is_set()
        want_long.clear()
        emit(ev="acq", hold=hold, t=now(), token=token, long=long,
             **({"counts": seen} if lk is not None else {}))
        notice.hold = hold
        if notice.lost is not None:  # lost before it was ours to report
            emit(ev="told", hold=hold, t=notice.lost, err="portalocker worker thread died")
        critical(o, args, notice, hold, token, long)
        if lk is not None:
            err = None
            try:
                lk.release()
            except Exception as e:
                err = repr(e)
                reset(lk)
            notice.hold = None
            emit(ev="rel", hold=hold, t=now(), **({"err": err} if err else {}))
        notice.hold = None
        time.sleep(rnd.uniform(0, args.idle))
    emit(ev="exit", t=now())


if __name__ == "__main__":
    main()
