"""Every change the sandbox makes to moto, registered in one module.

moto 5.2.5 executes state machines but cannot run Lambda code without Docker, records Run Command without
running anything, lacks `ListCommandInvocations` and `DescribeInstanceInformation`, and runs no alarm action
(sandbox/alarms.py runs them as the topic's and key's policies allow). Each patch below
checks at install time that the name it replaces exists and that moto still lacks what it adds, so a moto
upgrade fails loudly here instead of silently changing what the sandbox proves.

The patches are inert until used: Lambda functions run their own code (the zip moto stores) and Run Command
dispatches to a fleet only when one is attached to the SSM backend (`attach_fleet`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import functools
import hashlib
import importlib
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import moto
import yaml

from sandbox import alarms

MOTO_VERSION = "5.2.5"
MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}

# AWS limits reproduced by the emulated Run Command.
STDOUT_LIMIT = 24_000  # GetCommandInvocation StandardOutputContent
PLUGIN_OUTPUT_LIMIT = 2_500  # ListCommandInvocations CommandPlugins[].Output
MAX_INSTANCE_IDS = 50


class PatchError(RuntimeError):
    """moto is not the version these patches were written for."""


# --------------------------------------------------------------------------------------------------
# Fleet protocol: what Run Command needs from the simulated servers (implemented by sandbox.fleet).
# --------------------------------------------------------------------------------------------------


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


def _fleet_of(ssm_backend: Any) -> ManagedInstances | None:
    return getattr(ssm_backend, "_sandbox_fleet", None)


# --------------------------------------------------------------------------------------------------
# Install / uninstall
# --------------------------------------------------------------------------------------------------


@dataclass
class _Patch:
    owner: Any
    name: str
    make: Callable[[Any], Any]  # original (None for an addition) -> replacement
    must_exist: bool  # True: replaces moto's attribute; False: adds one moto lacks
    original: Any = None


_INSTALL_LOCK = threading.Lock()
_installed: list[_Patch] = []
_saved_config: dict[str, Any] = {}


def _patch_list() -> list[_Patch]:
    from moto import backends as moto_backends
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.cloudwatch.models import Alarm
    from moto.ssm import models as ssm_models
    from moto.ssm.responses import SimpleSystemManagerResponse
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )
    from moto.stepfunctions.parser.asl.utils import json_path
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    backend = ssm_models.SimpleSystemManagerBackend
    response = SimpleSystemManagerResponse

    def add(function: Any) -> Callable[[Any], Any]:
        return lambda _original: function

    return [
        _Patch(LambdaSimpleBackend, "invoke", add(_lambda_invoke), must_exist=True),
        _Patch(ExecutionWorker, "_get_evaluation_environment", _wrap_start_time, must_exist=True),
        # Speed only (bench/analysis.md, P4): moto's executor makes a new boto3 client for every Lambda task
        # and every poll of a child execution, and rebuilds a JSONPath parser (yacc tables) for every path.
        _Patch(lambda_eval_utils, "boto_client_for", _reusing_clients, must_exist=True),
        _Patch(state_task_service_sfn, "boto_client_for", _reusing_clients, must_exist=True),
        _Patch(json_path, "parse", _memoized_json_path, must_exist=True),
        _Patch(ExecutionWorker, "_get_evaluation_entrypoint", add(_evaluation_entrypoint), must_exist=True),
        # moto's server lists its own package directory (a stat per service) to route every request.
        _Patch(moto_backends, "list_of_moto_modules", _listed_once, must_exist=True),
        _Patch(StateTaskServiceSfn, "_normalise_parameters", _wrap_sfn_parameters, must_exist=True),
        _Patch(StateTaskServiceSfn, "_normalise_response", add(_sfn_response), must_exist=False),
        # CloudWatch runs an alarm's SNS actions only as the topic and key policies allow (sandbox/alarms.py).
        _Patch(Alarm, "update_state", alarms.wrap_update_state, must_exist=True),
        _Patch(backend, "send_command", _wrap_send_command, must_exist=True),
        _Patch(backend, "list_commands", _wrap_refreshing, must_exist=True),
        _Patch(ssm_models.Command, "get_invocation", _wrap_get_invocation, must_exist=True),
        _Patch(ssm_models.Command, "response_object", _wrap_response_object, must_exist=True),
        _Patch(backend, "list_command_invocations", add(_backend_list_command_invocations), must_exist=False),
        _Patch(backend, "describe_instance_information", add(_backend_describe_instance_information),
               must_exist=False),
        _Patch(response, "list_command_invocations", add(_response_list_command_invocations),
               must_exist=False),
        _Patch(response, "describe_instance_information", add(_response_describe_instance_information),
               must_exist=False),
    ]


def _reusing_clients(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's `boto_client_for`, made once per (region, service, where it sends): boto3 clients are
    thread-safe, and making one costs more CPU than the Lambda task it invokes. moto 5.2.5 signs every
    such client with the same fixed key whatever `state_credentials` says, so they do not enter the key."""
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port

    made: dict[tuple[Any, ...], Any] = {}
    lock = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service, botocore_stubber.enabled, moto_server_port())
        with lock:
            client = made.get(key)
            if client is None:
                client = made[key] = original(region, service, state_credentials)
        return client

    return boto_client_for


