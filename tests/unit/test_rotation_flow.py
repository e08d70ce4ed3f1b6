"""End-to-end behaviour of the steps, driven in the state machine's order against moto and a fake fleet."""

from __future__ import annotations

from typing import Any

from conftest import World, drive


def test_fresh_rotation_replaces_the_key_everywhere(world: World) -> None:
    # GIVEN a user whose only key is stored in its secret, and three online servers
    (old_key,) = world.keys()
    # WHEN a standard rotation runs to the end
    run = drive(world)
    # THEN the user has exactly one key, a new one, and it is the secret's current key
    assert run.error is None, run.error
    keys = world.keys()
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
    assert run.ran == ["prepare", "create_key", "verify_key", "promote", "distribute", "check_distribution",
                       "check_usage", "deactivate", "distribute", "check_distribution", "delete", "notify"]


def _params(world: World) -> dict[str, Any]:
    return world.ssm.commands[0]["Parameters"]


def test_commands_carry_only_non_secret_parameters(world: World) -> None:
    run = drive(world)
    params = _params(world)
    assert params == {
        "SecretId": ["keyrotation/svc-web"], "CredentialsFile": ["/home/app/.aws/credentials"],
        "Profile": ["app"], "FileOwner": ["app"], "ExpectedAccessKeyId": [run.rotation["new_key_id"]],
        "ReloadHook": ["restart-app"], "Action": ["rotate"],
    }
    command = world.ssm.commands[0]
    assert (command["MaxErrors"], command["MaxConcurrency"], command["TimeoutSeconds"]) == ("0", "50", 600)
