"""Hostile parameter values: rejected by the document's patterns (RE2, as SSM's Go agent applies them, and
Python's re, as our agent does) and by the agent itself; a canary file proves nothing was executed."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import pytest
import re2
from agent_support import (
    Identity,
    Server,
    parse_single_result,
    run_linux_step,
    shell_injections,
    ssm_env,
)

from ssm_documents import render

PATTERNS = {name: spec["allowedPattern"] for name, spec in render.document_parameters().items()}
CANARY = "/tmp/keyrotation-canary"  # every injection below tries to create it


def injections(prefix: str) -> list[str]:
    return [
        *shell_injections(prefix, CANARY),
        f"{prefix}>{CANARY}",
        f"{prefix}${{IFS}}touch${{IFS}}{CANARY}",
    ]


COMMON = ["", " ", "x" * 2000, "\t", "a b", "{{ Profile }}", "%s%n", "é", "\u0430pp", "-", "--help", "\\"]
HOSTILE: dict[str, list[str]] = {
    "SecretId": injections("keyrotation/svc")
    + ["-x", "keyrotation/svc\n", "arn:aws:secretsmanager:us-east-1:1:secret:x", "a" * 600, "../x y"],
    "CredentialsFile": injections("/home/app/.aws/credentials")
    + [
        "relative/credentials",
        "/home/app/../../etc/shadow",
        "/home/app/./.aws/credentials",
        "/home/app/.aws/..",
        "/home/app/.aws/",
        "//etc/passwd",
        "/home/app/.aws/credentials\n",
        "/" + "/".join(["d"] * 17),
        "/" + "d" * 70,
        "/home/app/...",
        "C:..\\x",
    ],
    "Profile": injections("app") + ["default]\n[x", "[app]", "app\n", ".app", "a" * 65, "app=1", "app#"],
    "FileOwner": injections("app") + ["root:root", "1000", "app\n", "a" * 33, "-app"],
    "ExpectedAccessKeyId": injections("AKIAIOSFODNN7EXAMPLE")
    + ["akiaiosfodnn7example", "AKIA", "AKIA$(id)", "XKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE\n"],
    "ReloadHook": injections("restart-app")
    + ["../../bin/sh", "/bin/sh", "restart app", "restart-app\n", "a" * 65, ".hidden", "..", "hooks.d/x"],
    "Action": injections("rotate")
    + ["ROTATE", "rotate\n", "rotate ", "delete", "verify;rotate", "rotate|verify"],
}
VALID: dict[str, list[str]] = {
    "SecretId": [
        "keyrotation/svc-web",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:keyrotation/svc-web-AbCdEf",
        "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:x",
        "a@b+c=d.e_f-g",
    ],
    "CredentialsFile": [
        "/home/app/.aws/credentials",
        "/etc/app/aws-credentials",
        "/srv/x.y/.aws/credentials.d",
        "C:\\Users\\app\\.aws\\credentials",
        "/" + "/".join(["d"] * 16),
        "/" + "d" * 60,
    ],
    "Profile": ["app", "default", "svc-web", "A.b_c-1", "a" * 64],
    "FileOwner": ["app", "_svc", "www-data", "a.b", "a" * 32],
    "ExpectedAccessKeyId": ["", "AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE"],
    "ReloadHook": ["", "restart-app", "reload.nginx", "a" * 64],
    "Action": ["rotate", "verify"],
}


def allowed_by_both(name: str, value: str) -> bool:
    by_re2 = re2.search(PATTERNS[name], value) is not None  # Go RE2 semantics: $ is end of text
    by_re = __import__("re").fullmatch(PATTERNS[name], value) is not None
    assert by_re2 == by_re, (name, value)
    return by_re


@pytest.mark.parametrize("name", list(PATTERNS))
def test_patterns_reject_every_hostile_value(name: str) -> None:
    for value in HOSTILE[name] + COMMON:
        if name in ("ExpectedAccessKeyId", "ReloadHook") and value == "":
            continue  # empty means "none" for these two
        assert not allowed_by_both(name, value), (name, value)


@pytest.mark.parametrize("name", list(PATTERNS))
def test_patterns_accept_the_values_we_send(name: str) -> None:
    for value in VALID[name]:
        assert allowed_by_both(name, value), (name, value)


def test_re2_and_re_agree_on_random_strings() -> None:
    """Equivalence, not just on our examples: random strings over an alphabet rich in the patterns' edges."""
    rng = random.Random(1234)
    alphabet = string.ascii_letters[:8] + "AKIS019:/\\.-_@+=$;`'\" \n\r\t[]" + "é"
    seeds = [v for values in VALID.values() for v in values]
    for name in PATTERNS:
        for _ in range(1500):
            if rng.random() < 0.5:
                value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            else:  # mutate a valid value: the interesting boundary
                value = list(rng.choice(seeds))
                for _ in range(rng.randint(1, 3)):
                    where = rng.randint(0, len(value))
                    value[where:where] = rng.choice(alphabet)
                value = "".join(value)
            allowed_by_both(name, value)


