"""Hostile cases for the deadline (issue 10): argv[1] picks one; argv[2:] tune it.

Every case prints ``ready`` once the block is entered and the hostile state is
set up; times are ``time.monotonic()`` (one clock for every process).
"""

import ctypes
import multiprocessing
import os
import random
import resource
import sqlite3
import sys
import tempfile
import threading
import time

from _out import say

import spotgrace

case = sys.argv[1]
STOP = float(os.environ.get("CASE_STOP_TIMEOUT", "3"))
MARGIN = float(os.environ.get("CASE_MARGIN", "0.5"))


def watch_readiness(grace: spotgrace.Grace) -> None:
    """A thread that prints the moment readiness turns red (it needs no main thread)."""

    def run() -> None:
        while grace.ready:
            time.sleep(0.0005)
        say(f"notready {time.monotonic():.6f} state={grace.state.value}")

    threading.Thread(target=run, daemon=True).start()


def gil_sleep() -> None:
    """30 s in C with the GIL held (PyDLL does not release it)."""
    ctypes.PyDLL(None).sleep(30)


if case == "sqlite":
    # The main thread waits in sqlite3's busy handler (C, GIL released, retries on EINTR).
    spotgrace.configure_json_logging(stream=sys.stdout)
    path = os.path.join(tempfile.mkdtemp(), "db.sqlite")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("create table t (x)")
    holder.execute("begin exclusive")
    waiter = sqlite3.connect(path, timeout=30)
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        watch_readiness(grace)
        say("ready")
        waiter.execute("insert into t values (1)")  # 30 s in C
        say("body-returned")

elif case == "gil-hook":
    # A hook stuck in C with the GIL held; its own timeout cannot fire either.
    spotgrace.configure_json_logging(stream=sys.stdout)
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    for _ in range(threads):  # CPU-bound threads competing for the GIL

        def spin() -> None:
            while True:
                pass

        threading.Thread(target=spin, daemon=True).start()

    @spotgrace.on_shutdown(timeout=1)
    def stuck_in_c() -> None:
        say("hook-started")
        gil_sleep()

    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        say("ready")
        grace.wait()

elif case == "spin-hook":
    # CPU-bound threads compete for the GIL while a hook hangs in Python code:
    # the Python watchdog has to win the GIL to act.
    spotgrace.configure_json_logging(stream=sys.stdout)
    for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 30):

        def spin_forever() -> None:
            while True:
                pass

        threading.Thread(target=spin_forever, daemon=True).start()

    @spotgrace.on_shutdown
    def hangs() -> None:
        threading.Event().wait()

    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        say("ready")
        grace.wait()

elif case == "gil-body":
    # The main thread itself holds the GIL in C: no Python code runs anywhere.
    spotgrace.configure_json_logging(stream=sys.stdout)
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        say("ready")
        time.sleep(0.3)  # the test sends SIGTERM now; then the GIL is held for good
        gil_sleep()

elif case == "gil-first":
    # The GIL is held in C before the SIGTERM comes, by a call that retries on
    # EINTR (glibc's system() waiting for its child): no thread of this process
    # runs Python code until it returns, 30 s later. Only the sentinel can act.
    spotgrace.configure_json_logging(stream=sys.stdout)
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        say("ready")
        ctypes.PyDLL(None).system(b"exec sleep 30 </dev/null >/dev/null 2>&1")
        say("system-returned")

elif case == "nproc":
    # No thread can start once the block is entered (RLIMIT_NPROC, as another user).
    spotgrace.configure_json_logging(stream=sys.stdout)
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        if os.getuid() == 0:  # root is exempt from RLIMIT_NPROC
            os.setgid(65534)
            os.setuid(65534)
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))
        try:
            threading.Thread(target=lambda: None).start()
            say("threads-still-start")
        except RuntimeError:
            say("nproc-exhausted")
        say("ready")
        while True:  # a body that ignores `stopping`: only the watchdog ends it
            time.sleep(0.05)

elif case == "full-pipe":
    # stdout is a pipe nobody reads, filled up: structlog's default logger prints there.
    hang = len(sys.argv) > 2 and sys.argv[2] == "hang"
    os.set_blocking(1, False)
    try:
        while True:
            os.write(1, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(1, True)

    @spotgrace.on_shutdown
    def hook() -> None:
        sys.stderr.write("hook-ran\n")
        sys.stderr.flush()
        if hang:
            threading.Event().wait()

    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        sys.stderr.write("ready\n")
        sys.stderr.flush()
        grace.wait()

elif case == "fork":
    spotgrace.configure_json_logging(stream=sys.stdout)
    ctx = multiprocessing.get_context("fork")

    def child_graceful() -> None:
        with spotgrace.graceful(stop_timeout=2, margin=0.5):
            pass

    with spotgrace.graceful(stop_timeout=20, margin=1) as grace:
        say("ready")
        p = ctx.Process(target=time.sleep, args=(60,))
        p.start()
        time.sleep(0.2)
        p.terminate()
        p.join(5)
        say(f"terminate:{p.exitcode}")
        if p.exitcode is None:
            p.kill()
        p2 = ctx.Process(target=child_graceful)
        p2.start()
        p2.join(10)
        say(f"child-graceful:{p2.exitcode}")
        started = time.monotonic()
        with ctx.Pool(2) as pool:
            pool.map(abs, [1, 2])
        say(f"pool-exit:{time.monotonic() - started:.2f}")

elif case == "interrupt":
    # interrupt=True: a body in os.read, and a body spinning on `stopping`; many rounds.
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    spotgrace.configure_json_logging(stream=open(os.devnull, "w"))  # noqa: SIM115
    stuck = escaped = ok = 0
    for i in range(runs * 2):
        spin = i % 2 == 1
        r, w = os.pipe()
        rescue = threading.Timer(2.0, os.write, (w, b"x"))  # unblocks a missed kick
        rescue.start()
        try:
            with spotgrace.graceful(
                stop_timeout=5, margin=0.5, interrupt=True, signals=["SIGINT"]
            ) as grace:
                threading.Timer(random.uniform(0, 0.005), grace.request_shutdown).start()
                if spin:
                    while not grace.stopping:
                        pass
                else:
                    os.read(r, 1)
                    stuck += 1
        except spotgrace.ShutdownInterrupt:
            escaped += 1
        else:
            ok += 1
        rescue.cancel()
        os.close(r)
        os.close(w)
    say(f"interrupt ok={ok} stuck={stuck} escaped={escaped}")

else:
    raise SystemExit(f"unknown case {case!r}")
