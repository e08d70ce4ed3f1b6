"""Parse and validate the events the state machine sends, in one place (InvalidRequest names the field)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rotation.errors import InvalidRequest
from rotation.state import Request, Rotation, parse_request


def _object(event: Any) -> Mapping[str, Any]:
    if not isinstance(event, Mapping):
        raise InvalidRequest("event: must be a JSON object")
    return event


def prepare_event(event: Any) -> tuple[Request, str]:
    """`{"input": <execution input>, "execution_id": <$$.Execution.Id>}`."""
    data = _object(event)
    execution_id = data.get("execution_id")
    if not isinstance(execution_id, str) or not execution_id or len(execution_id) > 2048:
        raise InvalidRequest("execution_id: required, the execution's id ($$.Execution.Id)")
    return parse_request(data.get("input")), execution_id


def rotation_event(event: Any) -> Rotation:
    """The whole state; the step works on `rotation`."""
    return Rotation.from_dict(_object(event).get("rotation"))


def failure_event(event: Any) -> tuple[Rotation | None, dict[str, Any], dict[str, str]]:
    """For rollback/notify: the rotation if prepare got that far, the raw input, and the caught error."""
    data = _object(event)
    raw = data.get("rotation")
    rotation = None
    if isinstance(raw, Mapping) and "token" in raw:
        try:
            rotation = Rotation.from_dict(raw)
        except InvalidRequest:
            rotation = None  # a damaged state must not stop the failure path from reporting
    raw_input = data.get("input")
    inputs = dict(raw_input) if isinstance(raw_input, Mapping) else {}
    return rotation, inputs, caught_error(data.get("error"))


def caught_error(error: Any) -> dict[str, str]:
    """A Step Functions Catch result (`{"Error", "Cause"}`; a Lambda's Cause is JSON with errorMessage)."""
    if not isinstance(error, Mapping):
        return {}
    name = str(error.get("Error") or "Unknown")[:128]
    cause = error.get("Cause")
    message = cause if isinstance(cause, str) else ""
    try:
        parsed = json.loads(message)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping) and isinstance(parsed.get("errorMessage"), str):
        message = parsed["errorMessage"]
    return {"name": name, "message": message[:2000]}