@pytest.fixture
def agent() -> Any:
    """The agent's input checks and their error (keyrotation.parameters, keyrotation.base)."""
    import types

    from keyrotation import base, parameters

    return types.SimpleNamespace(
        validate_parameters=parameters.validate_parameters, AgentError=base.AgentError
    )


@pytest.mark.parametrize("name", list(PATTERNS))
def test_agent_validation_rejects_every_hostile_value(agent: Any, name: str) -> None:
    good = {
        "SecretId": "keyrotation/svc-web",
        "CredentialsFile": "/home/app/.aws/credentials",
        "Profile": "app",
        "FileOwner": "app",
        "ExpectedAccessKeyId": "AKIAIOSFODNN7EXAMPLE",
        "ReloadHook": "",
        "Action": "rotate",
    }
    agent.validate_parameters(dict(good))
    for value in HOSTILE[name] + COMMON:
        if name in ("ExpectedAccessKeyId", "ReloadHook") and value == "":
            continue
        with pytest.raises(agent.AgentError) as caught:
            agent.validate_parameters(dict(good, **{name: value}))
        assert caught.value.code == "invalid_parameter"


@pytest.fixture
def canary() -> Any:
    path = Path(CANARY)
    path.unlink(missing_ok=True)
    yield path
    assert not path.exists(), "an injected command ran"
    path.unlink(missing_ok=True)


@pytest.mark.parametrize("name", list(PATTERNS))
def test_document_step_with_injections_runs_nothing(
    name: str, server: Server, identity: Identity, canary: Path, tmp_path: Path
) -> None:
    """Through the real Linux step (sh + agent): had SSM's pattern check been bypassed, still nothing runs."""
    document = render.render_document()
    for index, value in enumerate(HOSTILE[name][:10]):
        params = server.params(identity, **{name: value})
        proc = run_linux_step(document, tmp_path / f"run{index}", ssm_env(server, params))
        result = parse_single_result(proc.stdout, proc.stderr)
        assert (proc.returncode, result["error"]) == (2, "invalid_parameter"), (name, value, proc.stderr)
        assert not canary.exists(), (name, value)
    assert not server.path("/home/app/.aws").exists()


@pytest.mark.parametrize("name", ["CredentialsFile", "Profile", "ReloadHook"])
def test_agent_flags_with_injections_run_nothing(
    name: str, server: Server, identity: Identity, canary: Path
) -> None:
    for value in HOSTILE[name][:10]:
        run = server.run(server.params(identity, **{name: value}), via="flags")
        assert (run.code, run.result["error"]) == (2, "invalid_parameter"), (name, value)
        assert value not in run.stdout, "a rejected value must not be echoed into the result line"
        assert not canary.exists()
