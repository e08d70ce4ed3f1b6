"""Lambda without Docker: moto's `LambdaSimpleBackend.invoke`, replaced by running the function's own code
(the zip moto stores) in this process, with its environment, its modules, a context and its log stream.
"""

from __future__ import annotations

import base64
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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

