"""The engine ⇄ document ⇄ agent contract (agent_scripts/keyrotation/contract.py), by a round trip.

Each side takes its part of the contract from the one module; this test proves the parts fit by going the
whole way: the engine's SendCommand parameters (lambdas/rotation/fleet.py) → SSM's checks and ENV_VAR
interpolation (RE2 patterns of the rendered document, defaults, SSM_<Name> variables) → the rendered Linux
step under `sh` → the agent → its output back through the engine's reading of the invocation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import re2
from agent_support import Identity, Server, run_linux_step, write_credentials
from keyrotation import contract
from rotation import audit, fleet
from rotation.state import DocumentSettings

from ssm_documents import render

DESIGN = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()


class RecordingSsm:
    """SendCommand and ListCommandInvocations, as far as fleet.send / fleet.read_outcome use them: it keeps
    what was sent and answers with the output of the invocations the test ran."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.outputs: dict[str, tuple[str, str]] = {}

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return {"Command": {"CommandId": f"{len(self.sent):08d}-0000-0000-0000-000000000000"}}

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "CommandInvocations": [
                {"InstanceId": instance, "Status": status, "CommandPlugins": [{"Output": output}]}
                for instance, (status, output) in self.outputs.items()
            ]
        }


def ssm_interpolates(document: dict[str, Any], parameters: dict[str, list[str]]) -> dict[str, str]:
    """What SSM does with SendCommand's Parameters before a server sees them: every name must be a document
    parameter, a missing one takes its default (or the command is rejected), every value must match its
    allowedPattern (RE2); each then becomes the SSM_<Name> variable of the step."""
    spec = document["parameters"]
    assert set(parameters) <= set(spec), set(parameters) - set(spec)
    env = {}
    for name, declared in spec.items():
        values = parameters.get(name, [declared.get("default")])
        assert values != [None], f"SSM rejects the command: {name} is required"
        assert len(values) == 1 and isinstance(values[0], str), name
        assert re2.search(declared["allowedPattern"], values[0]), (name, values[0])
        env[f"SSM_{name}"] = values[0]
    return env


def run_on_server(server: Server, ssm: RecordingSsm, instance_id: str, workdir: Path) -> int:
    document = render.render_document()
    env = server.base_env()
    env.update(ssm_interpolates(document, ssm.sent[-1]["Parameters"]))
    proc = run_linux_step(document, workdir, env)
    ssm.outputs[instance_id] = ("Success" if proc.returncode == 0 else "Failed", proc.stdout + proc.stderr)
    return proc.returncode


def send(ssm: RecordingSsm, identity: Identity, action: str, key_id: str) -> None:
    fleet.send(
        ssm,  # type: ignore[arg-type]
        document="KeyRotation-RotateAccessKey",
        targets=["mi-00000000000000001"],
        secret_id=identity.secret_id,
        key_id=key_id,
        settings=DocumentSettings(
            credentials_file="/home/app/.aws/credentials", profile="app", file_owner="app", reload_hook=None
        ),
        action=action,  # type: ignore[arg-type]
        max_concurrency="50",
        timeout_seconds=600,
        comment="round trip",
    )


SERVER = "mi-00000000000000001"


def read(ssm: RecordingSsm, key_id: str) -> fleet.Outcome:
    """The engine's reading of the last command (check_distribution's poll)."""
    command_id = f"{len(ssm.sent):08d}-0000-0000-0000-000000000000"
    return fleet.read_outcome(ssm, [command_id], [SERVER], key_id)  # type: ignore[arg-type]


