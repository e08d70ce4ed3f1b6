"""The safety matrix's harness: start rotations in the sandbox, wait for them, and check I1–I5 (issue 6).

`Harness.check()` is what every scenario ends with. It adds to `sandbox.invariants` (I1 files hold an Active
key that authenticates, I2 ≤ 2 keys, I3 AWSCURRENT Active, I5 no secret in histories, commands, SNS, logs):
- I4, from `faults.watch_key_changes`: at the very moment a key went Inactive or was deleted, no server of
  the user still held it (emergency mode may deactivate early, as documented; it may not delete early);
- I5, more places: every file of every simulated server other than the target credentials file and its
  backup, and any text the test hands in (exception messages, captured logs).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox import faults, invariants
from sandbox.demo import Report, Sandbox, UserReport

# Execution-input waits: nothing to observe in an emulator; Wait states are also scaled (conftest).
WAITS = {"observe_seconds": 0, "grace_seconds": 0, "poll_seconds": 1, "verify_interval_seconds": 1,
         "max_polls": 150}
BACKUP_SUFFIX = ".keyrotation-backup"


@dataclass
class Outcome:
    """How one user's last execution ended (the demo's report of it) and the checks run afterwards."""

    user: UserReport
    report: Report
    violations: list[str]

    @property
    def status(self) -> str:
        return self.user.status or "NOT STARTED"


class Harness:
    def __init__(self, sandbox: Sandbox, changes: list[faults.KeyChange]) -> None:
        self.sandbox = sandbox
        self.emulator = sandbox.emulator
        self.deployment = sandbox.deployment
        self.fleet = sandbox.fleet
        self.changes = changes
        self.texts: dict[str, str] = {}  # extra texts to scan for secrets (exceptions, captured logs)

    # ----------------------------------------------------------------------------------- running

    def function(self, step: str) -> str:
        return self.deployment.functions[step]

    def execution_input(self, user: str = "svc-web", mode: str = "standard", **extra: Any) -> dict[str, Any]:
        return {"user": user, "mode": mode, "waits": dict(WAITS), **extra}

    def start(self, user: str = "svc-web", mode: str = "standard", *, raw_input: Any = None,
              name: str | None = None, **extra: Any) -> str:
        payload = raw_input if raw_input is not None else self.execution_input(user, mode, **extra)
        arn: str = self.emulator.client("stepfunctions").start_execution(
            stateMachineArn=self.deployment.rotation_machine,
            name=name or f"safety-{uuid.uuid4().hex[:12]}",
            input=payload if isinstance(payload, str) else json.dumps(payload),
        )["executionArn"]
        self.sandbox.executions[arn] = user
        return arn

    def wait(self, *arns: str, timeout: float = 180.0) -> None:
        sfn = self.emulator.client("stepfunctions")
        deadline = time.monotonic() + timeout
        for arn in arns:
            while True:
                # the (cheap) status first; the history only once it ended, until its last event is written
                if sfn.describe_execution(executionArn=arn)["status"] != "RUNNING":
                    events = sfn.get_execution_history(executionArn=arn)["events"]
                    if events and events[-1]["type"] in ("ExecutionSucceeded", "ExecutionFailed",
                                                         "ExecutionAborted"):
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{arn} did not end within {timeout:.0f}s")
                time.sleep(0.2)
        self.fleet.wait_idle(timeout=timeout)

    def run(self, user: str = "svc-web", mode: str = "standard", **extra: Any) -> Outcome:
        arn = self.start(user, mode, **extra)
        self.wait(arn)
        return self.outcome(user, mode=mode)

    def outcome(self, user: str = "svc-web", *, mode: str = "standard",
                early_deactivation_ok: bool = False) -> Outcome:
        report = self.sandbox.report(time.monotonic())
        user_report = next(u for u in report.users if u.user == user)
        violations = self.check(mode=mode, early_deactivation_ok=early_deactivation_ok)
        return Outcome(user_report, report, violations)

    def history(self, arn: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.emulator.client("stepfunctions").get_execution_history(
            executionArn=arn)["events"]
        return events

    def states_entered(self, arn: str) -> list[str]:
        return [e["stateEnteredEventDetails"]["name"] for e in self.history(arn)
                if "stateEnteredEventDetails" in e]

    def notifications(self) -> list[str]:
        """Every SNS message published so far (subject + body)."""
        messages = []
        for topic in self.emulator.backend("sns").topics.values():
            for notification in topic.sent_notifications:
                # (message_id, message, subject, attributes, group_id)
                messages.append(f"{notification[2]}\n{notification[1]}")
        return messages

    # ---------------------------------------------------------------------------- observations

    def keys(self, user: str = "svc-web") -> dict[str, str]:
        pages = self.emulator.client("iam").get_paginator("list_access_keys").paginate(UserName=user)
        return {k["AccessKeyId"]: k["Status"] for page in pages for k in page["AccessKeyMetadata"]}

    def held(self, user: str = "svc-web") -> dict[str, str | None]:
        """instance id -> key id in the user's profile (None: no key)."""
        settings = self.deployment.user(user)
        result = {}
        for server in self.fleet.in_group(settings["server_group"]):
            held = self.fleet.read_credentials(server, settings["credentials_file"], settings["profile"])
            result[server.instance_id] = held[0] if held else None
        return result

    def snapshot(self) -> dict[str, Any]:
        """Everything a rejected request must leave unchanged: keys, secret versions and stages, commands."""
        sm = self.emulator.client("secretsmanager")
        secrets = {}
        for user, arn in self.deployment.secrets.items():
            versions = sm.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)["Versions"]
            secrets[user] = sorted((v["VersionId"], tuple(sorted(v.get("VersionStages", []))))
                                   for v in versions)
        return {
            "keys": {u["name"]: self.keys(u["name"]) for u in self.deployment.settings["users"]},
            "secrets": secrets,
            "commands": len(self.emulator.backend("ssm")._commands),
            "agent_runs": sum(s.runs for s in self.fleet.servers.values()),
            "files": {s.instance_id: _tree(s.root) for s in self.fleet.servers.values()},
        }

    # ---------------------------------------------------------------------------------- checks

    def check(self, *, mode: str = "standard", early_deactivation_ok: bool = False) -> list[str]:
        """I1–I5. In emergency mode an Inactive old key on a server is the documented exception while the
        rotation has not finished (`early_deactivation_ok`)."""
        problems = (
            invariants.server_files_hold_active_keys(self.emulator, self.deployment, self.fleet)
            + invariants.at_most_two_keys(self.emulator, self.deployment)
            + invariants.current_secret_is_active(self.emulator, self.deployment)
        )
        if mode == "emergency" and early_deactivation_ok:
            problems = [p for p in problems if not p.endswith(" is Inactive")]
        problems += self.deactivated_only_when_confirmed(emergency=mode == "emergency")
        problems += self.no_leaks()
        return problems

    def deactivated_only_when_confirmed(self, *, emergency: bool) -> list[str]:
        """I4: when a key went Inactive (or was deleted), no server of its user held it."""
        problems = []
        for change in self.changes:
            if change.change not in ("Inactive", "deleted"):
                continue
            if change.change == "Inactive" and emergency:
                continue  # documented: emergency mode deactivates the leaked key before distribution
            holders = sorted(i for i, key in (change.observation or {}).items() if key == change.key_id)
            if holders:
                problems.append(f"I4: key {change.key_id} of {change.user} went {change.change} while "
                                f"{', '.join(holders)} still held it")
        return problems

    def no_leaks(self) -> list[str]:
        secrets = invariants.secret_values(self.emulator, self.deployment)
        problems = invariants.no_secret_leaks(self.emulator, self.deployment, self.texts)
        for where, text in self.server_texts():
            if any(secret in text for secret in secrets):
                problems.append(f"a secret access key appears in {where}")
        return problems

    def server_texts(self) -> Iterable[tuple[str, str]]:
        """Every file on every simulated server except the target credentials files (and their backups) and
        the SSM Agent's own credentials (role session keys, never a user's)."""
        targets = {u["credentials_file"] for u in self.deployment.settings["users"]}
        for server in self.fleet.servers.values():
            own = {server.path(t) for t in targets} | {server.path(t + BACKUP_SUFFIX) for t in targets}
            for path in sorted(server.root.rglob("*")):
                if path.is_file() and path not in own:
                    where = f"{server.instance_id}:{path.relative_to(server.root)}"
                    yield where, path.read_text(errors="replace")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
