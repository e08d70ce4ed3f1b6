# ruff: noqa: PTH100, PTH103, PTH108, PTH109, PTH111, PTH112, PTH118, PTH120, PTH123, SIM115
# (the zygote works with file descriptors, os-level paths and raw streams on purpose, like the agent)
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
  or `SCRIPT` (compiled without inheriting any `__future__` flag) and ends as python3 does (non-daemon
  threads joined, atexit callbacks, stdio flushed, `SystemExit` code or message, the program's objects
  released; the pre-imported modules are not torn down); an uncaught exception goes through `sys.excepthook`
  with the zygote's frames removed and exits 1. The zygote reaps the
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
from typing import Any, NoReturn

COLD_ENV = "KEYROTATION_SANDBOX_COLD_AGENTS"
SHIM_ENV = "KEYROTATION_SANDBOX_SHIM"
PROTOCOL = b"KRW1"
FORWARDED_SIGNALS = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2")
LOCALE_VARS = (b"LC_ALL", b"LC_CTYPE", b"LANG")
_MAX_REQUEST = 4 * 1024 * 1024



# The same shim in C (≈ 0.5 ms instead of ≈ 9 ms of CPU per start), used when a C compiler is available. It
# finds the zygote's socket next to its own directory (/proc/self/exe), so one build serves every WarmPython.
_C_SHIM = r"""/* The sandbox's warm python3 (sandbox/warm_python.py), compiled: the Python shim's protocol. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static volatile pid_t child = 0;
static char **args;

static void cold(void) {
    args[0] = (char *)REAL_PYTHON;
    execv(REAL_PYTHON, args);
    perror(REAL_PYTHON);
    _exit(127);
}

static void forward(int sig) {
    if (child > 0) kill(child, sig);
}

struct buf { char *data; size_t len, cap; };

static void put(struct buf *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) cold();
        b->data = p; b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void field(struct buf *b, const char *s, int first) {
    if (!first) put(b, "", 1);
    put(b, s, strlen(s));
}

int main(int argc, char **argv) {
    args = argv;
    if (argc < 2) cold();
    int form_c = strcmp(argv[1], "-c") == 0 && argc > 2;
    int form_script = argv[1][0] != '-' && argv[1][0] != '\0';
    if (!form_c && !form_script) cold();
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) == -1) cold();
    /* The zygote's socket is next to our directory: <dir>/bin/python3 -> <dir>/zygote.sock */
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) cold();
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (!slash) cold();
    *slash = '\0';
    slash = strrchr(self, '/');
    if (!slash) cold();
    *slash = '\0';
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(self) + strlen("/zygote.sock") >= sizeof addr.sun_path) cold();
    strcpy(addr.sun_path, self);
    strcat(addr.sun_path, "/zygote.sock");
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) cold();
    int here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (here < 0) cold();
    mode_t mask = umask(0);
    umask(mask);

    struct buf body = {0};
    char num[32];
    field(&body, "1", 1);
    snprintf(num, sizeof num, "%u", (unsigned)mask);
    field(&body, num, 0);
    field(&body, argv[0], 0);
    snprintf(num, sizeof num, "%d", argc - 1);
    field(&body, num, 0);
    for (int i = 1; i < argc; i++) field(&body, argv[i], 0);
    for (char **e = environ; *e; e++) field(&body, *e, 0);

    struct buf msg = {0};
    put(&msg, "KRW1", 4);
    uint32_t length = htonl((uint32_t)body.len);
    put(&msg, (const char *)&length, 4);
    put(&msg, body.data, body.len);

    int fds[4] = {0, 1, 2, here};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec iov = {msg.data, msg.len};
    struct msghdr mh = {0};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(cm), fds, sizeof fds);
    ssize_t sent;
    do sent = sendmsg(sock, &mh, 0); while (sent < 0 && errno == EINTR);
    if (sent < 0) cold();
    size_t done = (size_t)sent;
    while (done < msg.len) {
        ssize_t w = send(sock, msg.data + done, msg.len - done, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) cold();
        done += (size_t)w;
    }
    close(here);

    unsigned char in[64];
    size_t have = 0;
    for (;;) {
        ssize_t r = recv(sock, in + have, sizeof in - have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            /* Never fall back once the request is sent: the program may already run (not twice). */
            static const char lost[] = "python3 (sandbox warm interpreter): lost the interpreter process\n";
            if (write(2, lost, sizeof lost - 1) < 0) _exit(1);
            _exit(1);
        }
        have += (size_t)r;
        while (have > 0) {
            if (in[0] == 'C') cold();
            if (have < 5) break;
            int32_t value;
            memcpy(&value, in + 1, 4);
            value = (int32_t)ntohl((uint32_t)value);
            unsigned char kind = in[0];
            memmove(in, in + 5, have - 5);
            have -= 5;
            if (kind == 'P') {
                child = value;
                int signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_handler = forward;
                sa.sa_flags = SA_RESTART;
                sigemptyset(&sa.sa_mask);
                for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++)
                    sigaction(signals[i], &sa, NULL);
            } else if (kind == 'S') {
                int status = value;
                if (WIFSIGNALED(status)) {
                    int sig = WTERMSIG(status);
                    signal(sig, SIG_DFL);
                    sigset_t set;
                    sigemptyset(&set);
                    sigaddset(&set, sig);
                    sigprocmask(SIG_UNBLOCK, &set, NULL);
                    kill(getpid(), sig);
                    _exit(128 + sig);
                }
                _exit(WEXITSTATUS(status));
            }
        }
    }
}
"""
_c_shims: dict[str, bytes | None] = {}
_c_shims_lock = threading.Lock()


