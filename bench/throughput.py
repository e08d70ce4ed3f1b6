"""P6: the scheduled run in real time, with production waits (the sandbox compresses every wait).

For M due users (all of the settings' users due: the worst case) this walks the **synthesized** scheduled
machine's definition state by state — the step it names runs the real `rotation.due.start_page` — and counts
the history events Step Functions would record and the state it would carry. IAM answers each
ListAccessKeys after an injected 50-150 ms (IAM's global endpoint; real threads, really waited: that part is
measured); the sequential calls (lock GetItem 10 ms, StartExecution 50 ms) and the pacing sleeps run on a
simulated clock. The rotations' own length comes from the synthesized rotation machine's Wait states with the
production waits of config/settings.yaml. Nothing here is a hand-written estimate of the run: change the
definition, the pacing or the page size and the figures follow.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
for _path in (str(REPO), str(REPO / "lambdas")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from rotation import due  # noqa: E402
from rotation.lock import LockTable  # noqa: E402
from rotation.settings import Settings, load_settings  # noqa: E402

# Step Functions quotas (Standard workflows) the run must stay within.
MAX_HISTORY_EVENTS = 25_000
MAX_STATE_BYTES = 256 * 1024
MAX_OPEN_EXECUTIONS = 1_000_000
# History events each state type records (Step Functions' history event types): entered + exited, and a
# Lambda task's scheduled / started / succeeded in between.
EVENTS = {"Pass": 2, "Choice": 2, "Succeed": 2, "Fail": 1, "Wait": 2, "Task": 5}
EXECUTION_EVENTS = 2  # ExecutionStarted, ExecutionSucceeded
IAM_LATENCY = (0.05, 0.15)
LOCK_READ_SECONDS = 0.01
START_SECONDS = 0.05
POLLS_PER_DISTRIBUTION = 2  # servers confirm within the first poll or two (P1/P3 measure it in the sandbox)
VERIFY_RETRY_SECONDS = 10  # IAM propagation: verify_key's first NewKeyNotYetValid retry
STEP_SECONDS = 1.0  # one step's Lambda, each of the ~12 on the standard path


class Clock:
    def __init__(self) -> None:
        self.simulated = 0.0
        self._lock = threading.Lock()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.simulated += seconds


class _Paginator:
    def __init__(self, now: datetime) -> None:
        self.created = now - timedelta(days=400)

    def paginate(self, UserName: str) -> list[dict[str, Any]]:  # noqa: N803 (boto3's name)
        low, high = IAM_LATENCY
        time.sleep(low + (high - low) * (zlib.crc32(UserName.encode()) % 1000) / 1000)
        return [{"AccessKeyMetadata": [{"AccessKeyId": "AKIA" + f"{zlib.crc32(UserName.encode()):016X}",
                                        "Status": "Active", "CreateDate": self.created}]}]


class FakeIam:
    def __init__(self, now: datetime) -> None:
        self._paginator = _Paginator(now)

    def get_paginator(self, name: str) -> _Paginator:
        assert name == "list_access_keys", name
        return self._paginator


class FakeDynamoDb:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def get_item(self, **_: Any) -> dict[str, Any]:
        self.clock.advance(LOCK_READ_SECONDS)
        return {}


class FakeSfn:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started = 0

    def start_execution(self, **_: Any) -> dict[str, Any]:
        self.clock.advance(START_SECONDS)
        self.started += 1
        return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:rotation:{self.started}"}


def production_settings(users: int) -> tuple[Settings, dict[str, Any]]:
    """config/settings.yaml with `users` users in its first server group."""
    data = yaml.safe_load((REPO / "config" / "settings.yaml").read_text(encoding="utf-8"))
    template = data["users"][0]
    data["users"] = [{**template, "name": f"svc-{i:05d}", "profile": f"p{i}"} for i in range(users)]
    return load_settings(data), data


def _path(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    parts = path.removeprefix("$.").split(".")
    target = document
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


@dataclass
class Walk:
    events: int
    max_state_bytes: int
    pages: int
    longest_call_seconds: float
    run_seconds: float
    started: int
    waits_for_children: bool


def walk_scheduled(definition: Mapping[str, Any], step_of: Callable[[str], str], settings: Settings) -> Walk:
    """Run the scheduled machine's definition with the real select_due domain on fakes (see module doc)."""
    states = definition["States"]
    now = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    clock = Clock()
    sfn = FakeSfn(clock)
    iam, table = FakeIam(now), LockTable(FakeDynamoDb(clock), "locks")  # type: ignore[arg-type]
    document: dict[str, Any] = {"trigger": "maintenance-window"}
    events, max_bytes, pages, longest, wall = EXECUTION_EVENTS, 0, 0, 0.0, 0.0
    waits = any(".sync" in json.dumps(s) or s["Type"] in ("Map", "Parallel") for s in states.values())
    name = definition["StartAt"]
    while True:
        state = states[name]
        kind = state["Type"]
        events += EVENTS[kind]
        if kind == "Pass":
            _set(document, state["ResultPath"], json.loads(json.dumps(state["Result"])))
        elif kind == "Task":
            if step_of(state["Resource"]) != "select_due":
                raise AssertionError(f"the scheduled machine runs {state['Resource']}, not modelled here")
            payload = {key.removesuffix(".$"): (_path(document, value) if key.endswith(".$") and
                                                value.startswith("$.") else value)
                       for key, value in state["Parameters"].items()}
            before_wall, before_sim = time.perf_counter(), clock.simulated
            page = due.start_page(
                settings, iam=iam, sfn=sfn, table=table,  # type: ignore[arg-type]
                rotation_machine="arn:aws:states:us-east-1:123456789012:stateMachine:rotation",
                owner_alive=lambda _: False, cursor=int(payload["cursor"]),
                totals=due.Totals.from_dict(payload["totals"]), run_started=now, now=now,
                sleep=clock.advance, monotonic=lambda: clock.simulated,
            )
            call_wall = time.perf_counter() - before_wall
            wall += call_wall
            longest = max(longest, call_wall + clock.simulated - before_sim)
            pages += 1
            _set(document, state["ResultPath"], {"cursor": page.cursor, "done": page.cursor is None,
                                                 "totals": page.totals.to_dict()})
        elif kind == "Choice":
            chosen = next((c["Next"] for c in state["Choices"]
                           if _path(document, c["Variable"]) == c["BooleanEquals"]), state["Default"])
            max_bytes = max(max_bytes, len(json.dumps(document)))
            name = chosen
            continue
        elif kind in ("Succeed", "Fail"):
            break
        max_bytes = max(max_bytes, len(json.dumps(document)))
        name = state["Next"]
    return Walk(events=events, max_state_bytes=max_bytes, pages=pages, longest_call_seconds=longest,
                run_seconds=wall + clock.simulated, started=sfn.started, waits_for_children=waits)


