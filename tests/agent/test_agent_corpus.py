# ruff: noqa: E501  (the corpus is long byte literals, kept one case per line pair for review)
"""A corpus of awkward credentials files: after a rotation of profile `app`, the file is exactly the expected
bytes (only the profile's key lines changed), and botocore and the real AWS CLI read the new key for `app` and
the old values for every other profile.

All agents run concurrently once per module (one simulated server per case) to keep the suite fast; the AWS CLI
reads every file in one process (awscli's own driver, `aws configure get`), plus one run of the `aws` binary.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.configloader
import pytest
from agent_support import (
    VENV_BIN,
    Identity,
    Result,
    make_identity,
    make_server,
    parse_single_result,
    write_credentials,
)

NEW = "NEWID"
NEWS = "NEWSECRET"


@dataclass(frozen=True)
class Case:
    before: bytes | None  # None: no file
    expected: bytes  # NEWID / NEWSECRET stand for the secret's values


CORPUS: dict[str, Case] = {
    "target-first-with-comments": Case(
        b"# managed by ops\n[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = old\n"
        b"region = eu-west-1\n\n; the reporting job\n[reports]\naws_access_key_id = AKIAREPORTSREPORTS00\n"
        b"aws_secret_access_key = rep\n",
        b"# managed by ops\n[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n"
        b"region = eu-west-1\n\n; the reporting job\n[reports]\naws_access_key_id = AKIAREPORTSREPORTS00\n"
        b"aws_secret_access_key = rep\n",
    ),
    "target-last-no-trailing-newline-keys-reversed": Case(
        b"[a]\naws_access_key_id=AKIAAAAAAAAAAAAAAAA0\naws_secret_access_key=a\n"
        b"[app]\naws_secret_access_key=old\naws_access_key_id=AKIAOLDOLDOLDOLDOLD0",
        b"[a]\naws_access_key_id=AKIAAAAAAAAAAAAAAAA0\naws_secret_access_key=a\n"
        b"[app]\naws_secret_access_key=NEWSECRET\naws_access_key_id=NEWID",
    ),
    "crlf-stale-session-token-with-continuation": Case(
        b"[app]\r\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\r\naws_secret_access_key = old\r\n"
        b"aws_session_token = TOKEN\r\n  TOKENCONTINUED\r\nregion = us-east-1\r\n"
        b"[b]\r\naws_session_token = KEEP\r\naws_access_key_id = ASIABBBBBBBBBBBBBBB0\r\naws_secret_access_key = b\r\n",
        b"[app]\r\naws_access_key_id = NEWID\r\naws_secret_access_key = NEWSECRET\r\n"
        b"region = us-east-1\r\n"
        b"[b]\r\naws_session_token = KEEP\r\naws_access_key_id = ASIABBBBBBBBBBBBBBB0\r\naws_secret_access_key = b\r\n",
    ),
    "crlf-target-missing": Case(
        b"[a]\r\naws_access_key_id = AKIAAAAAAAAAAAAAAAA0\r\naws_secret_access_key = a\r\n",
        b"[a]\r\naws_access_key_id = AKIAAAAAAAAAAAAAAAA0\r\naws_secret_access_key = a\r\n"
        b"\r\n[app]\r\naws_access_key_id = NEWID\r\naws_secret_access_key = NEWSECRET\r\n",
    ),
    "target-missing": Case(
        b"[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAA0\naws_secret_access_key = a\n",
        b"[a]\naws_access_key_id = AKIAAAAAAAAAAAAAAAA0\naws_secret_access_key = a\n"
        b"\n[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n",
    ),
    "target-missing-no-trailing-newline": Case(
        b"[a]\nregion = eu-central-1",
        b"[a]\nregion = eu-central-1\n\n[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET",
    ),
    "profile-prefixed-section-is-another-profile": Case(
        b"[profile app]\naws_access_key_id = AKIAPREFIXEDPREFIXED\naws_secret_access_key = p\n",
        b"[profile app]\naws_access_key_id = AKIAPREFIXEDPREFIXED\naws_secret_access_key = p\n"
        b"\n[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n",
    ),
    "unicode-comments-and-values": Case(
        "# clé d’accès — ñ 日本語\n[ünïcode]\nnote = café ☕\n[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\n"
        "aws_secret_access_key = old\n# fin 🎉\n".encode(),
        "# clé d’accès — ñ 日本語\n[ünïcode]\nnote = café ☕\n[app]\naws_access_key_id = NEWID\n"
        "aws_secret_access_key = NEWSECRET\n# fin 🎉\n".encode(),
    ),
    "empty-file": Case(b"", b"[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n"),
    "missing-file": Case(None, b"[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n"),
    "comments-only": Case(
        b"# nothing here yet\n",
        b"# nothing here yet\n\n[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n",
    ),
    "section-without-keys": Case(
        b"[app]\nregion = ap-south-1\n\n[z]\nx = 1\n",
        b"[app]\nregion = ap-south-1\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n\n[z]\nx = 1\n",
    ),
    "header-only-at-eof": Case(
        b"[z]\nx = 1\n[app]",
        b"[z]\nx = 1\n[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET",
    ),
    "uppercase-keys-colon-and-spacing": Case(
        b"[app]\nAWS_ACCESS_KEY_ID: AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key   =old\n",
        b"[app]\nAWS_ACCESS_KEY_ID: NEWID\naws_secret_access_key   =NEWSECRET\n",
    ),
    "indented-sections-and-options": Case(
        b"  [app]\n  aws_access_key_id = AKIAOLDOLDOLDOLDOLD0\n  aws_secret_access_key = old\n  [b]\n  y = 2\n",
        b"  [app]\n  aws_access_key_id = NEWID\n  aws_secret_access_key = NEWSECRET\n  [b]\n  y = 2\n",
    ),
    "inline-comment-is-part-of-the-old-value": Case(
        b"[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0 # old key\naws_secret_access_key = old\t\n",
        b"[app]\naws_access_key_id = NEWID\naws_secret_access_key = NEWSECRET\n",
    ),
    "default-profile-and-blank-lines-kept": Case(
        b"\n\n[default]\naws_access_key_id = AKIADEFAULTDEFAULT00\naws_secret_access_key = d\n\n\n\n"
        b"[app]\n\taws_access_key_id = AKIAOLDOLDOLDOLDOLD0\n\n\n",
        b"\n\n[default]\naws_access_key_id = AKIADEFAULTDEFAULT00\naws_secret_access_key = d\n\n\n\n"
        b"[app]\n\taws_access_key_id = NEWID\n\taws_secret_access_key = NEWSECRET\n\n\n",
    ),
    "multiline-secret-value-replaced-whole": Case(
        b"[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = old\n  more\n\n  evenmore\n"
        b"# after\n[c]\nz = 3\n",
        b"[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\naws_secret_access_key = NEWSECRET\n"
        b"# after\n[c]\nz = 3\n".replace(b"AKIAOLDOLDOLDOLDOLD0", b"NEWID"),
    ),
}


def materialize(data: bytes, identity: Identity) -> bytes:
    return data.replace(b"NEWSECRET", identity.secret_key.encode()).replace(
        b"NEWID", identity.key_id.encode()
    )


def parse(data: bytes) -> dict[str, dict[str, str]]:
    """What botocore sees (its own parser)."""
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"corpus-parse-{os.getpid()}"
    path.write_bytes(data)
    try:
        return botocore.configloader.raw_config_parse(str(path))
    finally:
        path.unlink()


CLI_READER = """
import contextlib, io, json, os, sys
from awscli.clidriver import create_clidriver
answers = []
for path, profile, key in json.load(sys.stdin):
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = path
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = create_clidriver().main(["configure", "get", key, "--profile", profile])
    answers.append([code, out.getvalue().rstrip("\\n")])
