"""A warm `python3` for the simulated servers: same programs, same semantics, without the start-up cost.

Why: every simulated server runs the document's Linux step, which starts `python3` three times per pass
(version probe, unpacker, agent), and the agent imports botocore and loads its JSON models: ≈ 0.3 s of CPU per
server and pass, almost all of it start-up work that is the same every time. The warm interpreter removes
that work without changing what runs: `sh` still runs the same `_script.sh`, which still finds `python3` on
PATH and runs the same code with the same arguments.

How (one file per part):
- `WarmPython` (this module, in the sandbox process) starts a **zygote** (sandbox/warm_python.py): a fresh,
  single-threaded interpreter (a new process, never forked from the multi-threaded sandbox) that imports what
  the agent imports, executes the agent's module body once (imports, regular expressions), compiles the
  agent's source, creates botocore clients for the two services the agent calls (a `before-send` hook answers
  their warm-up requests, so no request leaves the zygote) and installs a process-level cache shared by every
  botocore `Loader` with the same existing search paths (the JSON models are loaded once). It then listens on
  a Unix socket in a private (0700) directory (sandbox/warm_python_serve.py).
- A tiny `python3` **shim** (sandbox/warm_python_shim.c, compiled here; ≈ 0.5 ms of CPU per start) is put
  first on PATH for the simulated servers only. It sends its argv, environment, umask and file descriptors
  0/1/2 plus its current directory (`SCM_RIGHTS`) to the zygote; the zygote forks a child that becomes that
  `python3` (sandbox/warm_python_child.py): fds dup2'ed onto 0/1/2, fchdir, umask, `os.environ`,
  `sys.argv`/`sys.path[0]`/`sys.orig_argv`, fresh standard streams (same encoding, errors and buffering as the
  interpreter would choose), a fresh `__main__`; it runs `-c CODE` or `SCRIPT` (compiled without inheriting
  any `__future__` flag) and ends as python3 does (non-daemon threads joined, atexit callbacks, stdio flushed,
  `SystemExit` code or message, the program's objects released; the pre-imported modules are not torn down);
  an uncaught exception goes through `sys.excepthook` with the zygote's frames removed and exits 1. The
  zygote reaps the child and sends its wait status to the shim, which exits the same way (same code, or the
  same signal). Signals the shim receives (HUP, INT, QUIT, TERM, USR1, USR2) are forwarded to the child; if
  the shim dies, the child is killed.
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
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

COLD_ENV = "KEYROTATION_SANDBOX_COLD_AGENTS"
SHIM_ENV = "KEYROTATION_SANDBOX_SHIM"
ZYGOTE = Path(__file__).resolve().parent / "warm_python.py"
# The shim in C (≈ 0.5 ms instead of ≈ 9 ms of CPU per start for a Python one), built when a C compiler is
# available. It finds the zygote's socket next to its own directory (/proc/self/exe), so one build serves
# every WarmPython.
SHIM_SOURCE = Path(__file__).resolve().parent / "warm_python_shim.c"

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
        source.write_text(f"#define REAL_PYTHON {literal}\n" + SHIM_SOURCE.read_text())
        binary = Path(tmp) / "python3"
        try:
            subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=True, capture_output=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
        return binary.read_bytes()


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
        command = [self.real_python, str(ZYGOTE), "serve", self.socket_path]
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
