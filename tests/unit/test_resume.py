"""Crashes at any point: a new execution resumes the rotation, never creates a third key, never deletes a key
the engine did not create."""

from __future__ import annotations

from typing import Any

import pytest
from rotation_harness import EMERGENCY, STANDARD, World, drive

# prepare + every step of a standard rotation before delete (delete finishes the rotation: see below)
CRASH_POINTS = list(range(1, len(STANDARD) + 1))


@pytest.mark.parametrize(
    "crash_after", CRASH_POINTS, ids=[f"after-{(('prepare',) + STANDARD)[n - 1]}-{n}" for n in CRASH_POINTS]
)
def test_a_new_run_after_a_crash_finishes_the_rotation(
    world: World, leak_watch: Any, crash_after: int
) -> None:
    # GIVEN an execution that died after some step (no rollback, its lock left behind)
    (old_key,) = world.iam_keys()
    first = drive(world, crash_after=crash_after)
    assert world.lock_owner() == first.execution_id
    # WHEN a new execution starts for the same user
    second = drive(world)
    # THEN it takes over the dead execution's lock and completes the rotation
    assert second.error is None, second.error
    (final_key,) = world.iam_keys()
    assert final_key != old_key
    assert world.current()["aws_access_key_id"] == final_key
    assert world.server_keys() == {final_key}
    assert world.lock_owner() is None
    # AND no more than one new key was ever created (no third key, nothing left over)
    assert len(leak_watch.secrets) == 2


@pytest.mark.parametrize(
    ("crash_after", "classification", "resume_from"),
    [
        (1, "fresh", "create_key"),
        (2, "resumable", "verify_key"),
        (3, "resumable", "verify_key"),
        (4, "resumable", "distribute"),
        (7, "resumable", "distribute"),
        (8, "resumable", "distribute"),
    ],
)
def test_prepare_classifies_an_interrupted_rotation(
    world: World, crash_after: int, classification: str, resume_from: str
) -> None:
    first = drive(world, crash_after=crash_after)
    second = drive(world, mode="dry_run")
    assert (second.rotation["classification"], second.rotation["plan"][-1]) == (
        classification,
        f"dry run: a real run would start at {resume_from}",
    )
    # the resumed rotation continues with the first one's token and key
    if crash_after >= 2:
        assert second.rotation["token"] == first.rotation["token"]
        assert second.rotation["new_key_id"] == first.rotation["new_key_id"]


def test_a_crash_after_delete_leaves_a_finished_rotation(world: World) -> None:
    (old_key,) = world.iam_keys()
    first = drive(world, crash_after=len(STANDARD) + 1)
    assert first.ran[-1] == "delete"
    (new_key,) = world.iam_keys()
    assert new_key != old_key and world.lock_owner() is None
    assert world.current()["aws_access_key_id"] == new_key


