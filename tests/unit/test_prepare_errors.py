"""prepare stops with a clear, typed error before anything changes."""

from __future__ import annotations

import json
from typing import Any

import botocore.client
import pytest
from botocore.exceptions import ClientError
from rotation_harness import World, drive, handler, secret_id, settings_dict


def _unchanged(world: World, before: dict[str, str]) -> None:
    assert world.iam_keys() == before
    assert world.lock_owner() is None
    assert world.ssm.commands == []


def test_user_not_in_settings(world: World) -> None:
    run = drive(world, user="svc-unknown")
    assert run.error is not None and run.error["name"] == "UnknownUser"
    assert "not in the settings" in run.error["message"]
    # the failure path still tells the operator
    (message,) = world.messages()
    assert "Outcome: failed" in message and "Error: UnknownUser: user 'svc-unknown'" in message


def test_user_in_settings_but_not_in_iam(world: World) -> None:
    run = drive(world, user="svc-db")
    assert run.error is not None and run.error["name"] == "UnknownUser"
    assert "does not exist" in run.error["message"]


def test_user_outside_the_managed_path_is_refused(world: World) -> None:
    world.add_user("svc-db", path="/humans/")
    before = world.iam_keys("svc-db")
    run = drive(world, user="svc-db")
    assert run.error is not None and run.error["name"] == "UnknownUser"
    assert "not under the managed path" in run.error["message"]
    assert world.iam_keys("svc-db") == before


def test_a_secret_scheduled_for_deletion_is_refused_by_name(world: World) -> None:
    # GIVEN the user's secret is scheduled for deletion (its name cannot be reused, its key may be needed)
    world.sm.delete_secret(SecretId=secret_id("svc-web"), RecoveryWindowInDays=7)
    before = world.iam_keys()
    # WHEN a rotation starts THEN it stops, naming the secret and how to restore it, changing nothing
    run = drive(world)
    assert run.error is not None and run.error["name"] == "SecretMissing"
    assert "keyrotation/web/svc-web" in run.error["message"] and "restore-secret" in run.error["message"]
    _unchanged(world, before)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("hunter2-not-json", "is not JSON"),
        ('["a", "b"]', "is not a JSON object"),
        ('{"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}', "aws_secret_access_key is missing"),
        (
            '{"aws_access_key_id": "not a key", "aws_secret_access_key": "hunter2-secret"}',
            "aws_access_key_id is",
        ),
    ],
)
def test_malformed_secret(world: World, value: str, reason: str) -> None:
    # GIVEN a secret whose current value is not what the engine and agent expect
    world.sm.put_secret_value(SecretId=secret_id("svc-web"), SecretString=value)
    before = world.iam_keys()
    # WHEN a rotation starts THEN it stops, naming the problem but never echoing the value
    run = drive(world)
    assert run.error is not None and run.error["name"] == "SecretMalformed"
    assert reason in run.error["message"] and "AWSCURRENT" in run.error["message"]
    assert "hunter2" not in run.error["message"]
    _unchanged(world, before)


def test_no_targets(world: World) -> None:
    world.ssm.servers.clear()
    before = world.iam_keys()
    run = drive(world)
    assert run.error is not None and run.error["name"] == "NoTargets"
    assert "keyrotation-group=web" in run.error["message"]
    _unchanged(world, before)


def test_offline_target_stops_the_rotation_and_is_named(world: World) -> None:
    (offline,) = world.ssm.add(1, ping="ConnectionLost")
    before = world.iam_keys()
    run = drive(world)
    assert run.error is not None and run.error["name"] == "TargetsOffline"
    assert f"{offline} (ConnectionLost)" in run.error["message"] and "allow_offline" in run.error["message"]
    _unchanged(world, before)


def test_offline_target_is_skipped_when_allowed(world: World) -> None:
    (offline,) = world.ssm.add(1, ping="ConnectionLost")
    run = drive(world, allow_offline=True)
    assert run.error is None, run.error
    assert run.rotation["offline"] == [offline] and offline not in run.rotation["targets"]
    assert world.ssm.servers[offline].key_id is None
    assert offline in world.messages()[0]


def test_offline_allowed_by_settings(world: World) -> None:
    world.write_settings(settings_dict(allow_offline=True))
    world.ssm.add(1, ping="Inactive")
    run = drive(world)
    assert run.error is None, run.error