def _memoized_json_path(original: Callable[[str], Any]) -> Callable[[str], Any]:
    """jsonpath_ng's `parse`, once per path (parsed paths are immutable; building the parser is not cheap)."""
    return functools.lru_cache(maxsize=1024)(original)


def _listed_once(original: Callable[[], Any]) -> Callable[[], Any]:
    modules = tuple(original())  # the installed package's directories do not change while it runs

    def list_of_moto_modules() -> tuple[str, ...]:
        return modules

    return list_of_moto_modules


@functools.lru_cache(maxsize=16)
def _syntax_tree(definition: str) -> Any:
    """The ANTLR parse of a definition, once per definition (read-only once built)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    return AmazonStateLanguageParser.parse(definition)[1]


def _evaluation_entrypoint(self: Any) -> Any:
    """moto parses the definition on every execution start; the parse is the costly half (a 500-user
    scheduled run starts 501 executions of two definitions). The evaluation components, which hold state
    while an execution runs, are still built anew for each execution from the shared syntax tree."""
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

    return Preprocessor().visit(_syntax_tree(self._evaluation_details.state_machine_details.definition))


def _check_version() -> None:
    if moto.__version__ != MOTO_VERSION:
        raise PatchError(f"sandbox patches target moto {MOTO_VERSION}, found {moto.__version__}: review them")


_users = 0  # emulators currently relying on the patches


def install() -> None:
    """Apply every patch and switch moto to executing state machines without Docker.

    Counted: every `install` needs its `uninstall`; the last one restores moto.
    """
    global _users
    with _INSTALL_LOCK:
        if _installed:
            _users += 1
            return
        _check_version()
        patches = _patch_list()
        for p in patches:
            exists = p.name in vars(p.owner)
            if p.must_exist and not exists:
                raise PatchError(f"moto changed: {p.owner.__name__}.{p.name} no longer exists")
            if not p.must_exist and exists:
                raise PatchError(f"moto now has {p.owner.__name__}.{p.name}: drop the sandbox's version")
        _check_error_name_table()
        _check_sfn_normalisation_missing()
        for p in patches:
            p.original = vars(p.owner).get(p.name)
            setattr(p.owner, p.name, p.make(p.original))
            _installed.append(p)
        _install_error_names()
        from moto.core.config import default_user_config

        for section, values in MOTO_CONFIG.items():
            _saved_config[section] = dict(default_user_config.get(section, {}))  # type: ignore[call-overload]
            default_user_config.setdefault(section, {}).update(values)  # type: ignore[misc]
        _users = 1


def uninstall() -> None:
    """Restore moto exactly as it was before the first `install` (once every user has uninstalled)."""
    global _users
    with _INSTALL_LOCK:
        _users = max(0, _users - 1)
        if _users:
            return
        while _installed:
            p = _installed.pop()
            if p.original is None:
                delattr(p.owner, p.name)
            else:
                setattr(p.owner, p.name, p.original)
        _uninstall_error_names()
        from moto.core.config import default_user_config

        for section, values in _saved_config.items():
            default_user_config[section] = values  # type: ignore[literal-required]
        _saved_config.clear()
        _unroute_standard_streams()
    cleanup_lambda_code()


def is_installed() -> bool:
    return bool(_installed)


# --------------------------------------------------------------------------------------------------
# Step Functions: aws-sdk task error names. AWS reports `Ssm.InvalidInstanceIdException`; moto `ssm.…`.
# --------------------------------------------------------------------------------------------------

_ERROR_NAMES = {"ssm": "Ssm"}


def _error_name_table() -> dict[str, str]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    table: dict[str, str] = aws_sdk._SERVICE_ERROR_NAMES
    return table


def _check_error_name_table() -> None:
    table = _error_name_table()
    for service in _ERROR_NAMES:
        if service in table:
            raise PatchError(f"moto now names aws-sdk {service} errors itself: drop the sandbox's entry")


def _install_error_names() -> None:
    _error_name_table().update(_ERROR_NAMES)


def _uninstall_error_names() -> None:
    table = _error_name_table()
    for service in _ERROR_NAMES:
        table.pop(service, None)


def _wrap_start_time(original: Callable[..., Any]) -> Callable[..., Any]:
    """`$$.Execution.StartTime` is an ISO 8601 string in AWS (`2026-11-22T03:00:00.123Z`); moto puts a
    datetime there, which breaks intrinsic functions on it (the scheduled machine names executions with
    `States.StringSplit($$.Execution.StartTime, ':')`)."""

    def get_evaluation_environment(self: Any) -> Any:
        env = original(self)
        execution = env.states.context_object.context_object_data["Execution"]
        start = execution.get("StartTime")
        if isinstance(start, datetime.datetime):
            if start.tzinfo is None:
                start = start.replace(tzinfo=datetime.UTC)
            utc = start.astimezone(datetime.UTC)
            execution["StartTime"] = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
        return env

    return get_evaluation_environment


# Step Functions' optimized `states:startExecution[.sync[:2]]` integration takes and returns PascalCase
# (`StateMachineArn`, `Input`; `ExecutionArn`, `Status`), the boto3 client camelCase. moto's executor (ported
# from LocalStack) leaves the translation to `_normalise_parameters/_normalise_response`, which are no-ops in
# moto: the call fails on `Input`, and `$.ExecutionArn`/`$.Status` selectors find nothing.


def _check_sfn_normalisation_missing() -> None:
    import inspect

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    for name in ("_normalise_parameters", "_normalise_response"):
        body = inspect.getsource(getattr(StateTaskService, name)).rstrip()
        if not body.endswith("pass"):
            raise PatchError(f"moto now implements StateTaskService.{name}: drop the sandbox's sfn patch")


def _wrap_sfn_parameters(original: Callable[..., Any]) -> Callable[..., Any]:
    def normalise_parameters(self: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                             service_action_name: str | None = None) -> None:
        original(self, parameters, boto_service_name=boto_service_name,
                 service_action_name=service_action_name)
        for key in [k for k in parameters if k[:1].isupper()]:
            parameters[key[0].lower() + key[1:]] = parameters.pop(key)

    return normalise_parameters


def _sfn_response(self: Any, response: Any, boto_service_name: str | None = None,
                  service_action_name: str | None = None) -> None:
    if isinstance(response, dict):
        for key in [k for k in response if k[:1].islower()]:
            response[key[0].upper() + key[1:]] = response.pop(key)


# --------------------------------------------------------------------------------------------------
# Lambda: run the function's own code in-process.
# --------------------------------------------------------------------------------------------------

# os.environ, sys.path and sys.modules are process-wide: one invocation at a time.
_LAMBDA_LOCK = threading.RLock()
_code_dirs: dict[str, Path] = {}
_warm_modules: dict[str, dict[str, Any]] = {}
_code_root: Path | None = None
_log_route = threading.local()


class LambdaHook(Protocol):
    def __call__(self, function_name: str, phase: str) -> None: ...


# Test affordance: callables run before ("before") and after ("after") a handler, by function name.
# They may raise to simulate a crash of the Lambda runtime around the real handler.
lambda_hooks: list[LambdaHook] = []


class InjectedCrash(Exception):
    """Test affordance: the Lambda runtime died (after or before the handler did its work)."""


@contextlib.contextmanager
def inject_lambda_crash(
    function_name_contains: str, phase: str = "after", times: int = 1
) -> Iterator[list[str]]:
    """Make the next `times` invocations of matching functions crash in `phase` (before/after the handler).

    "after" is the nasty case: the step's work is done but Step Functions sees a failure.
    Yields the list of function names that crashed.
    """
    crashed: list[str] = []

    def hook(function_name: str, when: str) -> None:
        if when == phase and function_name_contains in function_name and len(crashed) < times:
            crashed.append(function_name)
            raise InjectedCrash(f"sandbox: injected crash of {function_name} ({phase} the handler)")

    lambda_hooks.append(hook)
    try:
        yield crashed
    finally:
        lambda_hooks.remove(hook)


@dataclass
class _Context:
    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float = field(default=0.0)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class _RoutedStream(io.TextIOBase):
    """sys.stdout/err stand-in: writes from a thread running a Lambda go to that invocation's log."""

    def __init__(self, default: Any) -> None:
        self._default = default

    def write(self, s: str) -> int:
        sink = getattr(_log_route, "sink", None)
        if sink is not None:
            sink.append(s)
            return len(s)
        return int(self._default.write(s))

    def flush(self) -> None:
        if getattr(_log_route, "sink", None) is None:
            self._default.flush()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the class lacks. Never for `_default` itself: an instance made without
        # __init__ (copy.copy does that) would otherwise recurse until RecursionError.
        default = self.__dict__.get("_default")
        if default is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(default, name)

    # A stream is not copied (copying sys.stdout itself fails); code that copies objects holding it gets it.
    def __copy__(self) -> _RoutedStream:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _RoutedStream:
        return self


