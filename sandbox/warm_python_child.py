# ruff: noqa: PTH100, PTH111, PTH118, PTH120, SIM115
# (the zygote works with file descriptors, os-level paths and raw streams on purpose, like the agent)
"""The warm interpreter's forked child (sandbox/warm_python_manager.py explains the whole): it takes over the
shim's process state, runs the program as `python3 -c CODE` or `python3 SCRIPT` would, and exits the way
python3 exits.

Part of the zygote (sandbox/warm_python.py imports it from its own directory): standard library only. The
zygote's warm-up compiles the agent here too (`_compile`), so a child finds its code object already made.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from warm_python_serve import Job

_code_cache: dict[bytes, Any] = {}  # source bytes -> code object (any filename)
# stream name -> encoding, errors, line_buffering, write_through (as the interpreter chose at start-up)
_saved_stdio: dict[str, tuple[str, str, bool, bool]] = {}


def keep_startup_stdio() -> None:
    """Note the standard streams the interpreter chose at start-up (each child rebuilds its own the same way)
    and give the zygote streams that never close fds 0-2, which children replace with the shim's."""
    for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr)):
        _saved_stdio[name] = (stream.encoding, stream.errors or "strict", stream.line_buffering,
                              stream.write_through)
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=sys.stdin.encoding)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(open(1, "wb", closefd=False),
                                                   encoding=sys.stdout.encoding, line_buffering=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(open(2, "wb", closefd=False),
                                                   encoding=sys.stderr.encoding, errors="backslashreplace",
                                                   line_buffering=True)


def _rename_code(code: Any, filename: str) -> Any:
    consts = tuple(_rename_code(c, filename) if isinstance(c, type(code)) else c for c in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _compile(source: bytes | str, filename: str) -> Any:
    key = source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass")
    code = _code_cache.get(key)
    if code is None:
        code = compile(source, filename, "exec", dont_inherit=True)
        _code_cache[key] = code
    return code if code.co_filename == filename else _rename_code(code, filename)


def _stdio(fd: int, name: str, write: bool) -> io.TextIOWrapper:
    """What the interpreter's create_stdio() builds for fd, with the encoding it chose at start-up."""
    encoding, errors, line_buffering, write_through = _saved_stdio[name]
    buffer = open(fd, "wb" if write else "rb", buffering=-1, closefd=False)  # noqa: SIM115
    buffer.raw.name = f"<{name}>"  # type: ignore[union-attr]
    tty = os.isatty(fd)
    return io.TextIOWrapper(buffer, encoding=encoding, errors=errors, newline="\n",  # type: ignore[arg-type]
                            line_buffering=line_buffering or tty, write_through=write_through)


def become(job: Job) -> NoReturn:
    """In the forked child: take the shim's process state, run its program, exit as python3 would."""
    import builtins
    import types

    for target, fd in enumerate(job.fds[:3]):
        os.dup2(fd, target, inheritable=True)
    os.fchdir(job.fds[3])
    for fd in job.fds:
        if fd > 2:
            os.close(fd)
    os.umask(job.umask)
    os.environ.clear()
    for name, value in job.env.items():
        os.environb[name] = value
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.stdin = sys.__stdin__ = _stdio(0, "stdin", write=False)
    sys.stdout = sys.__stdout__ = _stdio(1, "stdout", write=True)
    sys.stderr = sys.__stderr__ = _stdio(2, "stderr", write=True)
    # Import-time values derived from the environment, recomputed as a fresh interpreter would.
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None
    loaders = sys.modules.get("botocore.loaders")
    if loaders is not None:
        loaders.Loader.CUSTOMER_DATA_PATH = os.path.join(os.path.expanduser("~"), ".aws", "models")
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __annotations__={}, __package__=None, __spec__=None)
    if job.script is None:
        code_text = job.args[1]
        sys.argv = ["-c"] + job.args[2:]
        sys.path[0] = ""
        main.__loader__ = builtins.__loader__  # type: ignore[attr-defined]  # BuiltinImporter, like -c
        filename, source = "<string>", code_text
    else:
        import importlib.machinery

        path = os.path.abspath(job.script)
        sys.argv = list(job.args)
        sys.path[0] = os.path.dirname(os.path.realpath(job.script))
        main.__file__ = path
        main.__cached__ = None  # type: ignore[attr-defined]
        main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
        filename, source = path, job.source or b""
    sys.orig_argv = [job.argv0] + job.args
    sys.modules["__main__"] = main
    try:
        code = _compile(source, filename)
    except Exception as exc:  # noqa: BLE001 - SyntaxError & co.: python3 shows no traceback frame
        _exit(_uncaught(exc.with_traceback(None)), main)
    try:
        exec(code, main.__dict__)  # noqa: S102 - this is what python3 does
    except SystemExit as exc:
        _exit(_system_exit_status(exc), main)
    except BaseException as exc:  # noqa: BLE001 - an uncaught exception: traceback without our frame
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        _exit(_uncaught(exc.with_traceback(tb)), main, interrupted=isinstance(exc, KeyboardInterrupt))
    _exit(0, main)


def _system_exit_status(exc: SystemExit) -> int:
    """python3's handle_system_exit(): None -> 0, an int -> itself, anything else is printed -> 1."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.write(str(code) + "\n")
    return 1


def _uncaught(exc: BaseException) -> int:
    """What python3 does with an exception that reaches the top: sys.excepthook, then status 1."""
    sys.excepthook(type(exc), exc, exc.__traceback__)
    return 1


def _exit(status: int, main: Any, interrupted: bool = False) -> NoReturn:
    """python3's exit path (Py_FinalizeEx) up to what a program can observe, then _exit.

    Non-daemon threads are joined, atexit callbacks run, the standard streams are flushed (a failing stdout
    flush makes the status 120, as in python3), the program's own objects are released (their __del__ runs).
    The pre-imported modules are not torn down: their objects are the zygote's, and releasing them would copy
    most of its memory into every child (≈ 15 ms of CPU per run).
    """
    import atexit
    import gc
    import threading

    with contextlib.suppress(Exception):
        threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception as exc:  # noqa: BLE001
            if stream is sys.stdout:
                with contextlib.suppress(Exception):
                    sys.__stderr__.write(f"Exception ignored in: {stream!r}\n{type(exc).__name__}: {exc}\n")
                status = 120
    main.__dict__.clear()
    sys.modules.pop("__main__", None)
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    if interrupted:  # python3 ends by SIGINT after an uncaught KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status & 0xFF)

