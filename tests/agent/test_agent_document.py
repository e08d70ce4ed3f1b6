"""The Run Command document: its shape, its patterns, the inlined agent, and its Linux step run under `sh`."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import re2
from agent_support import (
    AGENT,
    APP_UID,
    Identity,
    Server,
    parse_single_result,
    run_linux_step,
    ssm_env,
    write_credentials,
)
from keyrotation import contract

from ssm_documents import render

PARAMETERS = list(contract.PARAMETER_NAMES)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return render.render_document()


def test_schema_description_and_parameters(document: dict[str, Any]) -> None:
    assert document["schemaVersion"] == "2.2"
    description = document["description"]
    assert description.startswith("# ")  # Markdown
    for name in PARAMETERS:
        assert f"`{name}`" in description
    assert "## Output" in description and "KEYROTATION_RESULT" in description
    assert list(document["parameters"]) == PARAMETERS
    for name, spec in document["parameters"].items():
        assert spec["type"] == "String", name
        assert spec["interpolationType"] == "ENV_VAR", name
        assert spec["allowedPattern"].startswith("^") and spec["allowedPattern"].endswith("$"), name
        assert spec["description"], name
        if "default" in spec:  # a default must itself be allowed, or SSM rejects every command
            assert re2.search(spec["allowedPattern"], spec["default"]), name
    assert document["parameters"]["ReloadHook"]["default"] == ""
    assert document["parameters"]["Action"]["default"] == "rotate"


def test_one_step_per_platform_with_preconditions(document: dict[str, Any]) -> None:
    steps = {step["action"]: step for step in document["mainSteps"]}
    assert set(steps) == {"aws:runShellScript", "aws:runPowerShellScript"}
    assert steps["aws:runShellScript"]["precondition"] == {"StringEquals": ["platformType", "Linux"]}
    assert steps["aws:runPowerShellScript"]["precondition"] == {"StringEquals": ["platformType", "Windows"]}


def test_scripts_read_parameters_only_from_quoted_ssm_variables(document: dict[str, Any]) -> None:
    linux = render.step_script(document, "aws:runShellScript")
    windows = render.step_script(document, "aws:runPowerShellScript")
    for script in (linux, windows):
        assert "{{" not in script  # no text interpolation of parameter values into the script
    # sh: every use is "${SSM_Name-}" inside a double-quoted word
    uses = re.findall(r"SSM_\w+", linux)
    quoted = re.findall(r'="\$\{SSM_(\w+)-\}"', linux)
    assert len(uses) == len(quoted) and sorted(quoted) == sorted(PARAMETERS)
    # PowerShell: Windows is not supported yet, the step reads no parameter and runs nothing
    assert "SSM_" not in windows


def test_linux_step_is_posix_sh(document: dict[str, Any], tmp_path: Path) -> None:
    script = tmp_path / "_script.sh"
    script.write_text(render.step_script(document, "aws:runShellScript"))
    subprocess.run(["dash", "-n", str(script)], check=True)
    for bashism in ("[[", "function ", "source ", "$'", "<<<", "pipefail", "${!"):
        assert bashism not in script.read_text(), bashism


def test_agent_and_contract_are_inlined_verbatim_and_document_fits(document: dict[str, Any]) -> None:
    assert not render.PLACEHOLDER.search(json.dumps(document))
    payloads_per_step = {}
    for step in document["mainSteps"]:
        payloads = [
            m for line in step["inputs"]["runCommand"] for m in re.findall(r"'([A-Za-z0-9+/=]{1000,})'", line)
        ]
        payloads_per_step[step["action"]] = len(payloads)
        if not payloads:
            continue
        assert len(payloads) == 1
        archive = zipfile.ZipFile(io.BytesIO(zlib.decompress(base64.b64decode(payloads[0]))))
        assert archive.namelist() == render.payload_files()
        assert "keyrotation/contract.py" in archive.namelist() and "keyrotation/main.py" in archive.namelist()
        for name in archive.namelist():
            assert archive.read(name) == (AGENT.parent / name).read_bytes(), name
    # one copy, for Linux (the Windows step only reports that Windows is not supported yet)
    assert payloads_per_step == {"aws:runShellScript": 1, "aws:runPowerShellScript": 0}
    assert len(json.dumps(document).encode()) < render.MAX_DOCUMENT_BYTES


def test_the_same_sources_render_the_same_document() -> None:
    # CloudFormation updates the document (a new version) only when its content changes
    assert json.dumps(render.render_document()) == json.dumps(render.render_document())


def test_render_returns_a_fresh_document_each_time() -> None:
    first = render.render_document()
    first["parameters"].clear()
    assert list(render.render_document()["parameters"]) == PARAMETERS
    assert list(render.document_parameters()) == PARAMETERS


def test_linux_step_rotates_a_file_end_to_end(
    document: dict[str, Any], server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN a server whose app profile holds the old key, and the secret's AWSCURRENT holds a new one
    old_key = identity.key_id
    path = write_credentials(
        server, f"[app]\naws_access_key_id = {old_key}\naws_secret_access_key = x\n".encode()
    )
    identity.rotate_secret()
    temp = tmp_path / "tmp"  # mktemp -d honours TMPDIR: the step's private copy of the agent goes here
    temp.mkdir()
    server.env["TMPDIR"] = str(temp)
    # WHEN the Linux step runs under sh with the engine's parameters
    proc = run_linux_step(
        document, server.path("/var/lib/amazon/ssm/doc"), ssm_env(server, server.params(identity))
    )
    # THEN it exits 0 with one result line naming the new key, and the file holds it
    assert proc.returncode == 0, proc.stderr
    result = parse_single_result(proc.stdout, proc.stderr)
    assert result["status"] == "ok" and result["access_key_id"] == identity.key_id != old_key
    assert f"aws_access_key_id = {identity.key_id}\n" in path.read_text()
    assert path.stat().st_uid == APP_UID
    # AND the verify action of the same step confirms it without writing
    before = path.read_bytes()
    proc = run_linux_step(
        document,
        server.path("/var/lib/amazon/ssm/doc2"),
        ssm_env(server, server.params(identity, Action="verify")),
    )
    assert proc.returncode == 0, proc.stderr
    assert parse_single_result(proc.stdout)["action"] == "verify"
    assert path.read_bytes() == before
    # AND the temporary copies of the agent are gone (from where mktemp put them)
    probe = subprocess.run(
        ["mktemp", "-d"], env={"TMPDIR": str(temp)}, capture_output=True, text=True, check=True
    )
    assert probe.stdout.startswith(str(temp))
    Path(probe.stdout.strip()).rmdir()
    assert list(temp.iterdir()) == []


def test_linux_step_failure_exits_non_zero_with_the_agent_code(
    document: dict[str, Any], server: Server, identity: Identity
) -> None:
    proc = run_linux_step(
        document,
        server.path("/var/lib/amazon/ssm/doc"),
        ssm_env(server, server.params(identity, ExpectedAccessKeyId="AKIASTALESTALESTALE0")),
    )
    assert proc.returncode == 4
    assert parse_single_result(proc.stdout)["error"] == "stale_secret"


def test_linux_step_skips_a_python_older_than_3_6(
    document: dict[str, Any], server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN the first python3 on PATH is too old (it fails the version probe and records how it was called)
    fake = tmp_path / "old-bin" / "python3"
    fake.parent.mkdir()
    log = tmp_path / "old-python.log"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexit 1\n')
    fake.chmod(0o755)
    env = ssm_env(server, server.params(identity))
    env["PATH"] = f"{fake.parent}:{env['PATH']}"
    # WHEN the step runs
    proc = run_linux_step(document, tmp_path / "work", env)
    # THEN another interpreter ran the agent; the old one was only probed
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == ["-c import sys; sys.exit(sys.version_info < (3, 6))"]