def _code_dir(fn: Any) -> Path:
    global _code_root
    digest = hashlib.sha256(fn.code_bytes).hexdigest()
    if digest not in _code_dirs:
        if _code_root is None:
            _code_root = Path(tempfile.mkdtemp(prefix="sandbox-lambda-"))
        target = _code_root / digest[:16]
        with zipfile.ZipFile(io.BytesIO(fn.code_bytes)) as archive:
            archive.extractall(target)
        _code_dirs[digest] = target
    return _code_dirs[digest]


def _top_level_names(code_dir: Path) -> set[str]:
    names = set()
    for entry in code_dir.iterdir():
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.add(entry.name)
        elif entry.suffix == ".py":
            names.add(entry.stem)
    return names


def _owned(name: str, tops: set[str]) -> bool:
    return name.split(".", 1)[0] in tops


@contextlib.contextmanager
def _module_scope(code_dir: Path) -> Iterator[None]:
    """Import the function's modules from its own code, isolated from anything else of the same name."""
    tops = _top_level_names(code_dir)
    key = str(code_dir)
    shadowed = {n: m for n, m in sys.modules.items() if _owned(n, tops)}
    for name in shadowed:
        del sys.modules[name]
    sys.modules.update(_warm_modules.get(key, {}))
    sys.path.insert(0, key)
    try:
        yield
    finally:
        sys.path.remove(key)
        _warm_modules[key] = {n: m for n, m in sys.modules.items() if _owned(n, tops)}
        for name in _warm_modules[key]:
            del sys.modules[name]
        sys.modules.update(shadowed)


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """Overlay the function's variables. Never clear os.environ: other threads (moto's executor reading
    MOTO_PORT, the fleet) read it meanwhile."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# Every routed stream the sandbox ever put in sys.stdout/err, and through it the stream it replaced: kept
# alive for the life of the process. CPython 3.11's print() holds sys.stdout as a *borrowed* reference while
# it writes; a thread replacing sys.stdout meanwhile freed the object under the printing thread (the demo's
# progress lines vs. a Lambda starting): RecursionError or a segmentation fault. So sys.stdout is replaced
# only when it is not routed yet (once, or after someone else replaced it) and never put back per invocation.
_ROUTED: list[_RoutedStream] = []


def _routed(current: Any) -> _RoutedStream:
    if isinstance(current, _RoutedStream):
        return current
    stream = _RoutedStream(current)
    _ROUTED.append(stream)
    return stream


def _route_standard_streams() -> None:
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if not isinstance(current, _RoutedStream):
            setattr(sys, name, _routed(current))


def _unroute_standard_streams() -> None:
    """Put back what the routed streams replaced (they stay alive in `_ROUTED`)."""
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, _RoutedStream):
            setattr(sys, name, current.__dict__["_default"])


@contextlib.contextmanager
def _captured_output(sink: list[str], service: str | None) -> Iterator[None]:
    _route_standard_streams()
    _log_route.sink = sink
    # Powertools' Logger keeps the stream it found when the service's logger was first configured, and
    # reuses that logger by name: configured earlier in this process (another test, another emulator), it
    # may hold a stream that is closed by now. In Lambda that stream is the process's stdout: point it there.
    handlers = [h for h in logging.getLogger(service).handlers if isinstance(h, logging.StreamHandler)] \
        if service else []
    saved = [h.stream for h in handlers]
    for handler in handlers:
        handler.stream = sys.stdout
    try:
        yield
    finally:
        for handler, stream in zip(handlers, saved, strict=True):
            handler.stream = stream
        _log_route.sink = None


def _function_env(fn: Any, code_dir: Path) -> dict[str, str]:
    env = dict(
        {
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
            # The function's role is not enforced by moto; any key signs. Real Lambda injects role creds.
            "AWS_ACCESS_KEY_ID": "ASIASANDBOXLAMBDA000",
            "AWS_SECRET_ACCESS_KEY": "sandbox-lambda-role",
            "AWS_SESSION_TOKEN": "sandbox-lambda-session",
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": _log_group(fn),
            "LAMBDA_TASK_ROOT": str(code_dir),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            # No X-Ray daemon here.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    env.update({k: str(v) for k, v in (fn.environment_vars or {}).items()})
    return env


def set_log_group(account_id: str, region: str, function_name: str, group: str) -> None:
    """The function's LoggingConfig.LogGroup (moto ignores LoggingConfig): where its output goes."""
    from moto.awslambda_simple.models import lambda_simple_backends

    fn = lambda_simple_backends[account_id][region].get_function(function_name)
    fn.__dict__["_sandbox_log_group"] = group


