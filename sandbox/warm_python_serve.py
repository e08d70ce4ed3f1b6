# ruff: noqa: PTH108, PTH120
# (the zygote works with file descriptors and os-level paths on purpose, like the agent)
"""The warm interpreter's zygote loop (sandbox/warm_python_manager.py explains the whole): accept the shims'
connections on a Unix socket (own uid only), receive each `python3` invocation (argv, environment, umask,
fds 0-2 and the current directory), refuse what a warm child cannot run the same way (the shim then runs the
real interpreter), fork a child for the rest, and send each shim its child's pid and, once reaped, its wait
status.

Part of the zygote (sandbox/warm_python.py imports it from its own directory): standard library only.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import stat
import struct
import sys
from typing import Any

PROTOCOL = b"KRW1"
LOCALE_VARS = (b"LC_ALL", b"LC_CTYPE", b"LANG")
_MAX_REQUEST = 4 * 1024 * 1024

_locale: tuple[bytes | None, ...] = ()


def remember_locale() -> None:
    """The locale the zygote started with: a request that brings another one runs the real interpreter."""
    global _locale
    _locale = tuple(os.environb.get(name) for name in LOCALE_VARS)


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
                    peer = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                    _pid, uid, _gid = struct.unpack("3i", peer)
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
                if fd not in by_conn and fd not in reading:
                    continue  # closed earlier in this same batch of events (e.g. its child was reaped)
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
                    if data:  # too large: the shim runs the real interpreter
                        job.conn.setblocking(True)
                        _send(job.conn, b"C")
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
    # our private directory (shim, socket, log) goes too, also when the sandbox died without stop()
    shutil.rmtree(os.path.dirname(socket_path), ignore_errors=True)
    raise SystemExit(0)

