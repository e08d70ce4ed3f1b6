"""Count the control-plane AWS API calls our Lambdas make, at the botocore level.

botocore's `BaseClient._make_api_call` is wrapped process-wide, but a call is counted only while the calling
thread is inside a Lambda invocation: the sandbox's (already patched) `LambdaSimpleBackend.invoke` is wrapped
from the outside to mark its thread (sandbox/moto/counting.py, through the sandbox's patch registry). So the
operator's calls (this harness, the sandbox following the execution), moto's executor (Step Functions
invoking Lambda, `.sync` polling) and the agents (subprocesses, with their own botocore) are never counted.
Retries inside botocore are one call here (one `_make_api_call`) and show up separately in `attempts`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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
        self._observing: ExitStack | None = None

    def __enter__(self) -> ApiCounter:
        from sandbox.moto.counting import api_calls_observed

        with ExitStack() as stack:
            stack.enter_context(api_calls_observed(invocation=self._invocation, inside=self._inside,
                                                   call=self._call, attempt=self._attempt))
            self._observing = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        observing, self._observing = self._observing, None
        if observing is not None:
            observing.close()

    def _current(self) -> Invocation | None:
        stack: list[Invocation] = getattr(self._local, "stack", [])
        return stack[-1] if stack else None

    def _inside(self) -> bool:
        return self._current() is not None

    @contextmanager
    def _invocation(self, name: str) -> Iterator[None]:
        invocation = Invocation(self.function_names.get(name, name), 0.0)
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append(invocation)
        started = time.perf_counter()
        try:
            yield
        finally:
            invocation.seconds = time.perf_counter() - started
            stack.pop()
            with self._lock:
                self.tally.invocations.append(invocation)

    def _call(self, key: str) -> None:
        invocation = self._current()
        if invocation is not None:
            with self._lock:
                self.tally.calls[key] += 1
                invocation.calls[key] += 1

    def _attempt(self, endpoint_prefix: str) -> None:
        with self._lock:
            self.tally.attempts[endpoint_prefix] += 1


@contextmanager
def counting(function_names: dict[str, str] | None = None) -> Iterator[ApiCounter]:
    with ApiCounter(function_names) as counter:
        yield counter
