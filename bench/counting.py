"""Count the control-plane AWS API calls our Lambdas make, at the botocore level.

botocore's `BaseClient._make_api_call` is wrapped process-wide, but a call is counted only while the calling
thread is inside a Lambda invocation: the sandbox's (already patched) `LambdaSimpleBackend.invoke` is wrapped
from the outside to mark its thread. So the operator's calls (this harness, the sandbox following the
execution), moto's executor (Step Functions invoking Lambda, `.sync` polling) and the agents (subprocesses,
with their own botocore) are never counted. Retries inside botocore are one call here (one `_make_api_call`)
and show up separately in `attempts`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Invocation:
    function: str
    seconds: float
    calls: Counter[str] = field(default_factory=Counter)


@dataclass
class Tally:
    """What the Lambdas did during one measurement."""

    calls: Counter[str] = field(default_factory=Counter)  # "iam:CreateAccessKey" -> count
    attempts: Counter[str] = field(default_factory=Counter)  # HTTP attempts incl. botocore retries
    invocations: list[Invocation] = field(default_factory=list)

    def by_function(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for inv in self.invocations:
            entry = out.setdefault(inv.function, {"invocations": 0, "seconds": 0.0, "calls": Counter()})
            entry["invocations"] += 1
            entry["seconds"] += inv.seconds
            entry["calls"].update(inv.calls)
        return out


class ApiCounter:
    """Context manager: `with ApiCounter(function_names) as counter: ...; counter.tally`.

    Install it after the emulator started (the sandbox's Lambda patch must already be in place).
    `function_names` maps a Lambda function name to a readable step name.
    """

    def __init__(self, function_names: dict[str, str] | None = None) -> None:
        self.function_names = function_names or {}
        self.tally = Tally()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._saved: list[tuple[Any, str, Any]] = []

    # ------------------------------------------------------------------------------------ install

    def __enter__(self) -> ApiCounter:
        from botocore.client import BaseClient
        from botocore.endpoint import Endpoint
        from moto.awslambda_simple.models import LambdaSimpleBackend

        self._wrap(BaseClient, "_make_api_call", self._wrap_api_call)
        self._wrap(Endpoint, "_send", self._wrap_send)
        self._wrap(LambdaSimpleBackend, "invoke", self._wrap_invoke)
        return self

    def __exit__(self, *exc: object) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            setattr(owner, name, original)

    def _wrap(self, owner: Any, name: str, make: Any) -> None:
        original = vars(owner)[name]
        self._saved.append((owner, name, original))
        setattr(owner, name, make(original))

    # ------------------------------------------------------------------------------------ wrappers

    def _current(self) -> Invocation | None:
        stack: list[Invocation] = getattr(self._local, "stack", [])
        return stack[-1] if stack else None

    def _wrap_invoke(self, original: Any) -> Any:
        counter = self

        def invoke(backend: Any, function_name: str, *args: Any, **kwargs: Any) -> Any:
            name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
            invocation = Invocation(counter.function_names.get(name, name), 0.0)
            stack = counter._local.__dict__.setdefault("stack", [])
            stack.append(invocation)
            started = time.perf_counter()
            try:
                return original(backend, function_name, *args, **kwargs)
            finally:
                invocation.seconds = time.perf_counter() - started
                stack.pop()
                with counter._lock:
                    counter.tally.invocations.append(invocation)

        return invoke

    def _wrap_api_call(self, original: Any) -> Any:
        counter = self

        def _make_api_call(client: Any, operation_name: str, api_params: Any) -> Any:
            invocation = counter._current()
            if invocation is not None:
                key = f"{client.meta.service_model.service_name}:{operation_name}"
                with counter._lock:
                    counter.tally.calls[key] += 1
                    invocation.calls[key] += 1
            return original(client, operation_name, api_params)

        return _make_api_call

    def _wrap_send(self, original: Any) -> Any:
        counter = self

        def _send(endpoint: Any, request: Any) -> Any:
            if counter._current() is not None:
                with counter._lock:
                    counter.tally.attempts[endpoint._endpoint_prefix] += 1
            return original(endpoint, request)

        return _send


@contextmanager
def counting(function_names: dict[str, str] | None = None) -> Iterator[ApiCounter]:
    with ApiCounter(function_names) as counter:
        yield counter
