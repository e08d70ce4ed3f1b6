"""agent_scripts/onboard.sh with fake `amazon-ssm-agent` and `systemctl` first on PATH, run by dash."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ONBOARD = Path(__file__).resolve().parents[2] / "agent_scripts" / "onboard.sh"
CODE = "AbCdEfGhIjKlMnOpQrSt"
ACTIVATION = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
INSTANCE = "mi-0123456789abcdef0"

FAKE_AGENT = """#!/bin/sh
echo "amazon-ssm-agent $*" >> "$FAKE_LOG"
if [ "${FAKE_REGISTER_EXIT:-0}" != 0 ]; then
    echo "Registration failed due to InvalidActivation" >&2
    exit "$FAKE_REGISTER_EXIT"
fi
if [ -z "${FAKE_NO_ID-}" ]; then
    mkdir -p "$KEYROTATION_ROOT/var/lib/amazon/ssm"
    printf '{"ManagedInstanceID":"%s","Region":"us-east-1"}' "$FAKE_ID" \
        > "$KEYROTATION_ROOT/var/lib/amazon/ssm/registration"
    echo "Successfully registered the instance with AWS SSM using Managed instance-id: $FAKE_ID"
fi
"""
FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$FAKE_LOG"
[ "$1" = start ] && [ -n "${FAKE_START_FAILS-}" ] && exit 1
exit 0
"""


@dataclass
class Host:
    root: Path
    log: Path
    env: dict[str, str]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["dash", str(ONBOARD), *args], env={**self.env, **env}, capture_output=True, text=True, timeout=30
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> Host:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("amazon-ssm-agent", FAKE_AGENT), ("systemctl", FAKE_SYSTEMCTL)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    log = tmp_path / "calls.log"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "KEYROTATION_ROOT": str(root),
        "FAKE_LOG": str(log),
        "FAKE_ID": INSTANCE,
    }
    return Host(root, log, env)


ARGS = ("--code", CODE, "--id", ACTIVATION, "--region", "eu-west-1")


def test_registers_starts_and_prints_the_instance_id(host: Host) -> None:
    proc = host.run(*ARGS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == INSTANCE
    assert host.calls() == [
        "systemctl stop amazon-ssm-agent",
        f"amazon-ssm-agent -register -code {CODE} -id {ACTIVATION} -region eu-west-1 -y",
        "systemctl enable amazon-ssm-agent",
        "systemctl start amazon-ssm-agent",
    ]


def test_values_from_the_environment(host: Host) -> None:
    proc = host.run(ACTIVATION_CODE=CODE, ACTIVATION_ID=ACTIVATION, AWS_REGION="us-gov-west-1")
    assert proc.returncode == 0, proc.stderr
    assert "-region us-gov-west-1 -y" in host.calls()[1]


def test_already_registered_keeps_its_id_unless_forced(host: Host) -> None:
    assert host.run(*ARGS).returncode == 0
    host.log.unlink()
    again = host.run(*ARGS, FAKE_ID="mi-fffffffffffffffff")
    assert again.returncode == 0
    assert again.stdout.splitlines()[-1] == INSTANCE
    assert not any("-register" in call for call in host.calls())
    forced = host.run(*ARGS, "--force", FAKE_ID="mi-fffffffffffffffff")
    assert forced.returncode == 0
    assert forced.stdout.splitlines()[-1] == "mi-fffffffffffffffff"


@pytest.mark.parametrize(
    "args",
    [
        ("--code", "short", "--id", ACTIVATION, "--region", "eu-west-1"),
        ("--code", CODE + "$(touch /tmp/onboard-canary)", "--id", ACTIVATION, "--region", "eu-west-1"),
        ("--code", CODE + "\n-clear", "--id", ACTIVATION, "--region", "eu-west-1"),
        ("--code", CODE, "--id", "not-a-uuid", "--region", "eu-west-1"),
        ("--code", CODE, "--id", ACTIVATION, "--region", "eu-west-1; touch /tmp/onboard-canary"),
        ("--code", CODE, "--id", ACTIVATION),
        ("--bogus",),
    ],
)
def test_malformed_arguments_are_refused_before_anything_runs(host: Host, args: tuple[str, ...]) -> None:
    canary = Path("/tmp/onboard-canary")
    canary.unlink(missing_ok=True)
    proc = host.run(*args)
    assert proc.returncode == 2
    assert host.calls() == []
    assert not canary.exists()


def test_registration_failure_is_exit_4_and_the_service_is_not_started(host: Host) -> None:
    proc = host.run(*ARGS, FAKE_REGISTER_EXIT="1")
    assert proc.returncode == 4
    assert "InvalidActivation" in proc.stderr
    assert not any("start" in call for call in host.calls())


def test_service_start_failure_is_exit_5(host: Host) -> None:
    assert host.run(*ARGS, FAKE_START_FAILS="1").returncode == 5


def test_no_instance_id_is_exit_6(host: Host) -> None:
    proc = host.run(*ARGS, FAKE_NO_ID="1")
    assert proc.returncode == 6
    assert proc.stdout == ""


def test_missing_ssm_agent_is_exit_3(host: Host, tmp_path: Path) -> None:
    (tmp_path / "bin" / "amazon-ssm-agent").unlink()
    proc = host.run(*ARGS)
    assert proc.returncode == 3
    assert "not installed" in proc.stderr
