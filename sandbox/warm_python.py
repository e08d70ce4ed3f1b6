"""A warm `python3` for the simulated servers: same programs, same semantics, without the start-up cost.

Why: every simulated server runs the document's Linux step, which starts `python3` three times per pass
(version probe, unpacker, agent), and the agent imports botocore and loads its JSON models: ≈ 0.3 s of CPU per
server and pass, almost all of it start-up work that is the same every time. This module removes that work
without changing what runs: `sh` still runs the same `_script.sh`, which still finds `python3` on PATH and
runs the same code with the same arguments.

How:
- `WarmPython` (in the sandbox process) starts a **zygote**: a fresh, single-threaded interpreter (a new
  process, never forked from the multi-threaded sandbox) that imports what the agent imports, executes the
  agent's module body once (imports, regular expressions), compiles the agent's source, creates botocore
  clients for the two services the agent calls (a `before-send` hook answers their warm-up requests, so no
  request leaves the zygote) and installs a process-level cache shared by every botocore `Loader` with the
  same existing search paths (the JSON models are loaded once). It then listens on a Unix socket in a private
  (0700) directory.
- A tiny `python3` **shim** (`#!<real python> -IS`, stdlib only, ≈ 10 ms) is put first on PATH for the
  simulated servers only. It sends its argv, environment, umask and file descriptors 0/1/2 plus its current
  directory (`SCM_RIGHTS`) to the zygote; the zygote forks a child that becomes that `python3`: fds dup2'ed
  onto 0/1/2, fchdir, umask, `os.environ`, `sys.argv`/`sys.path[0]`/`sys.orig_argv`, fresh standard streams
  (same encoding, errors and buffering as the interpreter would choose), a fresh `__main__`; it runs `-c CODE`
  or `SCRIPT` (compiled without inheriting any `__future__` flag) and ends through the interpreter's own exit
  path (non-daemon threads joined, atexit, stdio flushed, `SystemExit` handled by the interpreter); an uncaught
  exception goes through `sys.excepthook` with the zygote's frames removed and exits 1. The zygote reaps the
  child and sends its wait status to the shim, which exits the same way (same code, or the same signal).
  Signals the shim receives (HUP, INT, QUIT, TERM, USR1, USR2) are forwarded to the child; if the shim dies,
  the child is killed.
- Anything else falls back to the real interpreter (the shim `exec`s it, before anything ran): another
  command-line form (`-m`, options, stdin), a `PYTHON*` variable or a different locale in the environment, a
  closed standard descriptor, a script that is not a readable regular source file, no zygote.

What differs from a cold interpreter, on purpose or by construction: the process is a child of the zygote
(its parent pid and `/proc/<pid>/cmdline` differ; the shim keeps the pid that `sh` waits for), modules
are already imported (imports are cached, module code does not run again), the string hash seed is the
zygote's, and `sys.executable` is the real interpreter (as it is for the cold run).

Opt out: `python -m sandbox demo --cold-agents`, `Fleet(warm_agents=False)` or
`KEYROTATION_SANDBOX_COLD_AGENTS=1`.
"""

from __future__ import annotations

import contextlib
import io
import os
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

COLD_ENV = "KEYROTATION_SANDBOX_COLD_AGENTS"
PROTOCOL = b"KRW1"
FORWARDED_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2")
LOCALE_VARS = (b"LC_ALL", b"LC_CTYPE", b"LANG")
_MAX_REQUEST = 4 * 1024 * 1024