def _log_group(fn: Any) -> str:
    return str(fn.__dict__.get("_sandbox_log_group") or f"/aws/lambda/{fn.function_name}")


def _write_logs(fn: Any, stream: str, lines: str) -> None:
    from moto.logs.models import logs_backends

    logs = logs_backends[fn.account_id][fn.region]
    group = _log_group(fn)
    if group not in logs.groups:
        logs.create_log_group(group, {})
    logs.create_log_stream(group, stream)
    now = int(time.time() * 1000)
    events = [{"timestamp": now, "message": line} for line in lines.splitlines() if line.strip()]
    if events:
        logs.put_log_events(group, stream, events)


def _lambda_invoke(
    self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    fn = self.get_function(function_name, qualifier)
    event = json.loads(body) if body else {}
    module_name, _, attr = str(fn.handler).rpartition(".")
    request_id = str(uuid.uuid4())
    stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{request_id.replace('-', '')}"
    context = _Context(
        function_name=fn.function_name,
        function_version="$LATEST",
        invoked_function_arn=fn.function_arn,
        memory_limit_in_mb=int(fn.memory_size),
        aws_request_id=request_id,
        log_group_name=_log_group(fn),
        log_stream_name=stream,
        deadline=time.monotonic() + float(fn.timeout),
    )
    sink: list[str] = [f"START RequestId: {request_id} Version: $LATEST\n"]
    with _LAMBDA_LOCK:
        code_dir = _code_dir(fn)
        env = _function_env(fn, code_dir)
        try:
            with _environment(env), _module_scope(code_dir), \
                    _captured_output(sink, env.get("POWERTOOLS_SERVICE_NAME")):
                for hook in list(lambda_hooks):
                    hook(fn.function_name, "before")
                handler = getattr(importlib.import_module(module_name), attr)
                result = handler(event, context)
                for hook in list(lambda_hooks):
                    hook(fn.function_name, "after")
            payload = json.dumps(result)
        except Exception as exc:  # the Lambda runtime reports any exception as a function error
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc), "requestId": request_id,
                     "stackTrace": traceback.format_tb(exc.__traceback__)}
            sink.append(f"[ERROR] {type(exc).__name__}: {exc}\n")
            response_headers["x-amz-function-error"] = "Unhandled"
            payload = json.dumps(error)
        sink.append(f"END RequestId: {request_id}\n")
        _write_logs(fn, stream, "".join(sink))
    if headers.get("X-Amz-Log-Type") == "Tail":
        response_headers["x-amz-log-result"] = base64.b64encode("".join(sink)[-4096:].encode()).decode()
    encoded = payload.encode()
    response_headers["Content-Length"] = str(len(encoded))
    return encoded


