"""One measurement: a rotation (1 user x N servers) or a scheduled run (M users x 1 server) in the sandbox.

Runs in its own process (`python -m bench.probe SPEC_JSON`, started by `bench.cli`) so that every
measurement starts from the same state; prints one JSON object as its last line. The product runs as in
`make demo`: the synthesized state machines, the real handlers, the document and the agent; the bench only
observes (API counter, execution history, clocks) and follows the execution more cheaply than the demo's
progress display (it reads the history once, at the end).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.counting import ApiCounter

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Spec:
    kind: str  # "rotation" | "scheduled"
    users: int
    servers: int  # per user
    assembly_dir: str = ""  # a synthesized cloud assembly for `users` (bench.cli makes one per user count)
    poll_seconds: int = 1  # between distribution polls (the sandbox's value; observe/grace waits are 0)
    workers: int | None = None  # parallel agents (the sandbox's default: 2 per CPU)
    cold_agents: bool = False  # a new python3 per agent run instead of the sandbox's warm interpreter
    experiment: str = ""  # a candidate fix from bench/experiments.py, applied for this measurement
    profile: str = ""  # write a cProfile of the bench process here
    timeout: float = 1800.0


@dataclass
class Phase:
    name: str
    seconds: float


@dataclass
class Measurement:
    spec: dict[str, Any]
    result: str
    seconds: float  # start of the (first) execution -> every execution ended
    setup_seconds: dict[str, float]
    users_rotated: int
    users_due: int
    calls: dict[str, int]
    attempts: dict[str, int]
    lambda_invocations: int
    lambda_seconds: float
    by_function: dict[str, Any]
    transitions: int
    transitions_by_type: dict[str, int]
    executions: int
    polls: int
    polls_by_action: dict[str, int]
    phases: list[dict[str, Any]] = field(default_factory=list)
    agent_runs: int = 0
    agent_seconds: float = 0.0  # sum of wall time inside agent processes (parallel runs overlap)
    cpu_self: float = 0.0  # CPU of this process: emulator, Step Functions executor, Lambdas, harness
    cpu_children: float = 0.0  # CPU of the agents (sh + python) during the run
    violations: list[str] = field(default_factory=list)
    agent_python: str = "cold"  # "warm" (sandbox/warm_python.py zygote) or "cold" (a new interpreter per run)
    history_bytes: int = 0  # JSON size of the execution histories (what a follower that re-reads them pays)
    outcomes: dict[str, Any] = field(default_factory=dict)  # rotation executions: succeeded, failed + why


# ------------------------------------------------------------------------------------------- assembly


def synthesize(users: int, outdir: Path) -> dict[str, Any]:
    """Synthesize the real app (what `sandbox.synth.synthesize` does) for `users` sandbox users.

    Users share server groups once there are more users than one stack's group limit
    (`sandbox.synth.users_per_group_for`): the template is one that `cdk deploy` accepts, checks on.
    """
    from sandbox import synth

    started = time.perf_counter()
    settings = synth.sandbox_settings(users, users_per_group=synth.users_per_group_for(users))
    path = synth.write_settings(outdir / "settings.yaml", settings)
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")
    for entry in (str(REPO), str(REPO / "lambdas"), str(REPO / "agent_scripts")):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    import app as cdk_app  # the repository's app.py

    context = json.loads((REPO / "cdk.json").read_text())["context"]
    cdk_app.build_app(
        path, context=context, outdir=str(outdir / "cdk.out"), checks=False, builtin_validation=False
    ).synth()
    (outdir / "settings.json").write_text(json.dumps(settings))
    text = (outdir / "cdk.out" / f"{synth.STACK_NAME}.template.json").read_text()
    template = json.loads(text)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "resources": len(template["Resources"]),
        "template_bytes": len(text.encode()),
        "server_groups": len(settings["server_groups"]),
    }


def load_assembly(directory: Path) -> tuple[Any, dict[str, Any]]:
    from sandbox import synth

    outdir = directory / "cdk.out"
    assembly = synth.Assembly(
        outdir=outdir,
        template=json.loads((outdir / f"{synth.STACK_NAME}.template.json").read_text()),
        assets=json.loads((outdir / f"{synth.STACK_NAME}.assets.json").read_text()),
    )
    return assembly, json.loads((directory / "settings.json").read_text())


# -------------------------------------------------------------------------------------------- measure


def _zygote_cpu(fleet: Any) -> float:
    """CPU of the sandbox's warm interpreter and of the agent runs it forked and reaped (/proc/PID/stat)."""
    warm = getattr(fleet, "warm", None)
    proc = getattr(warm, "_proc", None)
    if proc is None:
        return 0.0
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def _cpu(fleet: Any = None) -> tuple[float, float]:
    """(this process, the agents: waited-for children + the warm interpreter's tree)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime + _zygote_cpu(fleet)


def measure(spec: Spec, workdir: Path) -> Measurement:
    from sandbox import demo as sandbox_demo
    from sandbox.demo import Sandbox, Scenario
    from sandbox.emulator import Emulator

    setup: dict[str, float] = {}
    clock = time.perf_counter()
    assembly, settings = load_assembly(Path(spec.assembly_dir))
    scheduled = spec.kind == "scheduled"

    class BenchScenario(Scenario):
        def due_users(self) -> list[str]:  # every user is due: the scheduled run's worst case
            from sandbox import synth

            return synth.user_names(self.users)

    scenario = BenchScenario(
        users=spec.users, servers=spec.servers, scheduled=scheduled, workers=spec.workers
    )
    if spec.cold_agents:
        scenario.cold_agents = True  # type: ignore[attr-defined]
    with Emulator() as emulator, _experiment(spec.experiment):
        setup["emulator"] = time.perf_counter() - clock
        clock = time.perf_counter()
        sandbox = Sandbox(emulator, assembly, settings, workdir, scenario)
        setup["deploy_and_provision"] = time.perf_counter() - clock
        # As many polls as the engine accepts (lambdas/rotation/settings.py): a loaded machine must not turn a
        # slow fleet into a failure.
        max_polls = _engine_max_polls()
        waits = {**sandbox_demo.DEMO_WAITS, "poll_seconds": spec.poll_seconds, "max_polls": max_polls}

        def rotation_input(user: str) -> dict[str, Any]:
            return {"user": user, "mode": "standard", "waits": waits}

        sandbox.rotation_input = rotation_input  # type: ignore[method-assign]
        names = {fn: step for step, fn in sandbox.deployment.functions.items()}
        try:
            with ApiCounter(names) as counter:
                agent_python = str(getattr(sandbox.fleet, "agent_python", "cold"))  # waits for the warm-up
                cpu_self, cpu_kids = _cpu(sandbox.fleet)
                started = time.perf_counter()
                sandbox.start()
                _wait_until_done(sandbox, started + spec.timeout)
                seconds = time.perf_counter() - started
                sandbox.fleet.wait_idle()
                cpu_self2, cpu_kids2 = _cpu(sandbox.fleet)
                sandbox.poll()  # learns the executions the scheduled machine started (for the report)
            clock = time.perf_counter()
            report = sandbox.report(time.monotonic())
            setup["report_and_invariants"] = time.perf_counter() - clock
            history = _histories(sandbox, scheduled)
        finally:
            sandbox.close()
    due = scenario.due_users() if scheduled else [u["name"] for u in settings["users"]]
    rotated = sum(1 for u in report.users if u.result == "rotated")
    outcomes = _outcomes(history, sandbox.deployment.rotation_machine)
    if scheduled:
        # From every child execution (all pages of ListExecutions), not only those the report discovered.
        rotated = max(rotated, outcomes["succeeded"])
    transitions, by_type = _transitions(history)
    polls, polls_by_action = _polls(history)
    tally = counter.tally
    by_function = {
        step: {"invocations": v["invocations"], "seconds": round(v["seconds"], 3), "calls": dict(v["calls"])}
        for step, v in sorted(tally.by_function().items())
    }
    return Measurement(
        spec=asdict(spec),
        result=report.result,
        seconds=seconds,
        setup_seconds={k: round(v, 3) for k, v in setup.items()},
        users_rotated=rotated,
        users_due=len(due),
        calls=dict(sorted(tally.calls.items())),
        attempts=dict(sorted(tally.attempts.items())),
        lambda_invocations=len(tally.invocations),
        lambda_seconds=round(sum(i.seconds for i in tally.invocations), 3),
        by_function=by_function,
        transitions=transitions,
        transitions_by_type=by_type,
        executions=len(history),
        polls=polls,
        polls_by_action=polls_by_action,
        phases=[asdict(p) for p in _phases(history)] if not scheduled else [],
        agent_runs=sum(s.runs for s in sandbox.fleet.servers.values()),
        agent_seconds=round(sandbox.fleet.agent_seconds, 3),
        cpu_self=round(cpu_self2 - cpu_self, 3),
        cpu_children=round(cpu_kids2 - cpu_kids, 3),
        violations=list(report.violations),
        agent_python=agent_python + (f", experiment {spec.experiment}" if spec.experiment else ""),
        history_bytes=len(json.dumps(history, default=str)),
        outcomes=outcomes,
    )


def _engine_max_polls() -> int:
    try:
        from rotation import settings as engine_settings

        limits = getattr(engine_settings, "WAIT_MAXIMA", None) or {}
        return int(limits.get("max_polls", 1000))
    except ImportError:
        return 1000


@contextmanager
def _experiment(name: str) -> Iterator[None]:
    if not name:
        yield
        return
    from bench.experiments import EXPERIMENTS

    undos = [EXPERIMENTS[one.strip()]() for one in name.split(",") if one.strip()]
    try:
        yield
    finally:
        for undo in reversed(undos):
            undo()


def _wait_until_done(sandbox: Any, deadline: float) -> None:
    """Until every execution has ended: DescribeExecution only (a 1,000-server history is megabytes).

    A scheduled run ends as soon as it has started the rotations (it never waits for them): the rotations
    it started are waited for too."""
    sfn = sandbox.emulator.client("stepfunctions")
    while True:
        if sandbox.scenario.scheduled:
            machines = (sandbox.deployment.scheduled_machine, sandbox.deployment.rotation_machine)
            running = [
                e
                for machine in machines
                for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine,
                                                                          statusFilter="RUNNING")
                for e in page["executions"]
            ]
        else:
            running = [
                arn
                for arn in sandbox.executions
                if sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
            ]
        if not running:
            return
        if time.perf_counter() > deadline:
            raise TimeoutError("executions still running at the deadline")
        time.sleep(0.2)


def _histories(sandbox: Any, scheduled: bool) -> dict[str, list[dict[str, Any]]]:
    sfn = sandbox.emulator.client("stepfunctions")
    machines = [sandbox.deployment.rotation_machine] + (
        [sandbox.deployment.scheduled_machine] if scheduled else []
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for machine in machines:
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine):
            for execution in page["executions"]:
                arn = execution["executionArn"]
                out[arn] = sfn.get_execution_history(executionArn=arn)["events"]
    return out


def _outcomes(histories: dict[str, list[dict[str, Any]]], rotation_machine: str) -> dict[str, Any]:
    """Rotation executions that succeeded, and for the others the error the execution ended with."""
    prefix = rotation_machine.replace(":stateMachine:", ":execution:") + ":"
    succeeded, failed = 0, []
    for arn, events in histories.items():
        if not arn.startswith(prefix) or not events:
            continue
        if events[-1]["type"] == "ExecutionSucceeded":
            succeeded += 1
            continue
        state = {}
        for event in reversed(events):
            details = event.get("stateEnteredEventDetails") or {}
            if details.get("input"):
                state = _json(details["input"])
                break
        error = state.get("error") or {}
        failed.append(
            {
                "execution": arn.rsplit(":", 1)[-1],
                "last_event": events[-1]["type"],
                "error": error.get("Error"),
                "cause": str(error.get("Cause"))[:300],
            }
        )
    return {"succeeded": succeeded, "failed": failed}


def _transitions(histories: dict[str, list[dict[str, Any]]]) -> tuple[int, dict[str, int]]:
    """Billed state transitions: every state entered, plus every retry of a task (AWS bills both)."""
    by_type: dict[str, int] = {}
    retries = 0
    for events in histories.values():
        scheduled_tasks = 0
        entered_tasks = 0
        for event in events:
            kind = event["type"]
            if kind.endswith("StateEntered"):
                by_type[kind] = by_type.get(kind, 0) + 1
                if kind == "TaskStateEntered":
                    entered_tasks += 1
            elif kind in ("LambdaFunctionScheduled", "TaskScheduled"):
                scheduled_tasks += 1
        retries += max(0, scheduled_tasks - entered_tasks)
    if retries:
        by_type["retries"] = retries
    return sum(by_type.values()), dict(sorted(by_type.items()))


def _polls(histories: dict[str, list[dict[str, Any]]]) -> tuple[int, dict[str, int]]:
    by_action: dict[str, int] = {}
    total = 0
    for events in histories.values():
        action = "rotate"
        for event in events:
            details = event.get("stateEnteredEventDetails") or {}
            if details.get("name") == "distribute":
                state = _json(details.get("input"))
                action = "verify" if (state.get("rotation") or {}).get("action") == "rotate" else "rotate"
            if details.get("name") == "check_distribution" and event["type"] == "TaskStateEntered":
                total += 1
                by_action[action] = by_action.get(action, 0) + 1
    return total, by_action


_MARKS = ("prepare", "create_key", "distribute", "check_usage", "deactivate", "delete", "notify")


def _phases(histories: dict[str, list[dict[str, Any]]]) -> list[Phase]:
    """Wall time between the execution's milestones (one rotation)."""
    if len(histories) != 1:
        return []
    events = next(iter(histories.values()))
    marks: list[tuple[str, float]] = []
    seen: dict[str, int] = {}
    for event in events:
        details = event.get("stateEnteredEventDetails") or {}
        name = details.get("name")
        if name in _MARKS:
            seen[name] = seen.get(name, 0) + 1
            label = name if seen[name] == 1 else f"{name}#{seen[name]}"
            marks.append((label, event["timestamp"].timestamp()))
    marks.append(("end", events[-1]["timestamp"].timestamp()))
    phases = []
    first = events[0]["timestamp"].timestamp()
    previous_label, previous = "start", first
    for label, moment in marks:
        phases.append(Phase(f"{previous_label} -> {label}", round(moment - previous, 3)))
        previous_label, previous = label, moment
    return [p for p in phases if p.name != "start -> start"]


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str]) -> int:
    spec = Spec(**json.loads(argv[0]))
    for path in (str(REPO), str(REPO / "lambdas"), str(REPO / "agent_scripts")):
        if path not in sys.path:
            sys.path.insert(0, path)
    with tempfile.TemporaryDirectory(prefix="keyrotation-bench-") as tmp:
        if spec.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            try:
                measurement = measure(spec, Path(tmp))
            finally:
                profiler.disable()
                profiler.dump_stats(spec.profile)
        else:
            measurement = measure(spec, Path(tmp))
    sys.stdout.flush()
    os.write(1, (json.dumps(asdict(measurement)) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
