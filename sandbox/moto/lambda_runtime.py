"""Lambda without Docker: moto's `LambdaSimpleBackend.invoke`, replaced by running the function's own code
(the zip moto stores) in this process, with its environment, its own modules, a context and its log stream.

`LambdaContext` is the context object for every caller of a handler outside Lambda: this runtime, and the
tests that call a handler directly.
"""

from __future__ import annotations

import base64
import compileall
import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

# os.environ, sys.path and sys.modules are process-wide: one invocation at a time.
_LAMBDA_LOCK = threading.RLock()
_code_dirs: dict[str, Path] = {}
# The modules of each execution environment (`_environment_key`), kept between its invocations (warm).
_warm_modules: dict[tuple[str, ...], dict[str, Any]] = {}
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


@dataclass(frozen=True)
class LambdaContext:
    """The context the Python runtime passes a handler: the attributes it has there (Powertools reads the
    function's name, ARN, memory and the request id)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float  # time.monotonic() when the invocation times out
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))

    @classmethod
    def for_call(cls, function_name: str, *, region: str = "us-east-1", account_id: str = "123456789012",
                 memory_mb: int = 256, timeout_seconds: float = 60.0) -> LambdaContext:
        """A context for one direct call of a handler (tests): a new request id, the timeout from now."""
        request_id = str(uuid.uuid4())
        return cls(
            function_name=function_name,
            invoked_function_arn=f"arn:aws:lambda:{region}:{account_id}:function:{function_name}",
            memory_limit_in_mb=memory_mb,
            aws_request_id=request_id,
            log_group_name=f"/aws/lambda/{function_name}",
            log_stream_name=_log_stream(request_id),
            deadline=time.monotonic() + timeout_seconds,
        )


def _log_stream(request_id: str) -> str:
    return f"{time.strftime('%Y/%m/%d')}/[$LATEST]{request_id.replace('-', '')}"


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
        # Every function importing this code compiles it once between them (speed only: each function
        # imports its own modules, `_module_scope`, and the process may be told to write no bytecode).
        compileall.compile_dir(target, quiet=2)
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


def _environment_key(fn: Any, env: dict[str, str]) -> tuple[str, ...]:
    """What makes an execution environment. Lambda runs each function in processes of its own, with the
    function's code and configuration; here every function runs in this process, so each function (and each
    change of its code or configuration: another LAMBDA_TASK_ROOT or variable, another emulator's endpoint)
    gets modules of its own. What they keep between invocations (boto3 clients, parsed settings) is never
    seen by another function. Unlike Lambda, a function created again under the same name, code and
    configuration (tests reset the emulator between them) finds its predecessor's warm modules: made for the
    same endpoint and variables, and not imported again for every test."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    return (str(fn.function_arn), endpoint, *sorted(f"{name}={value}" for name, value in env.items()))


@contextlib.contextmanager
def _module_scope(code_dir: Path, environment: tuple[str, ...]) -> Iterator[None]:
    """Import the function's modules from its own code, isolated from anything else of the same name: from
    other functions (even with the same code) and from the modules of the process itself (tests)."""
    tops = _top_level_names(code_dir)
    key = str(code_dir)
    shadowed = {n: m for n, m in sys.modules.items() if _owned(n, tops)}
    for name in shadowed:
        del sys.modules[name]
    sys.modules.update(_warm_modules.get(environment, {}))
    sys.path.insert(0, key)
    try:
        yield
    finally:
        sys.path.remove(key)
        _warm_modules[environment] = {n: m for n, m in sys.modules.items() if _owned(n, tops)}
        for name in _warm_modules[environment]:
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


def unroute_standard_streams() -> None:
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


def invoke(
    self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
) -> bytes:
    fn = self.get_function(function_name, qualifier)
    event = json.loads(body) if body else {}
    module_name, _, attr = str(fn.handler).rpartition(".")
    request_id = str(uuid.uuid4())
    stream = _log_stream(request_id)
    context = LambdaContext(
        function_name=fn.function_name,
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
            with _environment(env), _module_scope(code_dir, _environment_key(fn, env)), \
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