def cleanup_lambda_code() -> None:
    """Forget extracted function code and warm modules (when the last emulator stops)."""
    global _code_root
    import shutil

    with _LAMBDA_LOCK:
        _code_dirs.clear()
        _warm_modules.clear()
        if _code_root is not None:
            shutil.rmtree(_code_root, ignore_errors=True)
            _code_root = None


# --------------------------------------------------------------------------------------------------
# Run Command
# --------------------------------------------------------------------------------------------------

_TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}


def _ssm_error(code: str, message: str) -> Exception:
    from moto.ssm.exceptions import SSMException

    return SSMException(code, message)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_document(content: str, document_format: str) -> dict[str, Any]:
    parsed = json.loads(content) if document_format == "JSON" else yaml.safe_load(content)
    if not isinstance(parsed, dict):
        raise _ssm_error("InvalidDocumentContent", "The document content is not an object.")
    return parsed


def _resolve_parameters(document: dict[str, Any], given: dict[str, list[str]]) -> dict[str, list[str]]:
    """Validate SendCommand parameters against the document like the API does; fill defaults."""
    import re

    declared: dict[str, Any] = document.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise _ssm_error("InvalidParameters", f"Parameters {unknown} are not defined in the document.")
    resolved: dict[str, list[str]] = {}
    for name, spec in declared.items():
        if name in given:
            values = given[name]
        elif "default" in spec:
            default = spec["default"]
            values = default if isinstance(default, list) else [str(default)]
        else:
            raise _ssm_error("InvalidParameters", f"Parameter {name} is required.")
        pattern = spec.get("allowedPattern")
        for value in values:
            if pattern is not None and not re.fullmatch(pattern, value):
                raise _ssm_error("InvalidParameters", f"Parameter {name} does not match its allowedPattern.")
            if "allowedValues" in spec and value not in spec["allowedValues"]:
                raise _ssm_error("InvalidParameters", f"Parameter {name} is not an allowed value.")
        resolved[name] = values
    return resolved


def _resolve_targets(
    fleet: ManagedInstances, instance_ids: list[str], targets: list[dict[str, Any]]
) -> list[str]:
    infos = fleet.instance_information()
    known = {info["InstanceId"]: info for info in infos}
    ids = list(instance_ids or [])
    for target in targets or []:
        key, values = target["Key"], target["Values"]
        if key == "InstanceIds":
            ids.extend(values)
        elif key.startswith("tag:"):
            tag = key[4:]
            ids.extend(i for i, info in known.items() if info.get("Tags", {}).get(tag) in values)
        else:
            raise _ssm_error("InvalidTarget", f"Target key {key} is not supported by the sandbox.")
    if len(instance_ids or []) > MAX_INSTANCE_IDS:
        raise _ssm_error("ValidationException", f"InstanceIds: at most {MAX_INSTANCE_IDS} per call.")
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise _ssm_error("InvalidInstanceId", f"Instances {unknown} not in a valid state for account.")
    if not ids:
        raise _ssm_error("InvalidParameters", "No instance ids or targets resolved.")
    return list(dict.fromkeys(ids))