def test_explicit_instance_ids_that_are_not_registered_are_offline(world: World) -> None:
    data = settings_dict()
    known = list(world.ssm.servers)
    data["server_groups"][0] = {"name": "web", "instance_ids": [*known, "mi-0123456789abcdef0"]}
    world.write_settings(data)
    run = drive(world)
    assert run.error is not None and run.error["name"] == "TargetsOffline"
    assert "mi-0123456789abcdef0 (not registered)" in run.error["message"]


def test_explicit_instance_ids_rotate(world: World) -> None:
    data = settings_dict()
    data["server_groups"][0] = {"name": "web", "instance_ids": list(world.ssm.servers)[:2]}
    world.write_settings(data)
    run = drive(world)
    assert run.error is None, run.error
    assert sorted(run.rotation["targets"]) == sorted(list(world.ssm.servers)[:2])


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"input": {"user": "svc-web"}}, "execution_id"),
        ({"input": {}, "execution_id": "e"}, "input.user"),
        ({"input": {"user": "svc web"}, "execution_id": "e"}, "input.user"),
        ({"input": {"user": "svc-web", "mode": "fast"}, "execution_id": "e"}, "input.mode"),
        (
            {"input": {"user": "svc-web", "waits": {"poll_seconds": -1}}, "execution_id": "e"},
            "input.waits.poll_seconds",
        ),
        ({"input": {"user": "svc-web", "waits": {"sleep": 1}}, "execution_id": "e"}, "input.waits.sleep"),
        ({"input": {"user": "svc-web", "allow_offline": "yes"}, "execution_id": "e"}, "input.allow_offline"),
        ({"input": {"user": "svc-web", "force": True}, "execution_id": "e"}, "input.force"),
        ({"input": "svc-web", "execution_id": "e"}, "input"),
    ],
)
def test_invalid_request_names_the_field(world: World, event: dict[str, object], field: str) -> None:
    from rotation.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as raised:
        handler("prepare")(event)
    assert str(raised.value).startswith(f"{field}:"), str(raised.value)
    assert world.lock_owner() is None


def test_wait_overrides_reach_the_rotation(world: World) -> None:
    run = drive(world, mode="dry_run", waits={"observe_seconds": 60})
    assert run.rotation["waits"]["observe_seconds"] == 60
    assert run.rotation["waits"]["poll_seconds"] == 0  # from the settings


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("old_key_id", "not-a-key", "rotation.old_key_id"),
        ("targets", ["mi-123; rm -rf /"], "rotation.targets[0]"),
        ("mode", "yolo", "rotation.mode"),
        ("token", "short", "rotation.token"),
    ],
)
def test_a_tampered_state_is_refused(world: World, path: str, value: object, field: str) -> None:
    from rotation.errors import InvalidRequest

    state = drive(world, crash_after=2).state
    state = json.loads(json.dumps(state))
    state["rotation"][path] = value
    with pytest.raises(InvalidRequest) as raised:
        handler("verify_key")(state)
    assert str(raised.value).startswith(f"{field}:"), str(raised.value)


def _emitted_metrics(output: str) -> list[dict[str, object]]:
    """The Embedded Metric Format documents the steps printed (one JSON object a line)."""
    documents = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def test_a_user_iam_will_not_show_the_engine_is_refused_as_outside_the_managed_path_without_an_alarm(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a user outside the managed path: in a real account the steps' roles may call GetUser only under
    # the managed path, so IAM answers AccessDenied (moto evaluates no policy; this models IAM's answer,
    # which tests/safety/test_r8_least_privilege.py shows the deployed policy gives)
    world.add_user("svc-db", path="/humans/")
    before = world.iam_keys("svc-db")
    real_call = botocore.client.BaseClient._make_api_call

    def iam_as_authorized(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "GetUser" and params.get("UserName") == "svc-db":
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized"}}, operation)
        return real_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", iam_as_authorized)
    capsys.readouterr()
    # WHEN its rotation starts
    run = drive(world, user="svc-db")
    # THEN the operator reads the domain error naming the path, nothing changed,
    assert run.error is not None and run.error["name"] == "UnknownUser"
    assert "'svc-db' is not under the managed path /keyrotation/" in run.error["message"]
    assert world.iam_keys("svc-db") == before
    assert world.lock_owner() is None and world.ssm.commands == []
    # AND prepare counted it as an expected error, which the step's unexpected-error alarm subtracts
    prepare = [m for m in _emitted_metrics(capsys.readouterr().out) if m.get("step") == "prepare"]
    assert [m.get("ExpectedError") for m in prepare] == [[1.0]]
