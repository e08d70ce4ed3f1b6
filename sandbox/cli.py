"""`python -m sandbox demo`: a full key rotation of a simulated hybrid fleet, no AWS account needed."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox import synth
from sandbox.demo import Progress, Report, Sandbox, Scenario, max_polls_for
from sandbox.emulator import Emulator
from sandbox.warm_python_manager import cold_agents_requested


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="rotate the keys of M users across N simulated servers each")
    demo.add_argument("--users", type=int, default=1, metavar="M", help="IAM users to rotate (default 1)")
    demo.add_argument("--servers", type=int, default=5, metavar="N",
                      help="servers per server group (default 5; a group per user unless --users-per-group)")
    demo.add_argument("--users-per-group", type=int, default=None, metavar="K",
                      help="users sharing a server group (its servers, one profile each in the same file); "
                           "default 1, or as many as one stack's 200 groups need")
    demo.add_argument("--fail", type=int, default=0, metavar="K", help="K servers whose agent fails")
    demo.add_argument("--offline", type=int, default=0, metavar="K", help="K servers that are offline")
    demo.add_argument("--audit", action="store_true",
                      help="run the read-only audit instead of a rotation (one server drifted, one offline)")
    demo.add_argument("--scheduled", action="store_true",
                      help="fire the maintenance window's task: rotate only the users whose key is due")
    demo.add_argument("--keep", type=Path, metavar="DIR",
                      help="leave the servers' files, settings, template and a state.json dump in DIR")
    demo.add_argument("--workers", type=int, default=None, metavar="W",
                      help="servers whose agent runs at the same time (default 2 per CPU)")
    demo.add_argument("--cold-agents", action="store_true",
                      help="start a new python3 for every run of the document instead of the warm "
                           "interpreter (docs/sandbox.md); also KEYROTATION_SANDBOX_COLD_AGENTS=1")
    return parser


def _validate(args: argparse.Namespace) -> str | None:
    if args.users < 1 or args.servers < 1:
        return "--users and --servers must be at least 1"
    if args.users_per_group is not None and args.users_per_group < 1:
        return "--users-per-group must be at least 1"
    groups = -(-args.users // _users_per_group(args))
    if args.fail < 0 or args.offline < 0 or args.fail + args.offline > groups * args.servers:
        return "--fail + --offline must be between 0 and the number of servers (groups x servers)"
    return None


def _users_per_group(args: argparse.Namespace) -> int:
    return int(args.users_per_group or synth.users_per_group_for(args.users))


@contextlib.contextmanager
def _workdir(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix="keyrotation-sandbox-", dir=_memory_tmp()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _memory_tmp(needed: int = 512 * 1024 * 1024) -> str | None:
    """/dev/shm when it is writable with room: the servers' files, fsyncs and deletions stay in memory (on
    a disk mounted with `discard`, each deleted directory costs milliseconds). Else the default temp dir."""  # noqa: S108
    candidate = "/dev/shm"  # noqa: S108 - a private mkdtemp directory is created inside
    try:
        stats = os.statvfs(candidate)
    except OSError:
        return None
    if not os.access(candidate, os.W_OK | os.X_OK) or stats.f_bavail * stats.f_frsize < needed:
        return None
    return candidate


class _Console:
    """Progress lines, also kept so that the leak check can scan what we printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def progress(self, item: Progress) -> None:
        who = item.user or "scheduled"
        self.say(f"  [{time.monotonic() - self.started:6.1f}s] {who:<12} {item.text}")


def demo(args: argparse.Namespace) -> int:
    if args.audit:
        return audit_demo(args)
    started = time.monotonic()
    try:
        report = _demo(args, started)
    except Exception as exc:  # the last line stays one JSON object, whatever broke
        traceback.print_exc()
        failure = {"result": "failed", "error": f"{type(exc).__name__}: {exc}",
                   "seconds": round(time.monotonic() - started, 2)}
        print(json.dumps(failure), flush=True)
        return 1
    print(json.dumps(report.summary_json()), flush=True)
    expected = "blocked" if args.fail or args.offline else "rotated"
    return 0 if report.result == expected else 1