def test_a_rotation_goes_the_whole_way_and_back(server: Server, identity: Identity, tmp_path: Path) -> None:
    # GIVEN a server whose app profile holds the old key, and a secret whose AWSCURRENT is a new key
    old_key = identity.key_id
    path = write_credentials(
        server, f"[app]\naws_access_key_id = {old_key}\naws_secret_access_key = x\n".encode()
    )
    identity.rotate_secret()
    ssm = RecordingSsm()
    # WHEN the engine sends the rotate pass and the server runs the document with what SSM makes of it
    send(ssm, identity, "rotate", identity.key_id)
    assert run_on_server(server, ssm, SERVER, tmp_path / "rotate") == 0
    outcome = read(ssm, identity.key_id)
    # THEN the engine confirms the server, and the file holds the new key
    assert (outcome.confirmed, outcome.failed) == ((SERVER,), ())
    assert f"aws_access_key_id = {identity.key_id}\n" in path.read_text()
    # WHEN the verify pass and then an audit go the same way
    send(ssm, identity, "verify", identity.key_id)
    assert run_on_server(server, ssm, SERVER, tmp_path / "verify") == 0
    verified = read(ssm, identity.key_id)
    send(ssm, identity, "audit", identity.key_id)
    assert run_on_server(server, ssm, SERVER, tmp_path / "audit") == 0
    state, _detail = audit.classify_server(
        contract.parse_result(ssm.outputs[SERVER][1]), identity.key_id, {old_key}
    )
    # THEN verify confirms, and the audit reads the server as holding the current key
    assert verified.confirmed == (SERVER,)
    assert state == "current"


def test_an_agent_failure_comes_back_as_its_code(
    server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN the engine asks for a key the secret does not hold (a stale read)
    ssm = RecordingSsm()
    send(ssm, identity, "rotate", "AKIASTALESTALESTALE0")
    # WHEN the server runs it, THEN the agent's exit code and error are the contract's
    code = run_on_server(server, ssm, SERVER, tmp_path / "stale")
    assert code == contract.EXIT_CODES["stale_secret"]
    outcome = read(ssm, "AKIASTALESTALESTALE0")
    assert [f.reason.split(":")[0] for f in outcome.failed] == ["stale_secret"]


@pytest.mark.parametrize("failure", sorted(contract.LAUNCHER_FAILURES))
def test_every_launcher_failure_is_a_line_the_engine_reads(failure: str) -> None:
    """Each launcher prints the contract's line and exits with its code (run for real on Linux by
    tests/agent/test_agent_pythons.py::test_no_python_3_6_or_newer_is_reported)."""
    document = render.render_document()
    line = contract.launcher_line(failure)
    code = contract.EXIT_CODES[contract.LAUNCHER_FAILURES[failure][0]]
    scripts = [render.step_script(document, action) for action in render.SHELLS]
    assert any(line in script and f"exit {code}" in script for script in scripts), failure
    assert fleet.parse_result("noise\n" + line + "\n") == {
        "status": "error",
        "error": contract.LAUNCHER_FAILURES[failure][0],
        "message": contract.LAUNCHER_FAILURES[failure][1],
    }


def test_a_windows_server_reads_as_not_supported_and_nothing_runs() -> None:
    # GIVEN the document's Windows step (Windows servers are not supported yet; the engine refuses them)
    windows = render.step_script(render.render_document(), "aws:runPowerShellScript")
    # THEN it runs no agent and reads no parameter: it prints the contract's line and exits with its code
    commands = [line for line in windows.splitlines() if line and not line.startswith("#")]
    assert commands == [
        "Write-Output '" + contract.launcher_line("unsupported_platform") + "'",
        f"exit {contract.EXIT_CODES['unsupported_platform']}",
    ]
    printed = commands[0].removeprefix("Write-Output '").removesuffix("'")
    assert fleet.parse_result(printed) == {
        "status": "error", "error": "unsupported_platform", "message": "Windows servers are not supported yet"
    }


def test_the_design_document_names_the_contracts_parameters() -> None:
    section = DESIGN[DESIGN.index("## 4.") : DESIGN.index("## 5.")]
    named = set(re.findall(r"`([A-Z][a-z]+(?:[A-Z][a-z]+)*)`", section)) - {"String"}
    assert named == set(contract.PARAMETER_NAMES)
    assert f"`{contract.RESULT_MARKER}`" in DESIGN


def test_result_line_refuses_what_the_contract_does_not_have() -> None:
    with pytest.raises(ValueError, match="not result fields: secret"):
        contract.result_line(status="ok", secret="x")
    with pytest.raises(ValueError, match="error must be a code"):
        contract.result_line(status="error", error="made_up")
    with pytest.raises(ValueError, match="at most 1000"):
        contract.result_line(status="error", error="internal", message="x" * 1000)
    with pytest.raises(ValueError, match="not document parameters: Secret"):
        contract.command_parameters({"Secret": "x"})
    with pytest.raises(ValueError, match="SecretId is required"):
        contract.command_parameters({})
