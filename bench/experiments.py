"""Candidate fixes tried from the outside, at run time, to measure them before anyone changes shared code.

`python -m bench --experiment NAME ...` applies one in every measurement process; records carry the name
and never replace the baseline's. Nothing here is used by `make bench`'s default run.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.timestamp()  # JSON-protocol timestamps: epoch seconds (botocore parses them)
    raise TypeError(type(value).__name__)


def fast_list_command_invocations() -> Callable[[], None]:
    """ListCommandInvocations answered with `json.dumps` instead of moto's generic response serializer
    (proposed for sandbox/patches.py `_response_list_command_invocations`). Returns the undo."""
    from moto.ssm.responses import SimpleSystemManagerResponse

    original = SimpleSystemManagerResponse.list_command_invocations

    def list_command_invocations(self: Any) -> str:
        invocations, token = self.ssm_backend.list_command_invocations(
            command_id=self._get_param("CommandId"),
            instance_id=self._get_param("InstanceId"),
            max_results=self._get_param("MaxResults"),
            next_token=self._get_param("NextToken"),
            details=bool(self._get_param("Details", False)),
            filters=self._get_param("Filters"),
        )
        result: dict[str, Any] = {"CommandInvocations": invocations}
        if token:
            result["NextToken"] = token
        return json.dumps(result, default=_json_default)

    SimpleSystemManagerResponse.list_command_invocations = list_command_invocations

    def undo() -> None:
        SimpleSystemManagerResponse.list_command_invocations = original

    return undo


EXPERIMENTS: dict[str, Callable[[], Callable[[], None]]] = {
    "fast-lci": fast_list_command_invocations,
}
