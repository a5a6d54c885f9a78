"""The verdict of one ``graceful()`` block and the exit code it gives.

=========================================  ======================
what happened                              code (``exit_code="auto"``)
=========================================  ======================
the app raised ``SystemExit(n)``            ``n``, whatever else happened
work interrupted before it was done        75 (:data:`EXIT_INCOMPLETE`, "retry me")
the shutdown was not clean                 70 (:data:`EXIT_UNCLEAN`)
clean and finished                         0
=========================================  ======================

"Not clean": a hook failed, timed out or was skipped, work was cancelled or
left running when the drain ran out of time, a hook was registered too late to
run, or the block raised. "Interrupted before it was done": a
``checkpointed()`` iteration that did not reach the end of its items, or
``grace.mark_incomplete()``. The watchdog (124) and a second signal (128+N)
end the process on their own paths and never get here.
"""

from __future__ import annotations

import threading
from typing import Any

from .._core._config import ExitCode
from .._core._errors import ShutdownInterrupt

__all__ = ["EXIT_INCOMPLETE", "EXIT_UNCLEAN", "Verdict", "apply_policy", "system_exit_code"]

#: The exit code of a shutdown that was not clean (a hook failed, timed out or
#: was skipped; work was cancelled or left running when the drain ran out of
#: time). ``EX_SOFTWARE`` of ``sysexits.h``.
EXIT_UNCLEAN = 70

#: The "retry me" exit code: the work was interrupted before it was done (a
#: ``checkpointed()`` iteration not complete, or ``grace.mark_incomplete()``).
#: ``EX_TEMPFAIL`` of ``sysexits.h``: a temporary failure, try again.
EXIT_INCOMPLETE = 75


def system_exit_code(exc: SystemExit) -> int:
    """The status a parent sees when the interpreter exits for ``exc``.

    ``sys.exit(None)`` is 0, ``sys.exit("msg")`` 1, and an int is cut to its
    low 8 bits as POSIX ``exit()`` does: ``sys.exit(300)`` is seen as 44,
    ``sys.exit(-1)`` as 255, ``sys.exit(256)`` as 0 (an int too large for a C
    ``long`` as 255, like the interpreter).
    """
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, bool):
        return int(code)
    if isinstance(code, int):
        return code & 0xFF if -(2**63) <= code < 2**63 else 255
    return 1


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class Verdict:
    """What one block's exit code is made of; thread-safe.

    The app and ``checkpointed()`` mark work not done; the handle records
    hooks registered after the cleanup ran; :meth:`decide` weighs it all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # What is not done, by what it is (a reason, or "checkpoint:<key>"): the
        # latest word on each, so a checkpoint finished later no longer counts.
        self._incomplete: dict[str, str] = {}
        self._late: list[str] = []
        #: The code and the reason decided when the block ended (None before).
        self.code: int | None = None
        self.why: str | None = None

    def mark_incomplete(self, reason: str, *, key: str | None = None) -> None:
        """Record work interrupted before it was done (the "retry me" code).

        ``key`` names the work (a checkpoint); a later mark of the same key
        replaces this one, and :meth:`mark_done` withdraws it.
        """
        with self._lock:
            self._incomplete[reason if key is None else key] = reason

    def mark_done(self, key: str) -> None:
        """The work ``key`` was marked incomplete, and has since been finished."""
        with self._lock:
            self._incomplete.pop(key, None)

    def late_hook(self, name: str) -> None:
        """Record a hook registered after the cleanup ran: it never ran."""
        with self._lock:
            self._late.append(name)

    def _unclean(self, outcome: dict[str, Any], exc: BaseException | None) -> list[str]:
        why: list[str] = []
        for key, word in (("failed", "failed"), ("timed_out", "timed out"), ("skipped", "skipped")):
            if outcome.get(key):
                why.append(f"{_plural(outcome[key], 'hook')} {word}")
        if outcome.get("cancelled"):
            why.append(f"{_plural(outcome['cancelled'], 'task')} of work cancelled")
        if outcome and not outcome.get("drained", True):
            why.append("work still in flight when the drain ran out of time")
        if self._late:
            why.append(f"hook registered after the cleanup ran, never run: {', '.join(self._late)}")
        if exc is not None and not isinstance(exc, ShutdownInterrupt | SystemExit):
            why.append(f"the block raised {exc!r}")
        return why

    def decide(self, outcome: dict[str, Any], exc: BaseException | None) -> tuple[int, str]:
        """The verdict's code and reason, from ``shutdown.finished``'s fields and the exception."""
        with self._lock:
            if isinstance(exc, SystemExit):
                code, why = system_exit_code(exc), f"the app raised SystemExit({exc.code!r})"
                if isinstance(exc.code, int) and code != exc.code:
                    why += f", which the OS reports as {code}"
            elif self._incomplete:
                code, why = (
                    EXIT_INCOMPLETE,
                    "work not done: " + "; ".join(self._incomplete.values()),
                )
            elif unclean := self._unclean(outcome, exc):
                code, why = EXIT_UNCLEAN, "not clean: " + "; ".join(unclean)
            else:
                code, why = 0, "clean and finished"
            self.code, self.why = code, why
            return code, why


def apply_policy(
    policy: ExitCode, verdict: tuple[int, str], signal_code: int | None
) -> tuple[int, str]:
    """The code to exit with under ``exit_code=policy``, and why."""
    code, why = verdict
    if policy == "auto":
        return code, why
    if policy == "signal":
        if signal_code is None:  # a watch notice: no signal to die of, so the verdict
            return code, f"exit_code=signal, but no signal came ({why})"
        return signal_code, f"exit_code=signal ({why})"
    if policy == "return":  # pragma: no cover - the block returns instead
        return code, why
    return int(policy), f"exit_code={policy} ({why})"
