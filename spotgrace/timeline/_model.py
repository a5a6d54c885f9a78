"""What a shutdown is made of, as the renderers see it.

Times in a :class:`Shutdown` are seconds since its notice (``shutdown.started``).
Events after the notice carry ``elapsed`` on the emitting process's monotonic
clock; that is used when present, the event's wall time otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._parse import Event

__all__ = ["Band", "HookBar", "Mark", "Shutdown"]


@dataclass(frozen=True)
class Band:
    """A phase of the shutdown: ``lame duck``, ``drain`` or ``cleanup``."""

    name: str
    start: float
    end: float
    open_ended: bool = False


@dataclass(frozen=True)
class HookBar:
    """One cleanup hook: when it started, how long it ran and how it ended."""

    name: str
    start: float
    duration: float
    status: str  # "ok", "failed", "timed out", "skipped", "running"
    timeout: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class Mark:
    """A moment worth a vertical line: deadline, SIGKILL, exit, a second signal..."""

    at: float
    label: str
    kind: str  # "deadline", "kill", "exit", "signal", "watchdog", "info"


@dataclass
class Shutdown:
    """One process's shutdown, read back from its events."""

    process: str
    role: str  # "app" or "supervisor"
    pid: int | None
    notice_at: float  # Unix time of the notice
    source: str = ""
    reason: str = ""
    stop_timeout: float | None = None
    margin: float | None = None
    deadline: float | None = None
    kill_at: float | None = None
    kill_estimated: bool = False
    bands: list[Band] = field(default_factory=list)
    hooks: list[HookBar] = field(default_factory=list)
    inflight: list[tuple[float, int]] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    exit_at: float | None = None
    exit_code: int | None = None
    exit_why: str = ""
    finished_at: float | None = None
    end: float = 0.0
    clean: bool = False
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = ""
    events: list[tuple[float, Event]] = field(default_factory=list)
    child_pid: int | None = None
    #: For ``spotgrace run``: when and how its child ended (seconds, code, why).
    child_exit: tuple[float, int | None, str] | None = None
    #: For an app under ``spotgrace run``: its end as the supervisor saw it.
    ended_by: tuple[float, int | None, str] | None = None

    @property
    def span(self) -> float:
        """The latest time anything in this shutdown is known to have happened."""
        ends = [self.end, *(h.start + h.duration for h in self.hooks)]
        return max(ends)
