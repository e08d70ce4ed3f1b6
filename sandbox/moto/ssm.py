"""What the sandbox's two SSM additions share: the fleet they ask, the API's errors, paging and JSON bodies.

The fleet protocol is what Run Command and DescribeInstanceInformation need from the simulated servers
(implemented by sandbox.fleet); `attach_fleet` makes one account/region's SSM backend use it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass
class RunRequest:
    """One command for one instance, as the SSM Agent receives it."""

    command_id: str
    instance_id: str
    document_name: str
    document: dict[str, Any]
    parameters: dict[str, list[str]]


@dataclass
class PluginResult:
    name: str
    status: str  # Success | Failed | TimedOut
    response_code: int
    stdout: str
    stderr: str
    started: datetime.datetime
    finished: datetime.datetime


class ManagedInstances(Protocol):
    def instance_information(self) -> list[dict[str, Any]]:
        """AWS-shaped InstanceInformation entries, with an extra `Tags` dict for tag filters."""
        ...

    def dispatch(self, request: RunRequest, done: Callable[[list[PluginResult]], None]) -> bool:
        """Queue the command; call `done` when it ran. False if the instance is not reachable (offline)."""
        ...


def attach_fleet(ssm_backend: Any, fleet: ManagedInstances) -> None:
    """Make Run Command on this account/region's SSM backend dispatch to `fleet`."""
    ssm_backend._sandbox_fleet = fleet


def fleet_of(ssm_backend: Any) -> ManagedInstances | None:
    return getattr(ssm_backend, "_sandbox_fleet", None)



def ssm_error(code: str, message: str) -> Exception:
    from moto.ssm.exceptions import SSMException

    return SSMException(code, message)



def page(items: list[Any], next_token: str | None, max_results: int) -> tuple[list[Any], str | None]:
    try:
        start = int(next_token) if next_token else 0
    except ValueError:
        raise ssm_error("InvalidNextToken", "The specified token is not valid.") from None
    end = start + max_results
    return items[start:end], (str(end) if end < len(items) else None)



def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        # The JSON protocol's timestamps: epoch seconds (botocore parses them). moto's are naive UTC.
        aware = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return aware.timestamp()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def json_body(result: dict[str, Any]) -> str:
    """SSM speaks the JSON protocol: `json.dumps` gives the same body as moto's generic serializer
    (ActionResult), which walks the service model for every field and was the emulator's largest single
    cost at 1,000 servers (bench/analysis.md, P3: ~30 % of the emulator's CPU per poll)."""
    return json.dumps(result, default=_json_default)

