"""Reload hooks: only root-owned, non-writable executables from the fixed hooks directory, with a timeout."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_support import Identity, Server

HOOKS = "/etc/keyrotation/hooks.d"


def make_hook(server: Server, name: str, body: str, mode: int = 0o755) -> Path:
    hooks = server.path(HOOKS)
    hooks.mkdir(parents=True, exist_ok=True)
    for directory in (server.path("/etc/keyrotation"), hooks):
        directory.chmod(0o755)
    hook = hooks / name
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(mode)
    return hook


def test_hook_runs_after_the_rotation_with_context(server: Server, identity: Identity) -> None:
    record = server.path("/hook-ran")
    make_hook(
        server,
        "restart-app",
        'echo "$KEYROTATION_PROFILE $KEYROTATION_ACCESS_KEY_ID $KEYROTATION_CREDENTIALS_FILE $(umask)"'
        f" > {record}\n"
        "echo KEYROTATION_RESULT fake-from-hook\n",
    )
    run = server.run(server.params(identity, ReloadHook="restart-app"))
    assert run.code == 0, run.stderr
    assert run.result["hook"] == "restart-app"
    # context in the environment, and a normal umask (the document step runs under umask 077)
    assert record.read_text() == f"app {identity.key_id} /home/app/.aws/credentials 0022\n"
    # the hook's own output never reaches the command output (one result line only)
    assert run.stdout.count("KEYROTATION_RESULT") == 1


def test_hook_failure_is_reported_after_the_key_was_written(server: Server, identity: Identity) -> None:
    make_hook(server, "restart-app", "echo daemon refused >&2\nexit 3\n")
    run = server.run(server.params(identity, ReloadHook="restart-app"))
    assert (run.code, run.result["error"]) == (9, "hook_failed")
    assert "exited 3" in run.result["message"] and "daemon refused" in run.result["message"]
    assert run.result["access_key_id"] == identity.key_id
    assert identity.key_id in server.path("/home/app/.aws/credentials").read_text()


def test_hook_timeout_kills_it(server: Server, identity: Identity) -> None:
    marker = server.path("/survived")
    make_hook(server, "slow", f"(sleep 0.6; touch {marker}) &\nsleep 30\n")
    started = time.monotonic()
    run = server.run(server.params(identity, ReloadHook="slow"), env={"KEYROTATION_HOOK_TIMEOUT": "0.3"})
    assert (run.code, run.result["error"]) == (9, "hook_failed")
    assert "timed out" in run.result["message"]
    assert time.monotonic() - started < 10
    time.sleep(1.0)
    assert not marker.exists(), "the hook's children must be killed with it"


def _not_root(hook: Path) -> None:
    os.chown(hook, 1000, 1000)


def _group_writable(hook: Path) -> None:
    hook.chmod(0o775)


def _world_writable_dir(hook: Path) -> None:
    hook.parent.chmod(0o777)


def _symlink(hook: Path) -> None:
    real = hook.with_name("real-hook")
    hook.rename(real)
    hook.symlink_to(real)


def _not_executable(hook: Path) -> None:
    hook.chmod(0o644)


def _missing(hook: Path) -> None:
    hook.unlink()


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_not_root, "not owned by root"),
        (_group_writable, "writable by group or others"),
        (_world_writable_dir, "writable by group or others"),
        (_symlink, "is a symlink"),
        (_not_executable, "not executable"),
        (_missing, "not found"),
    ],
)
def test_unsafe_hooks_are_not_run(
    server: Server, identity: Identity, spoil: Callable[[Path], None], why: str
) -> None:
    canary = server.path("/hook-ran")
    hook = make_hook(server, "restart-app", f"touch {canary}\n")
    spoil(hook)
    run = server.run(server.params(identity, ReloadHook="restart-app"))
    assert (run.code, run.result["error"]) == (9, "hook_failed")
    assert why in run.result["message"]
    assert not canary.exists()
