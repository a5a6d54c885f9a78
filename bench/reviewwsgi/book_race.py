# ruff: noqa: B023  (one round per process: the loop runs once)
"""Race loop: many threads through GraceMiddleware(grace=) while SIGTERM arrives.

Per round: a new graceful() block and middleware; W worker threads loop
(call, iterate, close / close twice / close from another thread / never close
and drop / app raises); H holder threads take a body and keep it open until
the round's end; SIGTERM to ourselves at a random moment. Checks:
- the tracker count is never negative (a poller samples it);
- once ready is False and the listener ran, count >= holders still open;
- after every body ended, the count is exactly 0.
Run: for i in $(seq 40); do PYTHONPATH=$PWD /work/main/.venv/bin/python bench/reviewwsgi/book_race.py 2>/dev/null; done | grep -c 'PROBLEMS: none'
"""

from __future__ import annotations

import gc
import os
import random
import signal
import sys
import threading
import time

import spotgrace
from spotgrace.wsgi import GraceMiddleware

sys.setswitchinterval(1e-6)
ROUNDS = 1  # graceful() ends the process: loop in the shell


def app(environ, start_response):
    mode = environ["mode"]
    if mode == "raise":
        raise RuntimeError("boom")

    def gen():
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        if mode == "raise_mid":
            raise RuntimeError("mid")
        yield b"b"

    return gen()


def sr(status, headers, exc_info=None):
    return lambda data: None


problems: list[str] = []
for rnd in range(ROUNDS):
    with spotgrace.graceful(stop_timeout=20, drain_delay=0.2) as grace:
        tracker = grace._c.tracker
        mw = GraceMiddleware(app, grace=grace)
        stop = threading.Event()
        release = threading.Event()
        holders_open = [0]
        hl = threading.Lock()
        minimum = [0]

        def poll():
            while not stop.is_set():
                c = tracker._count
                if c < minimum[0]:
                    minimum[0] = c

        def worker():
            rng = random.Random()
            while not stop.is_set():
                mode = rng.choice(
                    ["ok", "ok", "raise", "raise_mid", "noclose", "twice", "other", "cycle"]
                )
                env = {"PATH_INFO": "/x", "mode": mode}
                try:
                    body = mw(env, sr)
                except RuntimeError:
                    continue
                try:
                    for _ in body:
                        pass
                except RuntimeError:
                    pass
                if mode == "cycle":  # freed by the cyclic GC, in whichever thread runs it
                    loop: list[object] = [body]
                    loop.append(loop)
                    del body, loop
                elif mode == "noclose":
                    del body
                elif mode == "twice":
                    body.close()
                    body.close()
                elif mode == "other":
                    t = threading.Thread(target=body.close)
                    t.start()
                    t.join()
                else:
                    body.close()

        def holder():
            env = {"PATH_INFO": "/x", "mode": "ok"}
            body = mw(env, sr)
            with hl:
                holders_open[0] += 1
            release.wait()
            with hl:
                holders_open[0] -= 1
            body.close()

        threads = [threading.Thread(target=worker) for _ in range(6)]
        threads.append(threading.Thread(target=poll))
        for t in threads:
            t.start()
        hs = [threading.Thread(target=holder) for _ in range(4)]
        for t in hs:
            t.start()
        time.sleep(random.uniform(0.0, 0.05))
        os.kill(os.getpid(), signal.SIGTERM)
        while grace.notice is None:
            time.sleep(0.001)
        time.sleep(0.05)
        after = tracker._count
        if after < holders_open[0]:
            problems.append(f"round {rnd}: count {after} < holders {holders_open[0]} after notice")
        grace.wait(10)
        stop.set()
        for t in threads:
            t.join()
        gc.collect()
        print(
            f"round {rnd}: after-notice count {after}, before release {tracker._count}, "
            f"holders {holders_open[0]}, min {minimum[0]}",
            flush=True,
        )
        released_at = [0.0]

        def later():
            time.sleep(1.0)
            released_at[0] = time.monotonic()
            release.set()

        threading.Thread(target=later).start()

        @spotgrace.on_shutdown
        def check():  # runs after the drain: the holders must have been waited for
            if not released_at[0]:
                problems.append("drain ended before the holders were released")
            end = tracker._count
            if end != 0 or minimum[0] < 0:
                problems.append(f"end count {end}, min {minimum[0]}")
            print("PROBLEMS:", problems if problems else "none", flush=True)