def _demo(args: argparse.Namespace, started: float) -> Report:
    scenario = Scenario(users=args.users, servers=args.servers, fail=args.fail, offline=args.offline,
                        scheduled=args.scheduled, workers=args.workers,
                        cold_agents=args.cold_agents or cold_agents_requested())
    console = _Console()
    with _workdir(args.keep) as workdir:
        console.say(f"Sandbox: {scenario.users} user(s) x {scenario.servers} server(s) per server group, "
                    f"workdir {workdir}")
        per_group = _users_per_group(args)
        if per_group > 1:
            console.say(f"  {per_group} users per server group (they share its servers, one profile each)")
        settings = synth.sandbox_settings(scenario.users, max_polls=max_polls_for(scenario.servers),
                                           users_per_group=per_group)
        settings_path = synth.write_settings(workdir / "settings.yaml", settings)
        console.say("Synthesizing the CDK app (app.py) with the sandbox's settings ...")
        synth_log = io.StringIO()
        with contextlib.redirect_stdout(synth_log):
            assembly = synth.synthesize(settings_path, workdir / "cdk.out")
        with Emulator() as emulator:
            console.say(f"Emulator (moto {_moto_version()}) on {emulator.endpoint}; "
                        "deploying the template ...")
            sandbox = Sandbox(emulator, assembly, settings, workdir, scenario)
            try:
                _describe_setup(console, sandbox)
                sandbox.run(console.progress)
                extra = {"the demo's console output": "\n".join(console.lines),
                         "the synth output": synth_log.getvalue()}
                report = sandbox.report(started, extra_texts=extra)
                _print_summary(console, report)
                if args.keep:
                    sandbox.dump(workdir / "state.json", report)
                    console.say(f"Kept: {workdir} (servers/, settings.yaml, cdk.out/, state.json)")
            finally:
                sandbox.close()
    return report


def audit_demo(args: argparse.Namespace) -> int:
    """The audit of a simulated fleet with one drifted and one offline server, as a table."""
    console = _Console()
    servers = max(args.servers, 3)
    scenario = Scenario(users=args.users, servers=servers, workers=args.workers)
    with _workdir(args.keep) as workdir:
        settings = synth.sandbox_settings(scenario.users, max_polls=max_polls_for(servers))
        settings_path = synth.write_settings(workdir / "settings.yaml", settings)
        console.say(f"Sandbox audit: {scenario.users} user(s) x {servers} servers; synthesizing ...")
        with contextlib.redirect_stdout(io.StringIO()):
            assembly = synth.synthesize(settings_path, workdir / "cdk.out")
        with Emulator() as emulator:
            sandbox = Sandbox(emulator, assembly, settings, workdir, scenario)
            try:
                first = settings["users"][0]["name"]
                group = sorted(sandbox.fleet.in_group(settings["users"][0]["server_group"]),
                               key=lambda s: s.instance_id)
                sandbox.drift(group[0], first)
                group[1].online = False
                console.say(f"  arranged: {group[0].instance_id} holds another key for {first} (drifted); "
                            f"{group[1].instance_id} is offline")
                console.say("Starting the audit state machine (read-only) ...")
                before = sandbox.snapshot()
                report = sandbox.run_audit()
                unchanged = sandbox.snapshot() == before
            finally:
                sandbox.close()
    _print_audit(console, report, unchanged)
    summary = {"result": "audited" if unchanged else "changed", **report["summary"],
               "report": report["markdown_location"]}
    print(json.dumps(summary), flush=True)
    return 0 if unchanged else 1