# The shim: runs with -I -S (no site, no environment influence), imports only built-in C modules.
_SHIM = r'''#!{real} -IS
# The sandbox's warm python3 (sandbox/warm_python.py). Falls back to the real interpreter: {real}
import os, sys, _socket, _struct, _signal
R = {real!r}
S = {sock!r}
def cold():
    os.execv(R, [R] + sys.argv[1:])
a = sys.argv[1:]
if not a or not ((a[0] == "-c" and len(a) > 1) or (a[0][:1] not in ("-", ""))):
    cold()
try:
    for fd in (0, 1, 2):
        os.fstat(fd)
    c = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    c.connect(S)
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
except OSError:
    cold()
m = os.umask(0)
os.umask(m)
parts = [b"1", b"%d" % m, os.fsencode(sys.argv[0]), b"%d" % len(a)] + [os.fsencode(x) for x in a]
parts += [k + b"=" + v for k, v in os.environb.items()]
body = b"\0".join(parts)
data = {proto!r} + _struct.pack("!I", len(body)) + body
try:
    n = c.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack("4i", 0, 1, 2, here))])
    c.sendall(data[n:])
except OSError:
    cold()
os.close(here)
pid = 0
def forward(signum, frame):
    if pid:
        os.kill(pid, signum)
buf = b""
while True:
    try:
        chunk = c.recv(64)
    except OSError:
        chunk = b""
    if not chunk:
        if not pid:
            cold()
        os.write(2, b"python3 (sandbox warm interpreter): lost the interpreter process\n")
        os._exit(1)
    buf += chunk
    while buf:
        if buf[:1] == b"C":
            cold()
        if len(buf) < 5:
            break
        value = _struct.unpack("!i", buf[1:5])[0]
        kind, buf = buf[:1], buf[5:]
        if kind == b"P":
            pid = value
            for name in {signals!r}:
                _signal.signal(getattr(_signal, name), forward)
        elif kind == b"S":
            if os.WIFSIGNALED(value):
                sig = os.WTERMSIG(value)
                _signal.signal(sig, _signal.SIG_DFL)
                os.kill(os.getpid(), sig)
                os._exit(128 + sig)
            os._exit(os.waitstatus_to_exitcode(value) & 0xFF)
'''


# ============================================================================ the sandbox side (manager)


