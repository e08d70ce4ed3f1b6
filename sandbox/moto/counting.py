"""How the benchmark sees the API calls our Lambdas make (bench/counting.py counts them).

botocore's `BaseClient._make_api_call` (one call, retries included) and `Endpoint._send` (one HTTP attempt)
are wrapped process-wide, and the sandbox's (already patched) `LambdaSimpleBackend.invoke` from the outside,
so that a call can be told apart by the thread it runs in: `inside()` says whether that thread is inside a
Lambda invocation, and only then is the call reported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from sandbox.moto.registry import Patch, patched


@contextlib.contextmanager
def api_calls_observed(*, invocation: Callable[[str], AbstractContextManager[None]],
                       inside: Callable[[], bool], call: Callable[[str], None],
                       attempt: Callable[[str], None]) -> Iterator[None]:
    """While active, every Lambda invocation runs inside `invocation(function_name)`; on a thread `inside()`
    an invocation, each botocore API call is reported as `call("service:Operation")` and each HTTP attempt as
    `attempt(endpoint_prefix)`. Install after the emulator started (the Lambda patch must be in place)."""
    from botocore.client import BaseClient
    from botocore.endpoint import Endpoint
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def wrap_invoke(original: Any) -> Any:
        def invoke(backend: Any, function_name: str, *args: Any, **kwargs: Any) -> Any:
            name = function_name.rsplit(":", 1)[-1] if function_name.startswith("arn:") else function_name
            with invocation(name):
                return original(backend, function_name, *args, **kwargs)

        return invoke

    def wrap_api_call(original: Any) -> Any:
        def _make_api_call(client: Any, operation_name: str, api_params: Any) -> Any:
            if inside():
                call(f"{client.meta.service_model.service_name}:{operation_name}")
            return original(client, operation_name, api_params)

        return _make_api_call

    def wrap_send(original: Any) -> Any:
        def _send(endpoint: Any, request: Any) -> Any:
            if inside():
                attempt(endpoint._endpoint_prefix)
            return original(endpoint, request)

        return _send

    with patched([Patch(BaseClient, "_make_api_call", wrap_api_call, must_exist=True),
                  Patch(Endpoint, "_send", wrap_send, must_exist=True),
                  Patch(LambdaSimpleBackend, "invoke", wrap_invoke, must_exist=True)]):
        yield
