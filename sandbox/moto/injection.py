"""The moto side of the safety matrix's faults (sandbox/faults.py decides what to inject; this is how).

Each is a context manager whose patches go through `sandbox.moto.registry` (checked against the pinned moto,
put back when the block ends), or a change to moto's stored state that AWS would make itself.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sandbox.moto.registry import Patch, adds, patched

# ---------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Request:
    """A request as moto's server received it, before it runs."""

    service: str
    action: str
    access_key: str  # "" when unsigned or malformed
    user_agent: str


def _error_response(self: Any, service_code: str) -> Any:
    from moto.core.exceptions import ServiceException
    from moto.core.responses import ActionResult

    class Throttled(ServiceException):
        code = service_code
        message = "Rate exceeded (sandbox fault injection)"

    status, headers, body = self.serialized(ActionResult(Throttled()))
    headers["status"] = str(status)
    return status, headers, body


@contextlib.contextmanager
def requests_intercepted(services: frozenset[str], answer: Callable[[Request], str | None],
                         ran: Callable[[Request, int], None]) -> Iterator[None]:
    """moto's server asks `answer` about every request to one of `services` before it runs it.

    An error code: the request is answered with that error by the server (so botocore's retry mode really
    sees it and retries); None: it runs, and `ran` learns the HTTP status it got.
    """
    from moto.core.responses import BaseResponse

    # moto warns that its service models do not list the throttling codes (AWS answers them all the same).
    warnings.filterwarnings("ignore", message=r"Exception\(Throttled\)", category=UserWarning)

    def wrap(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def call_action(self: Any) -> Any:
            service = getattr(self, "service_name", None) or ""
            if service not in services:
                return original(self)
            try:
                key = self.get_access_key()
            except Exception:  # unsigned or malformed: not ours to throttle
                key = ""
            request = Request(service, self._get_action() or "", key, str(self.headers.get("User-Agent", "")))
            code = answer(request)
            if code is not None:
                return _error_response(self, code)
            response = original(self)
            ran(request, int(response[0]))
            return response

        return call_action

    with patched([Patch(BaseResponse, "call_action", wrap, must_exist=True)]):
        yield


# ---------------------------------------------------------------------------------- IAM


@contextlib.contextmanager
def key_changes_observed(record: Callable[[str, str, str], None]) -> Iterator[None]:
    """`record(user, key_id, change)` runs as moto's IAM changes a key's status ("Active"/"Inactive") or
    deletes it ("deleted"), before the change is applied."""
    from moto.iam.models import IAMBackend

    def wrap_update(original: Callable[..., Any]) -> Callable[..., Any]:
        def update_access_key(self: Any, user_name: str, access_key_id: str,
                              status: str | None = None) -> Any:
            if status:
                record(user_name, access_key_id, status)
            return original(self, user_name, access_key_id, status)

        return update_access_key

    def wrap_delete(original: Callable[..., Any]) -> Callable[..., Any]:
        def delete_access_key(self: Any, access_key_id: str, user_name: str) -> Any:
            record(user_name, access_key_id, "deleted")
            return original(self, access_key_id, user_name)

        return delete_access_key

    with patched([Patch(IAMBackend, "update_access_key", wrap_update, must_exist=True),
                  Patch(IAMBackend, "delete_access_key", wrap_delete, must_exist=True)]):
        yield


def record_key_use(iam_backend: Any, user: str, key_id: str, *, service: str, region: str,
                   after_seconds: float) -> None:
    """GetAccessKeyLastUsed reports `service` in `region`, `after_seconds` from now (moto's stored record)."""
    from moto.core.utils import utcnow
    from moto.iam.models import AccessKeyLastUsed

    when = utcnow() + datetime.timedelta(seconds=after_seconds)
    for key in iam_backend.get_user(user).access_keys:
        if key.access_key_id == key_id:
            key.last_used = AccessKeyLastUsed(timestamp=when, service=service, region=region)
            return
    raise KeyError(key_id)


@contextlib.contextmanager
def iam_enforced() -> Iterator[None]:
    """moto's `enable_iam_authentication`, against the resource a request names.

    moto only knows role resources (any other request is checked against `*`, which no scoped statement
    matches); this adds the user a key action names and the secret a Secrets Manager action names.
    """
    from moto.core.authorization import enable_iam_authentication
    from moto.iam.responses import IamResponse
    from moto.secretsmanager.responses import SecretsManagerResponse

    def wrap_iam(original_iam: Callable[[Any], Any]) -> Callable[[Any], str]:
        def iam_resource(self: Any) -> str:
            names = self.data.get("UserName") if isinstance(self.data, dict) else None
            if names:
                name = names[0] if isinstance(names, list) else names
                try:
                    return str(self.backend.get_user(name).arn)
                except Exception:  # unknown user: the ARN it would have on the root path
                    return f"arn:aws:iam::{self.current_account}:user/{name}"
            return str(original_iam(self))

        return iam_resource

    def secret_resource(self: Any) -> str:
        secret_id = self._get_param("SecretId")
        if not secret_id:
            return "*"
        secret = self.backend.secrets.get(secret_id)
        return str(secret.arn) if secret is not None else str(secret_id)

    resources = [
        Patch(IamResponse, "_determine_resource", wrap_iam, must_exist=True),
        Patch(SecretsManagerResponse, "_determine_resource", adds(secret_resource), must_exist=False),
    ]
    with patched(resources), enable_iam_authentication():
        yield


# ---------------------------------------------------------------------------------- time


@contextlib.contextmanager
def waits_scaled(factor: float) -> Iterator[None]:
    """Step Functions Wait states sleep `factor` times their seconds."""
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0:
            env.program_state_event.wait(wait_seconds * factor)

    with patched([Patch(WaitFunction, "_wait_interval", adds(wait_interval), must_exist=True)]):
        yield