class WarmPython:
    """Starts and stops the zygote; hands out the PATH entry that holds the shim."""

    def __init__(self, real_python: str | None = None, preload: list[str] | None = None,
                 start_timeout: float = 120.0) -> None:
        venv_python3 = Path(sys.executable).parent / "python3"
        self.real_python = real_python or (str(venv_python3) if venv_python3.exists() else sys.executable)
        self.preload = list(preload or [])
        self.start_timeout = start_timeout
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._ready: bool | None = None
        self.error: str | None = None

    @property
    def bin_dir(self) -> str:
        assert self.dir is not None
        return str(self.dir / "bin")

    @property
    def socket_path(self) -> str:
        assert self.dir is not None
        return str(self.dir / "zygote.sock")

    def start(self) -> WarmPython:
        """Spawn the zygote (a new interpreter, not a fork of this process); `ready()` waits for it."""
        self.dir = Path(tempfile.mkdtemp(prefix="kr-warm-"))  # short path: a Unix socket path has ≤ 107 bytes
        (self.dir / "bin").mkdir()
        shim = self.dir / "bin" / "python3"
        shim.write_text(_SHIM.format(real=self.real_python, sock=self.socket_path, proto=PROTOCOL,
                                     signals=FORWARDED_SIGNALS))
        shim.chmod(0o755)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.dir / "home"),  # does not exist: no ~/.aws/models in the warm-up
        }
        command = [self.real_python, str(Path(__file__).resolve()), "serve", self.socket_path]
        for path in self.preload:
            command += ["--preload", path]
        log = (self.dir / "zygote.log").open("wb")
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                          env=env, cwd=str(self.dir), start_new_session=True, close_fds=True)
        finally:
            log.close()
        return self

    def ready(self) -> bool:
        """Whether the zygote serves (waits for its warm-up the first time). False: use the real python3."""
        with self._lock:
            if self._ready is None:
                self._ready = self._wait_ready()
            return self._ready

    def _wait_ready(self) -> bool:
        proc = self._proc
        if proc is None or proc.stdout is None:
            self.error = "not started"
            return False
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + self.start_timeout
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                self.error = f"no answer from the zygote in {self.start_timeout:.0f}s"
                break
            chunk = os.read(proc.stdout.fileno(), 256)
            if not chunk:
                break
            line += chunk
        selector.close()
        if line.strip() == b"ready":
            return True
        self.error = self.error or f"the zygote did not start: {self._log_tail()}"
        self.stop()
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            assert self.dir is not None
            return (self.dir / "zygote.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()  # EOF: the zygote kills its running children and exits
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def cold_agents_requested() -> bool:
    return os.environ.get(COLD_ENV, "").strip().lower() not in ("", "0", "false", "no")


# =================================================================================== the zygote side

_code_cache: dict[bytes, Any] = {}  # source bytes -> code object (any filename)
_saved_stdio: dict[str, tuple[str, str, bool, bool]] = {}  # name -> encoding, errors, line_buffering, write_through
_locale: tuple[bytes | None, ...] = ()


class Job:
    """One `python3` invocation received from a shim."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.fds: list[int] = []
        self.umask = 0o022
        self.argv0 = ""
        self.args: list[str] = []
        self.env: dict[bytes, bytes] = {}
        self.script: str | None = None
        self.source: bytes | None = None

    def complete(self) -> bool:
        if len(self.buffer) < 8:
            return False
        (length,) = struct.unpack("!I", self.buffer[4:8])
        return len(self.buffer) >= 8 + length

    def parse(self) -> str | None:
        """None when this zygote can run it, else why not (the shim then runs the real interpreter)."""
        if self.buffer[:4] != PROTOCOL or len(self.fds) != 4:
            return "bad request"
        (length,) = struct.unpack("!I", self.buffer[4:8])
        parts = self.buffer[8:8 + length].split(b"\0")
        if parts[0] != b"1":
            return "protocol version"
        self.umask = int(parts[1])
        self.argv0 = os.fsdecode(parts[2])
        count = int(parts[3])
        self.args = [os.fsdecode(a) for a in parts[4:4 + count]]
        for item in parts[4 + count:]:
            name, sep, value = item.partition(b"=")
            if not sep or not name:
                return "environment entry without a name"
            self.env[name] = value
        if any(name.startswith(b"PYTHON") for name in self.env):
            return "PYTHON* variable in the environment"
        if tuple(self.env.get(name) for name in LOCALE_VARS) != _locale:
            return "another locale"
        if self.args[:1] == ["-c"] and len(self.args) > 1:
            return None
        if not self.args or self.args[0].startswith("-") or not self.args[0]:
            return "command-line form"
        return self._load_script(self.args[0])

    def _load_script(self, path: str) -> str | None:
        if path.endswith((".pyc", ".pyo")):
            return "compiled script"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.fds[3])
        except OSError:
            return "script not readable"
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "script is not a regular file"
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(fd)
        source = b"".join(chunks)
        import importlib.util

        if source.startswith((b"PK\x03\x04", importlib.util.MAGIC_NUMBER)):
            return "zip or compiled script"
        self.script, self.source = path, source
        return None

    def close_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def _send(conn: socket.socket, kind: bytes, value: int = 0) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(kind if kind == b"C" else kind + struct.pack("!i", value))


def serve(socket_path: str) -> Job:
    """The zygote's loop. Returns only in a forked child, with the job that child must run."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    old_umask = os.umask(0o077)
    listener.bind(socket_path)
    os.umask(old_umask)
    listener.listen(512)
    listener.setblocking(False)
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the wakeup fd
    stopping = False

    def on_term(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    selector.register(0, selectors.EVENT_READ, "parent")  # stdin: a pipe from the sandbox; EOF = stop
    reading: dict[int, Job] = {}  # conn fd -> job being received
    running: dict[int, Job] = {}  # child pid -> job
    by_conn: dict[int, int] = {}  # conn fd -> child pid
    my_uid = os.getuid()
    sys.stdout.write("ready\n")
    sys.stdout.flush()

    def forget(job: Job) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(job.conn)
        job.close_fds()
        job.conn.close()

    while not stopping:
        try:
            events = selector.select()
        except InterruptedError:
            continue
        for key, _mask in events:
            what = key.data
            if what == "accept":
                while True:
                    try:
                        conn, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                          struct.calcsize("3i")))
                    if uid != my_uid:
                        conn.close()
                        continue
                    conn.setblocking(False)
                    job = Job(conn)
                    reading[conn.fileno()] = job
                    selector.register(conn, selectors.EVENT_READ, "conn")
            elif what == "wake":
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    job = running.pop(pid, None)
                    if job is not None:
                        by_conn.pop(job.conn.fileno(), None)
                        if job.conn.fileno() >= 0:
                            job.conn.setblocking(True)
                            _send(job.conn, b"S", status)
                            forget(job)
            elif what == "parent":
                try:
                    gone = not os.read(0, 512)
                except OSError:
                    gone = True
                if gone:
                    stopping = True
            else:  # a shim's connection
                fd = key.fd
                if fd in by_conn:  # the child runs: data or EOF from the shim means it died
                    try:
                        data = key.fileobj.recv(512)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        pid = by_conn.pop(fd)
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        job = running[pid]
                        with contextlib.suppress(KeyError, ValueError):
                            selector.unregister(job.conn)
                        job.conn.close()
                    continue
                job = reading[fd]
                try:
                    if not job.fds:
                        data, fds, _flags, _addr = socket.recv_fds(job.conn, 65536, 8)
                        for received in fds:
                            os.set_inheritable(received, False)
                        job.fds = list(fds)
                    else:
                        data = job.conn.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data or len(job.buffer) + len(data) > _MAX_REQUEST:
                    del reading[fd]
                    forget(job)
                    continue
                job.buffer += data
                if not job.complete():
                    continue
                del reading[fd]
                try:
                    refusal = job.parse()
                except (ValueError, IndexError, OSError) as exc:
                    refusal = f"unreadable request: {exc}"
                if refusal is not None:
                    job.conn.setblocking(True)
                    _send(job.conn, b"C")
                    forget(job)
                    continue
                pid = os.fork()
                if pid == 0:  # the child: drop everything of the zygote's, then become that python3
                    signal.set_wakeup_fd(-1)
                    for name in ("SIGCHLD", "SIGTERM"):
                        signal.signal(getattr(signal, name), signal.SIG_DFL)
                    selector.close()
                    listener.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    for other in list(reading.values()) + list(running.values()):
                        other.close_fds()
                        other.conn.close()
                    job.conn.close()
                    return job
                job.close_fds()
                running[pid] = job
                by_conn[fd] = pid
                job.conn.setblocking(True)
                _send(job.conn, b"P", pid)
                job.conn.setblocking(False)
    # stopping: the sandbox is gone or stops the fleet; running agents go with it
    for pid in list(running):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in list(running):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    with contextlib.suppress(OSError):
        os.unlink(socket_path)
    raise SystemExit(0)