def rotation_seconds(definition: Mapping[str, Any], waits: Mapping[str, int]) -> float:
    """One rotation's length on the standard path: its Wait states with the production waits."""
    seconds = 0.0
    for name, state in definition["States"].items():
        if state["Type"] != "Wait":
            continue
        wait = waits[state["SecondsPath"].rsplit(".", 1)[-1]]
        seconds += wait * (2 * POLLS_PER_DISTRIBUTION if name == "wait_poll" else 1)
    steps = sum(1 for s in definition["States"].values() if s["Type"] == "Task")
    return seconds + VERIFY_RETRY_SECONDS + STEP_SECONDS * steps


def production_template(directory: Path) -> dict[str, Any]:
    """The template `cdk synth` makes from config/settings.yaml (the production settings and waits)."""
    import app as cdk_app

    cdk_app.build_app(context=_cdk_context(), outdir=str(directory), checks=False,
                      builtin_validation=False).synth()
    template: dict[str, Any] = json.loads(
        (directory / f"{cdk_app.STACK_ID}.template.json").read_text(encoding="utf-8"))
    return template


def _cdk_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((REPO / "cdk.json").read_text(encoding="utf-8"))["context"]
    return context


def model(template: Mapping[str, Any], users: list[int]) -> list[dict[str, Any]]:
    from sandbox.asl import state_machines

    machines = state_machines(template)
    (scheduled,) = [d for lid, d in machines.items() if lid.startswith("WorkflowsScheduled")]
    (rotation,) = [d for lid, d in machines.items() if lid.startswith("WorkflowsRotation")]
    resources = template["Resources"]

    def step_of(resource: str) -> str:
        handler: str = resources[resource.rsplit(":", 1)[-1]]["Properties"]["Handler"]
        return handler.split(".")[1]

    records = []
    for m in users:
        settings, data = production_settings(m)
        walk = walk_scheduled(scheduled, step_of, settings)
        child = rotation_seconds(rotation, data["defaults"]["waits"])
        grace = data["defaults"]["waits"]["grace_seconds"]
        last_finish = walk.run_seconds + child
        window = (settings.schedule.duration_hours - settings.schedule.cutoff_hours) * 3600
        quotas_ok = (walk.events <= MAX_HISTORY_EVENTS and walk.max_state_bytes <= MAX_STATE_BYTES
                     and m + 1 <= MAX_OPEN_EXECUTIONS)
        records.append({
            "metric": "P6",
            "users": m,
            "users_due": m,
            "started": walk.started,
            "starts_per_minute": settings.schedule.starts_per_minute,
            "pages": walk.pages,
            "history_events": walk.events,
            "max_state_bytes": walk.max_state_bytes,
            "open_executions_peak": m + 1,
            "longest_select_due_call_seconds": round(walk.longest_call_seconds, 1),
            "last_start_seconds": round(walk.run_seconds, 1),
            "last_start_hours": round(walk.run_seconds / 3600, 2),
            "rotation_hours": round(child / 3600, 2),
            "last_finish_hours": round(last_finish / 3600, 2),
            "grace_plus_2h_hours": round((grace + 7200) / 3600, 2),
            "waits_for_children": walk.waits_for_children,
            "all_started_before_cutoff": walk.run_seconds <= window,
            "target": "every due user started, the last finished within grace + 2 h, no quota exceeded",
            "met": (walk.started == m and not walk.waits_for_children and quotas_ok
                    and last_finish <= grace + 7200),
            "iam_latency_seconds": list(IAM_LATENCY),
        })
    return records


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.throughput [M ...]`: print the P6 records of the production template as JSON
    (`make bench ARGS="--only P6 --merge"` writes them into bench/results.json and docs/benchmarks.md)."""
    import tempfile

    args = sys.argv[1:] if argv is None else argv
    with tempfile.TemporaryDirectory() as directory:
        template = production_template(Path(directory))
    users = [int(a) for a in args] or [100, 1000, 10_000]
    print(json.dumps(model(template, users), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