def _c_shim(real_python: str) -> bytes | None:
    """The compiled C shim for `real_python` (built once per process), or None without a working compiler."""
    with _c_shims_lock:
        if real_python not in _c_shims:
            _c_shims[real_python] = _build_c_shim(real_python)
        return _c_shims[real_python]


def _build_c_shim(real_python: str) -> bytes | None:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler or not real_python.isascii() or not real_python.isprintable():
        return None
    literal = '"' + real_python.replace("\\", "\\\\").replace('"', '\\"') + '"'
    with tempfile.TemporaryDirectory(prefix="kr-shim-") as tmp:
        source = Path(tmp) / "shim.c"
        source.write_text(f"#define REAL_PYTHON {literal}\n" + _C_SHIM)
        binary = Path(tmp) / "python3"
        try:
            subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=True, capture_output=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return binary.read_bytes()

# ============================================================================ the sandbox side (manager)


class WarmPython:
    """Starts and stops the zygote; hands out the PATH entry that holds the shim."""

    def __init__(self, real_python: str | None = None, preload: list[str] | None = None,
                 start_timeout: float = 120.0, shim: str | None = None) -> None:
        venv_python3 = Path(sys.executable).parent / "python3"
        self.real_python = real_python or (str(venv_python3) if venv_python3.exists() else sys.executable)
        self.preload = list(preload or [])
        self.start_timeout = start_timeout
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._ready: bool | None = None
        self.error: str | None = None
        # The shim is a small C program; without a working C compiler the fleet runs the real python3.
        # (A pure-Python shim existed; under load it could show a program's output twice: removed.)
        self.shim = shim or os.environ.get(SHIM_ENV, "c")
        self.shim_kind = ""  # what start() installed: "c", or "" when none could be built

    @property
    def bin_dir(self) -> str:
        assert self.dir is not None  # noqa: S101 - set by start()
        return str(self.dir / "bin")

    @property
    def socket_path(self) -> str:
        assert self.dir is not None  # noqa: S101 - set by start()
        return str(self.dir / "zygote.sock")

    def start(self) -> WarmPython:
        """Spawn the zygote (a new interpreter, not a fork of this process); `ready()` waits for it."""
        self.dir = Path(tempfile.mkdtemp(prefix="kr-warm-"))  # short path: a Unix socket path has ≤ 107 bytes
        (self.dir / "bin").mkdir()
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
        # The shim, while the zygote warms up.
        shim = self.dir / "bin" / "python3"
        compiled = _c_shim(self.real_python) if self.shim in ("auto", "c") else None
        if compiled is None:
            self.error = "no C compiler to build the python3 shim: the servers run the real python3"
            self._ready = False
            return self
        shim.write_bytes(compiled)
        self.shim_kind = "c"
        shim.chmod(0o755)
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
            assert self.dir is not None  # noqa: S101 - set by start()
            return (self.dir / "zygote.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None  # noqa: S101 - set by start()
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
# stream name -> encoding, errors, line_buffering, write_through (as the interpreter chose at start-up)
_saved_stdio: dict[str, tuple[str, str, bool, bool]] = {}
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


# ----------------------------------------------------------------------------------------- warm-up


def _share_botocore_caches() -> None:
    """Process-level botocore caches (sandbox/moto/botocore_caches.py), applied through the sandbox's patch
    registry: a botocore other than the pinned one fails the warm-up, and the servers run the real python3.

    The sandbox's modules are imported from the checkout and forgotten again: the programs the children run
    find neither them nor the checkout on their path, as under a cold interpreter.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    try:
        from sandbox.moto import botocore_caches, registry
    finally:
        sys.path.remove(root)
        for name in [n for n in sys.modules if n == "sandbox" or n.startswith("sandbox.")]:
            del sys.modules[name]
    registry.apply(botocore_caches.patches())


class _FakeAws:
    """Answers the agent's two calls inside this process (a `before-send` handler): nothing is sent."""

    KEY_ID = "AKIAWARMUPWARMUPWARM"
    SECRET = "warmup/" + "w" * 33

    def __init__(self) -> None:
        import json

        self.answers = {
            "GetSecretValue": (json.dumps({
                "ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:warmup-AbCdEf", "Name": "warmup",
                "SecretString": json.dumps({"aws_access_key_id": self.KEY_ID,
                                            "aws_secret_access_key": self.SECRET}),
                "VersionId": "v", "VersionStages": ["AWSCURRENT"], "CreatedDate": 1700000000.0,
            }).encode(), "application/x-amz-json-1.1"),
            "GetCallerIdentity": (b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                                  b"<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/warmup</Arn>"
                                  b"<UserId>AIDAWARMUP</UserId><Account>123456789012</Account>"
                                  b"</GetCallerIdentityResult><ResponseMetadata><RequestId>w</RequestId>"
                                  b"</ResponseMetadata></GetCallerIdentityResponse>", "text/xml"),
        }

    def __call__(self, **kwargs: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        operation = kwargs.get("event_name", "").rsplit(".", 1)[-1]
        body, content_type = self.answers[operation]

        class Raw:
            def stream(self, **_: Any) -> Any:
                yield body

        headers = {"Content-Type": content_type, "x-amzn-RequestId": "w"}
        return AWSResponse(kwargs["request"].url, 200, headers, Raw())

    def on_session(self, session: Any) -> None:
        session.register("before-send", self)


@contextlib.contextmanager
def _rehearsal_environment(root: str) -> Any:
    """A throwaway server root and the environment the SSM Agent gives the agent; all restored after."""
    import botocore

    fake = _FakeAws()
    for directory in ("etc", "root/.aws", "home/app/.aws"):
        os.makedirs(os.path.join(root, directory), mode=0o700, exist_ok=True)
    with open(os.path.join(root, "etc/passwd"), "w") as handle:
        handle.write(f"root:x:0:0:root:/root:/bin/sh\napp:x:{os.getuid()}:{os.getgid()}:app:/home/app:/bin/sh\n")
    agent_credentials = os.path.join(root, "root/.aws/credentials")
    with open(agent_credentials, "w") as handle:
        handle.write(f"[default]\naws_access_key_id = {fake.KEY_ID}\naws_secret_access_key = {fake.SECRET}\n")
    with open(os.path.join(root, "home/app/.aws/credentials"), "w") as handle:  # an older key, replaced
        handle.write("[app]\naws_access_key_id = AKIAWARMUPOLDKEYWARM\n"
                     "aws_secret_access_key = " + "o" * 40 + "\n")
    saved_env, saved_umask, saved_cwd = dict(os.environ), os.umask(0o077), os.getcwd()
    os.environ.update(KEYROTATION_ROOT=root, HOME=os.path.join(root, "root"), AWS_ENDPOINT_URL="http://127.0.0.1:9",
                      AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1",
                      AWS_SHARED_CREDENTIALS_FILE=agent_credentials,
                      AWS_CONFIG_FILE=os.path.join(root, "root/.aws/config"),
                      AWS_EC2_METADATA_DISABLED="true",
                      KEYROTATION_VERIFY_TIMEOUT="0", KEYROTATION_LOCK_TIMEOUT="0")
    botocore.register_initializer(fake.on_session)
    try:
        yield fake
    finally:
        botocore.unregister_initializer(fake.on_session)
        os.environ.clear()
        os.environ.update(saved_env)
        os.umask(saved_umask)
        os.chdir(saved_cwd)
        shutil.rmtree(root, ignore_errors=True)


def _preload_script(path: str) -> Any:
    """Compile a program the servers will run and execute its module body once (not as __main__)."""
    import types

    with open(path, "rb") as handle:
        source = handle.read()
    module = types.ModuleType("_warm_preload")
    module.__file__ = path
    # Its own modules beside it (the agent's keyrotation_contract), as when it runs: they stay imported.
    sys.path.insert(0, os.path.dirname(path))
    try:
        exec(_compile(source, path), module.__dict__)  # noqa: S102
    finally:
        sys.path.remove(os.path.dirname(path))
    return module


def _rehearse_agent(module: Any) -> None:
    """Run the agent once (rotate, then verify) against a throwaway root and in-process answers, so that what
    it compiles, imports and caches on its way (regular expressions, lazy imports) is in the zygote."""
    root = os.path.abspath("rehearsal")
    with _rehearsal_environment(root) as fake, contextlib.redirect_stdout(io.StringIO()) as out, \
            contextlib.redirect_stderr(io.StringIO()):
        common = ["--secret-id=arn:aws:secretsmanager:us-east-1:123456789012:secret:warmup-AbCdEf",
                  "--credentials-file=/home/app/.aws/credentials", "--profile=app", "--file-owner=app",
                  "--reload-hook="]
        codes = [module.main(common + ["--expected-access-key-id=", "--action=rotate"]),
                 module.main(common + [f"--expected-access-key-id={fake.KEY_ID}", "--action=verify"])]
    if codes != [0, 0]:
        raise RuntimeError(f"agent rehearsal exited {codes}: {out.getvalue()[-500:]}")


def warm_up(preload: list[str]) -> None:
    global _locale
    _locale = tuple(os.environb.get(name) for name in LOCALE_VARS)
    for name, stream in (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr)):
        _saved_stdio[name] = (stream.encoding, stream.errors or "strict", stream.line_buffering,
                              stream.write_through)
    # Our own standard streams must never close fds 0-2, which children replace with the shim's.
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(open(0, "rb", closefd=False), encoding=sys.stdin.encoding)
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(open(1, "wb", closefd=False),
                                                   encoding=sys.stdout.encoding, line_buffering=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(open(2, "wb", closefd=False),
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

    import botocore.config  # noqa: F401
    import botocore.session  # noqa: F401

    "127.0.0.1".encode("idna")
    _share_botocore_caches()
    for path in preload:
        try:
            module = _preload_script(path)
            if hasattr(module, "main") and hasattr(module, "format_result"):  # the agent
                _rehearse_agent(module)
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
    become(job)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