# ----------------------------------------------------------------------------------------- the child


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
    buffer = io.open(fd, "wb" if write else "rb", buffering=-1, closefd=False)  # noqa: SIM115
    buffer.raw.name = f"<{name}>"  # type: ignore[union-attr]
    tty = os.isatty(fd)
    return io.TextIOWrapper(buffer, encoding=encoding, errors=errors, newline="\n",  # type: ignore[arg-type]
                            line_buffering=line_buffering or tty, write_through=write_through)


def become(job: Job) -> int:
    """In the forked child: take the shim's process state, run its program, return the exit status."""
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
        return _uncaught(exc.with_traceback(None))
    try:
        exec(code, main.__dict__)  # noqa: S102 - this is what python3 does
    except SystemExit:
        raise  # the interpreter's own exit path prints a message / picks the status, as for python3
    except BaseException as exc:  # noqa: BLE001 - an uncaught exception: traceback without our frame
        tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
        return _uncaught(exc.with_traceback(tb))
    return 0


def _uncaught(exc: BaseException) -> int:
    """What python3 does with an exception that reaches the top: sys.excepthook, then status 1 (or SIGINT)."""
    sys.excepthook(type(exc), exc, exc.__traceback__)
    if isinstance(exc, KeyboardInterrupt):  # python3 ends by SIGINT then
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return 1


# ----------------------------------------------------------------------------------------- warm-up


def _share_loader_caches() -> None:
    """Every botocore Loader whose existing search paths are the same shares one cache (this process only)."""
    from botocore import loaders

    caches: dict[tuple[Any, ...], dict[Any, Any]] = {}
    original = loaders.Loader.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if type(self) is loaders.Loader and type(self.file_loader) is loaders.JSONFileLoader:
            key = (tuple(p for p in self._search_paths if os.path.isdir(p)), tuple(self._extras_types))
            self._cache = caches.setdefault(key, {})

    loaders.Loader.__init__ = __init__  # type: ignore[method-assign]


