"""The agent on every CPython a server may have: 3.6 (RHEL 8's /usr/libexec/platform-python, Ubuntu 18.04)
to 3.13, run as the document runs it: the Linux step under `sh` probes for an interpreter, unpacks the agent
with it and runs it.

The interpreters are pyenv's (`$(pyenv root)/versions/3.X.*/bin/python3.X`); a missing one is skipped with
the reason. The step's PATH holds that interpreter as its only `python3`, so the probe must choose it. An
interpreter that can import botocore must make the agent use botocore (no AWS CLI call); one that cannot (the
old ones: botocore has left them behind) must make it fall back to the AWS CLI on its own.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_support import (
    APP_GID,
    APP_UID,
    VENV_BIN,
    Identity,
    Server,
    botocore_keys,
    parse_single_result,
    run_linux_step,
    snapshot,
    ssm_env,
    write_credentials,
)
from keyrotation import contract

from ssm_documents import render

SUPPORTED = ["3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]
PROBE = "-c import sys; sys.exit(sys.version_info < (3, 6))"
# The candidates the step tries by absolute path, in its order; RHEL 8's system Python comes last.
ABSOLUTE_CANDIDATES = ["/usr/bin/python3", "/usr/local/bin/python3", "/usr/libexec/platform-python"]
OTHERS = (
    b"# another daemon's key\n[other]\naws_access_key_id = AKIAOTHEROTHEROTHER0\naws_secret_access_key = o\n"
)


@dataclass(frozen=True)
class Python:
    version: str  # "3.6"
    path: Path
    has_botocore: bool


@functools.cache
def pyenv_versions() -> Path | None:
    """`$(pyenv root)/versions`, or None without pyenv."""
    root = os.environ.get("PYENV_ROOT", "")
    if not root and shutil.which("pyenv"):
        proc = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=60)
        root = proc.stdout.strip() if proc.returncode == 0 else ""
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    return versions if versions.is_dir() else None


@functools.cache
def find_python(version: str) -> Python | None:
    """The newest pyenv CPython `version`.x (release builds only), checked to be that version."""
    versions = pyenv_versions()
    if versions is None:
        return None
    found = []
    for binary in versions.glob(f"{version}.*/bin/python{version}"):
        match = re.fullmatch(re.escape(version) + r"\.(\d+)", binary.parent.parent.name)
        if match and os.access(binary, os.X_OK):
            found.append((int(match.group(1)), binary))
    if not found:
        return None
    path = max(found)[1]
    reported = subprocess.run(
        [str(path), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()
    assert reported == version, f"{path} reports Python {reported}"
    botocore_probe = subprocess.run(
        [str(path), "-c", "import botocore.session"], capture_output=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    return Python(version, path, botocore_probe.returncode == 0)


def require_python(version: str) -> Python:
    python = find_python(version)
    if python is None:
        where = pyenv_versions() or "pyenv (not installed)"
        pytest.skip(f"no CPython {version} in {where}: the agent is not tested on {version} here")
    return python


@pytest.fixture(params=SUPPORTED, ids=[f"py{v}" for v in SUPPORTED])
def python(request: pytest.FixtureRequest) -> Python:
    return require_python(request.param)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return render.render_document()


def logging_wrapper(path: Path, target: Path | str, log: Path) -> Path:
    """An executable at `path` that appends its arguments to `log`, then execs `target` with them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{target}" "$@"\n')
    path.chmod(0o755)
    return path


def step_bin(tmp_path: Path, pythons: dict[str, Path]) -> Path:
    """A PATH directory with only what the step and the agent need: the given pythons (by name, each logging
    to <tmp>/<name>.log), the AWS CLI (logging to <tmp>/aws.log), mktemp and rm."""
    bin_dir = tmp_path / "bin"
    for name, target in pythons.items():
        logging_wrapper(bin_dir / name, target, tmp_path / f"{name}.log")
    logging_wrapper(bin_dir / "aws", VENV_BIN / "aws", tmp_path / "aws.log")
    for tool in ("mktemp", "rm"):
        found = shutil.which(tool, path="/usr/bin:/bin")
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    return bin_dir


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def ran_the_agent(log: Path) -> bool:
    """The wrapper at `log` was probed, unpacked the agent and ran it: the step chose that interpreter."""
    lines = calls(log)
    return (
        len(lines) == 3
        and lines[0] == PROBE
        and lines[1].startswith("-c import base64")
        and "/keyrotation_agent.py --secret-id=" in lines[2]
    )


