"""spotgrace.fleet: the companion outside the container (install ``spotgrace[fleet]``).

An AWS Lambda function, fed by EventBridge rules, that acts on what the
in-container library cannot: it alerts on Fargate Spot interruptions and
capacity shortages, scales a service out while an interruption lasts and
back in afterwards, forces a redeploy if asked, and falls back to an
on-demand twin service when there is no Spot capacity, failing back after a
hold-off. ``handler`` is the Lambda entry point; ``spotgrace fleet`` runs the
same logic from the command line (``handle --dry-run``) and prints the
infrastructure (``template``). See docs/fleet.md.
"""

from __future__ import annotations

from .._core._errors import require_extra as _require_extra

_require_extra("spotgrace.fleet", "fleet", "boto3", "botocore")

from ._aws import AwsClients as AwsClients
from ._aws import make_clients as make_clients
from ._config import Action as Action
from ._config import FleetConfig as FleetConfig
from ._config import ServicePolicy as ServicePolicy
from ._config import ServiceRef as ServiceRef
from ._errors import AwsPermanentError as AwsPermanentError
from ._errors import AwsRetriesExhausted as AwsRetriesExhausted
from ._errors import FleetError as FleetError
from ._events import EventKind as EventKind
from ._events import FleetEvent as FleetEvent
from ._events import classify as classify
from ._events import interruption_pattern as interruption_pattern
from ._events import matches as matches
from ._events import placement_failure_pattern as placement_failure_pattern
from ._events import steady_state_pattern as steady_state_pattern
from ._handler import handle_event as handle_event
from ._handler import handler as handler
from ._retry import RetryPolicy as RetryPolicy

__all__ = [
    "Action",
    "AwsClients",
    "AwsPermanentError",
    "AwsRetriesExhausted",
    "EventKind",
    "FleetConfig",
    "FleetError",
    "FleetEvent",
    "RetryPolicy",
    "ServicePolicy",
    "ServiceRef",
    "classify",
    "handle_event",
    "handler",
    "interruption_pattern",
    "make_clients",
    "matches",
    "placement_failure_pattern",
    "steady_state_pattern",
]
