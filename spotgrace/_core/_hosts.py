"""Which hosts spotgrace may talk to: link-local and loopback only, unless allowed.

Metadata endpoints live on link-local addresses (``169.254.169.254``,
``169.254.170.2``, ``fd00:ec2::254``); tests and ``spotgrace simulate`` use
loopback. Anything else is refused at start (a :class:`ConfigError`) unless
the user names the host explicitly, so that a mistyped or hostile
``ECS_*``/``AWS_*`` variable cannot make the process poll the internet.
No third-party import here: ``_config`` uses it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from urllib.parse import urlsplit

from ._errors import ConfigError

__all__ = ["check_url"]

_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_IMDS_V6 = ipaddress.ip_address("fd00:ec2::254")


def check_url(url: str, *, what: str, allow_hosts: Collection[str] = ()) -> str:
    """Return ``url`` (without a trailing ``/``) if its host may be contacted.

    Allowed: literal link-local IPv4 (169.254.0.0/16), ``fd00:ec2::254``,
    loopback (``127.0.0.0/8``, ``::1``, ``localhost``), and any host listed in
    ``allow_hosts``. ``what`` names the setting in the error message.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"{what}: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"{what}: {url!r} is not an http:// or https:// URL with a host")
    if host in allow_hosts or host == "localhost":
        return url.rstrip("/")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and (
        ip.is_loopback or ip == _IMDS_V6 or (ip.version == 4 and ip in _LINK_LOCAL_V4)
    ):
        return url.rstrip("/")
    raise ConfigError(
        f"{what}: refusing to contact {host!r}: only link-local (169.254.0.0/16, "
        "fd00:ec2::254) and loopback hosts are allowed unless the host is listed "
        "in allow_hosts"
    )