def with_candidates_under(document: dict[str, Any], fake_root: Path) -> dict[str, Any]:
    """The document whose Linux step looks for its absolute-path candidates under `fake_root` instead of `/`
    (the machine's own /usr/bin/python3 must not be found)."""
    changed = copy.deepcopy(document)
    step = next(s for s in changed["mainSteps"] if s["action"] == "aws:runShellScript")
    lines = step["inputs"]["runCommand"]
    index = next(i for i, line in enumerate(lines) if line.startswith("for candidate in "))
    absolute = re.compile(r"(?<= )/[^ ;]+")
    assert absolute.findall(lines[index]) == ABSOLUTE_CANDIDATES, lines[index]
    lines[index] = absolute.sub(lambda match: str(fake_root) + match.group(0), lines[index])
    return changed


def test_every_supported_python_rotates_verifies_and_refuses(
    document: dict[str, Any], python: Python, server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN a server whose only python3 is this interpreter, with an old key for app next to another profile
    old = OTHERS + b"\n[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = oldsecret\n"
    path = write_credentials(server, old)
    identity.rotate_secret()
    bin_dir = step_bin(tmp_path, {"python3": python.path})
    env = ssm_env(server, server.params(identity))
    env["PATH"] = str(bin_dir)

    # WHEN the document's Linux step rotates
    proc = run_linux_step(document, tmp_path / "rotate", env)

    # THEN the step chose this interpreter and the agent rotated the profile with it
    assert proc.returncode == 0, proc.stderr
    assert ran_the_agent(tmp_path / "python3.log"), calls(tmp_path / "python3.log")
    result = parse_single_result(proc.stdout, proc.stderr)
    assert (result["status"], result["action"], result["changed"]) == ("ok", "rotate", True)
    assert result["access_key_id"] == identity.key_id
    assert result["caller_arn"].endswith(":user/keyrotation/" + identity.user)
    assert identity.secret_key not in proc.stdout + proc.stderr
    assert botocore_keys(path, "app") == (identity.key_id, identity.secret_key)
    assert botocore_keys(path, "other") == ("AKIAOTHEROTHEROTHER0", "o")
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, APP_UID, APP_GID)
    assert path.with_name("credentials.keyrotation-backup").read_bytes() == old
    # AND it used botocore where this interpreter has it, else the AWS CLI (found on PATH by itself)
    aws_calls = calls(tmp_path / "aws.log")
    if python.has_botocore:
        assert aws_calls == []
    else:
        assert any(c.startswith("secretsmanager get-secret-value") for c in aws_calls), aws_calls
        assert any(c.startswith("sts get-caller-identity --profile app") for c in aws_calls), aws_calls

    # WHEN the step verifies the profile THEN it confirms the key and writes nothing
    rotated = path.read_bytes()
    proc = run_linux_step(
        document, tmp_path / "verify", dict(env, SSM_Action="verify", SSM_ExpectedAccessKeyId=identity.key_id)
    )
    assert proc.returncode == 0, proc.stderr
    result = parse_single_result(proc.stdout, proc.stderr)
    assert (result["status"], result["action"], result["access_key_id"]) == ("ok", "verify", identity.key_id)
    assert path.read_bytes() == rotated

    # WHEN the step is pointed at the SSM Agent's own credentials (profile default), or at a symlink
    server.path("/root/.aws").mkdir(mode=0o700)
    server.path("/root/.aws/credentials").write_bytes(
        b"[default]\naws_access_key_id = AKIASSMAGENTSSMAGENT\n"
    )
    server.path("/home/app/.aws/linked").symlink_to(path)
    before = snapshot(server.root)
    for overrides, code, why in (
        (
            {
                "SSM_CredentialsFile": "/root/.aws/credentials",
                "SSM_Profile": "default",
                "SSM_FileOwner": "root",
            },
            "refused_agent_file",
            "SSM Agent",
        ),
        ({"SSM_CredentialsFile": "/home/app/.aws/linked"}, "unsafe_path", "symlink"),
    ):
        proc = run_linux_step(document, tmp_path / code, dict(env, **overrides))
        # THEN it refuses with exit 3, the reason, and every file exactly as it was
        result = parse_single_result(proc.stdout, proc.stderr)
        assert (proc.returncode, result["status"], result["error"]) == (3, "error", code), result
        assert why in result["message"]
        assert snapshot(server.root) == before


