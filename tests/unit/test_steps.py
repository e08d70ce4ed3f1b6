"""Single steps: usage check, safety guards, STS verification, throttling, environment, notify, select_due."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from rotation.secrets import Credentials
from rotation_harness import World, drive, handler, settings_dict

# -- check_usage ----------------------------------------------------------------------------------


def test_old_key_used_after_the_cutover_stops_before_deactivation(world: World) -> None:
    from rotation.errors import OldKeyStillInUse

    # GIVEN every server confirmed the new key (the cut-over) and then something used the old key
    (old_key,) = world.iam_keys()
    state = drive(world, crash_after=6).state  # .. check_distribution
    cutover = datetime.strptime(state["rotation"]["cutover_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    world.mark_used(old_key, cutover + timedelta(minutes=15, seconds=1), service="s3", region="eu-west-1")
    # WHEN the rotation checks the old key's usage
    with pytest.raises(OldKeyStillInUse) as raised:
        handler("check_usage")(state)
    # THEN it stops, naming the service and region, and the old key stays Active
    assert "service s3 in region eu-west-1" in str(raised.value)
    assert world.iam_keys()[old_key] == "Active"


def test_old_key_in_use_fails_the_whole_rotation_with_the_old_key_active(world: World) -> None:
    # GIVEN an unknown consumer that will use the old key after the cut-over
    (old_key,) = world.iam_keys()
    world.mark_used(old_key, datetime.now(UTC) + timedelta(hours=1), service="s3", region="eu-west-1")
    # WHEN the rotation runs
    run = drive(world)
    # THEN it stops at check_usage and never deactivates the old key
    assert run.error is not None and run.error["name"] == "OldKeyStillInUse"
    assert "service s3 in region eu-west-1" in run.error["message"]
    assert world.iam_keys()[old_key] == "Active"
    assert "deactivate" not in run.ran


def test_old_key_used_just_before_the_cutover_is_fine(world: World) -> None:
    # GIVEN the servers used the old key right up to the moment they switched (the normal case)
    (old_key,) = world.iam_keys()
    world.mark_used(old_key, datetime.now(UTC) - timedelta(minutes=1), service="s3", region="eu-west-1")
    # WHEN the rotation runs
    run = drive(world)
    # THEN the usage check passes and the old key is retired
    assert run.error is None, run.error
    assert old_key not in world.iam_keys()


def test_old_key_used_long_before_the_cutover_is_fine(world: World) -> None:
    (old_key,) = world.iam_keys()
    world.mark_used(old_key, datetime.now(UTC) - timedelta(hours=2))
    run = drive(world)
    assert run.error is None, run.error


def test_check_usage_reports_the_last_use(world: World) -> None:
    (old_key,) = world.iam_keys()
    used = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    world.mark_used(old_key, used, service="sts", region="us-east-2")
    state = drive(world, crash_after=6).state  # .. check_distribution
    result = handler("check_usage")(state)
    assert result["usage"] == {
        "checked": True,
        "last_used_at": used.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "service": "sts",
        "region": "us-east-2",
    }


# -- guards: the old key is only retired when it is safe -----------------------------------------


def test_deactivate_refuses_until_every_server_confirmed(world: World) -> None:
    from rotation.errors import StateConflict

    (old_key,) = world.iam_keys()
    state = drive(world, crash_after=5).state  # distributed, not yet confirmed
    with pytest.raises(StateConflict, match="not every server confirmed"):
        handler("deactivate")(state)
    assert world.iam_keys()[old_key] == "Active"


def test_deactivate_refuses_before_promotion_even_in_emergency(world: World) -> None:
    from rotation.errors import StateConflict

    (old_key,) = world.iam_keys()
    state = drive(world, mode="emergency", crash_after=3).state  # created + verified, not promoted
    with pytest.raises(StateConflict, match="AWSCURRENT is not the new key"):
        handler("deactivate")(state)
    assert world.iam_keys()[old_key] == "Active"


def test_delete_refuses_an_active_old_key(world: World) -> None:
    from rotation.errors import StateConflict

    (old_key,) = world.iam_keys()
    state = drive(world, crash_after=6).state  # confirmed, old key still Active
    with pytest.raises(StateConflict, match="it is Active"):
        handler("delete")(state)
    assert world.iam_keys()[old_key] == "Active"


def test_steps_refuse_to_run_in_a_dry_run(world: World) -> None:
    from rotation.errors import InvalidRequest

    state = {"input": {"user": "svc-web", "mode": "dry_run"}, "execution_id": "e-dry"}
    state["rotation"] = handler("prepare")(state)
    before = world.iam_keys()
    with pytest.raises(InvalidRequest, match="dry run"):
        handler("create_key")(state)
    assert world.iam_keys() == before


# -- verify_key ----------------------------------------------------------------------------------


def test_new_key_not_yet_valid_is_retried_by_the_machine(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN STS rejects the new key twice while IAM propagates it
    from handlers import _clients
    from rotation.errors import NewKeyNotYetValid

    attempts: list[str] = []
    real = _clients.sts_with

    def propagating(credentials: Any) -> Any:
        attempts.append(credentials.access_key_id)
        client = real(credentials)
        if len(attempts) <= 2:
            stub = Stubber(client)
            stub.add_client_error("get_caller_identity", "InvalidClientTokenId", "not yet", 403)
            stub.activate()
        return client

    monkeypatch.setattr(_clients, "sts_with", propagating)
    state = drive(world, crash_after=2).state
    # WHEN verify_key runs THEN it raises the retryable error until the key works
    for _ in range(2):
        with pytest.raises(NewKeyNotYetValid, match=state["rotation"]["new_key_id"]):
            handler("verify_key")(state)
    assert handler("verify_key")(state) == state["rotation"]
    assert attempts == [state["rotation"]["new_key_id"]] * 3


def test_verify_key_signs_with_the_new_key(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import _clients

    seen: list[str] = []
    real = _clients.sts_with

    def spy(credentials: Any) -> Any:
        seen.append(credentials.access_key_id)
        assert credentials.secret_access_key not in repr(credentials)
        return real(credentials)

    monkeypatch.setattr(_clients, "sts_with", spy)
    run = drive(world)
    assert seen == [run.rotation["new_key_id"]]


# -- throttling ----------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


THROTTLED = (
    b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded"
    b"</Message></Error><RequestId>1</RequestId></ErrorResponse>"
)


def test_iam_throttling_is_retried(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN IAM throttles the first two requests of every client the handlers create
    import botocore.retries.standard
    from handlers import _clients

    monkeypatch.setattr(botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    throttled: list[str] = []
    real_iam = _clients.iam

    def throttling_iam() -> Any:
        client = real_iam()
        budget = [2]

        def throttle(request: Any, **_: Any) -> AWSResponse | None:
            if budget[0] > 0:
                budget[0] -= 1
                throttled.append(request.url)
                return AWSResponse(request.url, 400, {}, _Raw(THROTTLED))
            return None

        client.meta.events.register("before-send.iam", throttle)
        return client

    monkeypatch.setattr(_clients, "iam", throttling_iam)
    # WHEN a rotation runs THEN it completes anyway
    run = drive(world)
    assert run.error is None, run.error
    assert len(throttled) >= 10  # two per IAM-using step, all absorbed by the client's retries


def test_client_factory_uses_standard_retries() -> None:
    from handlers import _clients

    assert _clients.RETRIES.retries == {"mode": "standard", "total_max_attempts": 8}


def test_a_warm_container_reuses_its_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import _clients

    # GIVEN a Lambda process (one function, one environment)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    # WHEN two invocations ask for the same service THEN they share one client (no second model load),
    # made from the process's environment
    first = _clients.iam()
    assert _clients.iam() is first and first.meta.endpoint_url == "http://127.0.0.1:1"
    assert _clients.ssm() is not first
    # AND the client that signs with a new key is made anew every time
    key = Credentials("AKIAEXAMPLE000000001", "not-a-real-secret")
    assert _clients.sts_with(key) is not _clients.sts_with(key)


# -- lock takeover -------------------------------------------------------------------------------


def test_execution_running_asks_step_functions() -> None:
    from handlers import _clients
    from moto import mock_aws

    with mock_aws():
        sfn = boto3.client("stepfunctions")
        iam = boto3.client("iam")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        machine = sfn.create_state_machine(
            name="m",
            roleArn=role,
            definition=json.dumps(
                {"StartAt": "w", "States": {"w": {"Type": "Wait", "Seconds": 3600, "End": True}}}
            ),
        )
        running = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="x")["executionArn"]
        assert _clients.execution_running(running) is True
        sfn.stop_execution(executionArn=running)
        assert _clients.execution_running(running) is False
        gone = running.rsplit(":", 1)[0] + ":never-started"
        assert _clients.execution_running(gone) is False


# -- environment ---------------------------------------------------------------------------------


def test_missing_environment_is_named(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from rotation.errors import InvalidEnvironment

    monkeypatch.delenv("LOCK_TABLE")
    with pytest.raises(InvalidEnvironment, match="LOCK_TABLE is not set"):
        handler("prepare")({"input": {"user": "svc-web"}, "execution_id": "e"})


def test_malformed_environment_is_named(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from rotation.errors import InvalidEnvironment

    monkeypatch.setenv("TOPIC_ARN", "not-an-arn")
    with pytest.raises(InvalidEnvironment, match="TOPIC_ARN is malformed"):
        handler("notify")({"input": {"user": "svc-web"}})


def test_relative_settings_path_is_found_under_the_task_root(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = tmp_path / "task"
    root.mkdir()
    (root / "settings.json").write_text(json.dumps(settings_dict()))
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(root))
    monkeypatch.setenv("SETTINGS_PATH", "settings.json")
    assert handler("select_due")({})["totals"]["checked"] == 2  # both settings users


def test_invalid_bundled_settings_fail_loudly(world: World) -> None:
    from rotation.errors import InvalidSettings

    data = settings_dict()
    data["users"][0]["profile"] = "bad profile"
    world.write_settings(data)
    with pytest.raises(InvalidSettings, match=r"users\[0\]\.profile"):
        handler("select_due")({})


# -- notify / rollback without a rotation --------------------------------------------------------


def test_rollback_and_notify_after_prepare_failed(world: World) -> None:
    error = {"Error": "SecretMissing", "Cause": json.dumps({"errorMessage": "secret 'x' does not exist"})}
    state = {"input": {"user": "svc-web"}, "execution_id": "e", "error": error}
    state["rotation"] = handler("rollback")(state)
    assert state["rotation"]["outcome"] == "failed" and world.lock_owner() is None
    result = handler("notify")(state)
    (message,) = world.messages()
    assert "Error: SecretMissing: secret 'x' does not exist" in message
    assert result["notification"]["subject"] == "Key rotation of svc-web: failed"


# -- the leak watch itself -----------------------------------------------------------------------


def test_leak_watch_catches_a_logged_secret(world: World, leak_watch: Any) -> None:
    key = world.iam.create_access_key(UserName="svc-web")["AccessKey"]
    logging.getLogger("anything").warning("oops %s", key["SecretAccessKey"])
    assert leak_watch.findings() == ["log record of anything: contains a secret access key"]
    leak_watch.forget()


def test_leak_watch_sees_handler_results_and_errors(world: World, leak_watch: Any) -> None:
    drive(world, crash_after=2)
    assert any(where == "create_key returned" for where, _ in leak_watch.texts)
    with pytest.raises(ClientError):
        world.iam.get_user(UserName="nobody")
    leak_watch.secrets.add("planted-secret")
    leak_watch.see("create_key returned", {"value": "planted-secret"})
    assert leak_watch.findings() == ["create_key returned: contains a secret access key"]
    leak_watch.forget()


# -- events as the state machine sends them --------------------------------------------------------

EVENTS = Path(__file__).parent / "events"


def test_prepare_accepts_the_documented_execution_input(world: World) -> None:
    event = json.loads((EVENTS / "prepare.json").read_text())
    world.running.add(event["execution_id"])
    rotation = handler("prepare")(event)
    assert rotation["waits"]["observe_seconds"] == 60
    assert rotation["lock_held"] is True and world.lock_owner() == event["execution_id"]
    assert rotation["resume_from"] == "create_key" and rotation["classification"] == "fresh"


def test_rollback_reads_a_lambda_error_cause(world: World) -> None:
    event = json.loads((EVENTS / "rollback_after_prepare_failed.json").read_text())
    result = handler("rollback")(event)
    assert result["error"] == {
        "name": "TargetsOffline",
        "message": "1 of 4 servers of group 'web' are not online: mi-0123456789abcdef0 (ConnectionLost)",
    }
    assert result["outcome"] == "failed" and result["lock_held"] is False


def test_usage_check_is_skipped_without_an_active_old_key(world: World) -> None:
    # an emergency-deactivated (or resumed) old key cannot be in use; a first key has no old key
    drive(world, crash_after=8)  # prepare .. deactivate
    run = drive(world)
    assert run.error is None, run.error
    assert run.rotation["usage"] == {"checked": False, "reason": "old key already Inactive"}
    world.add_user("svc-db", with_key=False, secret_state="placeholder")
    world.ssm.add(1, group="db")
    first = drive(world, user="svc-db")
    assert first.rotation["usage"] == {"checked": False, "reason": "no old key"}


# -- metrics behind the error alarms ---------------------------------------------------------------


def _emitted_metrics(text: str) -> dict[str, dict[str, Any]]:
    """The EMF records Powertools printed, by metric name (with their dimension values)."""
    found: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "_aws" not in record:
            continue
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                found[metric["Name"]] = {name: record.get(name) for group in directive["Dimensions"]
                                         for name in group}
    return found


def test_a_domain_error_is_counted_as_expected_and_an_unknown_one_is_not(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from handlers import EXPECTED_ERROR_METRIC

    # GIVEN a step that fails with a typed domain error (a request without its execution id)
    capsys.readouterr()
    with pytest.raises(Exception, match="execution_id"):
        handler("prepare")({"user": "svc-web"})
    # THEN it reports an expected error for that step, which the step's alarm subtracts from Lambda errors
    domain = _emitted_metrics(capsys.readouterr().out)
    assert domain[EXPECTED_ERROR_METRIC] == {"service": "keyrotation", "step": "prepare"}
    # GIVEN a step that fails with an exception of no known kind
    from handlers import _clients

    def broken() -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(_clients, "iam", broken)
    with pytest.raises(RuntimeError):
        handler("select_due")({})
    # THEN it is not counted as expected: the alarm sees it
    unknown = _emitted_metrics(capsys.readouterr().out)
    assert "StepFailed" in unknown and EXPECTED_ERROR_METRIC not in unknown
