"""Options: keyword arguments, else ``SPOTGRACE_*`` environment variables, else defaults.

Environment variables are read here and nowhere else, once, when a
``graceful()`` is created; every value is validated then, so that a bad value
is an error at start and never a surprise at shutdown.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from ._envcheck import check_unknown, warn_once
from ._errors import ConfigError

__all__ = [
    "ExitCode",
    "Options",
    "child_budget",
    "default_margin",
    "resolve_options",
]

#: What the process does after a signal- or notice-triggered shutdown that
#: finished in time. ``"auto"`` (the default): exit with the verdict's code, 0
#: when clean and finished, :data:`EXIT_UNCLEAN` when work was cut off or a hook
#: did not finish, :data:`EXIT_INCOMPLETE` when the work was interrupted before
#: it was done. An int: always that code (``0``: always 0). ``"signal"``: die of
#: the signal that started it (128+N; PID 1 exits with 128+N instead).
#: ``"return"``: leave the ``with`` block normally and let the program go on
#: (the watchdog stands down). See ``docs/semantics.md``.
ExitCode = int | Literal["auto", "signal", "return"]

#: The smallest ``margin`` accepted: the exit path itself (the watchdog's report
#: and ``os._exit``, the GIL-free backstop 0.02 s after the deadline, the kernel
#: tearing the process down) needs this much before the platform's SIGKILL.
MIN_MARGIN = 0.2

#: The smallest budget (``stop_timeout - margin``) accepted: below it the drain
#: and every hook would be skipped, and the shutdown could never be clean.
MIN_BUDGET = 0.25

#: The largest ``stop_timeout`` accepted. ECS allows 120 s on Fargate; the EC2
#: launch type and Docker allow more, but a budget over an hour is a typo.
MAX_STOP_TIMEOUT = 3600.0

_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def default_margin(stop_timeout: float) -> float:
    """The safety margin kept before the platform's SIGKILL when none is given.

    10% of ``stop_timeout``, at least 0.5 s and at most 5 s: 3 s for the ECS
    default of 30 s, 5 s for Fargate Spot's 120 s, 0.5 s for a 3 s budget.
    """
    return min(5.0, max(0.5, 0.1 * stop_timeout))


def child_budget(
    stop_timeout: float, margin: float, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``SPOTGRACE_*`` budget for a program run under a supervisor of that budget.

    ``spotgrace run`` SIGKILLs its child at ``stop_timeout - margin``; a
    spotgrace app under it gets that as its own stop timeout (and the default
    margin for it), so the app's watchdog reports what is stuck and exits
    before the supervisor's SIGKILL, never after. A ``SPOTGRACE_DRAIN_DELAY``
    in ``environ`` (default: this process's) that the child's smaller budget
    cannot hold is lowered to half of it, which is what the lame duck is capped
    at on a plain SIGTERM anyway: the child would otherwise refuse to start.
    """
    # Whole milliseconds, rounded down: never a budget longer than the supervisor's
    # (``:g`` would round 3599.9995 up to 3600).
    child = _floor_ms(stop_timeout - margin)
    if child < MIN_MARGIN + MIN_BUDGET:
        # Too short for any valid child configuration: hand nothing down (the child
        # keeps the platform's budget; the supervisor's SIGKILL is the backstop).
        return {}
    # The default margin is at least 0.5 s, which a short child budget cannot
    # hold: the app would fail at start with a ConfigError about a SPOTGRACE_MARGIN
    # its user never set. Keep what the floors allow instead.
    child_margin = _floor_ms(max(MIN_MARGIN, min(default_margin(child), child - MIN_BUDGET)))
    budget = {
        "SPOTGRACE_STOP_TIMEOUT": _decimal(child),
        "SPOTGRACE_MARGIN": _decimal(child_margin),
    }
    env = os.environ if environ is None else environ
    picked = _pick("drain_delay", None, env, _seconds_parser(), {})
    half = _floor_ms((child - child_margin) / 2)
    if picked is not None and picked[0] > half:
        budget["SPOTGRACE_DRAIN_DELAY"] = _decimal(half)
    return budget


def _floor_ms(seconds: float) -> float:
    return math.floor(round(seconds * 1000, 6)) / 1000


