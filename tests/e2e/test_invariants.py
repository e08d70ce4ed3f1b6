"""The invariant checks themselves: each one fails when what it guards is broken."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from sandbox import invariants
from sandbox.demo import Sandbox
from sandbox.fleet import Fleet


def _fresh(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    sandbox = make_sandbox(users=1, servers=2)
    assert invariants.check_all(sandbox.emulator, sandbox.deployment, sandbox.fleet) == []
    return sandbox


def test_a_server_with_an_inactive_key_is_reported(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = _fresh(make_sandbox)
    key = sandbox.initial_keys["svc-web"].key_id
    sandbox.emulator.client("iam").update_access_key(UserName="svc-web", AccessKeyId=key, Status="Inactive")
    problems = invariants.server_files_hold_active_keys(sandbox.emulator, sandbox.deployment, sandbox.fleet)
    assert len(problems) == 2 and all("is Inactive" in p for p in problems)
    assert invariants.current_secret_is_active(sandbox.emulator, sandbox.deployment)


def test_a_server_with_a_wrong_secret_is_reported(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = _fresh(make_sandbox)
    server = next(iter(sandbox.fleet.servers.values()))
    key = sandbox.initial_keys["svc-web"].key_id
    Fleet.write_credentials(server, "/home/app/.aws/credentials", "app", key, "not-the-secret")
    problems = invariants.server_files_hold_active_keys(sandbox.emulator, sandbox.deployment, sandbox.fleet)
    assert problems == [f"{server.instance_id} /home/app/.aws/credentials [app] (svc-web): key {key} has the "
                        "wrong secret access key"]


def test_a_third_key_is_reported(
    make_sandbox: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = _fresh(make_sandbox)
    sandbox.emulator.client("iam").create_access_key(UserName="svc-web")
    assert invariants.at_most_two_keys(sandbox.emulator, sandbox.deployment) == []
    # IAM (and moto) refuse a third key; the check must still count one if it ever existed
    three = {"A": "Active", "B": "Active", "C": "Inactive"}
    monkeypatch.setattr(invariants, "_keys", lambda emulator, user: three)
    assert invariants.at_most_two_keys(sandbox.emulator, sandbox.deployment) == ["svc-web: 3 keys"]


def test_a_leaked_secret_is_found_in_sns_logs_and_extra_texts(make_sandbox: Callable[..., Sandbox]) -> None:
    sandbox = _fresh(make_sandbox)
    secret = json.loads(sandbox.emulator.client("secretsmanager").get_secret_value(
        SecretId=sandbox.deployment.secrets["svc-web"], VersionStage="AWSCURRENT")["SecretString"])
    value = secret["aws_secret_access_key"]
    sandbox.emulator.client("sns").publish(TopicArn=sandbox.deployment.topic_arn, Message=f"oops {value}")
    logs = sandbox.emulator.client("logs")
    logs.create_log_group(logGroupName="leaky")
    logs.create_log_stream(logGroupName="leaky", logStreamName="s")
    logs.put_log_events(logGroupName="leaky", logStreamName="s",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": f"debug {value}"}])
    problems = invariants.no_secret_leaks(sandbox.emulator, sandbox.deployment, {"console": value})
    assert any(p.startswith("a secret access key appears in sns") for p in problems)
    assert "a secret access key appears in logs leaky" in problems
    assert "a secret access key appears in console" in problems
    assert not any(value in p for p in problems)
