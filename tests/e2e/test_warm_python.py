"""The warm interpreter (sandbox/warm_python.py): its `python3` behaves like the real one for the forms the
document uses, falls back to the real one for the others, and a sandbox rotation passes with warm and cold
agents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import invariants
from sandbox.demo import Sandbox
from sandbox.warm_python_manager import WarmPython, _c_shim

REAL = str(Path(sys.executable).parent / "python3")
SHIMS = [pytest.param("c", marks=pytest.mark.skipif(_c_shim(REAL) is None, reason="no C compiler"))]


@pytest.fixture(scope="module", params=SHIMS)
def warm(request: pytest.FixtureRequest) -> Iterator[WarmPython]:
    python = WarmPython(shim=request.param).start()
    assert python.ready(), python.error
    assert python.shim_kind == request.param
    yield python
    python.stop()


def _env(bin_dir: str, **extra: str) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent", **extra}


def _both(warm: WarmPython, args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
          stdin: str | None = None, via_sh: bool = False) -> tuple[Any, Any]:
    """The same command with the warm python3 first on PATH, then with the real one."""
    results = []
    for bin_dir in (warm.bin_dir, str(Path(REAL).parent)):
        command = ["sh", "-c", args[0]] if via_sh else ["python3", *args]
        results.append(subprocess.run(command, cwd=cwd, env={**_env(bin_dir), **(env or {})}, input=stdin,
                                      capture_output=True, text=True, timeout=60, check=False))
    return results[0], results[1]


def _same(warm: WarmPython, args: list[str], tmp_path: Path, **kwargs: Any) -> Any:
    hot, cold = _both(warm, args, cwd=tmp_path, **kwargs)
    assert (hot.returncode, hot.stdout, hot.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    return hot


@pytest.mark.parametrize(("code", "status"), [
    ("pass", 0), ("import sys; sys.exit(3)", 3), ("import sys; sys.exit(300)", 44), ("raise SystemExit", 0),
    ("import sys; sys.exit(True)", 1), ("import sys; sys.exit(sys.version_info < (3, 8))", 0),
    ("raise SystemExit('a message')", 1), ("1 / 0", 1), ("x = ", 1),
    ("import os; os._exit(7)", 7),
    ("import atexit, sys; atexit.register(lambda: print('at exit')); sys.exit(5)", 5),
    ("import sys; print('out'); print('err', file=sys.stderr); sys.stdout.write('no newline')", 0),
])
def test_c_form_exit_status_and_output_are_python3s(warm: WarmPython, tmp_path: Path, code: str,
                                                    status: int) -> None:
    result = _same(warm, ["-c", code], tmp_path)
    assert result.returncode == status


def test_c_form_argv_environment_cwd_umask_and_stdin(warm: WarmPython, tmp_path: Path) -> None:
    code = ("import os, sys; print(sys.argv, repr(sys.path[0]), os.getcwd(), oct(os.umask(0)), __name__, "
            "sorted(globals()), os.environ['SSM_Profile'], os.environ.get('PYTHONHASHSEED'), "
            "sys.stdin.read())")
    result = _same(warm, [f"umask 027; python3 -c \"{code}\" 'arg one' two"], tmp_path,
                   via_sh=True, env={"SSM_Profile": "app"}, stdin="from stdin")
    assert "['-c', 'arg one', 'two'] '' " in result.stdout and "0o27" in result.stdout
    assert "from stdin" in result.stdout


def test_script_form_file_argv_path_and_traceback(warm: WarmPython, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "prog.py").write_text(
        '"""doc"""\nimport sys\n'
        "print(__file__, __name__, __doc__, sys.argv, sys.path[0], sorted(globals()))\n"
        "def fail():\n    raise ValueError('boom')\nif sys.argv[1:] == ['fail']:\n    fail()\n"
    )
    ok = _same(warm, ["d/prog.py", "--flag=x"], tmp_path)
    assert f"{tmp_path}/d/prog.py __main__ doc ['d/prog.py', '--flag=x'] {tmp_path}/d" in ok.stdout
    failed = _same(warm, [str(tmp_path / "d" / "prog.py"), "fail"], tmp_path)
    assert failed.returncode == 1 and failed.stderr.startswith("Traceback (most recent call last):\n  File")
    assert "warm_python" not in failed.stderr and "ValueError: boom" in failed.stderr


def test_future_flags_of_the_zygote_do_not_leak_into_programs(warm: WarmPython, tmp_path: Path) -> None:
    # warm_python.py uses `from __future__ import annotations`; a program must not inherit it
    result = _same(warm, ["-c", "def f(x: int): pass\nprint(f.__annotations__)"], tmp_path)
    assert result.stdout == "{'x': <class 'int'>}\n"


def test_a_signal_ends_the_program_like_python3(warm: WarmPython, tmp_path: Path) -> None:
    result = _same(warm, ["python3 -c 'import os, signal; os.kill(os.getpid(), signal.SIGTERM)'; echo $?"],
                   tmp_path, via_sh=True)
    assert result.stdout == "143\n"


def test_a_signal_to_python3_reaches_the_program(warm: WarmPython, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        ["python3", "-c", "import os, signal, sys, time\n"
         "signal.signal(signal.SIGTERM, lambda *a: (os.write(1, b'got TERM\\n'), sys.exit(9)))\n"
         "print('ready', flush=True)\ntime.sleep(60)"],
        cwd=tmp_path, env=_env(warm.bin_dir), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    # Known gap: a signal that reaches the shim before it has read the child's pid (a few ms after the fork)
    # ends the shim (and the zygote then kills the child) instead of reaching the program.
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 9
    assert proc.stdout.read() == "got TERM\n"


@pytest.mark.parametrize("args", [["-V"], ["-m", "json.tool", "--help"], ["-E", "-c", "print(1)"]])
def test_other_forms_run_the_real_interpreter(warm: WarmPython, tmp_path: Path, args: list[str]) -> None:
    _same(warm, args, tmp_path)


def test_python_variables_and_missing_scripts_go_to_the_real_interpreter(warm: WarmPython,
                                                                          tmp_path: Path) -> None:
    result = _same(warm, ["-c", "import sys; print(sys.flags.optimize)"], tmp_path,
                   env={"PYTHONOPTIMIZE": "1"})
    assert result.stdout == "1\n"
    hot, cold = _both(warm, ["no-such-script.py"], cwd=tmp_path)
    # the real interpreter runs (its argv[0] is its full path: sys.executable must be the real one)
    assert (hot.returncode, hot.stdout) == (cold.returncode, cold.stdout) == (2, "")
    assert hot.stderr == cold.stderr.replace("python3:", REAL + ":", 1)


@pytest.mark.parametrize("shim", SHIMS)
def test_without_the_zygote_the_shim_runs_the_real_interpreter(tmp_path: Path, shim: str) -> None:
    python = WarmPython(shim=shim).start()
    try:
        assert python.ready() and python._proc is not None
        python._proc.kill()  # the socket stays, nobody listens
        python._proc.wait()
        result = subprocess.run(["python3", "-c", "import sys; print(sys.orig_argv[0]); sys.exit(4)"],
                                cwd=tmp_path, env=_env(python.bin_dir), capture_output=True, text=True,
                                timeout=60, check=False)
        assert (result.returncode, result.stdout) == (4, REAL + "\n")
    finally:
        python.stop()


def test_stop_ends_the_zygote_and_removes_its_directory() -> None:
    python = WarmPython().start()
    assert python.ready()
    assert python._proc is not None
    pid, directory = python._proc.pid, python.dir
    python.stop()
    assert directory is not None and not directory.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --------------------------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("cold", [False, True], ids=["warm-agents", "cold-agents"])
def test_a_rotation_passes_with_warm_and_cold_agents(make_sandbox: Callable[..., Sandbox],
                                                    cold: bool) -> None:
    sandbox = make_sandbox(servers=3, cold_agents=cold)
    sandbox.run()
    report = sandbox.report(0.0)
    assert sandbox.fleet.agent_python == ("cold" if cold else "warm")
    assert report.result == "rotated", [vars(u) for u in report.users]
    assert report.violations == []
    assert report.agent_runs == 6
    assert invariants.check_all(sandbox.emulator, sandbox.deployment, sandbox.fleet) == []