def _decimal(seconds: float) -> str:
    """``seconds`` as a plain decimal to the millisecond: ``0.05``, ``27``, never ``1e-07``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True, kw_only=True)
class Options:
    """The validated options of one ``graceful()``. See ``docs/reference.md``."""

    stop_timeout: float = 30.0
    margin: float = 3.0
    drain_delay: float = 0.0
    drain_timeout: float | None = None
    hook_timeout: float | None = None
    exit_code: ExitCode = "auto"
    watchdog_exit_code: int = 124
    second_signal: Literal["exit", "ignore"] = "exit"
    interrupt: bool = False
    signals: tuple[signal.Signals, ...] = field(
        default=(signal.SIGTERM, signal.SIGINT),
    )
    #: Early-warning sources: ``"auto"``, ``"ecs"``, ``"ec2"``, ``"url:<URL>"``
    #: or source objects (see ``spotgrace.watch``); empty = off.
    watch: tuple[object, ...] = ()
    watch_interval: float = 5.0

    @property
    def budget(self) -> float:
        """Seconds from the notice to the deadline: ``stop_timeout - margin``."""
        return self.stop_timeout - self.margin


# --------------------------------------------------------------------------- parsing


def _where(name: str, from_env: bool, labels: Mapping[str, str]) -> str:
    """How an error names a value: its variable, or the keyword (or flag) it came from."""
    env = "SPOTGRACE_" + name.upper()
    if from_env:
        return f"{env} (option {name})"
    return labels.get(name) or f"{name} (keyword argument)"


def _seconds(
    name: str,
    raw: object,
    where: str,
    *,
    allow_zero: bool = True,
    maximum: float = MAX_STOP_TIMEOUT,
) -> float:
    if isinstance(raw, bool):
        raise ConfigError(f"{where} must be a number of seconds, got {raw!r}")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a number of seconds, got {raw!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{where} must be a finite number of seconds, got {raw!r}")
    low = "0 or more" if allow_zero else "more than 0"
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{where} must be {low}, got {raw!r}")
    if value > maximum:
        raise ConfigError(f"{where} must be at most {maximum:g} s, got {raw!r}")
    return value


def _bool(name: str, raw: object, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where} must be true or false (1/0, yes/no, on/off), got {raw!r}")


def _exit_code(name: str, raw: object, where: str, *, allow_signal: bool) -> ExitCode:
    if (
        allow_signal
        and isinstance(raw, str)
        and raw.strip().lower() in ("auto", "signal", "return")
    ):
        word = raw.strip().lower()
        return "auto" if word == "auto" else "signal" if word == "signal" else "return"
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        # int(1.5) would be 1: a code that is not a whole number is a mistake, not a 1.
        raise ConfigError(f"{where} must be an exit code 0-255, got {raw!r}")
    try:
        code = int(raw.strip()) if isinstance(raw, str) else raw
    except (TypeError, ValueError):
        extra = ', "auto", "signal" or "return"' if allow_signal else ""
        raise ConfigError(f"{where} must be an exit code 0-255{extra}, got {raw!r}") from None
    if not 0 <= code <= 255:
        raise ConfigError(f"{where} must be an exit code 0-255, got {raw!r}")
    return code


def _choice(name: str, raw: object, where: str, choices: Sequence[str]) -> str:
    text = str(raw).strip().lower()
    if text not in choices:
        raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {raw!r}")
    return text


def _signals(name: str, raw: object, where: str) -> tuple[signal.Signals, ...]:
    items: Sequence[object]
    if isinstance(raw, str):
        text = raw.strip()
        items = [] if text.lower() in ("", "none") else [p for p in text.split(",") if p.strip()]
    elif isinstance(raw, Sequence):
        items = raw
    else:
        raise ConfigError(f"{where} must be a list of signal names, got {raw!r}")
    out: list[signal.Signals] = []
    for item in items:
        try:
            if isinstance(item, signal.Signals):
                sig = item
            elif isinstance(item, int):
                sig = signal.Signals(item)
            else:
                text = str(item).strip().upper()
                sig = signal.Signals[text if text.startswith("SIG") else "SIG" + text]
        except (KeyError, ValueError):
            raise ConfigError(f"{where}: {item!r} is not a signal") from None
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            raise ConfigError(f"{where}: {item!r} ({sig.name}) cannot be handled")
        if sig not in out:
            out.append(sig)
    return tuple(out)


def _watch(name: str, raw: object, where: str) -> tuple[object, ...]:
    from ._hosts import check_url

    items: Sequence[object]
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",") if p.strip()]
    elif isinstance(raw, Sequence):
        items = raw
    else:
        raise ConfigError(f"{where} must be auto, off, or a list of sources, got {raw!r}")
    out: list[object] = []
    for item in items:
        if not isinstance(item, str):
            if not (
                isinstance(getattr(item, "name", None), str)
                and callable(getattr(item, "poll", None))
            ):
                raise ConfigError(f"{where}: {item!r} is not a source (needs .name and .poll)")
            out.append(item)
            continue
        text = item.strip()
        if text.lower().startswith("url:"):
            check_url(text[4:], what=where)
            out.append("url:" + text[4:])
        elif text.lower() in ("auto", "ecs", "ec2"):
            out.append(text.lower())
        elif text.lower() in ("off", "none") and len(items) == 1:
            return ()
        else:
            raise ConfigError(
                f"{where}: unknown source {item!r}; use auto, ecs, ec2, url:<URL> or off"
            )
    return tuple(out)


_Parse = Callable[[str, object, str], _T]


def _pick(
    name: str,
    given: object,
    environ: Mapping[str, str],
    parse: _Parse[_T],
    labels: Mapping[str, str],
) -> tuple[_T, str] | None:
    """Parse the keyword value if given, else the environment variable, else None.

    Returns the value and how errors name where it came from.
    """
    if given is not None:
        where = _where(name, False, labels)
        return parse(name, given, where), where
    raw = _env(name, environ)
    if raw is None:
        return None
    where = _where(name, True, labels)
    return parse(name, raw, where), where


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    raw = environ.get("SPOTGRACE_" + name.upper())
    if raw is None or (raw.strip() == "" and name != "signals"):
        return None
    return raw


def _stop_timeout(
    given: object, environ: Mapping[str, str], labels: Mapping[str, str], warn: bool
) -> tuple[float, str] | None:
    """The keyword and ``SPOTGRACE_STOP_TIMEOUT`` both count: the smaller wins.

    The platform's SIGKILL comes at its own stop timeout whatever the code
    says, so a larger budget in code would only plan for time that is not there.
    """
    parse = _seconds_parser(allow_zero=False)
    picked = _pick("stop_timeout", given, environ, parse, labels)
    raw = _env("stop_timeout", environ)
    if given is None or picked is None or raw is None:
        return picked
    env_where = _where("stop_timeout", True, labels)
    from_env = parse("stop_timeout", raw, env_where)
    if from_env == picked[0]:
        return picked
    use = min(picked, (from_env, env_where))
    if not warn:
        return use
    keyword = labels.get("stop_timeout") or "stop_timeout="
    warn_once(
        "config.stop_timeout_conflict",
        ("stop_timeout", str(picked[0]), str(from_env)),
        keyword=picked[0],
        variable=from_env,
        using=use[0],
        message=(
            f"{keyword} {picked[0]:g} s and SPOTGRACE_STOP_TIMEOUT={raw.strip()} disagree: "
            f"using the smaller, {use[0]:g} s (the platform's SIGKILL does not wait)"
        ),
    )
    return use


def _seconds_parser(**kw: object) -> _Parse[float]:
    return lambda n, r, w: _seconds(n, r, w, **kw)  # type: ignore[arg-type]


def _code_parser(allow_signal: bool) -> _Parse[ExitCode]:
    return lambda n, r, w: _exit_code(n, r, w, allow_signal=allow_signal)


def _value(picked: tuple[_T, str] | None, default: _T) -> _T:
    return default if picked is None else picked[0]


def _named(picked: tuple[object, str] | None, name: str) -> str:
    """Where a value came from, for a cross-field error: its variable, keyword or flag."""
    if picked is None:
        return "the default"
    where = picked[1]
    if where.startswith("SPOTGRACE_") or where.startswith("-"):
        return "from " + where.split(" ")[0]
    return f"from the keyword {name}="


def resolve_options(
    *,
    stop_timeout: float | None = None,
    margin: float | None = None,
    drain_delay: float | None = None,
    drain_timeout: float | None = None,
    hook_timeout: float | None = None,
    exit_code: ExitCode | None = None,
    watchdog_exit_code: int | None = None,
    second_signal: Literal["exit", "ignore"] | None = None,
    interrupt: bool | None = None,
    signals: Sequence[signal.Signals | int | str] | None = None,
    watch: str | Sequence[object] | None = None,
    watch_interval: float | None = None,
    environ: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    warn: bool = True,
) -> Options:
    """Build validated :class:`Options`; ``None`` means "not given here".

    Raises :class:`ConfigError` naming the option and its variable for any bad
    value, and for a combination that cannot fit the budget. ``labels`` names
    the keyword arguments in errors (``spotgrace run`` passes its flags). Logs
    a warning, once per process, for an unknown ``SPOTGRACE_*`` variable and
    for a ``stop_timeout`` keyword that disagrees with the variable (the
    smaller wins); ``warn=False`` turns those off (``spotgrace doctor`` reports
    them itself).
    """
    env = os.environ if environ is None else environ
    lab: Mapping[str, str] = labels or {}
    d = Options()
    if warn:
        check_unknown(env)

    pst = _stop_timeout(stop_timeout, env, lab, warn)
    st = _value(pst, d.stop_timeout)
    pmg = _pick("margin", margin, env, _seconds_parser(), lab)
    mg = default_margin(st) if pmg is None else pmg[0]
    if mg >= st:
        raise ConfigError(
            f"margin ({mg:g} s, {_named(pmg, 'margin')}) must be less than stop_timeout "
            f"({st:g} s, {_named(pst, 'stop_timeout')}): "
            "the process would have no time at all to shut down"
        )
    if mg < MIN_MARGIN - 1e-9:  # 1e-9: float noise (0.7 - 0.45), not time
        raise ConfigError(
            f"margin ({_named(pmg, 'margin')}) is {mg:g} s but must be at least {MIN_MARGIN:g} s: "
            "the exit itself (the "
            "watchdog's report, os._exit, the backstop, the kernel's teardown) takes up to "
            "that long, so a smaller margin lets the platform's SIGKILL land first"
        )
    if st - mg < MIN_BUDGET - 1e-9:
        raise ConfigError(
            f"stop_timeout - margin ({st:g} - {mg:g} = {st - mg:g} s) must be at least "
            f"{MIN_BUDGET:g} s: that is the whole budget for draining in-flight work and "
            "running cleanup hooks, and with less every hook would be skipped; raise "
            "stop_timeout (the platform's stop timeout) or lower margin"
        )
    pdd = _pick("drain_delay", drain_delay, env, _seconds_parser(), lab)
    dd = _value(pdd, d.drain_delay)
    if dd >= st - mg:
        raise ConfigError(
            f"drain_delay ({dd:g} s, {_named(pdd, 'drain_delay')}) must be less than "
            f"stop_timeout - margin ({st:g} - {mg:g} = {st - mg:g} s): the lame-duck period "
            "would use the whole budget and leave nothing to drain in-flight work or run hooks"
        )
    if warn and dd > (st - mg) / 2:
        warn_once(
            "config.drain_delay_capped",
            ("drain_delay", str(dd), str(st - mg)),
            drain_delay=dd,
            capped_to=round((st - mg) / 2, 3),
            message=(
                f"drain_delay ({dd:g} s) is more than half of stop_timeout - margin "
                f"({st - mg:g} s): the lame duck is capped at half the time left, "
                f"{(st - mg) / 2:g} s on a plain SIGTERM"
            ),
        )
    dt = _pick("drain_timeout", drain_timeout, env, _seconds_parser(allow_zero=True), lab)
    ht = _pick("hook_timeout", hook_timeout, env, _seconds_parser(allow_zero=False), lab)
    ec = _pick("exit_code", exit_code, env, _code_parser(True), lab)
    wc = _pick("watchdog_exit_code", watchdog_exit_code, env, _code_parser(False), lab)
    if wc is not None and wc[0] == 0:
        raise ConfigError(
            f"watchdog_exit_code ({wc[1]}) must not be 0: "
            "a shutdown that missed its deadline is not a clean exit"
        )
    ss = _pick(
        "second_signal",
        second_signal,
        env,
        lambda n, r, w: _choice(n, r, w, ("exit", "ignore")),
        lab,
    )
    it = _pick("interrupt", interrupt, env, _bool, lab)
    sg = _pick("signals", signals, env, _signals, lab)
    if _value(it, d.interrupt) and _value(sg, d.signals) == ():
        raise ConfigError(
            f"interrupt ({_named(it, 'interrupt')}) needs a signal handler of spotgrace's to "
            f"interrupt the main thread with, but signals ({_named(sg, 'signals')}) is empty"
        )
    wa = _pick("watch", watch, env, _watch, lab)
    wi = _pick("watch_interval", watch_interval, env, _seconds_parser(allow_zero=False), lab)
    # Not an option: read where the block is entered (_sentinel.sentinel_enabled),
    # checked here so that a typo fails at graceful() instead of leaving it on.
    _pick("sentinel", None, env, _bool, lab)
    return Options(
        stop_timeout=st,
        margin=mg,
        drain_delay=dd,
        drain_timeout=_value(dt, d.drain_timeout),
        hook_timeout=_value(ht, d.hook_timeout),
        exit_code=_value(ec, d.exit_code),
        watchdog_exit_code=d.watchdog_exit_code if wc is None else int(wc[0]),
        second_signal=_value(ss, d.second_signal),  # type: ignore[arg-type]
        interrupt=_value(it, d.interrupt),
        signals=_value(sg, d.signals),
        watch=_value(wa, d.watch),
        watch_interval=_value(wi, d.watch_interval),
    )
