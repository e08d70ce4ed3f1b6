"""Servers leave, fail and join during a day: each distribution resolves the group again (fleet.plan_reach).

A server that is gone before it got the new key blocks the rotation, named, while the others still get the
key; one that confirmed the new key and is gone by the verify pass is released (no reason to keep the old
key, nothing reactivated); one that joined gets the key. SendCommand refuses a whole call listing a
deregistered or unreachable node (the fake does too), so such nodes are never listed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rotation_harness import World, drive


def _before_distribution(monkeypatch: pytest.MonkeyPatch, number: int, action: Callable[[], None]) -> None:
    """Run `action` just before the `number`-th distribution from now on (1: the next run's rotate, 2: its
    verify), once."""
    import handlers.distribute  # (not at collection: Powertools reads its service name at import)

    real = handlers.distribute.handler
    calls = [0]

    def distribute(event: Any, context: Any) -> Any:
        calls[0] += 1
        if calls[0] == number:
            action()
        return real(event, context)

    monkeypatch.setattr(handlers.distribute, "handler", distribute)


def _verify_targets(world: World) -> list[str]:
    verify = [c for c in world.ssm.commands if c["Parameters"]["Action"] == ["verify"]]
    return sorted(i for c in verify for i in c["InstanceIds"])


def test_a_server_deregistered_after_confirming_is_released_and_the_old_key_deleted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN three servers, one of which is decommissioned (deregistered) during the grace period
    (old_key,) = world.iam_keys()
    leaving = sorted(world.ssm.servers)[0]
    _before_distribution(monkeypatch, 2, lambda: world.ssm.servers.pop(leaving))
    # WHEN the rotation runs
    run = drive(world)
    # THEN it completes: the two remaining servers verified, the old key is deleted, nothing reactivated
    assert run.error is None, run.error
    assert old_key not in world.iam_keys() and list(world.iam_keys().values()) == ["Active"]
    assert _verify_targets(world) == sorted(set(world.ssm.servers))
    # AND the plan names the server as released, not verified
    assert any("confirmed the new key and have left" in note and f"{leaving} (not registered)" in note
               for note in run.rotation["plan"]), run.rotation["plan"]


def test_a_server_unreachable_in_the_verify_pass_is_released_not_a_reason_to_reactivate(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    (old_key,) = world.iam_keys()
    lost = sorted(world.ssm.servers)[1]

    def lose() -> None:
        world.ssm.servers[lost].ping = "ConnectionLost"

    _before_distribution(monkeypatch, 2, lose)
    run = drive(world)
    assert run.error is None, run.error
    assert "rollback" not in run.ran and old_key not in world.iam_keys()
    assert lost not in _verify_targets(world)
    assert any(f"{lost} (ConnectionLost)" in note for note in run.rotation["plan"])


def test_a_server_gone_before_it_got_the_key_blocks_by_name_and_the_others_still_get_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a server is deregistered between prepare and the first distribution
    (old_key,) = world.iam_keys()
    gone = sorted(world.ssm.servers)[0]
    _before_distribution(monkeypatch, 1, lambda: world.ssm.servers.pop(gone))
    # WHEN the rotation runs
    run = drive(world)
    # THEN it stops naming that server; the other two were sent the new key; the old key stays Active
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert f"{gone} (not registered)" in run.error["message"]
    assert "the other 2 were sent the new key" in run.error["message"]
    (rotate,) = world.ssm.commands
    assert gone not in rotate["InstanceIds"] and len(rotate["InstanceIds"]) == 2
    assert world.iam_keys()[old_key] == "Active" and "deactivate" not in run.ran
    # AND once it is out of the group, a new run resumes and completes without a third key
    again = drive(world)
    assert again.error is None, again.error
    assert again.rotation["new_key_id"] == run.rotation["new_key_id"]
    assert list(world.iam_keys()) == [run.rotation["new_key_id"]]


def test_a_server_that_joined_during_the_grace_period_gets_the_key_by_its_own_rotate_command(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    joined: list[str] = []
    _before_distribution(monkeypatch, 2, lambda: joined.extend(world.ssm.add(1)))
    run = drive(world)
    assert run.error is None, run.error
    (newcomer,) = joined
    rotate_commands = [c for c in world.ssm.commands if c["Parameters"]["Action"] == ["rotate"]]
    assert [c["InstanceIds"] for c in rotate_commands][-1] == [newcomer]
    assert world.ssm.servers[newcomer].key_id == run.rotation["new_key_id"]
    assert any("joined the group since prepare" in note for note in run.rotation["plan"])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"agent_version": "3.2.582.0"}, "SSM Agent 3.2.582.0 is older than 3.3.2746.0"),
        ({"agent_version": ""}, "SSM Agent (version unknown) is older than 3.3.2746.0"),
        ({"platform": "Windows"}, "Windows servers are not supported yet (Linux only)"),
    ],
)
def test_a_server_that_cannot_run_the_document_is_refused_before_anything_changes(
    world: World, change: dict[str, str], reason: str
) -> None:
    # GIVEN one server with an SSM Agent older than ENV_VAR interpolation, or not Linux
    before = world.iam_keys()
    server = world.ssm.servers[sorted(world.ssm.servers)[2]]
    for name, value in change.items():
        setattr(server, name, value)
    # WHEN a rotation starts THEN prepare refuses it, naming the server and why, and nothing changed
    run = drive(world)
    assert run.error is not None and run.error["name"] == "TargetsUnsupported"
    assert f"{server.instance_id} ({reason}" in run.error["message"]
    assert world.iam_keys() == before and world.ssm.commands == [] and world.lock_owner() is None


def test_an_ec2_instance_matched_by_a_groups_tag_is_refused_with_what_to_do(world: World) -> None:
    before = world.iam_keys()
    (instance,) = world.ssm.add(1)
    world.ssm.servers["i-0123456789abcdef0"] = world.ssm.servers.pop(instance)
    world.ssm.servers["i-0123456789abcdef0"].instance_id = "i-0123456789abcdef0"
    run = drive(world)
    assert run.error is not None and run.error["name"] == "TargetsUnsupported"
    assert "i-0123456789abcdef0 (an EC2 instance matched by the group's tag" in run.error["message"]
    assert "instance_ids group" in run.error["message"]
    assert world.iam_keys() == before and world.ssm.commands == []


def test_allow_offline_never_turns_a_fleet_gone_offline_into_a_confirmed_distribution(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN offline servers may be skipped, and every server loses its connection after prepare
    (old_key,) = world.iam_keys()

    def everyone_offline() -> None:
        for server in world.ssm.servers.values():
            server.ping = "ConnectionLost"

    _before_distribution(monkeypatch, 1, everyone_offline)
    # WHEN the rotation runs THEN it stops before anything counts as confirmed; the old key stays Active
    run = drive(world, allow_offline=True)
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert "no server of group 'web' can receive the new key" in run.error["message"]
    assert world.iam_keys()[old_key] == "Active" and "deactivate" not in run.ran
    assert world.ssm.commands == []
