"""Contracts between the engine (lambdas/rotation/fleet.py), the Run Command document and the agent
(docs/design.md §4 and §5): the parameter names in both directions, values the engine sends pass the
document's patterns (RE2, as SSM enforces them), the document passes each parameter to the agent's matching
flag, and the result line the agent prints is the one the engine parses and confirms."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path
from typing import Any

import pytest
import re2
from rotation import fleet
from rotation.state import DocumentSettings

from ssm_documents import render

REPO = Path(__file__).resolve().parents[2]
AGENT_PATH = REPO / "agent_scripts" / "keyrotation_agent.py"
DESIGN = (REPO / "docs" / "design.md").read_text()


def load_agent() -> Any:
    spec = importlib.util.spec_from_file_location("keyrotation_agent_contract", AGENT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


AGENT = load_agent()
DOCUMENT = render.render_document()
DOCUMENT_PARAMETERS = DOCUMENT["parameters"]


def design_parameter_names() -> set[str]:
    section = DESIGN[DESIGN.index("## 4.") : DESIGN.index("## 5.")]
    names = set(re.findall(r"`([A-Z][a-z]+(?:[A-Z][a-z]+)*)`", section))
    return names - {"String"}


class RecordingSsm:
    """Just enough of an SSM client for fleet.send / fleet.read_outcome."""

    def __init__(self, outputs: dict[str, tuple[str, str]] | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.outputs = outputs or {}

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        self.sent.append(kwargs)
        return {"Command": {"CommandId": f"cmd-{len(self.sent)}"}}

    def list_command_invocations(self, **kwargs: Any) -> dict[str, Any]:
        return {
            "CommandInvocations": [
                {"InstanceId": instance, "Status": status, "CommandPlugins": [{"Output": output}]}
                for instance, (status, output) in self.outputs.items()
            ]
        }


def engine_parameters(secret_id: str, reload_hook: str | None, action: str) -> dict[str, list[str]]:
    ssm = RecordingSsm()
    fleet.send(
        ssm,  # type: ignore[arg-type]
        document="KeyRotation-RotateAccessKey",
        targets=["mi-0123456789abcdef0"],
        secret_id=secret_id,
        key_id="AKIAIOSFODNN7EXAMPLE",
        settings=DocumentSettings(
            credentials_file="/home/app/.aws/credentials",
            profile="app",
            file_owner="app",
            reload_hook=reload_hook,
        ),
        action=action,  # type: ignore[arg-type]
        max_concurrency="50",
        timeout_seconds=600,
        comment="contract test",
    )
    (call,) = ssm.sent
    parameters: dict[str, list[str]] = call["Parameters"]
    return parameters


def test_document_parameters_are_the_design_names() -> None:
    assert set(DOCUMENT_PARAMETERS) == design_parameter_names()
    assert list(DOCUMENT_PARAMETERS) == list(AGENT.PARAMETERS)


@pytest.mark.parametrize(
    ("secret_id", "hook", "action"),
    [
        ("keyrotation/svc-web", None, "rotate"),
        (
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyrotation/svc-web-AbCdEf",
            "restart-app",
            "verify",
        ),
    ],
)
def test_engine_sends_exactly_the_document_parameters_with_allowed_values(
    secret_id: str, hook: str | None, action: str
) -> None:
    sent = engine_parameters(secret_id, hook, action)
    # both directions: nothing the document lacks, nothing the document needs left out
    assert set(sent) == set(DOCUMENT_PARAMETERS)
    for name, values in sent.items():
        assert isinstance(values, list) and len(values) == 1, name
        assert re2.search(DOCUMENT_PARAMETERS[name]["allowedPattern"], values[0]), (name, values[0])
    assert sent["Action"] == [action]
    assert sent["ReloadHook"] == [hook or ""]


def test_document_passes_each_parameter_to_the_agents_flag() -> None:
    linux = render.step_script(DOCUMENT, "aws:runShellScript")
    windows = render.step_script(DOCUMENT, "aws:runPowerShellScript")
    expected = {name: flag for name, (flag, _default) in AGENT.PARAMETERS.items()}
    linux_pairs = {name: flag for flag, name in re.findall(r'(--[a-z-]+)="\$\{SSM_(\w+)-\}"', linux)}
    windows_pairs = {name: flag for flag, name in re.findall(r'"(--[a-z-]+)=\$env:SSM_(\w+)"', windows)}
    assert linux_pairs == expected
    assert windows_pairs == expected


def test_agent_and_document_patterns_are_identical() -> None:
    assert {name: spec["allowedPattern"] for name, spec in DOCUMENT_PARAMETERS.items()} == AGENT.PATTERNS


def test_result_marker_is_the_same_constant() -> None:
    assert AGENT.RESULT_MARKER == fleet.RESULT_MARKER == "KEYROTATION_RESULT"
    assert f"`{AGENT.RESULT_MARKER}`" in DESIGN


def agent_line(result: dict[str, Any]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        AGENT.emit(result, [])
    return out.getvalue()


def test_engine_confirms_the_agents_success_line_and_rejects_its_error_line() -> None:
    key = "AKIAIOSFODNN7EXAMPLE"
    ok = agent_line(
        {
            "status": "ok",
            "action": "rotate",
            "profile": "app",
            "file": "/home/app/.aws/credentials",
            "access_key_id": key,
            "caller_arn": "arn:aws:iam::123456789012:user/keyrotation/svc-web",
        }
    )
    error = agent_line(
        {
            "status": "error",
            "action": "rotate",
            "profile": "app",
            "file": "/x",
            "access_key_id": None,
            "caller_arn": None,
            "error": "verification_failed",
            "message": "GetCallerIdentity failed",
        }
    )
    ssm = RecordingSsm(
        {
            "mi-00000000000000001": ("Success", "keyrotation: wrote profile app\n" + ok),
            "mi-00000000000000002": ("Failed", error),
            "mi-00000000000000003": ("Success", ok.replace(key, "AKIAOTHEROTHEROTHER0")),
        }
    )
    outcome = fleet.read_outcome(ssm, ["cmd-1"], sorted(ssm.outputs), key)  # type: ignore[arg-type]
    assert outcome.confirmed == ("mi-00000000000000001",)
    failed = {failure.instance_id: failure for failure in outcome.failed}
    assert set(failed) == {"mi-00000000000000002", "mi-00000000000000003"}
    assert "verification_failed" in str(failed["mi-00000000000000002"])
