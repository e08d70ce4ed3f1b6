"""The per-user rotation machine follows docs/design.md §2 — walked path by path with a fake engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from asl_walk import StepFailed, Walk, walk
from infra_synth import Synth, step_resolver
from rotation import flow

from infra.constructs.steps import STEPS

ROTATION_STEPS = [step for step in STEPS if step not in ("select_due", "audit", "audit_report")]
WAITS = {
    "verify_interval_seconds": 5,
    "poll_seconds": 30,
    "max_polls": 3,
    "observe_seconds": 1800,
    "grace_seconds": 86400,
}


class FakeEngine:
    """Returns what the real steps return (the `rotation` object), from a script of a few knobs."""

    def __init__(
        self,
        *,
        mode: str = "standard",
        resume_from: str = "create_key",
        polls_until_done: int = 1,
        fail: dict[str, str] | None = None,
        drop: str | None = None,
    ) -> None:
        self.mode, self.resume_from, self.polls_until_done = mode, resume_from, polls_until_done
        self.fail = fail or {}
        self.drop = drop
        self.distributions = 0

    def __call__(self, step: str, payload: dict[str, Any]) -> dict[str, Any]:
        if step in self.fail:
            raise StepFailed(self.fail[step])
        if step == "prepare":
            rotation = {
                "user": payload["input"]["user"],
                "mode": self.mode,
                "resume_from": self.resume_from,
                "execution_id": payload["execution_id"],
                "waits": dict(WAITS),
            }
        else:
            rotation = dict(payload.get("rotation", {}))
        if step == "distribute":
            self.distributions += 1
            deactivated_first = rotation["mode"] == "emergency"
            rotation.update(
                polls=0, action="verify" if self.distributions > 1 and not deactivated_first else "rotate"
            )
        if step == "check_distribution":
            rotation["polls"] += 1
            rotation["distribution"] = {"done": rotation["polls"] >= self.polls_until_done}
        if self.drop is not None and step == "prepare":
            rotation.pop(self.drop)
        return rotation


def run(synth: Synth, engine: FakeEngine, execution_input: dict[str, Any] | None = None) -> Walk:
    definition = synth.machine("WorkflowsRotation")
    return walk(definition, execution_input or {"user": "svc-web"}, engine, step_resolver(synth.template))


def test_standard_rotation_runs_the_steps_in_the_documented_order(synth: Synth) -> None:
    # GIVEN a standard rotation whose servers confirm on the second poll
    result = run(synth, FakeEngine(polls_until_done=2))
    # THEN the steps run in the order design.md §2 documents ("Standard flow: …"), each poll of the
    # distribution twice, and the execution succeeds
    design = (Path(__file__).resolve().parents[2] / "docs" / "design.md").read_text()
    documented = design[design.index("Standard flow:") : design.index("Any Catch")]
    steps = [word for word in re.findall(r"[a-z_]+", documented) if word in STEPS]
    assert result.tasks == [s for step in steps for s in [step] * (2 if step == "check_distribution" else 1)]
    waits = [name for name in result.visited if name.startswith("wait_")]
    assert waits == ["wait_poll", "wait_poll", "wait_observe", "wait_grace", "wait_poll", "wait_poll"]
    assert result.status == "SUCCEEDED"


def test_prepare_gets_the_execution_input_and_id_and_other_steps_the_whole_state(synth: Synth) -> None:
    execution_input = {"user": "svc-web", "mode": "standard", "waits": {"observe_seconds": 60}}
    result = run(synth, FakeEngine(), execution_input)
    step, payload = result.task_inputs[0]
    assert step == "prepare"
    assert payload == {"input": execution_input, "execution_id": payload["execution_id"]}
    assert payload["execution_id"].startswith("arn:aws:states:")
    step, payload = result.task_inputs[1]
    assert step == "create_key"
    assert payload["input"] == execution_input and payload["rotation"]["user"] == "svc-web"


def test_emergency_deactivates_before_distribution_and_deletes_once_the_fleet_confirms(synth: Synth) -> None:
    result = run(synth, FakeEngine(mode="emergency"))
    assert result.tasks == ["prepare", *flow.EMERGENCY, "notify"]
    assert flow.EMERGENCY.index("deactivate") < flow.EMERGENCY.index("distribute")
    assert "wait_observe" not in result.visited and "wait_grace" not in result.visited
    assert result.status == "SUCCEEDED"


def test_dry_run_only_prepares_and_reports(synth: Synth) -> None:
    result = run(synth, FakeEngine(mode="dry_run"))
    assert result.tasks == ["prepare", "notify"]
    assert result.status == "SUCCEEDED"


@pytest.mark.parametrize(
    ("resume_from", "first_after_prepare"),
    [
        ("create_key", "create_key"),
        ("verify_key", "verify_key"),
        ("promote", "promote"),
        ("distribute", "distribute"),
        ("check_usage", "wait_observe"),
        ("deactivate", "deactivate"),
        ("delete", "delete"),
        ("done", "notify"),
    ],
)
def test_resume_from_starts_at_the_named_step(
    synth: Synth, resume_from: str, first_after_prepare: str
) -> None:
    result = run(synth, FakeEngine(resume_from=resume_from))
    assert result.visited[:4] == ["start", "prepare", "route", first_after_prepare]
    assert result.status == "SUCCEEDED"


@pytest.mark.parametrize("step", [s for s in ROTATION_STEPS if s not in ("rollback", "notify")])
def test_any_failing_step_rolls_back_then_notifies_then_fails(synth: Synth, step: str) -> None:
    # GIVEN a step that raises a typed error
    result = run(synth, FakeEngine(fail={step: "SomeTypedError"}))
    # THEN the one failure path runs: rollback, notify, Fail — with the error for both to report
    assert result.tasks[-3:] == [step, "rollback", "notify"]
    assert result.status == "FAILED"
    rollback_input = dict(result.task_inputs)["rollback"]
    assert rollback_input["error"]["Error"] == "SomeTypedError"


def test_a_failing_rollback_still_notifies(synth: Synth) -> None:
    result = run(synth, FakeEngine(fail={"check_usage": "OldKeyStillInUse", "rollback": "StateConflict"}))
    assert result.tasks[-3:] == ["check_usage", "rollback", "notify"]
    notify_input = dict(result.task_inputs)["notify"]
    assert notify_input["error"]["Error"] == "OldKeyStillInUse"
    assert result.status == "FAILED"


def test_polling_stops_after_max_polls_even_if_the_step_never_gives_up(synth: Synth) -> None:
    # GIVEN servers that never confirm and a check_distribution that (wrongly) never raises
    result = run(synth, FakeEngine(polls_until_done=10_000))
    # THEN the machine stops after max_polls polls and takes the failure path
    assert result.tasks.count("check_distribution") == WAITS["max_polls"]
    assert result.tasks[-2:] == ["rollback", "notify"]
    assert dict(result.task_inputs)["rollback"]["error"]["Error"] == "TargetsUnconfirmed"
    assert result.status == "FAILED"


@pytest.mark.parametrize("field", ["mode", "resume_from"])
def test_a_rotation_missing_a_branch_field_fails_safely(synth: Synth, field: str) -> None:
    result = run(synth, FakeEngine(drop=field))
    assert result.tasks == ["prepare", "rollback", "notify"]
    assert result.status == "FAILED"


@pytest.mark.parametrize("mode", flow.MODES)
def test_the_machine_runs_exactly_the_flow_table_of_each_mode(synth: Synth, mode: flow.Mode) -> None:
    # GIVEN servers that confirm on the first poll WHEN a rotation of `mode` runs
    result = run(synth, FakeEngine(mode=mode, polls_until_done=1))
    # THEN its steps are prepare, the mode's row of rotation/flow.py (the unit harness drives the same
    # rows; the machine's mode Choices are built from its FORKS), then notify
    assert tuple(result.tasks) == ("prepare", *flow.ORDERS[mode], "notify")
    assert result.status == "SUCCEEDED"
