"""A rotation scenario in the sandbox: deploy, provision, start, follow, report.

`Sandbox` is what the CLI (`python -m sandbox demo`) and the end-to-end tests drive. The product runs
unchanged; only the scenario (users, servers, injected faults) and the waits given in the execution input
are the sandbox's.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyrotation.contract import parse_result

from sandbox import deploy, invariants, provision, synth
from sandbox.deploy import Deployment
from sandbox.emulator import Emulator
from sandbox.fleet import Fleet
from sandbox.synth import Assembly

# Execution-input waits (docs/design.md §2): nothing to observe or wait for in an emulator; 1 s between polls.
DEMO_WAITS = {"observe_seconds": 0, "grace_seconds": 0, "poll_seconds": 1, "verify_interval_seconds": 1}


def max_polls_for(servers: int) -> int:
    """Enough 1 s polls for the agents of `servers` nodes to finish on a small machine."""
    return 60 + servers // 2


@dataclass
class Scenario:
    users: int = 1
    servers: int = 5  # per server group (a group per user unless the settings share groups)
    fail: int = 0  # servers whose agent fails (test affordance)
    offline: int = 0  # servers that are not connected
    scheduled: bool = False  # start the scheduled machine as the maintenance window would
    workers: int | None = None  # parallel agents
    cold_agents: bool = False  # a new python3 per run, not the warm interpreter (sandbox/warm_python.py)

    def due_users(self) -> list[str]:
        """Scheduled scenario: the first half of the users (at least one) hold a key past its max age."""
        names = synth.user_names(self.users)
        return names[: max(1, math.ceil(len(names) / 2))]


@dataclass
class Progress:
    execution: str  # execution name
    user: str
    kind: str  # "state" | "confirmed" | "status"
    text: str


@dataclass
class UserReport:
    user: str
    result: str  # rotated | blocked | failed | not due
    old_key_id: str
    new_key_id: str | None
    old_key: str  # deleted | Inactive | Active
    execution: str | None = None
    status: str | None = None
    error: str | None = None
    cause: str | None = None
    confirmed: int = 0
    total: int = 0
    servers: dict[str, str] = field(default_factory=dict)  # instance id -> status line


@dataclass
class Report:
    result: str
    users: list[UserReport]
    violations: list[str]
    seconds: float
    agent_runs: int = 0
    agent_seconds: float = 0.0  # summed wall time of the agents' processes
    agent_python: str = "cold"  # how the servers' python3 ran: "warm" (sandbox/warm_python.py) or "cold"

    def summary_json(self) -> dict[str, Any]:
        rotated = [u for u in self.users if u.result != "not due"]
        return {
            "result": self.result,
            "users": len(self.users),
            # Per user: a server that several users share counts once for each of them.
            "servers_confirmed": sum(u.confirmed for u in rotated),
            "servers_total": sum(u.total for u in rotated),
            "old_key_ids": [u.old_key_id for u in rotated],
            "new_key_ids": [u.new_key_id for u in rotated if u.new_key_id],
            "old_keys_deleted": [u.old_key_id for u in rotated if u.old_key == "deleted"],
            "not_due": [u.user for u in self.users if u.result == "not due"],
            "blocked_servers": sorted(i for u in rotated for i, s in u.servers.items() if _blocking(s)),
            "invariants": "ok" if not self.violations else self.violations,
            "seconds": round(self.seconds, 2),
        }


class Sandbox:
    """One deployed system with its simulated fleet, in a running emulator."""

    def __init__(self, emulator: Emulator, assembly: Assembly, settings: dict[str, Any], workdir: Path,
                 scenario: Scenario) -> None:
        self.emulator = emulator
        self.scenario = scenario
        self.workdir = Path(workdir)
        self.deployment: Deployment = deploy.deploy(emulator, assembly, settings)
        self.fleet = Fleet(self.workdir / "servers", emulator.endpoint, emulator.region,
                           workers=scenario.workers, warm_agents=False if scenario.cold_agents else None)
        due = scenario.due_users() if scenario.scheduled else None
        self.initial_keys = provision.provision(emulator, self.deployment, self.fleet, scenario.servers,
                                                due_users=due)
        servers = list(self.fleet.servers.values())
        for server in servers[: scenario.fail]:
            server.faults.fail = True
        for server in servers[len(servers) - scenario.offline:] if scenario.offline else []:
            server.online = False
        self.executions: dict[str, str] = {}  # execution ARN -> user ("" for the scheduled machine)
        self._seen: dict[str, int] = {}
        self._finished: dict[str, bool] = {}
        self._confirmed: dict[str, tuple[int, int]] = {}

    def close(self) -> None:
        self.fleet.shutdown()

    # -------------------------------------------------------------------------------------- start

    def rotation_input(self, user: str) -> dict[str, Any]:
        waits = {**DEMO_WAITS, "max_polls": max_polls_for(self.scenario.servers)}
        return {"user": user, "mode": "standard", "waits": waits}

    def start_rotation(self, user: str, name: str | None = None) -> str:
        arn: str = self.emulator.client("stepfunctions").start_execution(
            stateMachineArn=self.deployment.rotation_machine,
            name=name or f"demo-{user}-{uuid.uuid4().hex[:8]}",
            input=json.dumps(self.rotation_input(user)),
        )["executionArn"]
        self.executions[arn] = user
        return arn

    def fire_maintenance_window(self) -> str:
        """What the maintenance window's STEP_FUNCTIONS task does when the window opens."""
        window_execution = str(uuid.uuid4())
        task_input = self.deployment.window_task_input.replace("{{WINDOW_EXECUTION_ID}}", window_execution)
        arn: str = self.emulator.client("stepfunctions").start_execution(
            stateMachineArn=self.deployment.scheduled_machine, name=f"window-{window_execution}",
            input=task_input,
        )["executionArn"]
        self.executions[arn] = ""
        return arn

    def start(self) -> list[str]:
        if self.scenario.scheduled:
            return [self.fire_maintenance_window()]
        return [self.start_rotation(u["name"]) for u in self.deployment.settings["users"]]

    # ------------------------------------------------------------------------------------- follow

    def _discover_children(self) -> None:
        sfn = self.emulator.client("stepfunctions")
        machine = self.deployment.rotation_machine
        pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
        for execution in (e for page in pages for e in page["executions"]):
            arn = execution["executionArn"]
            if arn not in self.executions:
                self.executions[arn] = _user_from_input(sfn.describe_execution(executionArn=arn))

    def poll(self) -> tuple[list[Progress], bool]:
        """New progress since the last call, and whether every execution has ended."""
        sfn = self.emulator.client("stepfunctions")
        if self.scenario.scheduled:
            self._discover_children()
        progress: list[Progress] = []
        running = False
        for arn, user in list(self.executions.items()):
            if self._finished.get(arn):
                continue
            status = sfn.describe_execution(executionArn=arn)["status"]
            events = self.emulator.execution_events(arn, self._seen.get(arn, 0))
            name = arn.rsplit(":", 1)[-1]
            for event in events:
                progress.extend(self._describe(name, user, event))
                if event["type"] in _ENDED:
                    self._finished[arn] = True
            self._seen[arn] = self._seen.get(arn, 0) + len(events)
            if status == "RUNNING" or not self._finished.get(arn):
                running = True  # still running, or its history is not complete yet
        return progress, not running

    _QUIET_STATES = {"ChoiceStateEntered", "PassStateEntered", "WaitStateEntered"}

    def _describe(self, name: str, user: str, event: dict[str, Any]) -> list[Progress]:
        kind = event["type"]
        if kind.endswith("StateEntered") and kind not in self._QUIET_STATES:
            state = event["stateEnteredEventDetails"]["name"]
            if state in ("check_distribution", "wait_poll"):
                return []
            return [Progress(name, user, "state", state)]
        if kind == "TaskStateExited":
            output = _json(event["stateExitedEventDetails"].get("output"))
            rotation = (output.get("rotation") or {}) if isinstance(output, dict) else {}
            distribution = rotation.get("distribution")
            if event["stateExitedEventDetails"]["name"] == "check_distribution" and distribution:
                seen = (distribution.get("confirmed", 0), distribution.get("total", 0))
                key = f"{name}/{distribution.get('action')}"
                if self._confirmed.get(key) != seen:
                    self._confirmed[key] = seen
                    return [Progress(name, user, "confirmed",
                                     f"servers confirmed {seen[0]}/{seen[1]} ({distribution.get('action')})")]
        if kind in _ENDED:
            return [Progress(name, user, "status", kind.removeprefix("Execution").upper())]
        return []

    def run(self, on_progress: Callable[[Progress], None] | None = None, timeout: float = 900.0) -> None:
        self.start()
        self.follow(on_progress, timeout)

    def follow(self, on_progress: Callable[[Progress], None] | None = None, timeout: float = 900.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            progress, done = self.poll()
            for item in progress:
                if on_progress:
                    on_progress(item)
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"executions still running after {timeout:.0f}s")
            time.sleep(0.5)

    # ------------------------------------------------------------------------------------- report

    def report(self, started: float, extra_texts: dict[str, str] | None = None) -> Report:
        self.fleet.wait_idle()
        users = [self._user_report(u) for u in self.deployment.settings["users"]]
        violations = invariants.check_all(self.emulator, self.deployment, self.fleet, extra_texts)
        results = {u.result for u in users}
        if violations or "failed" in results:
            result = "failed"
        elif "blocked" in results:
            result = "blocked"
        elif "rotated" in results:
            result = "rotated"
        else:
            result = "failed"  # nothing rotated, nothing blocked: the scenario did not run
        runs = sum(s.runs for s in self.fleet.servers.values())
        return Report(result, users, violations, time.monotonic() - started, runs, self.fleet.agent_seconds,
                      self.fleet.agent_python)

    def _user_report(self, user: dict[str, Any]) -> UserReport:
        name = user["name"]
        old = self.initial_keys[name].key_id
        keys = {k["AccessKeyId"]: k["Status"] for k in
                self.emulator.client("iam").list_access_keys(UserName=name)["AccessKeyMetadata"]}
        new = next((k for k in keys if k != old), None)
        report = UserReport(user=name, result="failed", old_key_id=old, new_key_id=new,
                            old_key=keys.get(old, "deleted"))
        execution = self._last_execution_of(name)
        group = self.fleet.in_group(user["server_group"])
        report.total = len(group)
        if execution is None:
            if self.scenario.scheduled and report.old_key == "Active" and not new:
                report.result, report.total = "not due", 0
            report.servers = {s.instance_id: "not contacted (no rotation)" for s in group}
            return report
        sfn = self.emulator.client("stepfunctions")
        description = sfn.describe_execution(executionArn=execution)
        report.execution = description["name"]
        report.status = description["status"]
        state = _final_state(sfn.get_execution_history(executionArn=execution)["events"])
        rotation = state.get("rotation") or {}
        error = state.get("error") or {}
        report.error, report.cause = error.get("Error"), _cause(error.get("Cause"))
        distribution = rotation.get("distribution") or {}
        report.confirmed = int(distribution.get("confirmed", 0))
        report.total = int(distribution.get("total", report.total) or report.total)
        report.servers = self._server_status(group, rotation)
        if report.status != "SUCCEEDED":  # the failing step did not return its distribution
            report.confirmed = sum(status.startswith("ok") for status in report.servers.values())
        if report.status == "SUCCEEDED" and report.old_key == "deleted" and new and keys[new] == "Active":
            report.result = "rotated"
        elif report.status != "SUCCEEDED" and report.old_key == "Active":
            report.result = "blocked"
        return report

    def _last_execution_of(self, user: str) -> str | None:
        mine = [arn for arn, u in self.executions.items() if u == user]
        if not mine:
            return None
        sfn = self.emulator.client("stepfunctions")
        return max(mine, key=lambda arn: sfn.describe_execution(executionArn=arn)["startDate"])

    def _server_status(self, group: list[Any], rotation: dict[str, Any]) -> dict[str, str]:
        """Per server: the last invocation of the rotation's commands, as the engine saw it."""
        ssm = self.emulator.client("ssm")
        latest: dict[str, dict[str, Any]] = {}
        for command_id in rotation.get("command_ids") or []:
            pages = ssm.get_paginator("list_command_invocations").paginate(CommandId=command_id, Details=True)
            for page in pages:
                for invocation in page["CommandInvocations"]:
                    latest[invocation["InstanceId"]] = invocation
        statuses = {}
        for server in group:
            invocation = latest.get(server.instance_id)
            ping = "Online" if server.online else "ConnectionLost"
            if invocation is None:
                statuses[server.instance_id] = f"not contacted (ping {ping})"
                continue
            output = "".join(p.get("Output", "") for p in invocation.get("CommandPlugins", []))
            marker = _marker(output)
            expected = rotation.get("new_key_id")
            if invocation["Status"] == "Success" and marker.get("status") == "ok" \
                    and marker.get("access_key_id") == expected:
                statuses[server.instance_id] = f"ok ({marker.get('action')}: {marker.get('access_key_id')})"
            elif invocation["Status"] == "Success" and marker.get("status") == "ok":
                statuses[server.instance_id] = (f"wrong key (reported {marker.get('access_key_id')}, "
                                                f"expected {expected}; ping {ping})")
            elif invocation["Status"] == "Success" and not marker:
                statuses[server.instance_id] = f"no result line (ping {ping})"
            else:
                detail = marker.get("error") or invocation["StatusDetails"]
                statuses[server.instance_id] = f"{invocation['Status']} ({detail}; ping {ping})"
        return statuses

    # -------------------------------------------------------------------------------------- audit

    def drift(self, server: Any, user: str, key_id: str = "AKIADRIFTEDDRIFTED00") -> None:
        """Arrange a drifted server: its profile holds another key id than the one the secret says."""
        import configparser

        settings = self.deployment.user(user)
        path = server.path(settings["credentials_file"])
        parser = configparser.RawConfigParser()
        parser.read(path)
        parser.set(settings["profile"], "aws_access_key_id", key_id)
        with path.open("w") as handle:
            parser.write(handle)

    def run_audit(self, user: str | None = None, timeout: float = 300.0) -> dict[str, Any]:
        """Start the audit machine (one user or all) and return its report, read from the reports bucket."""
        sfn = self.emulator.client("stepfunctions")
        execution_input = {"mode": "audit", **({"user": user} if user else {})}
        arn = sfn.start_execution(stateMachineArn=self.deployment.audit_machine,
                                  name=f"audit-{uuid.uuid4().hex[:12]}",
                                  input=json.dumps(execution_input))["executionArn"]
        deadline = time.monotonic() + timeout
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the audit still runs after {timeout:.0f}s")
            time.sleep(0.5)
        if described["status"] != "SUCCEEDED":
            raise RuntimeError(f"the audit {described['status']}: {described.get('error')} "
                               f"{str(described.get('cause'))[:500]}")
        output = json.loads(described["output"])
        bucket, key = output["report"].removeprefix("s3://").split("/", 1)
        report: dict[str, Any] = json.loads(
            self.emulator.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
        report["markdown_location"] = output["markdown"]
        return report

    def snapshot(self) -> dict[str, Any]:
        """What an audit must not change: every user's keys, every secret's versions, every server's files
        (but the SSM Agent's own working directory, where it writes every command's script, as on a real
        node)."""
        iam = self.emulator.client("iam")
        sm = self.emulator.client("secretsmanager")
        keys = {u["name"]: sorted((k["AccessKeyId"], k["Status"])
                                  for k in iam.list_access_keys(UserName=u["name"])["AccessKeyMetadata"])
                for u in self.deployment.settings["users"]}
        versions = {}
        for name in self.deployment.secrets.values():
            try:
                versions[name] = sm.describe_secret(SecretId=name).get("VersionIdsToStages")
            except Exception:  # noqa: BLE001 - a user without a secret yet
                versions[name] = None
        files = {}
        for server in self.fleet.servers.values():
            agent_dir = server.path("/var/lib/amazon/ssm")
            for path in sorted(server.root.rglob("*")):
                if path.is_file() and not path.is_symlink() and agent_dir not in path.parents:
                    files[str(path)] = path.read_bytes()
        return {"keys": keys, "secrets": versions, "files": files}

    # --------------------------------------------------------------------------------------- dump

    def dump(self, path: Path, report: Report) -> None:
        """A JSON snapshot for inspection (--keep): no secret values, only ids and statuses."""
        iam = self.emulator.client("iam")
        sfn = self.emulator.client("stepfunctions")
        state = {
            "report": report.summary_json(),
            "users": [vars(u) for u in report.users],
            "iam": {u["name"]: iam.list_access_keys(UserName=u["name"])["AccessKeyMetadata"]
                    for u in self.deployment.settings["users"]},
            "secrets": self._secret_versions(),
            "executions": [sfn.describe_execution(executionArn=arn) for arn in self.executions],
            "servers": {s.instance_id: {"name": s.name, "group": s.group, "root": str(s.root),
                                        "online": s.online, "faults": vars(s.faults)}
                        for s in self.fleet.servers.values()},
            "deployment": {k: v for k, v in vars(self.deployment).items() if k not in ("physical",)},
        }
        path.write_text(json.dumps(state, indent=2, default=str))

    def _secret_versions(self) -> dict[str, Any]:
        """Each user's secret versions; None for a user whose secret the engine has not created yet."""
        sm = self.emulator.client("secretsmanager")
        found: dict[str, Any] = {}
        for user, name in self.deployment.secrets.items():
            try:
                sm.describe_secret(SecretId=name)  # (moto answers ListSecretVersionIds of none with a 500)
            except sm.exceptions.ResourceNotFoundException:
                found[user] = None
                continue
            found[user] = sm.list_secret_version_ids(SecretId=name)["Versions"]
        return found


_ENDED = ("ExecutionSucceeded", "ExecutionFailed", "ExecutionAborted", "ExecutionTimedOut")


def _blocking(status: str) -> bool:
    """A server that kept a rotation from completing: it failed, or it is offline."""
    return not status.startswith(("ok", "InProgress", "Pending")) and status != "not contacted (ping Online)"


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _cause(cause: str | None) -> str | None:
    """A Lambda error's Cause is its error JSON: keep the message."""
    data = _json(cause)
    if isinstance(data, dict) and "errorMessage" in data:
        return str(data["errorMessage"])
    return cause


def _user_from_input(description: dict[str, Any]) -> str:
    data = _json(description.get("input")) or {}
    return str(data.get("user", "")) if isinstance(data, dict) else ""


def _final_state(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The last state data the execution produced (what `notify` received, or the final output)."""
    for event in reversed(events):
        for key in ("stateExitedEventDetails", "stateEnteredEventDetails", "executionSucceededEventDetails"):
            details = event.get(key)
            if details:
                data = _json(details.get("output") or details.get("input"))
                if isinstance(data, dict):
                    return data
    return {}


def _marker(output: str) -> dict[str, Any]:
    return parse_result(output) or {}
