"""End-to-end behaviour of the steps, driven in the state machine's order against moto and a fake fleet."""

from __future__ import annotations

from typing import Any

from rotation import flow
from rotation_harness import World, drive


def test_fresh_rotation_replaces_the_key_everywhere(world: World) -> None:
    # GIVEN a user whose only key is stored in its secret, and three online servers
    (old_key,) = world.iam_keys()
    # WHEN a standard rotation runs to the end
    run = drive(world)
    # THEN the user has exactly one key, a new one, and it is the secret's current key
    assert run.error is None, run.error
    keys = world.iam_keys()
    assert list(keys.values()) == ["Active"] and old_key not in keys
    (new_key,) = keys
    assert world.current()["aws_access_key_id"] == new_key
    # AND every server holds the new key, checked twice (rotate, then verify)
    assert world.server_keys() == {new_key}
    assert [c["Parameters"]["Action"] for c in world.ssm.commands] == [["rotate"], ["verify"]]
    # AND the old version lost its AWSPREVIOUS label, the lock is free, operators were told
    assert all("AWSPREVIOUS" not in stages for stages in world.stages().values())
    assert world.lock_owner() is None
    assert run.rotation["outcome"] == "rotated"
    (message,) = world.messages()
    assert "Outcome: rotated" in message and new_key in message
    assert run.ran == ["prepare", *flow.STANDARD, "notify"]  # (rotation/flow.py: the machine's order)


def _params(world: World) -> dict[str, Any]:
    return world.ssm.commands[0]["Parameters"]


def test_commands_carry_only_non_secret_parameters(world: World) -> None:
    run = drive(world)
    params = _params(world)
    assert params == {
        "SecretId": ["keyrotation/web/svc-web"],
        "CredentialsFile": ["/home/app/.aws/credentials"],
        "Profile": ["app"],
        "FileOwner": ["app"],
        "ExpectedAccessKeyId": [run.rotation["new_key_id"]],
        "ReloadHook": ["restart-app"],
        "Action": ["rotate"],
    }
    command = world.ssm.commands[0]
    assert (command["MaxErrors"], command["MaxConcurrency"], command["TimeoutSeconds"]) == ("0", "50", 600)


def test_emergency_mode_deactivates_the_old_key_before_distribution(world: World) -> None:
    (old_key,) = world.iam_keys()
    run = drive(world, mode="emergency")
    assert run.error is None, run.error
    assert run.ran == ["prepare", *flow.EMERGENCY, "notify"]
    assert run.ran.index("deactivate") < run.ran.index("distribute")
    assert old_key not in world.iam_keys() and world.server_keys() == {run.rotation["new_key_id"]}
    assert [c["Parameters"]["Action"] for c in world.ssm.commands] == [["rotate"]]


def test_emergency_failure_keeps_the_leaked_key_inactive(world: World) -> None:
    (old_key,) = world.iam_keys()
    next(iter(world.ssm.servers.values())).behaviour = "fail"
    run = drive(world, mode="emergency")
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert world.iam_keys()[old_key] == "Inactive"
    assert world.lock_owner() is None


def test_dry_run_changes_nothing_and_reports_the_plan(world: World) -> None:
    # GIVEN a user ready for rotation
    before = (world.iam_keys(), world.stages())
    # WHEN a dry run runs
    run = drive(world, mode="dry_run")
    # THEN nothing changed: keys, secret labels, lock, servers
    assert run.error is None
    assert (world.iam_keys(), world.stages()) == before
    assert world.lock_owner() is None and world.ssm.commands == []
    # AND the operator sees what a real run would do
    assert run.rotation["resume_from"] == "done" and run.rotation["outcome"] == "dry_run"
    assert run.rotation["classification"] == "fresh" and len(run.rotation["targets"]) == 3
    assert "dry run: a real run would start at create_key" in run.rotation["plan"]
    assert run.ran == ["prepare", "notify"]


def test_dry_run_with_the_lock_held_elsewhere_still_reports(world: World) -> None:
    other = drive(world, crash_after=2)
    world.running.add(other.execution_id)
    run = drive(world, mode="dry_run")
    assert run.error is None
    assert any(other.execution_id in line for line in run.rotation["plan"])
    assert world.lock_owner() == other.execution_id


def test_every_step_run_twice_gives_one_new_key(world: World, leak_watch: Any) -> None:
    # GIVEN a user with one key; WHEN every step runs twice (a retried Lambda)
    (old_key,) = world.iam_keys()
    run = drive(world, repeat_each=True)
    # THEN the rotation completes with exactly one key created
    assert run.error is None, run.error
    (new_key,) = world.iam_keys()
    assert new_key != old_key and world.current()["aws_access_key_id"] == new_key
    assert len(leak_watch.secrets) == 2  # the initial key and the one new key
    assert world.server_keys() == {new_key}
    assert world.lock_owner() is None


def test_adopt_a_key_that_was_never_stored(world: World) -> None:
    # GIVEN a user whose secret is still the placeholder {} and who has one active key
    old_key = world.add_user("svc-db", secret_state="placeholder")
    world.ssm.add(2, group="db")
    # WHEN it is rotated
    run = drive(world, user="svc-db")
    # THEN the existing key was treated as the old key and replaced
    assert run.error is None, run.error
    assert run.rotation["classification"] == "adopt" and run.rotation["old_key_id"] == old_key
    (new_key,) = world.iam_keys("svc-db")
    assert new_key != old_key and world.current("svc-db")["aws_access_key_id"] == new_key


def test_a_user_without_any_key_gets_its_first(world: World) -> None:
    world.add_user("svc-db", with_key=False, secret_state="placeholder")
    world.ssm.add(1, group="db")
    run = drive(world, user="svc-db")
    assert run.error is None, run.error
    (new_key,) = world.iam_keys("svc-db")
    assert run.rotation["old_key_id"] is None and world.server_keys() >= {new_key}


def test_stale_inactive_key_is_deleted_to_make_room(world: World) -> None:
    # GIVEN a second, inactive key that the secret does not hold
    stale = world.iam.create_access_key(UserName="svc-web")["AccessKey"]["AccessKeyId"]
    world.iam.update_access_key(UserName="svc-web", AccessKeyId=stale, Status="Inactive")
    # WHEN rotated THEN it is deleted (the 2-key limit) and the rotation completes
    run = drive(world)
    assert run.error is None, run.error
    assert stale not in world.iam_keys() and len(world.iam_keys()) == 1
    assert any(f"delete stale inactive key {stale}" in line for line in run.rotation["plan"])


def test_old_key_inactive_at_rollback_is_reactivated(world: World) -> None:
    # GIVEN a server that fails the verify round (after the old key was deactivated)
    (old_key,) = world.iam_keys()
    next(iter(world.ssm.servers.values())).behaviour = "fail_verify"
    run = drive(world)
    # THEN the rotation fails, and rollback made the old key Active again
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert world.iam_keys()[old_key] == "Active"
    assert any(f"reactivated old key {old_key}" in line for line in run.rotation["plan"])
    assert world.lock_owner() is None