def _command_lock(command: Any) -> threading.Lock:
    lock: threading.Lock = command.__dict__.setdefault("_sandbox_lock", threading.Lock())
    return lock


def _elapsed(start: datetime.datetime, end: datetime.datetime) -> str:
    return f"PT{(end - start).total_seconds():.3f}S"


def _finish(command: Any, instance_id: str, plugins: list[PluginResult]) -> None:
    with _command_lock(command):
        invocation = next(i for i in command.invocations if i["InstanceId"] == instance_id)
        if invocation["Status"] in _TERMINAL:
            return
        status = "Success"
        for plugin in plugins:
            if plugin.status != "Success":
                status = plugin.status
                break
        first = plugins[0] if plugins else None
        start = first.started if first else _now()
        end = plugins[-1].finished if plugins else _now()
        stdout = "".join(p.stdout for p in plugins)
        stderr = "".join(p.stderr for p in plugins)
        invocation.update(
            {
                "Status": status,
                "StatusDetails": "Execution Timed Out" if status == "TimedOut" else status,
                "ResponseCode": plugins[-1].response_code if plugins else -1,
                "ExecutionStartDateTime": start.isoformat(),
                "ExecutionEndDateTime": end.isoformat(),
                "ExecutionElapsedTime": _elapsed(start, end),
                "StandardOutputContent": stdout[:STDOUT_LIMIT],
                "StandardErrorContent": stderr[:8_000],
                "_plugins": plugins,
            }
        )
        _refresh_locked(command)


def _expire(command: Any) -> None:
    """Delivery timeout: undelivered invocations end as AWS ends them once TimeoutSeconds has passed."""
    with _command_lock(command):
        if "_sandbox_document" not in command.__dict__:
            return
        if _now() >= command.requested_date_time.replace(tzinfo=datetime.UTC) + datetime.timedelta(
            seconds=command.timeout_seconds
        ):
            for invocation in command.invocations:
                if invocation["Status"] in ("Pending", "InProgress") and not invocation.get("_delivered"):
                    invocation.update({"Status": "TimedOut", "StatusDetails": "Delivery Timed Out",
                                       "ResponseCode": -1})
        _refresh_locked(command)


def _refresh_locked(command: Any) -> None:
    statuses = [i["Status"] for i in command.invocations]
    details = [i["StatusDetails"] for i in command.invocations]
    command.completed_count = sum(s in _TERMINAL for s in statuses)
    command.error_count = sum(s == "Failed" or (s == "TimedOut" and d != "Delivery Timed Out")
                              for s, d in zip(statuses, details, strict=True))
    command.delivery_timed_out_count = sum(d == "Delivery Timed Out" for d in details)
    if command.completed_count < len(statuses):
        command.status, command.status_details = "InProgress", "InProgress"
    elif command.error_count:
        command.status, command.status_details = "Failed", "Failed"
    elif command.delivery_timed_out_count:
        command.status, command.status_details = "TimedOut", "Delivery Timed Out"
    else:
        command.status, command.status_details = "Success", "Success"