print(json.dumps(answers))
"""


@dataclass
class Rotated:
    identity: Identity
    files: dict[str, Path]
    results: dict[str, Result]
    cli: dict[tuple[str, str, str], str]


@pytest.fixture(scope="module")
def rotated(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Rotated:
    identity = make_identity(moto_url)
    files: dict[str, Path] = {}
    procs = {}
    for name, case in CORPUS.items():
        root = tmp_path_factory.mktemp(name)
        server = make_server(root, moto_url)
        if case.before is not None:
            files[name] = write_credentials(server, case.before)
        else:
            files[name] = server.path("/home/app/.aws/credentials")
        procs[name] = server.start(server.params(identity))
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        results[name] = Result(proc.returncode, parse_single_result(stdout, stderr), stdout, stderr)
    queries = []
    for name, path in files.items():
        if not path.exists():
            continue
        for profile, values in parse(path.read_bytes()).items():
            for key in ("aws_access_key_id", "aws_secret_access_key"):
                if key in values:
                    queries.append((name, str(path), profile, key))
    reader = subprocess.run(
        [sys.executable, "-c", CLI_READER],
        input=json.dumps([q[1:] for q in queries]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    answers = json.loads(reader.stdout.splitlines()[-1])
    cli = {}
    for (name, _path, profile, key), (code, value) in zip(queries, answers, strict=True):
        assert code == 0, (name, profile, key)
        cli[(name, profile, key)] = value
    return Rotated(identity, files, results, cli)


@pytest.mark.parametrize("name", list(CORPUS))
def test_only_the_profile_keys_change(rotated: Rotated, name: str) -> None:
    case = CORPUS[name]
    run = rotated.results[name]
    assert run.code == 0, run.stderr
    assert run.result["status"] == "ok"
    # THEN the file is byte for byte the expected one: every byte outside the two key values is the old byte
    assert rotated.files[name].read_bytes() == materialize(case.expected, rotated.identity)


@pytest.mark.parametrize("name", list(CORPUS))
def test_botocore_and_the_cli_read_new_app_key_and_old_other_profiles(rotated: Rotated, name: str) -> None:
    case = CORPUS[name]
    identity = rotated.identity
    after = parse(rotated.files[name].read_bytes())
    before = parse(case.before) if case.before is not None else {}
    # botocore: app has the new key, every other profile is exactly as before
    assert after["app"]["aws_access_key_id"] == identity.key_id
    assert after["app"]["aws_secret_access_key"] == identity.secret_key
    assert "aws_session_token" not in after["app"]
    assert {p: v for p, v in after.items() if p != "app"} == {p: v for p, v in before.items() if p != "app"}
    # the AWS CLI agrees, profile by profile
    assert rotated.cli[(name, "app", "aws_access_key_id")] == identity.key_id
    assert rotated.cli[(name, "app", "aws_secret_access_key")] == identity.secret_key
    for profile, values in before.items():
        if profile == "app":
            continue
        for key in ("aws_access_key_id", "aws_secret_access_key"):
            if key in values:
                assert rotated.cli[(name, profile, key)] == values[key]


def test_the_aws_cli_binary_signs_with_the_rotated_profile(rotated: Rotated, moto_url: str) -> None:
    path = rotated.files["crlf-stale-session-token-with-continuation"]
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "AWS_SHARED_CREDENTIALS_FILE": str(path),
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    got = subprocess.run(
        [str(VENV_BIN / "aws"), "configure", "get", "aws_access_key_id", "--profile", "app"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert got.stdout.strip() == rotated.identity.key_id
    who = subprocess.run(
        [str(VENV_BIN / "aws"), "sts", "get-caller-identity", "--profile", "app", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(who.stdout)["Arn"].endswith(":user/keyrotation/" + rotated.identity.user)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"[app]\naws_access_key_id = A\n[app]\nx = 1\n", "DuplicateSectionError"),
        (b"[app]\naws_access_key_id = A\naws_access_key_id = B\n", "DuplicateOptionError"),
        (b"\xef\xbb\xbf[app]\naws_access_key_id = A\n", "MissingSectionHeaderError"),
        (b"aws_access_key_id = A\n[app]\n", "MissingSectionHeaderError"),
        (b"[app]\nthis line has no separator\n", "ParsingError"),
        (b"[app]\nnote = \xff\xfe latin-1\n", "not UTF-8"),
    ],
)
def test_a_file_the_sdks_cannot_parse_is_reported_not_fixed(
    server: Any, identity: Identity, content: bytes, why: str
) -> None:
    # GIVEN a file that botocore already rejects (for every profile)
    with pytest.raises((configparser.Error, UnicodeDecodeError, botocore.exceptions.ConfigParseError)):
        botocore.configloader.raw_config_parse(str(write_credentials(server, content)))
    path = write_credentials(server, content)
    # WHEN the agent is asked to rotate
    run = server.run(server.params(identity))
    # THEN it refuses, names the problem, and leaves the file alone
    assert (run.code, run.result["error"]) == (3, "unparseable_file")
    assert why in run.result["message"]
    assert path.read_bytes() == content
    assert not path.with_name("credentials.keyrotation-backup").exists()


def test_default_section_that_would_leak_into_the_profile_is_refused(server: Any, identity: Identity) -> None:
    content = b"[DEFAULT]\naws_session_token = everywhere\n[app]\naws_access_key_id = AKIAOLDOLDOLDOLDOLD0\n"
    path = write_credentials(server, content)
    run = server.run(server.params(identity))
    assert (run.code, run.result["error"]) == (3, "unsupported_file")
    assert path.read_bytes() == content
