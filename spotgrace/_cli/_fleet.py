"""``spotgrace fleet``: the fleet companion from the command line.

- ``spotgrace fleet template --cluster C --service S [--format cfn|terraform]``
  prints the CloudFormation template (JSON) or the Terraform module call,
  filled in for the cluster and services.
- ``spotgrace fleet match EVENT.json`` says which fleet pattern an event
  matches (offline; no AWS).
- ``spotgrace fleet handle EVENT.json [--dry-run]`` applies an event exactly
  as the Lambda function would, with the ``SPOTGRACE_FLEET_*`` variables and
  the usual AWS credentials; ``--dry-run`` reads (ECS and the state table)
  but writes nothing and prints the writes it would make. A message of the
  handler's dead-letter queue (``{"event", "error", "request_id"}``) is
  unwrapped, so a DLQ message can be redriven as it is.

``spotgrace.fleet`` (boto3, the ``fleet`` extra) is imported only when a
subcommand runs, so ``spotgrace --help`` works without the extra.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Register ``fleet`` on the ``spotgrace`` command line."""
    p = subparsers.add_parser(
        "fleet",
        help="the companion Lambda for Spot interruptions and capacity (templates, dry runs)",
        description="The fleet companion: print its infrastructure, or apply an event.",
    )
    sub = p.add_subparsers(dest="fleet_command", metavar="FLEET_COMMAND", required=True)

    t = sub.add_parser("template", help="print the CloudFormation template or Terraform call")
    t.add_argument("--cluster", required=True, help="ECS cluster name")
    t.add_argument("--service", action="append", required=True, help="service name (repeat)")
    t.add_argument(
        "--fallback", action="append", default=[], metavar="SERVICE=TWIN", help="on-demand twin"
    )
    t.add_argument("--action", default="alert", choices=["alert", "scale-out", "redeploy"])
    t.add_argument("--format", default="cfn", choices=["cfn", "terraform"])
    t.add_argument("--module-source", default="./infra/fleet/terraform", help="Terraform source")
    t.set_defaults(func=_template)

    m = sub.add_parser("match", help="which fleet pattern an event matches (offline)")
    m.add_argument("event", help="event JSON file ('-' for stdin)")
    m.set_defaults(func=_match)

    h = sub.add_parser("handle", help="apply an event as the Lambda would")
    h.add_argument("event", help="event JSON file ('-' for stdin)")
    h.add_argument("--dry-run", action="store_true", help="read, but make no writes")
    h.add_argument("--endpoint-url", default=None, help="AWS endpoint (e.g. a local emulator)")
    h.add_argument("--region", default=None)
    h.set_defaults(func=_handle)


def _load(path: str) -> dict[str, Any]:
    """The event in ``path`` (or stdin). A message of the handler's dead-letter queue,
    ``{"event": ..., "error": ..., "request_id": ...}``, gives its ``event``; what
    Lambda's and the rules' DLQs hold is the event itself."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    event = json.loads(text)
    if not isinstance(event, dict):
        raise ValueError(f"{path}: an event is a JSON object")
    inner = event.get("event")
    if "error" in event and isinstance(inner, dict) and "detail-type" not in event:
        return inner
    return event


def _fail(message: str) -> int:
    print(f"spotgrace fleet: {message}", file=sys.stderr)
    return 1


def _template(args: argparse.Namespace) -> int:
    from spotgrace.fleet import Action
    from spotgrace.fleet._infra import render

    twins: dict[str, str] = {}
    for item in args.fallback:
        spot, sep, twin = item.partition("=")
        if not sep:
            return _fail(f"--fallback expects SERVICE=TWIN, got {item!r}")
        twins[spot] = twin
    kwargs: dict[str, Any] = {
        "cluster": args.cluster,
        "services": args.service,
        "twins": twins,
        "action": Action(args.action),
    }
    if args.format == "terraform":
        kwargs["source"] = args.module_source
    try:
        sys.stdout.write(render(args.format, **kwargs))
    except ValueError as exc:
        return _fail(str(exc))
    return 0


def _match(args: argparse.Namespace) -> int:
    from spotgrace.fleet import classify

    try:
        ev = classify(_load(args.event))
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    out = {"kind": ev.kind.value, "cluster": ev.cluster, "service": ev.service}
    print(json.dumps(out | {"task_arn": ev.task_arn, "event_id": ev.event_id}))
    return 0 if ev.kind.value != "other" else 3


def _handle(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError

    from spotgrace.fleet import FleetConfig, FleetError, handle_event, make_clients

    try:
        event = _load(args.event)
        config = FleetConfig.from_env(os.environ)
        clients = make_clients(region=args.region, endpoint_url=args.endpoint_url)
        result = handle_event(
            event, config=config, clients=clients, dry_run=args.dry_run, log_stream=sys.stderr
        )
    except (OSError, ValueError, FleetError, BotoCoreError) as exc:  # no region, no credentials
        return _fail(f"{type(exc).__name__}: {exc}")
    print(json.dumps(result, indent=2, default=str))
    return 0
