"""The result line survives the SSM Agent's truncation of the command output (issue 12 item 6).

ListCommandInvocations reports 2,500 characters of a plugin's stdout and stderr together; when both are long
the SSM Agent keeps only the first ~1,200 of each (sandbox/moto/run_command.py `_plugin_output` reproduces its
TruncateOutput). The agent's stdout is its result line alone, at most 1,000 characters, so a noisy reload hook
and the longest paths the document admits still leave the engine a whole line to read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from agent_support import (
    APP_GID,
    APP_UID,
    Identity,
    Server,
    parse_single_result,
    ssm_env,
    write_credentials,
)
from agent_support import run_linux_step as run_step
from rotation import fleet

from sandbox.moto.run_command import PLUGIN_OUTPUT_LIMIT, _plugin_output
from ssm_documents.render import render_document

INSTANCE = "mi-0123456789abcdef0"
OLD = b"[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = oldsecret\n"
# 10 kB on the hook's stdout and 10 kB on its stderr
NOISY = "head -c 10000 /dev/zero | tr '\\0' o\necho\nhead -c 10000 /dev/zero | tr '\\0' e >&2\necho >&2\n"


class OneInvocation:
    """ListCommandInvocations for one server, as the engine reads it (fleet.read_outcome)."""

    def __init__(self, status: str, output: str) -> None:
        self.status, self.output = status, output

    def list_command_invocations(self, **_: Any) -> dict[str, Any]:
        plugins = [{"Name": "rotateAccessKeyLinux", "Output": self.output}]
        return {
            "CommandInvocations": [{"InstanceId": INSTANCE, "Status": self.status, "CommandPlugins": plugins}]
        }


def make_hook(server: Server, name: str, body: str) -> None:
    hooks = server.path("/etc/keyrotation/hooks.d")
    hooks.mkdir(parents=True)
    for directory in (server.path("/etc/keyrotation"), hooks):
        directory.chmod(0o755)
    hook = hooks / name
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(0o755)


def longest_path(server: Server) -> str:
    """A credentials file 13 directories of 60 characters below /home/app (the pattern allows 16 levels)."""
    logical = "/home/app"
    for index in range(13):
        logical += "/" + chr(ord("a") + index) * 60
        server.path(logical).mkdir(mode=0o700)
        os.chown(server.path(logical), APP_UID, APP_GID)
    return logical + "/credentials"


def run_and_read(
    server: Server, identity: Identity, tmp_path: Path, **overrides: str
) -> tuple[Any, str, str]:
    """The document's Linux step on the server, then the engine's reading of the truncated plugin Output."""
    params = server.params(identity, **overrides)
    proc = run_step(render_document(), tmp_path / "step", ssm_env(server, params))
    output = _plugin_output(proc.stdout, proc.stderr)
    assert len(output) <= PLUGIN_OUTPUT_LIMIT
    status = "Success" if proc.returncode == 0 else "Failed"
    outcome = fleet.read_outcome(OneInvocation(status, output), ["cmd-1"], [INSTANCE], identity.key_id)  # type: ignore[arg-type]
    return outcome, proc.stdout, proc.stderr


def test_noisy_hook_and_longest_path_still_read_as_confirmed(
    server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN a credentials file at a path near the longest the document admits, and a reload hook that
    # prints 10 kB to stdout and 10 kB to stderr
    logical = longest_path(server)
    write_credentials(server, OLD, logical)
    make_hook(server, "noisy", NOISY)
    # WHEN the document rotates the key and the engine reads the truncated output
    outcome, stdout, stderr = run_and_read(
        server, identity, tmp_path, CredentialsFile=logical, ReloadHook="noisy"
    )
    # THEN the server reads as confirmed: its one result line survived whole
    assert outcome.confirmed == (INSTANCE,), (outcome.failed, stderr[-500:])
    assert len(stdout.rstrip("\n")) <= 1000
    result = parse_single_result(stdout, stderr)
    assert (result["status"], result["access_key_id"], result["hook"]) == ("ok", identity.key_id, "noisy")
    # AND the hook's output the agent relays to stderr is bounded
    assert stderr.count("o" * 100) <= 10 and stderr.count("e" * 100) <= 10
    assert identity.secret_key not in stdout + stderr


def test_failure_with_noisy_hook_and_long_path_reads_as_that_failure(
    server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN the same long path and a hook that prints 10 kB twice and then fails
    logical = longest_path(server)
    write_credentials(server, OLD, logical)
    make_hook(server, "noisy", NOISY + "exit 3\n")
    # WHEN the document runs
    outcome, stdout, _ = run_and_read(server, identity, tmp_path, CredentialsFile=logical, ReloadHook="noisy")
    # THEN the engine reads the agent's own error (not "no result line"), with its code and message
    (failure,) = outcome.failed
    assert "hook_failed" in str(failure) and "exited 3" in str(failure)
    assert len(stdout.rstrip("\n")) <= 1000


@pytest.mark.parametrize("where", ["message", "file", "caller_arn"])
def test_result_line_is_bounded_and_shortening_never_uncovers_the_secret(where: str) -> None:
    from keyrotation import contract
    from keyrotation import main as agent

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    result = {
        "status": "error",
        "action": "rotate",
        "profile": "p" * 64,
        "file": "/" + "f" * 900,
        "access_key_id": "AKIA" + "A" * 124,
        "caller_arn": "arn:aws:iam::123456789012:user/" + "u" * 600,
        "error": "verification_failed",
        "message": "m" * 1000,
        "backup": "/" + "b" * 920,
        "hook": "h" * 64,
    }
    # the secret straddles the middle of a long field, where shortening cuts
    value = str(result[where])
    result[where] = value[: len(value) // 2] + secret + value[len(value) // 2 :]
    line = agent.result_line(result, [secret])
    assert len(line) <= contract.RESULT_LINE_LIMIT == 1000
    assert all(secret[i : i + 8] not in line for i in range(len(secret) - 7))
    parsed = fleet.parse_result(line)
    assert parsed is not None
    # what the engine relies on is never shortened
    assert (parsed["status"], parsed["error"], parsed["access_key_id"]) == (
        "error",
        "verification_failed",
        result["access_key_id"],
    )
