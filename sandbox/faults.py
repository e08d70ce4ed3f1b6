"""Fault injection for the safety matrix (docs/safety.md), applied to the sandbox from the outside.

Everything here is a **test affordance**: a context manager that changes the running emulator for the length
of a `with` block and puts it back afterwards. Nothing in the product knows about it, and nothing in the
other sandbox modules is edited: the faults hook into `lambda_runtime.lambda_hooks` (the already-patched
Lambda invoke) or use the moto patches of `sandbox.moto.injection` (this module decides what to inject).

- `crash_step`: a step's Lambda dies just before or just after its handler ran (its side effect done), or the
  whole execution is stopped at that boundary (no Catch, no rollback runs).
- `throttle`: a share of IAM/STS/SSM/Secrets Manager requests is answered with the service's throttling
  error by the emulator's *server*, so botocore's retry mode really sees and retries it.
- `watch_key_changes`: observe UpdateAccessKey/DeleteAccessKey as moto executes them (for invariant I4).
- `scaled_waits`: Step Functions Wait states sleep a fraction of their seconds (faster polling loops).
- `key_used_by`: the old key is seen in use by an unknown consumer (GetAccessKeyLastUsed says so).
"""

from __future__ import annotations

import contextlib
import datetime
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox.emulator import Emulator
from sandbox.moto import injection, lambda_runtime

Phase = Literal["before", "after"]
CrashKind = Literal["lambda", "abort"]

# The operator's and the fleet bootstrap's credentials (sandbox.emulator / sandbox.fleet): never throttled, so
# the test's own set-up and invariant checks do not flake; every product call (Lambdas, agents) is eligible.
HARNESS_KEYS = frozenset({"AKIASANDBOXOPERATOR0", "AKIASANDBOXSSMSERVICE"})
THROTTLED_SERVICES = frozenset({"iam", "sts", "ssm", "secretsmanager"})
# The error code each service answers with when it throttles (all are retried by botocore's standard mode).
THROTTLING_CODES = {"iam": "Throttling", "sts": "Throttling", "ssm": "ThrottlingException",
                    "secretsmanager": "ThrottlingException"}
# Calls that change something: counted once per *executed* request (a throttled one never reaches moto).
MUTATING_ACTIONS = frozenset({
    "CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey", "PutSecretValue", "UpdateSecretVersionStage",
    "SendCommand", "CreateSecret", "DeleteSecret",
})


class InjectedCrash(lambda_runtime.InjectedCrash):
    """Test affordance: the Lambda runtime (or the whole execution) died at a step boundary."""


# ------------------------------------------------------------------------------------------ crashes


@dataclass
class Crash:
    """What a `crash_step` block did: the function names that crashed, and the executions it stopped."""

    function: str
    phase: Phase
    kind: CrashKind
    crashed: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)


@contextlib.contextmanager
def crash_step(emulator: Emulator, function_name: str, phase: Phase, *, kind: CrashKind = "lambda",
               execution_arn: str | None = None, times: int = 1) -> Iterator[Crash]:
    """The next `times` invocations of `function_name` die `phase` the handler.

    kind="lambda": the function reports an error (Step Functions' Retry/Catch handle it like any failure).
    kind="abort": the execution `execution_arn` is stopped at that moment (as if Step Functions, the account
    or an operator killed it): no Catch, no rollback, the lock stays with a dead execution.
    """
    if kind == "abort" and execution_arn is None:
        raise ValueError("kind='abort' needs the execution to stop")
    crash = Crash(function_name, phase, kind)

    def hook(name: str, when: str) -> None:
        if name != function_name or when != phase or len(crash.crashed) >= times:
            return
        crash.crashed.append(name)
        if kind == "abort":
            emulator.client("stepfunctions").stop_execution(
                executionArn=execution_arn, error="InjectedCrash", cause=f"sandbox: stopped {phase} {name}")
            crash.stopped.append(str(execution_arn))
        raise InjectedCrash(f"sandbox: injected crash of {name} ({phase} the handler)")

    lambda_runtime.lambda_hooks.append(hook)
    try:
        yield crash
    finally:
        lambda_runtime.lambda_hooks.remove(hook)


@contextlib.contextmanager
def on_step(function_name: str, phase: Phase, action: Callable[[], None]) -> Iterator[list[int]]:
    """Run `action` at every `phase` boundary of `function_name` (it may change the world, not raise).

    Yields a one-element list counting the calls.
    """
    calls = [0]

    def hook(name: str, when: str) -> None:
        if name == function_name and when == phase:
            calls[0] += 1
            action()

    lambda_runtime.lambda_hooks.append(hook)
    try:
        yield calls
    finally:
        lambda_runtime.lambda_hooks.remove(hook)


# ----------------------------------------------------------------------------------------- throttling