def test_rhel8_platform_python_is_used_when_there_is_no_python3(
    document: dict[str, Any], server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN a RHEL 8 server: no python3 anywhere, only the system Python 3.6 at /usr/libexec/platform-python
    python36 = require_python("3.6")
    fake_root = tmp_path / "fake-root"
    platform_log = tmp_path / "platform-python.log"
    logging_wrapper(fake_root / "usr/libexec/platform-python", python36.path, platform_log)
    env = ssm_env(server, server.params(identity))
    env["PATH"] = str(step_bin(tmp_path, {}))
    # WHEN the Linux step runs
    proc = run_linux_step(with_candidates_under(document, fake_root), tmp_path / "work", env)
    # THEN platform-python ran the agent, which rotated the profile
    assert proc.returncode == 0, proc.stderr
    assert ran_the_agent(platform_log), calls(platform_log)
    assert parse_single_result(proc.stdout, proc.stderr)["status"] == "ok"
    assert botocore_keys(server.path("/home/app/.aws/credentials"), "app")[0] == identity.key_id


def test_the_newest_python_on_path_is_preferred(
    document: dict[str, Any], server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN no python3, but python3.6, python3.8 and python3.13 on PATH (and a platform-python)
    pythons = {f"python{v}": require_python(v).path for v in ("3.6", "3.8", "3.13")}
    fake_root = tmp_path / "fake-root"
    platform = fake_root / "usr/libexec/platform-python"
    logging_wrapper(platform, pythons["python3.6"], tmp_path / "platform.log")
    env = ssm_env(server, server.params(identity))
    env["PATH"] = str(step_bin(tmp_path, pythons))
    # WHEN the Linux step runs
    proc = run_linux_step(with_candidates_under(document, fake_root), tmp_path / "work", env)
    # THEN python3.13 ran the agent; no other interpreter was even probed
    assert proc.returncode == 0, proc.stderr
    assert ran_the_agent(tmp_path / "python3.13.log"), calls(tmp_path / "python3.13.log")
    for other in ("python3.6.log", "python3.8.log", "platform.log"):
        assert calls(tmp_path / other) == [], other


def test_no_python_3_6_or_newer_is_reported(
    document: dict[str, Any], server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN a server whose python3 is too old: Python 2.7 when pyenv has it, else a stand-in failing the probe
    versions = pyenv_versions()
    python27 = next(iter(sorted(versions.glob("2.7.*/bin/python2.7"))), None) if versions else None
    if python27 is None:
        python27 = tmp_path / "old-python"
        python27.write_text("#!/bin/sh\nexit 1\n")
        python27.chmod(0o755)
    env = ssm_env(server, server.params(identity))
    env["PATH"] = str(step_bin(tmp_path, {"python3": python27}))
    before = snapshot(server.root)
    # WHEN the Linux step runs
    proc = run_linux_step(with_candidates_under(document, tmp_path / "fake-root"), tmp_path / "work", env)
    # THEN it fails with exit 20 and says why; the old python3 was only probed; nothing changed
    assert proc.returncode == contract.EXIT_CODES["no_python"], proc.stderr
    result = parse_single_result(proc.stdout, proc.stderr)
    assert (result["status"], result["error"]) == ("error", "no_python")
    assert result["message"] == contract.LAUNCHER_FAILURES["no_python"][1]
    assert calls(tmp_path / "python3.log") == [PROBE]
    assert snapshot(server.root) == before


def test_a_botocore_without_retry_modes_still_gets_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore < 1.15 (Ubuntu 18.04's python3-botocore on Python 3.6) refuses retries={"mode": ...} with
    InvalidRetryConfigurationError: the agent must then use the legacy retries, not fail every call.
    (Checked by hand with botocore 1.12.253 and 1.26.10 on Python 3.6; this stands in for the old Config.)"""

    import botocore.config
    from botocore.exceptions import InvalidRetryConfigurationError

    real_config = botocore.config.Config

    def old_config(*args: Any, **kwargs: Any) -> Any:
        if "mode" in (kwargs.get("retries") or {}):
            raise InvalidRetryConfigurationError(retry_config_option="mode", valid_options="max_attempts")
        return real_config(*args, **kwargs)

    monkeypatch.setattr(botocore.config, "Config", old_config)
    monkeypatch.setenv("KEYROTATION_AWS_CLIENT", "botocore")
    from keyrotation.aws import AwsClient

    config = AwsClient()._config()
    assert config.retries == {"max_attempts": 4}
    assert (config.connect_timeout, config.read_timeout) == (10, 30)
