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

from ._errors import ConfigError

__all__ = ["ExitCode", "Options", "default_margin", "resolve_options"]

#: What the process does after a signal- or notice-triggered shutdown that
#: finished in time: exit with this code; ``"signal"``: die of the signal that
#: started it (128+N; PID 1 exits with 128+N instead); ``"return"``: leave the
#: ``with`` block normally and let the program go on (the watchdog stands down).
ExitCode = int | Literal["signal", "return"]

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


@dataclass(frozen=True, kw_only=True)
class Options:
    """The validated options of one ``graceful()``. See ``docs/reference.md``."""

    stop_timeout: float = 30.0
    margin: float = 3.0
    drain_delay: float = 0.0
    drain_timeout: float | None = None
    hook_timeout: float | None = None
    exit_code: ExitCode = 0
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


def _where(name: str, env: str, from_env: bool) -> str:
    return f"{env} (option {name})" if from_env else f"{name} (env {env})"


def _seconds(
    name: str,
    raw: object,
    from_env: bool,
    *,
    allow_zero: bool = True,
    maximum: float = MAX_STOP_TIMEOUT,
) -> float:
    env = "SPOTGRACE_" + name.upper()
    where = _where(name, env, from_env)
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


def _bool(name: str, raw: object, from_env: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    where = _where(name, "SPOTGRACE_" + name.upper(), from_env)
    raise ConfigError(f"{where} must be true or false (1/0, yes/no, on/off), got {raw!r}")


def _exit_code(name: str, raw: object, from_env: bool, *, allow_signal: bool) -> ExitCode:
    where = _where(name, "SPOTGRACE_" + name.upper(), from_env)
    if allow_signal and isinstance(raw, str) and raw.strip().lower() in ("signal", "return"):
        return "signal" if raw.strip().lower() == "signal" else "return"
    if isinstance(raw, bool):
        raise ConfigError(f"{where} must be an exit code 0-255, got {raw!r}")
    try:
        code = int(str(raw).strip()) if isinstance(raw, str) else int(raw)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        extra = ', "signal" or "return"' if allow_signal else ""
        raise ConfigError(f"{where} must be an exit code 0-255{extra}, got {raw!r}") from None
    if not 0 <= code <= 255:
        raise ConfigError(f"{where} must be an exit code 0-255, got {raw!r}")
    return code


def _choice(name: str, raw: object, from_env: bool, choices: Sequence[str]) -> str:
    text = str(raw).strip().lower()
    if text not in choices:
        where = _where(name, "SPOTGRACE_" + name.upper(), from_env)
        raise ConfigError(f"{where} must be one of {', '.join(choices)}; got {raw!r}")
    return text


def _signals(name: str, raw: object, from_env: bool) -> tuple[signal.Signals, ...]:
    where = _where(name, "SPOTGRACE_" + name.upper(), from_env)
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


def _watch(name: str, raw: object, from_env: bool) -> tuple[object, ...]:
    from ._hosts import check_url

    where = _where(name, "SPOTGRACE_" + name.upper(), from_env)
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


def _pick(
    name: str,
    given: object,
    environ: Mapping[str, str],
    parse: Callable[[str, object, bool], _T],
) -> _T | None:
    """Parse the keyword value if given, else the environment variable, else None."""
    if given is not None:
        return parse(name, given, False)
    raw = environ.get("SPOTGRACE_" + name.upper())
    if raw is None or (raw.strip() == "" and name != "signals"):
        return None
    return parse(name, raw, True)


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
) -> Options:
    """Build validated :class:`Options`; ``None`` means "not given here".

    Raises :class:`ConfigError` naming the option and its variable for any bad
    value, and for a combination that cannot fit the budget.
    """
    env = os.environ if environ is None else environ
    d = Options()

    def secs(**kw: object) -> Callable[[str, object, bool], float]:
        return lambda n, r, e: _seconds(n, r, e, **kw)  # type: ignore[arg-type]

    st = _pick("stop_timeout", stop_timeout, env, secs(allow_zero=False))
    st = d.stop_timeout if st is None else st
    mg = _pick("margin", margin, env, secs())
    mg = default_margin(st) if mg is None else mg
    if mg >= st:
        raise ConfigError(
            f"margin ({mg:g} s) must be less than stop_timeout ({st:g} s): "
            "the process would have no time at all to shut down"
        )
    if mg < MIN_MARGIN:
        raise ConfigError(
            f"margin (env SPOTGRACE_MARGIN) is {mg:g} s but must be at least {MIN_MARGIN:g} s: "
            "the exit itself (the "
            "watchdog's report, os._exit, the backstop, the kernel's teardown) takes up to "
            "that long, so a smaller margin lets the platform's SIGKILL land first"
        )
    if st - mg < MIN_BUDGET:
        raise ConfigError(
            f"stop_timeout - margin ({st:g} - {mg:g} = {st - mg:g} s) must be at least "
            f"{MIN_BUDGET:g} s: that is the whole budget for draining in-flight work and "
            "running cleanup hooks, and with less every hook would be skipped; raise "
            "stop_timeout (the platform's stop timeout) or lower margin"
        )
    dd = _pick("drain_delay", drain_delay, env, secs())
    dd = d.drain_delay if dd is None else dd
    if dd >= st - mg:
        raise ConfigError(
            f"drain_delay ({dd:g} s) must be less than stop_timeout - margin "
            f"({st:g} - {mg:g} = {st - mg:g} s): the lame-duck period would use the "
            "whole budget and leave nothing to drain in-flight work or run hooks"
        )
    dt = _pick("drain_timeout", drain_timeout, env, secs(allow_zero=True))
    ht = _pick("hook_timeout", hook_timeout, env, secs(allow_zero=False))

    def code(allow_signal: bool) -> Callable[[str, object, bool], ExitCode]:
        return lambda n, r, e: _exit_code(n, r, e, allow_signal=allow_signal)

    ec = _pick("exit_code", exit_code, env, code(True))
    wc = _pick("watchdog_exit_code", watchdog_exit_code, env, code(False))
    if wc == 0:
        raise ConfigError(
            "watchdog_exit_code (env SPOTGRACE_WATCHDOG_EXIT_CODE) must not be 0: "
            "a shutdown that missed its deadline is not a clean exit"
        )
    ss = _pick(
        "second_signal", second_signal, env, lambda n, r, e: _choice(n, r, e, ("exit", "ignore"))
    )
    it = _pick("interrupt", interrupt, env, _bool)
    sg = _pick("signals", signals, env, _signals)
    if (d.interrupt if it is None else it) and (d.signals if sg is None else sg) == ():
        raise ConfigError(
            "interrupt (env SPOTGRACE_INTERRUPT) needs a signal handler of spotgrace's to "
            "interrupt the main thread with, but signals (env SPOTGRACE_SIGNALS) is empty"
        )
    wa = _pick("watch", watch, env, _watch)
    wi = _pick("watch_interval", watch_interval, env, secs(allow_zero=False))
    return Options(
        stop_timeout=st,
        margin=mg,
        drain_delay=dd,
        drain_timeout=dt,
        hook_timeout=ht,
        exit_code=d.exit_code if ec is None else ec,
        watchdog_exit_code=d.watchdog_exit_code if wc is None else int(wc),
        second_signal=d.second_signal if ss is None else ss,  # type: ignore[arg-type]
        interrupt=d.interrupt if it is None else it,
        signals=d.signals if sg is None else sg,
        watch=d.watch if wa is None else wa,
        watch_interval=d.watch_interval if wi is None else wi,
    )
