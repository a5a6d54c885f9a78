"""A queue worker that loses nothing when its Spot task is interrupted.

    python examples/worker_app.py                     # Ctrl-C to stop it gracefully
    spotgrace simulate --interrupt-after 5 --stop-timeout 30 -- python examples/worker_app.py

It takes jobs from a (simulated) queue; each job takes about a second. When
the stop comes (SIGTERM, Ctrl-C, or an early-warning notice with
SPOTGRACE_WATCH=auto), it takes no new job, finishes the one in hand, then
runs its cleanup hooks in order and exits 0, well before the SIGKILL.
Configuration comes from the environment: SPOTGRACE_STOP_TIMEOUT (what the
task definition's stopTimeout says), SPOTGRACE_WATCH, ...
"""

from __future__ import annotations

import itertools
import time

import spotgrace

done: list[int] = []


@spotgrace.on_shutdown(order=0, timeout=2)
def ack_finished_jobs() -> None:
    """Acknowledge the finished jobs to the queue (here: print them)."""
    print(f"worker: acknowledged {len(done)} finished jobs", flush=True)


@spotgrace.on_shutdown(order=10, timeout=2)
def close_queue_connection() -> None:
    """Last: close the connection to the queue."""
    time.sleep(0.1)
    print("worker: queue connection closed", flush=True)


def handle(job: int) -> None:
    """One job: about a second of work that must not be cut in half."""
    time.sleep(1.0)
    done.append(job)


def main() -> None:
    """Take jobs until told to stop; each job runs to its end."""
    with spotgrace.graceful() as grace:
        print(f"worker: started, budget {grace.remaining():.1f}s once a stop begins", flush=True)
        for job in itertools.count(1):
            if grace.stopping:
                break
            with grace.inflight():
                handle(job)
            print(f"worker: job {job} done", flush=True)


if __name__ == "__main__":
    main()
