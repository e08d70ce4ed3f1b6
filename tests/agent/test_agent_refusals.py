"""Targets the agent must refuse, leaving everything as it was: the SSM Agent's own file, symlinks, hard
links, foreign owners, writable directories, unknown users, missing parents."""

from __future__ import annotations

import os

import pytest
from agent_support import Identity, Server, snapshot, write_credentials

OLD = b"[default]\naws_access_key_id = AKIASSMAGENTSSMAGENT\naws_secret_access_key = agent\n"
WEB_UID = 1001


def refused(server: Server, identity: Identity, code: str, **params: str) -> str:
    before = snapshot(server.root)
    run = server.run(server.params(identity, **params))
    assert run.result["status"] == "error" and run.result["error"] == code, run.result
    assert run.code == 3
    assert snapshot(server.root) == before, "a refused run changed something"
    return str(run.result["message"])


@pytest.mark.parametrize("profile", ["default", "app", "other-app"])
def test_ssm_agents_own_file_is_refused_whatever_the_profile(
    server: Server, identity: Identity, profile: str
) -> None:
    """The SSM Agent rewrites its file without a lock shared with us: no profile there is safe to write."""
    server.path("/root/.aws").mkdir(mode=0o700)
    server.path("/root/.aws/credentials").write_bytes(OLD)
    message = refused(
        server,
        identity,
        "refused_agent_file",
        CredentialsFile="/root/.aws/credentials",
        Profile=profile,
        FileOwner="root",
    )
    assert "SSM Agent" in message and "any profile" in message


@pytest.mark.parametrize("profile", ["default", "app"])
def test_ssm_agents_own_file_is_refused_even_before_it_exists(
    server: Server, identity: Identity, profile: str
) -> None:
    refused(
        server,
        identity,
        "refused_agent_file",
        CredentialsFile="/root/.aws/credentials",
        Profile=profile,
        FileOwner="root",
    )


@pytest.mark.parametrize("profile", ["default", "app"])
def test_the_file_run_command_points_the_agent_at_is_refused(
    server: Server, identity: Identity, profile: str
) -> None:
    # GIVEN Run Command's AWS_SHARED_CREDENTIALS_FILE names a file elsewhere (e.g. the sandbox's node role)
    write_credentials(server, OLD, "/home/app/.aws/credentials")
    server.env["AWS_SHARED_CREDENTIALS_FILE"] = str(server.path("/home/app/.aws/credentials"))
    refused(server, identity, "refused_agent_file", Profile=profile)


def test_symlinked_file_is_refused(server: Server, identity: Identity) -> None:
    target = server.path("/etc/shadow")
    target.write_bytes(b"root:secret-hash:::::::\n")
    directory = write_credentials(server, b"").parent
    (directory / "credentials").unlink()
    (directory / "credentials").symlink_to(target)
    assert "symlink" in refused(server, identity, "unsafe_path")


def test_symlinked_parent_directory_is_refused(server: Server, identity: Identity) -> None:
    real = server.path("/home/app/real-aws")
    real.mkdir(mode=0o700)
    os.chown(real, 1000, 1000)
    server.path("/home/app/.aws").symlink_to(real)
    assert "/home/app/.aws is a symlink" in refused(server, identity, "unsafe_path")


def test_symlink_higher_up_is_refused(server: Server, identity: Identity) -> None:
    server.path("/srv/real/.aws").mkdir(parents=True)
    server.path("/srv/link").symlink_to(server.path("/srv/real"))
    assert "/srv/link is a symlink" in refused(
        server, identity, "unsafe_path", CredentialsFile="/srv/link/.aws/credentials"
    )


def test_directory_owned_by_another_user_is_refused(server: Server, identity: Identity) -> None:
    path = write_credentials(server, b"[x]\ny = 1\n")
    os.chown(path.parent, WEB_UID, WEB_UID)
    assert "owned by uid 1001" in refused(server, identity, "unsafe_path")


def test_world_writable_directory_is_refused(server: Server, identity: Identity) -> None:
    path = write_credentials(server, b"[x]\ny = 1\n")
    path.parent.chmod(0o777)
    assert "writable by other users" in refused(server, identity, "unsafe_path")


def test_file_owned_by_another_user_is_refused(server: Server, identity: Identity) -> None:
    path = write_credentials(server, b"[x]\ny = 1\n")
    os.chown(path, WEB_UID, WEB_UID)
    assert "owned by uid 1001" in refused(server, identity, "unsafe_path")


def test_hard_linked_file_is_refused(server: Server, identity: Identity) -> None:
    """A hard link to a file the owner could not read would otherwise be copied into a backup."""
    path = write_credentials(server, b"[x]\ny = 1\n")
    os.link(path, server.path("/home/app/other-name"))
    assert "hard links" in refused(server, identity, "unsafe_path")


def test_fifo_is_refused(server: Server, identity: Identity) -> None:
    path = write_credentials(server, b"")
    path.unlink()
    os.mkfifo(path)
    assert "not a regular file" in refused(server, identity, "unsafe_path")


def test_unknown_owner_is_refused_before_creating_anything(server: Server, identity: Identity) -> None:
    assert "ghost" in refused(server, identity, "unknown_owner", FileOwner="ghost")


def test_missing_grandparent_is_not_created(server: Server, identity: Identity) -> None:
    assert "does not exist" in refused(
        server, identity, "unsafe_path", CredentialsFile="/home/nobody-here/.aws/credentials"
    )


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("Profile", "DEFAULT", "defaults section"),
        ("Action", "verify", "needs ExpectedAccessKeyId"),
    ],
)
def test_semantically_invalid_parameters(
    server: Server, identity: Identity, name: str, value: str, why: str
) -> None:
    params = server.params(identity, **{name: value})
    if name == "Action":
        params["ExpectedAccessKeyId"] = ""
    run = server.run(params)
    assert (run.code, run.result["error"]) == (2, "invalid_parameter")
    assert why in run.result["message"]


def test_windows_system_profile_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Windows branch, simulated: the agent loaded as if os.name were "nt" refuses the SYSTEM profile's
    file (the SSM Agent's own there), any profile, whatever the case or separators."""
    import types

    from agent_support import fresh_agent_modules

    with fresh_agent_modules():  # this test's own copy of the package, imported as on Windows
        monkeypatch.setattr(os, "name", "nt")
        from keyrotation import base, paths
        monkeypatch.undo()
    monkeypatch.delenv("KEYROTATION_ROOT", raising=False)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    agent = types.SimpleNamespace(
        AgentError=base.AgentError, refuse_ssm_agent_file=paths.refuse_ssm_agent_file
    )
    assert base.IS_WINDOWS
    for path in (
        r"C:\Windows\System32\config\systemprofile\.aws\credentials",
        r"c:\windows\system32\CONFIG\systemprofile\.aws\credentials",
        "C:/Windows/System32/config/systemprofile/.aws/credentials",
    ):
        with pytest.raises(agent.AgentError) as caught:
            agent.refuse_ssm_agent_file(path)
        assert caught.value.code == "refused_agent_file"
    agent.refuse_ssm_agent_file(r"C:\Users\app\.aws\credentials")