def _print_audit(console: _Console, report: dict[str, Any], unchanged: bool) -> None:
    console.say("")
    console.say(f"{'user':<12} {'key':<22} {'status':<8} {'age':>5}  {'AWSCURRENT':<22} compliant")
    for entry in report["users"]:
        for number, key in enumerate(entry.get("keys", [])):
            current = entry.get("current_key_id") or "-"
            first = number == 0
            compliant = ("yes" if entry.get("compliant") else "NO") if first else ""
            console.say(f"{entry['user'] if first else '':<12} {key['key_id']:<22} {key['status']:<8} "
                        f"{key['age_days']:>4}d  {current if first else '':<22} {compliant}")
    console.say("")
    console.say(f"{'server':<22} {'user':<12} state")
    for entry in report["users"]:
        for instance, server in sorted((entry.get("servers") or {}).items()):
            detail = "" if server["state"] == "current" else f" ({server['detail']})"
            console.say(f"{instance:<22} {entry['user']:<12} {server['state']}{detail}")
    counts = ", ".join(f"{state} {count}" for state, count in report["summary"]["servers"].items() if count)
    console.say("")
    unmanaged = report["summary"]["unmanaged_old_keys"]
    console.say(f"servers: {counts}; unmanaged users with old keys: {unmanaged}")
    console.say(f"report: {report['markdown_location']}")
    console.say("nothing changed (keys, secrets, every server file)" if unchanged
                else "SOMETHING CHANGED during the audit")


def _moto_version() -> str:
    import moto

    return str(moto.__version__)


def _describe_setup(console: _Console, sandbox: Sandbox) -> None:
    deployment = sandbox.deployment
    console.say(f"  deployed: {len(deployment.functions)} Lambda functions, 2 state machines, document "
                f"{deployment.document_name}, {len(deployment.secrets)} secret(s), lock table, SNS topic"
                + (f"; not emulated: {', '.join(sorted(deployment.skipped))}" if deployment.skipped else ""))
    for user in deployment.settings["users"]:
        servers = sandbox.fleet.in_group(user["server_group"])
        key = sandbox.initial_keys[user["name"]].key_id
        console.say(f"  user {user['name']}: key {key} in {user['credentials_file']} [{user['profile']}] "
                    f"on {len(servers)} server(s) of group {user['server_group']}")
    faulty = [s for s in sandbox.fleet.servers.values() if s.faults.any() or not s.online]
    for server in faulty:
        what = "offline" if not server.online else "agent fails"
        console.say(f"  fault injected: {server.instance_id} ({server.name}) {what}")
    if sandbox.scenario.scheduled:
        console.say(f"  due (key older than max age): {', '.join(sandbox.scenario.due_users())}")
        console.say("Firing the maintenance window's task (start the scheduled machine) ...")
    else:
        console.say("Starting the rotation state machine ...")


def _print_summary(console: _Console, report: Report) -> None:
    console.say("")
    console.say("Summary")
    for user in report.users:
        if user.result == "not due":
            console.say(f"  {user.user}: not due, key {user.old_key_id} kept")
            continue
        new = user.new_key_id or "(none)"
        console.say(f"  {user.user}: {user.result.upper()}  {user.old_key_id} -> {new}; "
                    f"old key {user.old_key}; servers confirmed {user.confirmed}/{user.total}")
        if user.error:
            console.say(f"    why: {user.error}: {user.cause}")
        bad = {i: s for i, s in user.servers.items() if not s.startswith("ok")}
        shown = user.servers if len(user.servers) <= 10 else bad
        for instance_id, status in shown.items():
            console.say(f"    {instance_id}  {status}")
        if len(user.servers) > 10:
            console.say(f"    ... {len(user.servers) - len(bad)} more server(s) ok")
    if report.violations:
        console.say("  INVARIANTS VIOLATED:")
        for violation in report.violations:
            console.say(f"    - {violation}")
    else:
        console.say("  invariants: every server holds an Active key that works; <= 2 keys per user; "
                    "AWSCURRENT is Active; no secret in histories, commands, SNS, logs or this output")
    if report.agent_runs:
        mean = report.agent_seconds / report.agent_runs
        how = ("warm interpreter, sandbox/warm_python.py" if report.agent_python == "warm"
               else "a new python3 per run")
        console.say(f"  agents: {report.agent_runs} runs, {mean:.2f}s each on average "
                    f"(sh + the document's Linux step; python3: {how})")
    console.say(f"  result: {report.result} in {report.seconds:.1f}s")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problem = _validate(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    return demo(args)