def _wrap_send_command(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_command(self: Any, **kwargs: Any) -> Any:
        fleet = _fleet_of(self)
        if fleet is None:
            return original(self, **kwargs)
        name = kwargs["document_name"]
        if name not in self._documents:
            raise _ssm_error("InvalidDocument", f"Document {name} does not exist.")
        stored = self._documents[name].get_default_version()
        document = parse_document(stored.content, stored.document_format)
        parameters = _resolve_parameters(document, kwargs.get("parameters") or {})
        targets = kwargs.get("targets") or []
        ids = _resolve_targets(fleet, kwargs.get("instance_ids") or [], targets)
        command = original(self, **{**kwargs, "instance_ids": ids, "targets": []})
        command.targets = targets
        command.__dict__["_sandbox_document"] = name
        command.delivery_timed_out_count = 0
        with _command_lock(command):
            for invocation in command.invocations:
                invocation.update({"Status": "Pending", "StatusDetails": "Pending", "ResponseCode": -1,
                                   "ExecutionStartDateTime": "", "ExecutionEndDateTime": "",
                                   "ExecutionElapsedTime": "", "PluginName": _linux_steps(document)[0]})
            _refresh_locked(command)
        for instance_id in ids:
            request = RunRequest(command.command_id, instance_id, name, document, parameters)

            def done(plugins: list[PluginResult], instance_id: str = instance_id) -> None:
                _finish(command, instance_id, plugins)

            delivered = fleet.dispatch(request, done)
            with _command_lock(command):
                invocation = next(i for i in command.invocations if i["InstanceId"] == instance_id)
                if delivered:
                    invocation["_delivered"] = True
                if invocation["Status"] == "Pending":
                    invocation.update({"Status": "InProgress", "StatusDetails": "InProgress"})
        return command

    return send_command


def _linux_steps(document: dict[str, Any]) -> list[str]:
    names = [s["name"] for s in linux_shell_steps(document)]
    return names or ["aws:runShellScript"]


def linux_shell_steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps a Linux SSM Agent runs: aws:runShellScript whose precondition (if any) is Linux."""
    steps = []
    for step in document.get("mainSteps", []):
        if step.get("action") != "aws:runShellScript":
            continue
        condition = (step.get("precondition") or {}).get("StringEquals")
        if condition and condition != ["platformType", "Linux"]:
            continue
        steps.append(step)
    return steps


def _public(invocation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in invocation.items() if not k.startswith("_")}


def _wrap_refreshing(original: Callable[..., Any]) -> Callable[..., Any]:
    def list_commands(self: Any, *args: Any, **kwargs: Any) -> Any:
        commands = original(self, *args, **kwargs)
        for command in commands:
            _expire(command)
        return commands

    return list_commands


def _wrap_get_invocation(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_invocation(self: Any, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
        if "_sandbox_document" not in self.__dict__:
            return dict(original(self, instance_id, plugin_name))
        _expire(self)
        with _command_lock(self):
            invocation = original(self, instance_id, None)
            plugins: list[PluginResult] = invocation.get("_plugins") or []
            if plugin_name is not None:
                plugin = next((p for p in plugins if p.name == plugin_name), None)
                if plugin is None and plugin_name != invocation["PluginName"]:
                    raise _ssm_error("InvocationDoesNotExist", "Invocation does not exist.")
            return _public(invocation)

    return get_invocation


def _wrap_response_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def response_object(self: Any) -> dict[str, Any]:
        response: dict[str, Any] = original(self)
        if "_sandbox_document" in self.__dict__:
            response["DeliveryTimedOutCount"] = self.delivery_timed_out_count
        return response

    return response_object


def _invocation_entry(command: Any, invocation: dict[str, Any], details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "CommandId": command.command_id,
        "InstanceId": invocation["InstanceId"],
        "InstanceName": "",
        "Comment": command.comment,
        "DocumentName": command.document_name,
        "DocumentVersion": "$DEFAULT",
        "RequestedDateTime": command.requested_date_time,
        "Status": invocation["Status"],
        "StatusDetails": invocation["StatusDetails"],
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "ServiceRole": command.service_role_arn,
        "CommandPlugins": [],
    }
    if details:
        plugins: list[PluginResult] = invocation.get("_plugins") or []
        if plugins:
            entry["CommandPlugins"] = [
                {
                    "Name": p.name,
                    "Status": p.status,
                    "StatusDetails": "Execution Timed Out" if p.status == "TimedOut" else p.status,
                    "ResponseCode": p.response_code,
                    "ResponseStartDateTime": p.started,
                    "ResponseFinishDateTime": p.finished,
                    "Output": _plugin_output(p.stdout, p.stderr),
                    "StandardOutputUrl": "",
                    "StandardErrorUrl": "",
                    "OutputS3Region": command.backend_region,
                }
                for p in plugins
            ]
        else:
            entry["CommandPlugins"] = [
                {"Name": invocation["PluginName"], "Status": invocation["Status"],
                 "StatusDetails": invocation["StatusDetails"], "ResponseCode": -1, "Output": ""}
            ]
    return entry


def _plugin_output(stdout: str, stderr: str) -> str:
    """What the SSM Agent reports as a plugin's Output: stdout and stderr sharing PLUGIN_OUTPUT_LIMIT.

    As the agent's TruncateOutput does (aws/amazon-ssm-agent, agent/framework/processor/executer/iohandler/
    iohandler.go): when both are longer than half the space, each keeps only its first ~1,200 characters;
    a short one is kept whole and the other fills the rest. A long stderr cuts a long stdout, not a short one.
    """
    title = "\n----------ERROR-------\n" if stderr else ""
    cut_out, cut_err = "\n---Output truncated---", "\n---Error truncated----"
    space = PLUGIN_OUTPUT_LIMIT - len(title)
    if len(stdout) + len(stderr) < space:
        return f"{stdout}{title}{stderr}"
    if len(stdout) > space // 2 and len(stderr) > space // 2:
        half = (space - len(cut_err) - len(cut_out)) // 2
        return f"{stdout[:half]}{cut_out}{title}{stderr[:half]}{cut_err}"
    if len(stdout) < space // 2:
        return f"{stdout}{title}{stderr[: space - len(cut_err) - len(stdout)]}{cut_err}"
    return f"{stdout[: max(0, space - len(cut_out) - len(stderr))]}{cut_out}{title}{stderr}"


def _page(items: list[Any], next_token: str | None, max_results: int) -> tuple[list[Any], str | None]:
    try:
        start = int(next_token) if next_token else 0
    except ValueError:
        raise _ssm_error("InvalidNextToken", "The specified token is not valid.") from None
    end = start + max_results
    return items[start:end], (str(end) if end < len(items) else None)


def _backend_list_command_invocations(
    self: Any,
    command_id: str | None,
    instance_id: str | None,
    max_results: int | None,
    next_token: str | None,
    details: bool,
    filters: list[dict[str, str]] | None,
) -> tuple[list[dict[str, Any]], str | None]:
    commands = [self.get_command_by_id(command_id)] if command_id else list(self._commands)
    entries = []
    for command in commands:
        _expire(command)
        with _command_lock(command):
            for invocation in command.invocations:
                if instance_id and invocation["InstanceId"] != instance_id:
                    continue
                entry = _invocation_entry(command, invocation, details)
                if _matches_command_filters(entry, filters or []):
                    entries.append(entry)
    limit = max_results or 50
    if not 1 <= limit <= 50:
        raise _ssm_error("ValidationException", "MaxResults must be between 1 and 50.")
    return _page(entries, next_token, limit)


def _matches_command_filters(entry: dict[str, Any], filters: list[dict[str, str]]) -> bool:
    for f in filters:
        key, value = f["key"], f["value"]
        if key == "Status" and entry["Status"] != value:
            return False
        if key == "DocumentName" and entry["DocumentName"] != value:
            return False
        if key not in ("Status", "DocumentName"):
            raise _ssm_error("InvalidFilterKey", f"Filter key {key} is not supported by the sandbox.")
    return True


_INFO_FILTER_KEYS = {"InstanceIds", "PingStatus", "PlatformTypes", "ResourceType", "AgentVersion",
                     "IamRole", "ActivationIds", "AssociationStatus"}
_INFO_FIELD = {"InstanceIds": "InstanceId", "PingStatus": "PingStatus", "PlatformTypes": "PlatformType",
               "ResourceType": "ResourceType", "AgentVersion": "AgentVersion", "IamRole": "IamRole",
               "ActivationIds": "ActivationId", "AssociationStatus": "AssociationStatus"}


def _backend_describe_instance_information(
    self: Any,
    filters: list[dict[str, Any]] | None,
    max_results: int | None,
    next_token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    fleet = _fleet_of(self)
    infos = fleet.instance_information() if fleet else []
    selected = []
    for info in infos:
        ok = True
        for f in filters or []:
            key, values = f["Key"], f["Values"]
            if key.startswith("tag:"):
                ok = info.get("Tags", {}).get(key[4:]) in values
            elif key == "tag-key":
                ok = any(v in info.get("Tags", {}) for v in values)
            elif key in _INFO_FILTER_KEYS:
                ok = str(info.get(_INFO_FIELD[key])) in values
            else:
                raise _ssm_error("InvalidInstanceInformationFilterValue", f"Unsupported filter key {key}.")
            if not ok:
                break
        if ok:
            selected.append({k: v for k, v in info.items() if k != "Tags"})
    limit = max_results or 50
    if not 5 <= limit <= 50:
        raise _ssm_error("ValidationException", "MaxResults must be between 5 and 50.")
    return _page(selected, next_token, limit)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        # The JSON protocol's timestamps: epoch seconds (botocore parses them). moto's are naive UTC.
        aware = value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        return aware.timestamp()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _json_body(result: dict[str, Any]) -> str:
    """SSM speaks the JSON protocol: `json.dumps` gives the same body as moto's generic serializer
    (ActionResult), which walks the service model for every field and was the emulator's largest single
    cost at 1,000 servers (bench/analysis.md, P3: ~30 % of the emulator's CPU per poll)."""
    return json.dumps(result, default=_json_default)


def _response_list_command_invocations(self: Any) -> Any:
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
    return _json_body(result)


def _response_describe_instance_information(self: Any) -> Any:
    filters = list(self._get_param("Filters") or [])
    for f in self._get_param("InstanceInformationFilterList") or []:
        filters.append({"Key": f["key"], "Values": f["valueSet"]})
    infos, token = self.ssm_backend.describe_instance_information(
        filters=filters, max_results=self._get_param("MaxResults"), next_token=self._get_param("NextToken")
    )
    result: dict[str, Any] = {"InstanceInformationList": infos}
    if token:
        result["NextToken"] = token
    return _json_body(result)
