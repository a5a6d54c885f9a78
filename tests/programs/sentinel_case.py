"""The sentinel process (issue 10): argv[1] picks a case.

Every case prints ``ready <sentinel pid or None>`` once the block is entered.
stop_timeout 2 s, margin 0.5 s: the deadline is 1.5 s after the notice.
"""

import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import time

from _out import say

import spotgrace

case = sys.argv[1]
STOP, MARGIN = 2.0, 0.5


def sentinel_pid(grace: spotgrace.Grace) -> int | None:
    return grace._c.watchdog.sentinel.pid  # type: ignore[attr-defined]


def children() -> list[int]:
    pid = os.getpid()
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
        except FileNotFoundError:  # a thread that ended meanwhile (spotgrace's own)
            continue
    return found


if case == "plain":
    # A well-behaved body: returns once intake must stop.
    spotgrace.configure_json_logging(stream=sys.stdout)
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        say(f"ready {sentinel_pid(grace)}")
        grace.wait()
        say("stopping")

elif case == "no-notice":
    # Blocks that end with no notice, one after another: each sentinel goes with
    # its block, and its expected end is not reported as lost.
    for i in range(20):
        with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
            if i == 0:
                say(f"ready {sentinel_pid(grace)}")
            time.sleep(0.01 * (i % 3))
    time.sleep(0.3)
    say(f"children {children()}")

elif case == "foreign-handler":
    # The app takes SIGTERM over inside the block; that SIGTERM is not a notice,
    # and the sentinel must not end the process a budget later.
    got: list[int] = []
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
        say(f"ready {sentinel_pid(grace)}")
        end = time.monotonic() + STOP + 1.5
        while time.monotonic() < end:
            time.sleep(0.05)
        say(f"survived got={got} state={grace.state.value}")

elif case == "fork-child-terminated":
    # A forked worker is terminated: its SIGTERM is not the parent's notice.
    ctx = multiprocessing.get_context("fork")
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        say(f"ready {sentinel_pid(grace)}")
        worker = ctx.Process(target=time.sleep, args=(30,))
        worker.start()
        time.sleep(0.2)
        worker.terminate()
        worker.join(5)
        say(f"worker-exit {worker.exitcode}")
        time.sleep(STOP + 1.0)
        say(f"survived state={grace.state.value}")

elif case == "unscheduled-exit":
    # The sentinel has not run yet when the block ends (its interpreter takes tens
    # of ms to start, more on a busy machine): SIGSTOP stands in for that. The
    # block's exit must not wait for it, nor leave it behind.
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN, exit_code="return") as grace:
        pid = sentinel_pid(grace)
        say(f"ready {pid}")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        while time.monotonic() - start < 5:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
            time.sleep(0.01)
        left = time.monotonic()
    say(f"exit-took {time.monotonic() - left:.3f}")
    say(f"children {children()}")

elif case == "signal-before-sentinel-runs":
    # A SIGTERM in the first milliseconds of the block, before the sentinel's
    # interpreter has started (SIGSTOP holds it there): the notice must not wait
    # for the sentinel.
    spotgrace.configure_json_logging(stream=sys.stdout)
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        pid = sentinel_pid(grace)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # python starts in no less than ~10 ms
        say(f"ready {pid}")
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        stopping = grace.wait(3.0)
        say(f"stopping={stopping} after {time.monotonic() - sent:.3f}")
        os.kill(pid, signal.SIGCONT)

elif case == "late-notice":
    # The GIL is held in C for 1.4 s when SIGTERM comes (the test sends it 0.2 s
    # in): the coordinator reads the notice about 1.2 s after the sentinel saw the
    # byte. A hook then uses the time grace.remaining() gives it, less 0.5 s. The
    # deadline is signal + 2 s; the platform's SIGKILL is 5 s after the signal.
    # The process is healthy and must not be SIGKILLed.
    spotgrace.configure_json_logging(stream=sys.stdout)
    with spotgrace.graceful(stop_timeout=5.0, margin=3.0) as grace:

        @spotgrace.on_shutdown
        def upload() -> None:
            time.sleep(max(0.0, grace.remaining() - 0.5))
            say("hook-done")

        say(f"ready {sentinel_pid(grace)}")
        ctypes.PyDLL(None).system(b"exec sleep 1.4 </dev/null >/dev/null 2>&1")
        grace.wait()

elif case == "tree-kill":
    # The Celery integration's last resort kills the process tree: not the sentinel.
    from spotgrace.celery._tree import kill_descendants

    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN, exit_code="return") as grace:
        pid = sentinel_pid(grace)
        say(f"ready {pid}")
        worker = subprocess.Popen(["sleep", "30"])
        killed = kill_descendants(os.getpid())
        worker.wait()
        alive = os.waitpid(pid, os.WNOHANG) == (0, 0)  # ours, still running
        say(f"killed-worker={worker.pid in killed} sentinel-spared={pid not in killed and alive}")

elif case == "cannot-start":
    # The sentinel cannot be started (here: its interpreter is missing): the
    # block goes on without one, and says so.
    spotgrace.configure_json_logging(stream=sys.stdout)
    sys.executable = "/nonexistent/python3"
    with spotgrace.graceful(stop_timeout=STOP, margin=MARGIN) as grace:
        say(f"ready {sentinel_pid(grace)}")
        grace.wait()
        say("stopping")

else:
    raise SystemExit(f"unknown case {case!r}")
