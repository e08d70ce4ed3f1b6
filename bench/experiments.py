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


def cached_clients() -> Callable[[], None]:
    """`boto3.client(...)` made once per (service, arguments, endpoint/credential environment) and reused:
    what `lambdas/handlers/_clients.py` would do with a cached client per warm container (and moto's executor
    with one Lambda client). Returns the undo."""
    import os
    import threading

    import boto3

    original = boto3.client
    cache: dict[str, Any] = {}
    lock = threading.Lock()
    env_names = (
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    )

    def describe(value: Any) -> str:
        from botocore.config import Config

        if isinstance(value, Config):
            return repr(sorted((k, repr(v)) for k, v in vars(value).items()))
        return repr(value)

    def client(*args: Any, **kwargs: Any) -> Any:
        key = repr(
            (
                [describe(a) for a in args],
                sorted((k, describe(v)) for k, v in kwargs.items()),
                [os.environ.get(n) for n in env_names],
            )
        )
        with lock:
            found = cache.get(key)
        if found is None:
            found = original(*args, **kwargs)
            with lock:
                cache[key] = found
        return found

    boto3.client = client

    def undo() -> None:
        boto3.client = original

    return undo


EXPERIMENTS: dict[str, Callable[[], Callable[[], None]]] = {
    "fast-lci": fast_list_command_invocations,
    "cached-clients": cached_clients,
}
