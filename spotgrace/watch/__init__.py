"""Early warning: turn a platform's interruption notice into a graceful shutdown.

Needs the ``watch`` extra (httpx). Usually switched on through
``spotgrace.graceful(watch="auto")`` or ``SPOTGRACE_WATCH=auto``; this module
is for explicit sources and custom set-ups::

    from spotgrace.watch import Ec2Source, EcsSource

    with spotgrace.graceful(watch=[EcsSource(), Ec2Source(on_rebalance=notify)]):
        ...

Sources (each polled on its own schedule, with jitter and error backoff):

- :class:`EcsSource`: ECS task metadata v4 ``$ECS_CONTAINER_METADATA_URI_V4/task``;
  ``DesiredStatus == "STOPPED"`` while the task still runs is a notice.
- :class:`Ec2Source`: EC2 IMDSv2 ``spot/instance-action`` (a notice whose
  deadline is its ``time``) and ``events/recommendations/rebalance`` (a softer
  event: logged and passed to ``on_rebalance``; a shutdown only with
  ``shutdown_on_rebalance=True``). Honours ``AWS_EC2_METADATA_SERVICE_ENDPOINT``,
  ``AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE`` and ``AWS_EC2_METADATA_DISABLED``.
- :class:`UrlSource`: any URL; ``404``/``204`` = nothing, ``200`` with a JSON
  object (optional ``reason``, ``time``, ``within``) = a notice.

Only link-local (169.254.0.0/16, fd00:ec2::254) and loopback hosts are
contacted unless a host is listed in ``allow_hosts``.
"""

from __future__ import annotations

from .._metadata._strict import SourceError as SourceError
from .._metadata._strict import SourceUnavailable as SourceUnavailable
from ._notice import Fetch as Fetch
from ._notice import Source as Source
from ._notice import WatchNotice as WatchNotice
from ._sources import Ec2Source as Ec2Source
from ._sources import EcsSource as EcsSource
from ._sources import UrlSource as UrlSource
from ._sources import sources_from_spec as sources_from_spec
from ._watcher import DEFAULT_INTERVAL as DEFAULT_INTERVAL
from ._watcher import Watcher as Watcher

__all__ = [
    "DEFAULT_INTERVAL",
    "Ec2Source",
    "EcsSource",
    "Fetch",
    "Source",
    "SourceError",
    "SourceUnavailable",
    "UrlSource",
    "WatchNotice",
    "Watcher",
    "sources_from_spec",
]
