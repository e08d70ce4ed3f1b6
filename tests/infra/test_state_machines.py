"""Both state machines, as deployed: valid ASL, Retry+Catch on every Task, waits from the execution."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from infra_synth import ROOT, Synth, render

ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"


def _states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in definition["States"].items():
        yield name, state
        for nested in ("ItemProcessor", "Iterator"):
            if nested in state:
                yield from _states(state[nested])
        for branch in state.get("Branches", []):
            yield from _states(branch)


def test_definitions_pass_asl_validator(synth: Synth, tmp_path: Path) -> None:
    paths = []
    for logical_id, definition in synth.machines().items():
        path = tmp_path / f"{logical_id}.json"
        path.write_text(json.dumps(definition), encoding="utf-8")
        paths += ["--json-path", str(path)]
    assert len(paths) == 6  # the rotation, scheduled and audit machines
    result = subprocess.run(
        [str(ASL_VALIDATOR), *paths], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("machine", ["WorkflowsRotation", "WorkflowsScheduled"])
def test_every_task_has_retry_and_catch(synth: Synth, machine: str) -> None:
    tasks = [(name, state) for name, state in _states(synth.machine(machine)) if state["Type"] == "Task"]
    assert tasks
    for name, state in tasks:
        retried = {error for retry in state.get("Retry", []) for error in retry["ErrorEquals"]}
        assert retried, f"{name} has no Retry"
        assert any(error.endswith("SdkClientException") for error in retried), (name, retried)
        assert any("States.ALL" in catch["ErrorEquals"] for catch in state.get("Catch", [])), name


def test_domain_tasks_catch_to_the_one_failure_path(synth: Synth) -> None:
    definition = synth.machine("WorkflowsRotation")
    targets = {
        state["Catch"][0]["Next"]
        for name, state in definition["States"].items()
        if state["Type"] == "Task" and name not in ("rollback", "notify")
    }
    assert targets == {"rollback"}
    assert definition["States"]["rollback"]["Next"] == "notify"
    assert definition["States"]["rollback"]["Catch"][0]["Next"] == "notify"
    assert definition["States"]["notify"]["Catch"][0]["Next"] == "failed"


def test_verify_key_retries_new_key_not_yet_valid_for_about_two_minutes(synth: Synth) -> None:
    state = synth.machine("WorkflowsRotation")["States"]["verify_key"]
    (retry,) = [r for r in state["Retry"] if r["ErrorEquals"] == ["NewKeyNotYetValid"]]
    assert retry["IntervalSeconds"] == synth.config.settings.defaults.waits.verify_interval_seconds
    total = sum(retry["IntervalSeconds"] * retry["BackoffRate"] ** i for i in range(retry["MaxAttempts"]))
    assert 120 <= total <= 300


def test_waits_come_from_the_resolved_waits_so_an_execution_can_shorten_them(synth: Synth) -> None:
    waits = {
        name: state
        for name, state in synth.machine("WorkflowsRotation")["States"].items()
        if state["Type"] == "Wait"
    }
    assert {name: state.get("SecondsPath") for name, state in waits.items()} == {
        "wait_poll": "$.rotation.waits.poll_seconds",
        "wait_observe": "$.rotation.waits.observe_seconds",
        "wait_grace": "$.rotation.waits.grace_seconds",
    }


def test_every_step_result_goes_to_rotation(synth: Synth) -> None:
    for name, state in synth.machine("WorkflowsRotation")["States"].items():
        if state["Type"] == "Task":
            assert state["ResultPath"] == "$.rotation", name


@pytest.mark.parametrize("prefix", ["WorkflowsRotation", "WorkflowsScheduled"])
def test_standard_logged_and_traced_without_execution_data(synth: Synth, prefix: str) -> None:
    (properties,) = [
        r["Properties"]
        for lid, r in synth.of_type("AWS::StepFunctions::StateMachine").items()
        if lid.startswith(prefix)
    ]
    assert properties["StateMachineType"] == "STANDARD"
    assert properties["LoggingConfiguration"]["Level"] == "ALL"
    assert properties["LoggingConfiguration"]["IncludeExecutionData"] is False
    assert properties["TracingConfiguration"] == {"Enabled": True}


def test_scheduled_machine_never_waits_for_a_rotation(synth: Synth) -> None:
    # GIVEN the scheduled machine as synthesized
    definition = synth.machine("WorkflowsScheduled")
    states = definition["States"]
    # THEN it loops select_due over pages of users until the last (select_due starts the rotations itself)
    assert definition["StartAt"] == "begin"
    assert states["begin"]["Next"] == "select_due" and states["select_due"]["Next"] == "more_users"
    (last_page,) = states["more_users"]["Choices"]
    assert (last_page["Variable"], last_page["BooleanEquals"]) == ("$.selection.done", True)
    assert last_page["Next"] == "done"
    assert states["more_users"]["Default"] == "select_due"
    assert states["select_due"]["Parameters"] == {"cursor.$": "$.selection.cursor",
                                                  "totals.$": "$.selection.totals",
                                                  "started_at.$": "$$.Execution.StartTime"}
    # AND no state waits for a child execution: no .sync or callback integration, no Map, no Wait
    resources = [state.get("Resource", "") for state in states.values()]
    assert not any(".sync" in r or ".waitForTaskToken" in r or ":states:::states:" in r for r in resources)
    assert {state["Type"] for state in states.values()} == {"Pass", "Task", "Choice", "Succeed", "Fail"}
    # AND a failure of select_due fails the run (which alerts through the failed-execution rule)
    assert states["select_due"]["Catch"][0]["Next"] == "failed"


def test_the_scheduled_step_may_start_rotations_and_read_locks_only(synth: Synth) -> None:
    from infra_synth import grants, step_roles

    role = step_roles(synth.template)["select_due"]
    allowed = {action for grant in grants(synth.template) if grant.role == role for action in grant.actions}
    assert {"states:StartExecution", "states:DescribeExecution", "dynamodb:GetItem",
            "iam:ListAccessKeys"} <= allowed
    assert not allowed & {"iam:ListUsers", "iam:CreateAccessKey", "dynamodb:UpdateItem", "ssm:SendCommand"}


def test_definitions_reference_the_step_functions_of_this_stack(synth: Synth) -> None:
    (properties,) = [
        r["Properties"]
        for lid, r in synth.of_type("AWS::StepFunctions::StateMachine").items()
        if lid.startswith("WorkflowsRotation")
    ]
    text = render(properties["DefinitionString"])
    functions = synth.of_type("AWS::Lambda::Function")
    referenced = {lid for lid in functions if "${" + lid + ".Arn}" in text}
    assert len(referenced) == len(functions) - 3  # every step but select_due, audit and audit_report


def test_the_audit_machine_pages_then_reports_and_its_steps_cannot_write(synth: Synth) -> None:
    from infra_synth import grants, step_roles

    # GIVEN the audit machine: begin → audit (page after page) → audit_report → done
    definition = synth.machine("WorkflowsAudit")
    states = definition["States"]
    assert definition["StartAt"] == "begin" and states["begin"]["Next"] == "audit"
    assert states["audit"]["Next"] == "more_users" and states["more_users"]["Default"] == "audit"
    (last,) = states["more_users"]["Choices"]
    assert (last["Variable"], last["Next"]) == ("$.page.done", "audit_report")
    assert states["audit"]["Parameters"]["input.$"] == "$$.Execution.Input"
    # THEN neither step may change a key, a secret, a lock or a file: the only writes are its report objects
    # (and the summary on the topic); SendCommand is there for the document's read-only audit action
    roles = step_roles(synth.template)
    writes = {"iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey",
              "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage",
              "secretsmanager:CreateSecret", "dynamodb:UpdateItem", "dynamodb:PutItem",
              "states:StartExecution"}
    for step in ("audit", "audit_report"):
        allowed = {a for g in grants(synth.template) if g.role == roles[step] for a in g.actions}
        assert not allowed & writes, (step, allowed & writes)
        s3 = {a for a in allowed if a.startswith("s3:")}
        assert s3 <= {"s3:PutObject", "s3:GetObject", "s3:ListBucket"}
