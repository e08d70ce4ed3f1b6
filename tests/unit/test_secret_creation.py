"""The engine creates a user's secret on its first rotation (docs/design.md §3): before any key exists,
once, encrypted with the stack's key, tagged; a crash or a retry at any point resumes without a third key."""

from __future__ import annotations

from typing import Any

import pytest
from rotation import secrets
from rotation_harness import World, drive, secret_id


def _tags(world: World, user: str) -> dict[str, str]:
    described = world.sm.describe_secret(SecretId=secret_id(user))
    return {tag["Key"]: tag["Value"] for tag in described.get("Tags", [])}


def test_the_first_rotation_creates_the_missing_secret_and_adopts_the_users_key(
    world: World, leak_watch: Any
) -> None:
    # GIVEN a user with one active key (what its servers use today) and no secret yet
    old_key = world.add_user("svc-db", secret_state=None)
    world.ssm.add(2, group="db")
    # WHEN its first rotation runs
    run = drive(world, user="svc-db")
    # THEN it adopts the key, creates the secret under the group's prefix and rotates
    assert run.error is None, run.error
    assert run.rotation["classification"] == "adopt" and run.rotation["old_key_id"] == old_key
    assert run.rotation["secret_id"] == "keyrotation/db/svc-db"
    assert any("create the secret keyrotation/db/svc-db" in line for line in run.rotation["plan"])
    (new_key,) = world.iam_keys("svc-db")
    assert new_key != old_key and world.current("svc-db")["aws_access_key_id"] == new_key
    # AND the secret is encrypted with the stack's key, described and tagged with its user and group
    described = world.sm.describe_secret(SecretId=secret_id("svc-db"))
    assert described["KmsKeyId"] in (world.secrets_key_arn, world.secrets_key_arn.rsplit("/", 1)[-1])
    assert "svc-db" in described["Description"]
    assert _tags(world, "svc-db") == {"keyrotation:user": "svc-db", "keyrotation:server-group": "db"}


def test_a_dry_run_plans_the_secret_but_creates_nothing(world: World) -> None:
    world.add_user("svc-db", secret_state=None)
    world.ssm.add(1, group="db")
    run = drive(world, user="svc-db", mode="dry_run")
    assert run.error is None and run.rotation["outcome"] == "dry_run"
    assert any("create the secret" in line for line in run.rotation["plan"])
    found = world.sm.list_secrets(Filters=[{"Key": "name", "Values": [secret_id("svc-db")]}])["SecretList"]
    assert found == []


def test_every_step_run_twice_creates_one_secret_and_one_key(world: World, leak_watch: Any) -> None:
    # GIVEN no secret; WHEN every step runs twice (a retried Lambda)
    old_key = world.add_user("svc-db", secret_state=None)
    world.ssm.add(1, group="db")
    created_before = len(leak_watch.secrets)
    run = drive(world, user="svc-db", repeat_each=True)
    # THEN the rotation completes with exactly one new key
    assert run.error is None, run.error
    (new_key,) = world.iam_keys("svc-db")
    assert new_key != old_key and world.current("svc-db")["aws_access_key_id"] == new_key
    assert len(leak_watch.secrets) == created_before + 1


@pytest.mark.parametrize("dies_in", ["create_access_key", "put_secret_value"])
def test_a_crash_after_the_secret_was_created_resumes_without_a_third_key(
    world: World, leak_watch: Any, monkeypatch: pytest.MonkeyPatch, dies_in: str
) -> None:
    # GIVEN the first rotation's create_key dies after CreateSecret: before CreateAccessKey, or after it and
    # before PutSecretValue (the new key is then an orphan no secret version holds)
    from rotation import keys

    old_key = world.add_user("svc-db", secret_state=None)
    world.ssm.add(1, group="db")
    module, name = (keys, "create_key") if dies_in == "create_access_key" else (secrets, "put_pending")
    original = getattr(module, name)
    calls = {"n": 0}
    created_before = len(leak_watch.secrets)

    def dies_once(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("the Lambda died")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, dies_once)
    with pytest.raises(SystemExit):
        drive(world, user="svc-db")
    assert secrets.read_state(world.sm, secret_id("svc-db")).exists
    # WHEN a new execution starts
    run = drive(world, user="svc-db")
    # THEN it finishes the rotation with the secret it found: one secret, never a third key
    assert run.error is None, run.error
    (new_key,) = world.iam_keys("svc-db")
    assert new_key != old_key and world.current("svc-db")["aws_access_key_id"] == new_key
    found = world.sm.list_secrets(Filters=[{"Key": "name", "Values": [secret_id("svc-db")]}])["SecretList"]
    assert len(found) == 1
    # the new key, and when the first attempt died after CreateAccessKey its orphan (deleted before the next
    # CreateAccessKey: moto, like IAM, refuses a third key)
    assert len(leak_watch.secrets) == created_before + (1 if dies_in == "create_access_key" else 2)


def test_creating_an_existing_secret_is_not_an_error(world: World) -> None:
    # GIVEN a secret created by a concurrent (or earlier) attempt
    args = {"user": "svc-db", "server_group": "db", "kms_key_arn": world.secrets_key_arn}
    assert secrets.create(world.sm, secret_id("svc-db"), **args) is True
    # WHEN it is created again THEN that is reported, not raised, and the secret holds no key
    assert secrets.create(world.sm, secret_id("svc-db"), **args) is False
    state = secrets.read_state(world.sm, secret_id("svc-db"))
    assert state.exists and state.current is not None and state.current.access_key_id is None


def test_a_missing_secret_reads_as_no_key_stored(world: World) -> None:
    state = secrets.read_state(world.sm, "keyrotation/db/nobody")
    assert not state.exists and (state.current, state.pending, state.previous) == (None, None, None)