def test_crash_in_delete_before_the_label_is_dropped_resumes_at_delete(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a rotation that died inside delete, right after deleting the old key
    from rotation import keys

    original = keys.delete_key

    def delete_then_die(*args: Any, **kwargs: Any) -> bool:
        original(*args, **kwargs)
        raise SystemExit("Lambda died")

    monkeypatch.setattr(keys, "delete_key", delete_then_die)
    with pytest.raises(SystemExit):
        drive(world)
    monkeypatch.setattr(keys, "delete_key", original)
    assert any("AWSPREVIOUS" in stages for stages in world.stages().values())
    # WHEN a new run starts THEN it only finishes the clean-up
    run = drive(world)
    assert run.error is None, run.error
    assert run.rotation["resume_from"] == "delete"
    assert run.ran == ["prepare", "delete", "notify"]
    assert all("AWSPREVIOUS" not in stages for stages in world.stages().values())
    assert world.lock_owner() is None


def test_orphan_key_from_a_crash_inside_create_key_is_removed(
    world: World, leak_watch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an execution that died after CreateAccessKey but before the key reached the secret
    from rotation import secrets

    original = secrets.put_pending

    def crash(*args: Any, **kwargs: Any) -> str:
        raise SystemExit("Lambda died")

    monkeypatch.setattr(secrets, "put_pending", crash)
    with pytest.raises(SystemExit):
        drive(world)
    (orphan,) = [key for key in world.iam_keys() if key != world.current()["aws_access_key_id"]]
    monkeypatch.setattr(secrets, "put_pending", original)
    # WHEN a new run starts
    plan = drive(world, mode="dry_run").rotation
    run = drive(world)
    # THEN it recognised the orphan, deleted it, and rotated with a fresh key
    assert plan["classification"] == "orphan"
    assert any(f"delete orphan key {orphan}" in line for line in plan["plan"])
    assert run.error is None, run.error
    (final_key,) = world.iam_keys()
    assert final_key != orphan and world.current()["aws_access_key_id"] == final_key


def test_create_key_retried_after_losing_its_key_deletes_it_first(
    world: World, leak_watch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN create_key died between CreateAccessKey and PutSecretValue, and the machine retries the step
    from rotation import secrets
    from rotation_harness import handler

    original = secrets.put_pending
    calls = []

    def crash_once(*args: Any, **kwargs: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise SystemExit("Lambda died")
        return original(*args, **kwargs)

    monkeypatch.setattr(secrets, "put_pending", crash_once)
    state = {
        "input": {"user": "svc-web"},
        "execution_id": "arn:aws:states:us-east-1:123456789012:execution:m:e1",
    }
    world.running.add(state["execution_id"])
    state["rotation"] = handler("prepare")(state)
    with pytest.raises(SystemExit):
        handler("create_key")(state)
    rotation = handler("create_key")(state)
    # THEN the user has the old key and the one stored new key: the lost one is gone
    assert set(world.iam_keys()) == {rotation["old_key_id"], rotation["new_key_id"]}
    assert len(leak_watch.secrets) == 3  # initial, lost, stored


def test_an_active_key_created_by_someone_else_is_never_deleted(world: World) -> None:
    # GIVEN someone created a second active key outside the engine (no journal entry of ours)
    foreign = world.iam.create_access_key(UserName="svc-web")["AccessKey"]["AccessKeyId"]
    before = world.iam_keys()
    # WHEN a rotation starts THEN it stops before changing anything, naming the key and what to do
    run = drive(world)
    assert run.error is not None and run.error["name"] == "RotationBlocked"
    assert foreign in run.error["message"] and "--status Inactive" in run.error["message"]
    assert world.iam_keys() == before and world.lock_owner() is None


def test_two_active_keys_and_the_secret_holds_neither(world: World) -> None:
    world.add_user("svc-db", secret_state="placeholder")
    world.iam.create_access_key(UserName="svc-db")
    world.ssm.add(1, group="db")
    before = world.iam_keys("svc-db")
    run = drive(world, user="svc-db")
    assert run.error is not None and run.error["name"] == "RotationBlocked"
    assert "two active keys" in run.error["message"]
    assert world.iam_keys("svc-db") == before


def test_secret_key_missing_from_iam_blocks(world: World) -> None:
    (key,) = world.iam_keys()
    world.iam.delete_access_key(UserName="svc-web", AccessKeyId=key)
    run = drive(world)
    assert run.error is not None and run.error["name"] == "RotationBlocked"
    assert world.iam_keys() == {}


def test_lock_held_by_a_running_execution(world: World) -> None:
    # GIVEN another execution of this user is running and holds the lock
    other = drive(world, crash_after=2)
    world.running.add(other.execution_id)
    keys_before = world.iam_keys()
    # WHEN a second rotation starts
    run = drive(world)
    # THEN it stops with RotationInProgress naming the holder, and leaves its lock and keys alone
    assert run.error is not None and run.error["name"] == "RotationInProgress"
    assert other.execution_id in run.error["message"]
    assert world.lock_owner() == other.execution_id and world.iam_keys() == keys_before


def test_a_step_of_an_execution_that_lost_its_lock_stops(world: World) -> None:
    from rotation.errors import RotationInProgress
    from rotation_harness import handler

    first = drive(world, crash_after=2)
    drive(world, crash_after=1)  # a newer execution took the lock over
    with pytest.raises(RotationInProgress):
        handler("promote")(first.state)


def test_emergency_run_resuming_a_promoted_rotation_deactivates_first(world: World) -> None:
    # GIVEN a standard rotation died after promotion; the old key is now believed leaked
    (old_key,) = world.iam_keys()
    drive(world, crash_after=4)
    # WHEN an emergency run starts
    run = drive(world, mode="emergency")
    # THEN it deactivates the old key before distributing, then finishes
    assert run.error is None, run.error
    assert run.ran == ["prepare", "deactivate", "distribute", "check_distribution", "delete", "notify"]
    assert old_key not in world.iam_keys()


def test_an_expired_lock_is_taken_over_even_if_its_owner_still_runs(world: World) -> None:
    # GIVEN an execution that still runs but whose lock expired long ago
    other = drive(world, crash_after=1)
    world.running.add(other.execution_id)
    world.ddb.update_item(
        TableName=world.table,
        Key={"user": {"S": "svc-web"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    # WHEN a new rotation starts THEN it takes the lock and completes
    run = drive(world)
    assert run.error is None, run.error
    assert world.lock_owner() is None


def test_a_leftover_journal_entry_never_makes_a_foreign_key_an_orphan(world: World) -> None:
    # GIVEN a finished rotation that left its key-creation journal entry behind
    from rotation import lock

    original = lock.clear_intent
    lock.clear_intent = lambda *a, **k: None  # type: ignore[assignment]
    try:
        first = drive(world)
    finally:
        lock.clear_intent = original
    assert first.error is None
    item = world.ddb.get_item(TableName=world.table, Key={"user": {"S": "svc-web"}})["Item"]
    assert "creating" in item
    # AND later someone creates a second key by hand
    foreign = world.iam.create_access_key(UserName="svc-web")["AccessKey"]["AccessKeyId"]
    # WHEN a new rotation starts THEN that key is not taken for an orphan: the rotation is blocked instead
    run = drive(world)
    assert run.error is not None and run.error["name"] == "RotationBlocked"
    assert foreign in world.iam_keys()


def test_create_key_refuses_to_reuse_a_token_whose_key_was_deleted(world: World) -> None:
    from rotation.errors import StateConflict
    from rotation_harness import handler

    run = drive(world, crash_after=2)  # prepare, create_key
    world.iam.delete_access_key(UserName="svc-web", AccessKeyId=run.rotation["new_key_id"])
    world.running.add(run.execution_id)
    with pytest.raises(StateConflict, match="start a new execution"):
        handler("create_key")(
            {**run.state, "rotation": {**run.rotation, "new_key_id": None, "new_version_id": None}}
        )
    assert len(world.iam_keys()) == 1


EMERGENCY_CRASH_POINTS = list(range(1, len(EMERGENCY) + 1))


@pytest.mark.parametrize(
    "crash_after",
    EMERGENCY_CRASH_POINTS,
    ids=[f"after-{(('prepare',) + EMERGENCY)[n - 1]}-{n}" for n in EMERGENCY_CRASH_POINTS],
)
def test_an_emergency_run_after_an_emergency_crash_finishes(
    world: World, leak_watch: Any, crash_after: int
) -> None:
    (old_key,) = world.iam_keys()
    drive(world, mode="emergency", crash_after=crash_after)
    run = drive(world, mode="emergency")
    assert run.error is None, run.error
    (final_key,) = world.iam_keys()
    assert final_key != old_key and world.server_keys() == {final_key}
    assert world.lock_owner() is None
    assert len(leak_watch.secrets) == 2
