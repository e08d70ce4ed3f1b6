"""End to end: the synthesized state machines, the real handlers, document and agent, on simulated servers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from sandbox import invariants, synth
from sandbox.demo import Report, Sandbox, Scenario
from sandbox.moto import lambda_runtime

pytestmark = pytest.mark.slow  # real agents on simulated servers: seconds per test


def _run(sandbox: Sandbox, *users: str) -> Report:
    started = time.monotonic()
    for user in users:
        sandbox.start_rotation(user)
    if not users:
        sandbox.start()
    sandbox.follow(timeout=120)
    return sandbox.report(started)


def _held_key(sandbox: Sandbox, instance_id: str, user: str) -> str:
    settings = sandbox.deployment.user(user)
    held = sandbox.fleet.read_credentials(sandbox.fleet.servers[instance_id], settings["credentials_file"],
                                          settings["profile"])
    assert held is not None
    return held[0]


def test_one_user_five_servers(make_sandbox: Callable[..., Sandbox]) -> None:
    # GIVEN one user whose key is on 5 servers
    sandbox = make_sandbox(users=1, servers=5)
    # WHEN the rotation machine runs
    report = _run(sandbox)
    # THEN the key is rotated everywhere and the old one deleted
    [user] = report.users
    assert report.result == "rotated", report
    assert report.violations == []
    assert user.old_key == "deleted" and user.new_key_id and user.confirmed == user.total == 5
    for server in sandbox.fleet.servers.values():
        assert _held_key(sandbox, server.instance_id, "svc-web") == user.new_key_id
        # the reload hook ran after the file was rewritten (hooks need a root-owned directory chain)
        if os.geteuid() == 0:
            assert "reloaded" in server.path("/var/log/app-reloads.log").read_text()
    assert report.summary_json()["old_keys_deleted"] == [user.old_key_id]
    # the leak scan had something to scan: the steps' logs (in the template's log groups) and SNS
    texts = dict(invariants.observable_texts(sandbox.emulator, sandbox.deployment))
    prepare_group = next(k for k in texts if k.startswith("logs ") and "Logsprepare" in k)
    assert '"message":"step done"' in texts[prepare_group]
    assert any(k.startswith("sns ") and "Outcome: rotated" in v for k, v in texts.items())


def test_step_logs_reach_the_log_group_even_if_the_service_logger_was_configured_before(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    import io
    import sys

    from aws_lambda_powertools import Logger

    # GIVEN this process configured the service's logger earlier on a stream that is closed by now (as a unit
    # test in the same pytest worker does: Powertools reuses a configured logger by name)
    closed, saved = io.StringIO(), sys.stdout
    sys.stdout = closed
    try:
        Logger(service="keyrotation")
    finally:
        sys.stdout = saved
    closed.close()
    sandbox = make_sandbox(users=1, servers=1)
    # WHEN a rotation runs
    report = _run(sandbox)
    # THEN every step's log lines land in its log group, with no logging error
    assert report.result == "rotated", report
    texts = dict(invariants.observable_texts(sandbox.emulator, sandbox.deployment))
    prepare_group = next(k for k in texts if k.startswith("logs ") and "Logsprepare" in k)
    assert '"message":"step done"' in texts[prepare_group]
    assert not [k for k, v in texts.items() if "Logging error" in v]


def test_three_users_two_servers_each(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(users=3, servers=2)
    report = _run(sandbox)
    assert report.result == "rotated", report
    assert [u.result for u in report.users] == ["rotated"] * 3
    summary = report.summary_json()
    assert summary["servers_confirmed"] == summary["servers_total"] == 6
    assert len(set(summary["new_key_ids"])) == 3 and len(summary["old_keys_deleted"]) == 3


def test_partial_failure_blocks_and_keeps_the_old_key(make_sandbox: Callable[..., Sandbox]) -> None:
    # GIVEN 3 servers, 1 of which fails to run the agent
    sandbox = make_sandbox(users=1, servers=3, fail=1)
    failing = sorted(s.instance_id for s in sandbox.fleet.servers.values() if s.faults.fail)
    report = _run(sandbox)
    [user] = report.users
    # THEN the rotation is blocked, the old key stays Active, the failing servers are named
    assert report.result == "blocked" and user.error == "TargetsUnconfirmed"
    assert user.old_key == "Active"
    assert report.summary_json()["blocked_servers"] == failing
    assert all(instance_id in (user.cause or "") for instance_id in failing)
    for instance_id in failing:
        assert _held_key(sandbox, instance_id, "svc-web") == user.old_key_id
    # AND nothing unsafe happened: every server still holds a working Active key
    assert report.violations == []


@pytest.mark.parametrize("fault", ["wrong_key_id", "no_marker"])
def test_a_server_that_does_not_prove_the_new_key_blocks(
    make_sandbox: Callable[..., Sandbox], fault: str
) -> None:
    # GIVEN a server whose agent exits 0 but does not report the new key (stale agent, truncated output)
    sandbox = make_sandbox(users=1, servers=2)
    liar = next(iter(sandbox.fleet.servers.values()))
    setattr(liar.faults, fault, True)
    report = _run(sandbox)
    # THEN "Success" alone does not confirm it: the rotation is blocked, the old key stays Active
    [user] = report.users
    assert report.result == "blocked" and user.error == "TargetsUnconfirmed" and user.old_key == "Active"
    assert report.summary_json()["blocked_servers"] == [liar.instance_id]
    assert report.violations == []


def test_offline_server_blocks_before_anything_changes(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(users=1, servers=3, offline=1)
    offline = [s.instance_id for s in sandbox.fleet.servers.values() if not s.online]
    report = _run(sandbox)
    [user] = report.users
    assert report.result == "blocked" and user.error == "TargetsOffline"
    assert user.old_key == "Active" and user.new_key_id is None
    assert report.summary_json()["blocked_servers"] == offline
    assert offline[0] in (user.cause or "")
    assert report.violations == []


def test_scheduled_run_rotates_only_due_users(make_sandbox: Callable[..., Sandbox]) -> None:
    # GIVEN 3 users, of which the first 2 have a key older than their maximum age
    sandbox = make_sandbox(users=3, servers=1, scheduled=True)
    due = sandbox.scenario.due_users()
    assert due == ["svc-app1", "svc-app2"]
    # WHEN the maintenance window's task starts the scheduled machine
    report = _run(sandbox)
    # THEN exactly the due users were rotated
    results = {u.user: u.result for u in report.users}
    assert results == {"svc-app1": "rotated", "svc-app2": "rotated", "svc-app3": "not due"}, report
    assert report.result == "rotated" and report.violations == []
    summary = report.summary_json()
    assert summary["not_due"] == ["svc-app3"] and summary["blocked_servers"] == []
    assert summary["servers_confirmed"] == summary["servers_total"] == 2
    scheduled = [arn for arn, user in sandbox.executions.items() if user == ""]
    sfn = sandbox.emulator.client("stepfunctions")
    assert sfn.describe_execution(executionArn=scheduled[0])["status"] == "SUCCEEDED"
    window_input = json.loads(sfn.describe_execution(executionArn=scheduled[0])["input"])
    assert window_input["trigger"] == "maintenance-window" and "{{" not in window_input["window_execution_id"]
    # AND its output is the run's totals: counts and the first names of each kind
    output = json.loads(sfn.describe_execution(executionArn=scheduled[0])["output"])
    assert (output["checked"], output["started"]) == (3, 2)
    assert output["users"]["started"] == ["svc-app1", "svc-app2"]
    assert output["deferred"] == output["in_progress"] == output["failed_to_start"] == 0


def test_two_scheduled_runs_at_once_rotate_every_due_user_exactly_once(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    # GIVEN 5 users, 3 of them due, and the window's run started twice at once (an operator's start on top of
    # the window's, or the next window while the last still runs)
    sandbox = make_sandbox(users=5, servers=1, scheduled=True)
    due = sandbox.scenario.due_users()
    assert len(due) == 3
    started = time.monotonic()
    runs = [sandbox.fire_maintenance_window(), sandbox.fire_maintenance_window()]
    # WHEN both run to their end and every rotation they started finishes
    sandbox.follow(timeout=180)
    report = sandbox.report(started)
    # THEN every due user was rotated exactly once, the other not at all
    sfn = sandbox.emulator.client("stepfunctions")
    rotations = sfn.list_executions(stateMachineArn=sandbox.deployment.rotation_machine)["executions"]
    users = sorted(json.loads(sfn.describe_execution(executionArn=r["executionArn"])["input"])["user"]
                   for r in rotations)
    assert users == sorted(due), users
    assert {r["status"] for r in rotations} == {"SUCCEEDED"}
    assert {u.user: u.result for u in report.users if u.user in due} == dict.fromkeys(due, "rotated")
    # AND both runs succeeded, no execution failed and nothing alerted about a collision
    assert [sfn.describe_execution(executionArn=arn)["status"] for arn in runs] == ["SUCCEEDED", "SUCCEEDED"]
    texts = dict(invariants.observable_texts(sandbox.emulator, sandbox.deployment))
    assert not any("RotationInProgress" in text or "Outcome: failed" in text
                   for key, text in texts.items() if key.startswith("sns "))
    assert report.violations == []


def test_crash_mid_rotation_then_a_new_execution_resumes(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = make_sandbox(users=1, servers=2)
    # GIVEN promote's Lambda dies right after promoting the new key (Step Functions sees a failure)
    with lambda_runtime.inject_lambda_crash("promote", phase="after") as crashed:
        first = _run(sandbox, "svc-web")
    assert crashed and first.users[0].status == "FAILED"
    created = first.users[0].new_key_id
    assert created is not None
    # the crash left the system safe: old key Active, AWSCURRENT Active, files unchanged and working
    assert invariants.check_all(sandbox.emulator, sandbox.deployment, sandbox.fleet) == []
    # WHEN a new execution starts for the user
    second = _run(sandbox, "svc-web")
    # THEN it resumes the interrupted rotation (same new key, no third key) and completes it
    [user] = second.users
    assert second.result == "rotated", second
    assert user.new_key_id == created
    assert second.violations == []
    prepare = _state_output(sandbox, user.execution or "", "prepare")
    assert prepare["rotation"]["classification"] != "fresh"


def _state_output(sandbox: Sandbox, execution_name: str, state: str) -> dict[str, Any]:
    sfn = sandbox.emulator.client("stepfunctions")
    arn = next(a for a in sandbox.executions if a.endswith(":" + execution_name))
    for event in sfn.get_execution_history(executionArn=arn)["events"]:
        details = event.get("stateExitedEventDetails")
        if details and details["name"] == state:
            data: dict[str, Any] = json.loads(details["output"])
            return data
    raise AssertionError(f"{state} never exited")


def test_settings_are_valid_for_the_product() -> None:
    # The generated settings go through the product's own validator (infra.config) at synth; this keeps the
    # sandbox's topology honest: one group per user, selected by tag.
    settings = synth.sandbox_settings(3)
    groups = [g["tag"]["value"] for g in settings["server_groups"]]
    assert groups == [u["server_group"] for u in settings["users"]]


def test_users_sharing_a_server_group_each_rotate_their_own_profile(
    emulator: Any, synthesized: Callable[..., Any], tmp_path: Any
) -> None:
    # GIVEN 3 users in one server group: the group's 2 servers hold each user's key in its own profile of
    # the same credentials file, and the first user has no secret yet (its first rotation creates it)
    assembly, settings = synthesized(3, users_per_group=3)
    assert len(settings["server_groups"]) == 1
    assert len({u["profile"] for u in settings["users"]}) == 3
    sandbox = Sandbox(emulator, assembly, settings, tmp_path, Scenario(users=3, servers=2))
    try:
        first = settings["users"][0]["name"]
        sandbox.emulator.client("secretsmanager").delete_secret(
            SecretId=sandbox.deployment.secrets[first], ForceDeleteWithoutRecovery=True)
        # WHEN all three rotate at once
        report = _run(sandbox, *[u["name"] for u in settings["users"]])
        # THEN each has its own new key in its own profile on both servers, and the invariants hold
        assert report.result == "rotated" and report.violations == [], report
        for user in report.users:
            assert user.confirmed == user.total == 2
            for server in sandbox.fleet.servers.values():
                assert _held_key(sandbox, server.instance_id, user.user) == user.new_key_id
        # AND the first user's secret was created by the engine, under the group's prefix, with its tags
        described = sandbox.emulator.client("secretsmanager").describe_secret(
            SecretId=sandbox.deployment.secrets[first])
        assert described["Name"] == f"keyrotation/g-1/{first}"
        assert {t["Key"]: t["Value"] for t in described["Tags"]} == {
            "keyrotation:user": first, "keyrotation:server-group": "g-1"}
        assert described["KmsKeyId"] in (sandbox.deployment.secrets_key_arn,
                                         sandbox.deployment.secrets_key_arn.rsplit("/", 1)[-1])
    finally:
        sandbox.close()


def test_the_snapshot_lists_a_user_without_a_secret_yet(make_sandbox: Callable[..., Sandbox]) -> None:
    # GIVEN a user whose secret the engine has not created yet (its first rotation has not run)
    sandbox = make_sandbox(users=2, servers=1)
    first, second = sandbox.deployment.secrets
    sandbox.emulator.client("secretsmanager").delete_secret(
        SecretId=sandbox.deployment.secrets[second], ForceDeleteWithoutRecovery=True)
    # WHEN the --keep snapshot reads the secrets THEN that user is listed without versions, the other with
    versions = sandbox._secret_versions()
    assert versions[second] is None and versions[first]


def test_a_server_decommissioned_between_the_two_distributions_does_not_undo_the_rotation(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    from sandbox import faults

    # GIVEN three servers, one of which is deregistered after it confirmed the new key (before `verify`)
    sandbox = make_sandbox(users=1, servers=3)
    leaving = sorted(sandbox.fleet.servers)[0]
    distributions = []

    def before_distribute() -> None:
        distributions.append(1)
        if len(distributions) == 2:
            sandbox.fleet.deregister(leaving)

    # WHEN the rotation runs
    with faults.on_step(sandbox.deployment.functions["distribute"], "before", before_distribute):
        report = _run(sandbox)
    # THEN it completes on the two remaining servers, the old key deleted, nothing reactivated
    [user] = report.users
    assert len(distributions) == 2
    assert report.result == "rotated", report
    assert user.old_key == "deleted" and user.confirmed == user.total == 2
    assert report.violations == []
    # AND the operator's notification names the decommissioned server as released, not verified
    texts = dict(invariants.observable_texts(sandbox.emulator, sandbox.deployment))
    notification = next(v for k, v in texts.items() if k.startswith("sns ") and "Outcome: rotated" in v)
    assert leaving in notification and "confirmed the new key and have left" in notification