@dataclass
class ThrottleLog:
    rate: float
    attempts: Counter[str] = field(default_factory=Counter)  # "service:Action" -> requests seen (eligible)
    throttled: Counter[str] = field(default_factory=Counter)  # "service:Action" -> answered with throttling
    executed: Counter[str] = field(default_factory=Counter)  # "service:Action" -> mutating requests executed

    def throttled_services(self) -> set[str]:
        return {name.split(":", 1)[0] for name, count in self.throttled.items() if count}


@contextlib.contextmanager
def throttle(rate: float = 0.3, *, seed: int = 0, services: frozenset[str] = THROTTLED_SERVICES,
             exempt_keys: frozenset[str] = HARNESS_KEYS, first: int = 0,
             only: Callable[[str, str, str], bool] | None = None) -> Iterator[ThrottleLog]:
    """Answer about `rate` of the eligible requests with the service's throttling error, server side.

    Eligible: a request to one of `services`, signed with a key not in `exempt_keys`, and, if `only` is given,
    for which `only(service, action, user_agent)` is true. The first `first` eligible requests of each
    service:action are always throttled (so every API really goes through its retry path).
    """
    log = ThrottleLog(rate)
    rng = random.Random(seed)  # noqa: S311 (fault injection, not cryptography)
    lock = threading.Lock()

    def answer(request: injection.Request) -> str | None:
        if request.access_key in exempt_keys:
            return None
        if only is None or only(request.service, request.action, request.user_agent):
            name = f"{request.service}:{request.action}"
            with lock:
                log.attempts[name] += 1
                hit = log.attempts[name] <= first or rng.random() < rate
                if hit:
                    log.throttled[name] += 1
            if hit:
                return THROTTLING_CODES[request.service]
        return None

    def ran(request: injection.Request, status: int) -> None:
        if request.access_key not in exempt_keys and request.action in MUTATING_ACTIONS and status < 300:
            with lock:
                log.executed[f"{request.service}:{request.action}"] += 1

    with injection.requests_intercepted(services, answer, ran):
        yield log


def from_lambda(user_agent: str) -> bool:
    """Whether a request came from a Lambda function rather than an agent on a simulated server.

    The step functions use boto3; the agent uses botocore alone or the AWS CLI. (botocore's
    `exec-env/AWS_Lambda` marker cannot be relied on here: boto3's default session fixes its user agent when
    it is first made, which in this process may be outside any Lambda invocation.) The harness also uses
    boto3, but signs with keys that `throttle` exempts."""
    return user_agent.startswith("Boto3/")


# ------------------------------------------------------------------------------------- key changes


@dataclass
class KeyChange:
    user: str
    key_id: str
    change: str  # "Inactive" | "Active" | "deleted"
    at: datetime.datetime
    observation: Any = None  # what the observer returned when it happened


@contextlib.contextmanager
def watch_key_changes(emulator: Emulator,
                      observe: Callable[[str, str, str], Any] | None = None) -> Iterator[list[KeyChange]]:
    """Record every status change and deletion of an access key as the emulator's IAM executes it.

    `observe(user, key_id, change)` runs at that very moment (before the change is applied), e.g. to look at
    what every server holds; its return value is kept with the change.
    """
    changes: list[KeyChange] = []

    def record(user: str, key_id: str, change: str) -> None:
        seen = observe(user, key_id, change) if observe else None
        changes.append(KeyChange(user, key_id, change, datetime.datetime.now(datetime.UTC), seen))

    with injection.key_changes_observed(record):
        yield changes


# ------------------------------------------------------------------------------------------ time


@contextlib.contextmanager
def scaled_waits(factor: float) -> Iterator[None]:
    """Step Functions Wait states sleep `factor` times their seconds (the executions' waits are unchanged)."""
    with injection.waits_scaled(factor):
        yield


# ------------------------------------------------------------------------------------------ usage


def key_used_by(emulator: Emulator, user: str, key_id: str, *, service: str, region: str,
                after_seconds: float = 0.0) -> None:
    """Someone used the key: GetAccessKeyLastUsed reports `service` in `region`, `after_seconds` from now
    (IAM records a use late, once per 15 minutes: a consumer that keeps using a key shows up later)."""
    injection.record_key_use(emulator.backend("iam"), user, key_id, service=service, region=region,
                             after_seconds=after_seconds)


# ---------------------------------------------------------------------------------- IAM enforcement


@contextlib.contextmanager
def enforce_iam() -> Iterator[None]:
    """moto checks every request's signature and the caller's IAM policies (its `enable_iam_authentication`),
    against the resource the request names.

    moto only knows role resources (any other request is checked against `*`, which no scoped statement
    matches); this adds the user a key action names and the secret a Secrets Manager action names. While
    active, only callers with real credentials of the emulator's IAM get through: the harness's own clients
    are refused, so keep the block short and make no other calls inside it.
    """
    with injection.iam_enforced():
        yield