def _warm_botocore() -> None:
    """Create the agent's clients and make one call of each, answered in-process (nothing is sent)."""
    import botocore.session
    from botocore.awsrequest import AWSResponse
    from botocore.config import Config

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    answers = {
        "GetSecretValue": (b'{"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:w-AbCdEf", "Name": "w",'
                           b' "SecretString": "{}", "VersionId": "v", "VersionStages": ["AWSCURRENT"],'
                           b' "CreatedDate": 1700000000.0}', "application/x-amz-json-1.1"),
        "GetCallerIdentity": (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                              b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/w</Arn>"
                              b"<UserId>AIDAW</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
                              b"<ResponseMetadata><RequestId>w</RequestId></ResponseMetadata>"
                              b"</GetCallerIdentityResponse>", "text/xml"),
    }

    def answer(request: Any, operation_name: str = "", **_: Any) -> Any:
        body, content_type = answers[operation_name]
        return AWSResponse(request.url, 200, {"Content-Type": content_type, "x-amzn-RequestId": "w"},
                           _Raw(body))

    def handler(**kwargs: Any) -> Any:
        event = kwargs.get("event_name", "")
        return answer(kwargs["request"], operation_name=event.rsplit(".", 1)[-1])

    # As the agent does: credentials from files, endpoint from AWS_ENDPOINT_URL; nothing leaves this process.
    config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10, read_timeout=30)
    credentials_file = os.path.abspath("warm-up-credentials")
    with open(credentials_file, "w") as handle:
        handle.write("[default]\naws_access_key_id = AKIAWARMUPWARMUPWARM\naws_secret_access_key = " + "w" * 40
                     + "\n[warmup]\naws_access_key_id = AKIAWARMUPWARMUPWARM\naws_secret_access_key = "
                     + "w" * 40 + "\n")
    saved = dict(os.environ)
    os.environ.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_SHARED_CREDENTIALS_FILE=credentials_file,
                      AWS_CONFIG_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true")
    try:
        session = botocore.session.get_session()
        secrets = session.create_client("secretsmanager", region_name="us-east-1", config=config)
        secrets.meta.events.register("before-send", handler)
        secrets.get_secret_value(SecretId="w", VersionStage="AWSCURRENT")
        profile = botocore.session.Session(profile="warmup")
        profile.set_config_variable("credentials_file", credentials_file)
        profile.set_config_variable("config_file", os.devnull)
        profile.get_credentials()
        sts = profile.create_client("sts", region_name="us-east-1", config=config)
        sts.meta.events.register("before-send", handler)
        sts.get_caller_identity()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.unlink(credentials_file)


def _preload_script(path: str) -> None:
    """Compile a program the servers will run and execute its module body once (not as __main__)."""
    import types

    with open(path, "rb") as handle:
        source = handle.read()
    module = types.ModuleType("_warm_preload")
    module.__file__ = path
    exec(_compile(source, path), module.__dict__)  # noqa: S102


def warm_up(preload: list[str]) -> None:
    global _locale
    _locale = tuple(os.environb.get(name) for name in LOCALE_VARS)
    for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr)):
        _saved_stdio[name] = (stream.encoding, stream.errors or "strict", stream.line_buffering,
                              stream.write_through)
    # Our own standard streams must never close fds 0-2, which children replace with the shim's.
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.open(0, "rb", closefd=False), encoding=sys.stdin.encoding)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.open(1, "wb", closefd=False),
                                                   encoding=sys.stdout.encoding, line_buffering=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.open(2, "wb", closefd=False),
                                                   encoding=sys.stderr.encoding, errors="backslashreplace",
                                                   line_buffering=True)
    # What the agent imports (and what botocore imports lazily when it creates clients and calls).
    import argparse  # noqa: F401
    import configparser  # noqa: F401
    import fcntl  # noqa: F401
    import json  # noqa: F401
    import ntpath  # noqa: F401
    import pwd  # noqa: F401
    import re  # noqa: F401
    import shutil as _shutil  # noqa: F401
    import subprocess as _subprocess  # noqa: F401
    import typing  # noqa: F401

    _share_loader_caches()
    _warm_botocore()
    for path in preload:
        try:
            _preload_script(path)
        except Exception as exc:  # noqa: BLE001 - a preload is an optimization only
            sys.stderr.write(f"warm_python: preload {path} failed: {type(exc).__name__}: {exc}\n")
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None
    import gc

    gc.collect()
    gc.freeze()  # children do not touch (copy) the warm objects when they collect garbage


def _main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] != "serve":
        sys.stderr.write("usage: warm_python.py serve SOCKET [--preload SCRIPT]...\n")
        return 2
    socket_path = argv[1]
    preload = [argv[i + 1] for i, a in enumerate(argv) if a == "--preload" and i + 1 < len(argv)]
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = ""  # not the sandbox package's directory: children set their own sys.path[0]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the agents through their shims
    warm_up(preload)
    job = serve(socket_path)  # returns in a forked child only
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return become(job)


if __name__ == "__main__":
    # Not main()'s try/finally: in a child, SystemExit and the exit status must reach the interpreter as for
    # python3 itself (exit path: threads joined, atexit, stdio flushed, SystemExit's code or message).
    sys.exit(_main(sys.argv[1:]))
