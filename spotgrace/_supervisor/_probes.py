"""What ``spotgrace doctor`` looks at: PID 1 in ``/proc``, and the ECS endpoints.

``/proc/1/cmdline`` says what runs (a shell, an init, spotgrace, an app);
``/proc/1/status`` says which signals it catches (``SigCgt``), ignores
(``SigIgn``) and blocks (``SigBlk``), as hexadecimal bit masks where bit
N-1 stands for signal N. The ECS endpoints are asked with the standard
library only (no extra needed), never through a proxy, and only on loopback
or link-local hosts, where metadata endpoints live.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Pid1", "describe_pid1", "get_json", "signal_mask"]

_MAX_BODY = 1 << 20

Kind = Literal["unreadable", "self", "host", "spotgrace", "init", "shell", "program"]

#: Programs that forward signals and reap zombies as PID 1.
INITS = frozenset(
    {"tini", "tini-static", "docker-init", "dumb-init", "catatonit", "s6-svscan", "supervisord"}
)
#: Shells: as PID 1 running a program as a child, they swallow SIGTERM.
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"})
#: PID 1 of a host or VM rather than a container.
HOST_INITS = frozenset({"systemd", "init", "upstart", "launchd"})


@dataclass(frozen=True)
class Pid1:
    """PID 1 as ``spotgrace doctor`` sees it."""

    kind: Kind
    cmdline: list[str]
    caught: frozenset[signal.Signals] = frozenset()
    ignored: frozenset[signal.Signals] = frozenset()
    blocked: frozenset[signal.Signals] = frozenset()
    error: str | None = None

    @property
    def shown(self) -> str:
        """The command line, shortened for a message."""
        text = " ".join(self.cmdline) or "?"
        return text if len(text) <= 80 else text[:77] + "..."


def signal_mask(hex_mask: str) -> frozenset[signal.Signals]:
    """The signals in a ``/proc/<pid>/status`` mask such as ``0000000000004002``."""
    bits = int(hex_mask, 16)
    found = set()
    for sig in signal.Signals:
        if bits >> (int(sig) - 1) & 1:
            found.add(sig)
    return frozenset(found)


def _is_spotgrace_run(argv: list[str]) -> bool:
    head = [os.path.basename(a) for a in argv[:4]]
    if "spotgrace" not in head and not ("-m" in head and "spotgrace" in head):
        return False
    return "run" in argv[1:5]


def _kind(argv: list[str]) -> Kind:
    name = os.path.basename(argv[0]) if argv else ""
    if _is_spotgrace_run(argv):
        return "spotgrace"
    if name in INITS:
        return "init"
    if name in SHELLS:
        return "shell"
    if name in HOST_INITS or name.startswith("systemd"):
        return "host"
    return "program"


def describe_pid1(proc: Path = Path("/proc")) -> Pid1:
    """Read PID 1's command line and signal dispositions."""
    try:
        raw = (proc / "1" / "cmdline").read_bytes()
        status = (proc / "1" / "status").read_text()
    except OSError as exc:
        return Pid1("unreadable", [], error=str(exc))
    argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    if proc == Path("/proc") and os.getpid() == 1:
        return Pid1("self", argv)
    masks = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("SigCgt", "SigIgn", "SigBlk"):
            masks[key] = signal_mask(value.strip())
    return Pid1(
        _kind(argv),
        argv,
        caught=masks.get("SigCgt", frozenset()),
        ignored=masks.get("SigIgn", frozenset()),
        blocked=masks.get("SigBlk", frozenset()),
    )


def _allowed_host(url: str) -> bool:
    """Only loopback and link-local hosts: the metadata endpoints never live elsewhere."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_link_local


def get_json(url: str, timeout: float) -> tuple[int, object] | str:
    """(HTTP status, parsed JSON or None), or what went wrong, in words."""
    if not _allowed_host(url):
        return f"its host is neither loopback nor link-local, so it was not contacted ({url})"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status, raw = response.status, response.read(_MAX_BODY)
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read(_MAX_BODY)
        exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"does not answer at {url} ({reason})"
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None
