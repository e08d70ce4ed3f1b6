"""Action rotate and verify, end to end: the agent as a subprocess on a simulated server against moto."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
from agent_support import APP_GID, APP_UID, VENV_BIN, Identity, Server, botocore_keys, write_credentials

OTHERS = (
    b"# shared by two daemons\n[other]\naws_access_key_id = AKIAOTHEROTHEROTHER0\naws_secret_access_key = o\n"
)


def test_rotate_writes_the_profile_keeps_attributes_and_backs_up(server: Server, identity: Identity) -> None:
    # GIVEN an app whose credentials file holds an old key next to another profile
    old = OTHERS + b"\n[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = oldsecret\n"
    path = write_credentials(server, old)
    path.chmod(0o644)
    # WHEN the agent rotates
    run = server.run(server.params(identity))
    # THEN it reports the new key and the ARN it proved it with, never the secret
    assert run.code == 0, run.stderr
    assert run.result["status"] == "ok"
    assert run.result["action"] == "rotate"
    assert run.result["profile"] == "app"
    assert run.result["file"] == "/home/app/.aws/credentials"
    assert run.result["access_key_id"] == identity.key_id
    assert run.result["caller_arn"].endswith(":user/keyrotation/" + identity.user)
    assert identity.secret_key not in run.stdout + run.stderr
    # AND the file has the new key, its owner, group and mode, except that others lose their read bit (the
    # secret is never world-readable); the old content is in a root-only backup
    assert botocore_keys(path, "app") == (identity.key_id, identity.secret_key)
    assert botocore_keys(path, "other") == ("AKIAOTHEROTHEROTHER0", "o")
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, APP_UID, APP_GID)
    backup = path.with_name("credentials.keyrotation-backup")
    assert backup.read_bytes() == old
    bst = backup.stat()
    assert (stat.S_IMODE(bst.st_mode), bst.st_uid) == (0o600, 0)
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials", "credentials.keyrotation-backup"]


def test_second_run_changes_nothing_and_keeps_the_backup(server: Server, identity: Identity) -> None:
    old = b"[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = oldsecret\n"
    path = write_credentials(server, old)
    assert server.run(server.params(identity)).code == 0
    rotated = path.read_bytes()
    # WHEN the same command is delivered again (Run Command retries, or the engine re-sends)
    again = server.run(server.params(identity))
    # THEN it succeeds without rewriting, and the backup still holds the key before the rotation
    assert again.code == 0 and again.result["changed"] is False
    assert path.read_bytes() == rotated
    assert path.with_name("credentials.keyrotation-backup").read_bytes() == old


def test_missing_file_and_directory_are_created_0700_0600(server: Server, identity: Identity) -> None:
    run = server.run(server.params(identity))
    assert run.code == 0, run.stderr
    directory = server.path("/home/app/.aws")
    dst = directory.stat()
    assert (stat.S_IMODE(dst.st_mode), dst.st_uid, dst.st_gid) == (0o700, APP_UID, APP_GID)
    path = directory / "credentials"
    assert (
        path.read_bytes()
        == (
            f"[app]\naws_access_key_id = {identity.key_id}\naws_secret_access_key = {identity.secret_key}\n"
        ).encode()
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (directory / "credentials.keyrotation-backup").exists()


def test_parameters_as_flags_work_like_ssm_variables(server: Server, identity: Identity) -> None:
    run = server.run(server.params(identity), via="flags")
    assert run.code == 0, run.stderr
    assert botocore_keys(server.path("/home/app/.aws/credentials"), "app")[0] == identity.key_id


def test_cli_path_fetches_and_verifies_with_the_aws_cli(
    server: Server, identity: Identity, tmp_path: Path
) -> None:
    # GIVEN botocore is not used (forced) and the only AWS client is the CLI, which logs its calls
    log = tmp_path / "cli.log"
    wrapper = tmp_path / "bin" / "aws"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {VENV_BIN}/aws "$@"\n')
    wrapper.chmod(0o755)
    write_credentials(server, OTHERS)
    env = {"KEYROTATION_AWS_CLIENT": "cli", "PATH": f"{wrapper.parent}:/usr/bin:/bin"}
    # WHEN it rotates
    run = server.run(server.params(identity), env=env)
    # THEN the CLI fetched the secret and proved the key with the profile just written
    assert run.code == 0, run.stderr
    assert run.result["caller_arn"].endswith(":user/keyrotation/" + identity.user)
    calls = log.read_text()
    assert "secretsmanager get-secret-value" in calls
    assert "sts get-caller-identity --profile app" in calls
    assert botocore_keys(server.path("/home/app/.aws/credentials"), "app")[0] == identity.key_id


def test_stale_secret_changes_nothing(server: Server, identity: Identity) -> None:
    # GIVEN the engine expects a key the secret does not hold (a stale read)
    path = write_credentials(server, OTHERS)
    run = server.run(server.params(identity, ExpectedAccessKeyId="AKIAEXPECTEDEXPECTED"))
    assert run.code == 4
    assert run.result["status"] == "error" and run.result["error"] == "stale_secret"
    assert path.read_bytes() == OTHERS


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not json", "not a JSON object"),
        ('["a"]', "not a JSON object"),
        ('{"aws_access_key_id": "AKIAONLYTHEIDISHERE0"}', "aws_secret_access_key"),
        (
            '{"aws_access_key_id": "nope", "aws_secret_access_key": "abcdefghijklmnopqrstuvwxyz"}',
            "access key id",
        ),
        ('{"aws_access_key_id": "AKIAGOODGOODGOODGOOD", "aws_secret_access_key": "bad\\n[x]"}', "malformed"),
    ],
)
def test_malformed_secret_changes_nothing(server: Server, identity: Identity, value: str, why: str) -> None:
    path = write_credentials(server, OTHERS)
    identity.put_raw(value)
    run = server.run(server.params(identity, ExpectedAccessKeyId=""))
    assert (run.code, run.result["error"]) == (4, "secret_malformed")
    assert why in run.result["message"]
    assert path.read_bytes() == OTHERS


def test_unknown_secret_reports_the_service_error(server: Server, identity: Identity) -> None:
    run = server.run(server.params(identity, SecretId="keyrotation/does-not-exist"))
    assert (run.code, run.result["error"]) == (4, "secret_fetch_failed")
    assert "ResourceNotFoundException" in run.result["message"]


def test_verify_confirms_the_key_in_the_file(server: Server, identity: Identity) -> None:
    assert server.run(server.params(identity)).code == 0
    before = server.path("/home/app/.aws/credentials").read_bytes()
    run = server.run(server.params(identity, Action="verify"))
    assert run.code == 0, run.stderr
    assert run.result["action"] == "verify" and run.result["access_key_id"] == identity.key_id
    assert run.result["caller_arn"].endswith(identity.user)
    assert server.path("/home/app/.aws/credentials").read_bytes() == before


def test_verify_reports_another_key_and_writes_nothing(server: Server, identity: Identity) -> None:
    assert server.run(server.params(identity)).code == 0
    before = server.path("/home/app/.aws/credentials").read_bytes()
    run = server.run(server.params(identity, Action="verify", ExpectedAccessKeyId="AKIAANOTHERKEYANOTHE"))
    assert (run.code, run.result["error"]) == (8, "key_mismatch")
    assert server.path("/home/app/.aws/credentials").read_bytes() == before


def test_verify_of_a_missing_file_is_a_mismatch(server: Server, identity: Identity) -> None:
    run = server.run(server.params(identity, Action="verify"))
    assert (run.code, run.result["error"]) == (8, "key_mismatch")
    assert not server.path("/home/app/.aws").exists()


def test_failed_verification_restores_the_previous_file(
    server: Server, identity: Identity, fake_sts: type
) -> None:
    # GIVEN STS never accepts the new key
    old = OTHERS + b"[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = oldsecret\n"
    path = write_credentials(server, old)
    sts = fake_sts(failures=10_000)
    env = {
        "AWS_ENDPOINT_URL_STS": sts.url,
        "KEYROTATION_VERIFY_TIMEOUT": "1",
        "KEYROTATION_VERIFY_INTERVAL": "0.2",
    }
    # WHEN the agent rotates
    run = server.run(server.params(identity), env=env)
    # THEN it fails, says why, and the file is exactly what it was (content, mode, owner)
    assert (run.code, run.result["error"]) == (7, "verification_failed")
    assert "InvalidClientTokenId" in run.result["message"] and "restored" in run.result["message"]
    assert sts.requests >= 2
    assert path.read_bytes() == old
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, APP_UID)


def test_failed_verification_of_a_new_file_removes_it(
    server: Server, identity: Identity, fake_sts: type
) -> None:
    sts = fake_sts(failures=10_000)
    env = {"AWS_ENDPOINT_URL_STS": sts.url, "KEYROTATION_VERIFY_TIMEOUT": "0.5"}
    run = server.run(server.params(identity), env=env)
    assert (run.code, run.result["error"]) == (7, "verification_failed")
    assert not server.path("/home/app/.aws/credentials").exists()


def test_verification_retries_while_the_key_propagates(
    server: Server, identity: Identity, fake_sts: type
) -> None:
    # GIVEN STS rejects the new key twice (IAM eventual consistency), then accepts it
    sts = fake_sts(failures=2)
    env = {
        "AWS_ENDPOINT_URL_STS": sts.url,
        "KEYROTATION_VERIFY_TIMEOUT": "10",
        "KEYROTATION_VERIFY_INTERVAL": "0.1",
    }
    run = server.run(server.params(identity), env=env)
    assert run.code == 0, run.stderr
    assert sts.requests == 3
    assert run.result["caller_arn"] == sts.ARN


def test_verification_ignores_environment_credentials(
    server: Server, identity: Identity, tmp_path: Path
) -> None:
    """The proof must use the profile's keys: env credentials (the server's own) would prove nothing."""
    assert server.run(server.params(identity)).code == 0
    # GIVEN the profile is then broken by hand (a key id that moto does not know signs as another user)
    path = server.path("/home/app/.aws/credentials")
    path.write_text(
        "[app]\naws_access_key_id = AKIAUNKNOWNUNKNOWN00\naws_secret_access_key = abcdefghijklmnopqrst\n"
    )
    run = server.run(server.params(identity, Action="verify", ExpectedAccessKeyId="AKIAUNKNOWNUNKNOWN00"))
    # THEN the ARN is not the user's: the env credentials (testing/testing) were not used either
    assert run.code == 0
    assert not run.result["caller_arn"].endswith(identity.user)


def test_result_line_is_json_with_the_contract_fields_on_failure(server: Server, identity: Identity) -> None:
    run = server.run(server.params(identity, Profile="bad profile"))
    assert run.code == 2
    assert set(run.result) >= {"status", "action", "profile", "file", "error", "message"}
    assert run.result["status"] == "error" and run.result["error"] == "invalid_parameter"
    json.dumps(run.result)


def test_no_aws_client_is_reported(server: Server, identity: Identity, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    shutil.copy("/bin/sh", empty / "sh")
    run = server.run(server.params(identity), env={"KEYROTATION_AWS_CLIENT": "cli", "PATH": str(empty)})
    assert (run.code, run.result["error"]) == (4, "no_aws_client")
