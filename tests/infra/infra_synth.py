"""The shared synthesis of the infra tests (fixture `synth` in conftest.py), once per test run.

The app gets cdk.json's context, so the tests check the template `cdk synth` makes. cdk-nag runs in that
same synthesis; if it fails, the fixture synthesizes once more without it so that the other tests can
still report, and `test_nag` shows the findings.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import app as cdk_app  # noqa: E402
from infra.config import InfraConfig, load_config  # noqa: E402
from sandbox.asl import state_machines  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Path(__file__).resolve().with_name("settings.yaml")


@dataclass(frozen=True)
class Synth:
    outdir: Path
    template: dict[str, Any]
    config: InfraConfig
    nag_failure: str | None  # the synth error when cdk-nag found unacknowledged findings
    nag_report: dict[str, Any] | None

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template["Resources"]
        return resources

    def of_type(self, kind: str) -> dict[str, Any]:
        return {lid: res for lid, res in self.resources.items() if res["Type"] == kind}

    def machines(self) -> dict[str, dict[str, Any]]:
        return state_machines(self.template)

    def machine(self, prefix: str) -> dict[str, Any]:
        """The rendered definition of the state machine whose logical id starts with `prefix`."""
        (definition,) = [d for lid, d in self.machines().items() if lid.startswith(prefix)]
        return definition


def cdk_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    return context


def synthesize(directory: Path) -> Synth:
    """Synthesize with cdk.json's context and the test settings, cdk-nag included, into `directory`.

    If cdk-nag fails the synthesis, synthesize again without it so that the other tests still check a
    template; `test_nag` then reports the findings. Several pytest-xdist workers share one synthesis: the
    first to take the lock synthesizes, the others read its result.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = directory / "result.json"
        if not result.exists():
            result.write_text(json.dumps({"nag_failure": _synthesize(directory)}), encoding="utf-8")
        nag_failure = json.loads(result.read_text(encoding="utf-8"))["nag_failure"]
    template_dir = directory / ("cdk.out" if nag_failure is None else "cdk.out-without-nag")
    report_path = directory / "cdk.out" / "validation-report.json"
    template_path = template_dir / f"{cdk_app.STACK_ID}.template.json"
    return Synth(
        outdir=template_dir,
        template=json.loads(template_path.read_text(encoding="utf-8")),
        config=load_config(SETTINGS),
        nag_failure=nag_failure,
        nag_report=json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else None,
    )


def _synthesize(directory: Path) -> str | None:
    """The one synthesis; returns cdk-nag's failure message, if any."""
    try:
        cdk_app.build_app(
            SETTINGS, context=cdk_context(), outdir=str(directory / "cdk.out"), builtin_validation=False
        ).synth()
    except RuntimeError as exc:  # jsii raises RuntimeError("ValidationFailed: …")
        if "ValidationFailed" not in str(exc):
            raise
        cdk_app.build_app(
            SETTINGS,
            context=cdk_context(),
            outdir=str(directory / "cdk.out-without-nag"),
            checks=False,
            builtin_validation=False,
        ).synth()
        return str(exc)
    return None


def step_resolver(template: dict[str, Any]) -> Any:
    """Maps a rendered Task Resource (placeholder Lambda ARN) to the step its function runs."""

    def step_of(resource: str) -> str:
        logical_id = resource.rsplit(":", 1)[-1]
        handler: str = template["Resources"][logical_id]["Properties"]["Handler"]
        module, _, function = handler.rpartition(".")
        assert function == "handler" and module.startswith("handlers."), handler
        return module.removeprefix("handlers.")

    return step_of


PSEUDO = {
    "AWS::Partition": "${AWS::Partition}",
    "AWS::AccountId": "${AWS::AccountId}",
    "AWS::Region": "${AWS::Region}",
    "AWS::URLSuffix": "${AWS::URLSuffix}",
}


def render(value: Any) -> str:
    """A template value as text: pseudo parameters as ${…}, Refs as ${Ref:X}, GetAtts as ${X.Attr}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return PSEUDO.get(value["Ref"], "${Ref:" + value["Ref"] + "}")
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return str(value["Fn::Sub"])  # pseudo parameters are already written ${AWS::…}
    return json.dumps(value, sort_keys=True)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Grant:
    """One Allow statement of one role's policies, rendered to text."""

    role: str  # logical id
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    conditions: dict[str, Any]


def grants(template: dict[str, Any]) -> list[Grant]:
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Policy":
            documents = [
                (role["Ref"], resource["Properties"]["PolicyDocument"])
                for role in resource["Properties"].get("Roles", [])
            ]
        elif resource["Type"] == "AWS::IAM::Role":
            # Inline policies: the server groups' roles (one resource per group); the role is the resource.
            documents = [(logical_id, policy["PolicyDocument"])
                         for policy in resource["Properties"].get("Policies", [])]
        else:
            continue
        for role, document in documents:
            for statement in document["Statement"]:
                if statement["Effect"] != "Allow":
                    continue
                found.append(
                    Grant(
                        role=role,
                        actions=tuple(as_list(statement["Action"])),
                        resources=tuple(render(item) for item in as_list(statement["Resource"])),
                        conditions=statement.get("Condition", {}),
                    )
                )
    return found


def step_roles(template: dict[str, Any]) -> dict[str, str]:
    """Step name → logical id of its function's role."""
    roles = {}
    step_of = step_resolver(template)
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            step = step_of(f"function:{logical_id}")
            roles[step] = resource["Properties"]["Role"]["Fn::GetAtt"][0]
    return roles
