"""`python -m bench [--quick] [--only P1,P3,...]`: run the grid; write bench/results.json, docs/benchmarks.md.

Every measurement runs in a fresh process (`bench.probe`, `bench.agent`) against a cloud assembly
synthesized once per user count; figures are the median of `repeats` runs with min and max.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import cost, floor, report
from bench.probe import REPO, synthesize

RESULTS = REPO / "bench" / "results.json"
DOC = REPO / "docs" / "benchmarks.md"

P3_TARGETS = {100: 20.0, 1000: 120.0}  # seconds, 1 user x N servers
P4_TARGETS = {500: 300.0}  # seconds, M users x 1 server
P2_FIXED, P2_PER_POLL = 40, 3


@dataclass
class Grid:
    name: str
    servers: dict[int, int]  # N -> repeats (1 user x N servers: P1, P2, P3)
    users: dict[int, int]  # M -> repeats (M users x 1 server, scheduled: P4)
    agent_repeats: int  # P5 samples per path and action
    metrics: set[str] = field(default_factory=lambda: {"P1", "P2", "P3", "P4", "P5", "P6"})
    due_users: tuple[int, ...] = (100, 1000, 10_000)  # P6: the scheduled run in real time


FULL = Grid("full", servers={1: 5, 10: 5, 100: 3, 1000: 3}, users={10: 3, 100: 3, 500: 3}, agent_repeats=10)
QUICK = Grid("quick", servers={1: 2, 10: 2}, users={10: 1}, agent_repeats=2, due_users=(100, 1000))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small grid (about 2 minutes)")
    parser.add_argument(
        "--only", default="", help="comma-separated metrics to run (P1..P5; P1-P3 share runs)"
    )
    parser.add_argument("--servers", default="", help="override the N grid, e.g. 1,10 or 100:3 (N:repeats)")
    parser.add_argument("--users", default="", help="override the M grid, e.g. 10,100:2 (M:repeats)")
    parser.add_argument("--agent-repeats", type=int, default=None, help="P5 samples per path and action")
    parser.add_argument("--poll-seconds", type=int, default=1, help="wait between distribution polls (1)")
    parser.add_argument(
        "--cold-agents", action="store_true", help="a new python3 per agent run (not the sandbox's warm one)"
    )
    parser.add_argument(
        "--experiment", default="", help="apply candidate fixes from bench/experiments.py (comma-separated)"
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel agents (sandbox default: 2/CPU)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the records in the existing results.json that this run does not measure",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write results.json")
    parser.add_argument("--doc", type=Path, default=DOC, help="where to write the Markdown report")
    parser.add_argument(
        "--combine",
        nargs="+",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="measure nothing: merge these results files (later ones win) and write both outputs",
    )
    parser.add_argument(
        "--profile-dir", type=Path, default=None, help="write a cProfile of every measurement process there"
    )
    return parser


def _grid_values(text: str, default_repeats: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        value, _, repeats = item.partition(":")
        out[int(value)] = int(repeats) if repeats else default_repeats
    return out


def check_experiments(text: str) -> None:
    """Every name given to --experiment must be a candidate of bench/experiments.py."""
    from bench.experiments import EXPERIMENTS

    unknown = [name.strip() for name in text.split(",") if name.strip() and name.strip() not in EXPERIMENTS]
    if unknown:
        known = ", ".join(sorted(EXPERIMENTS)) or "none at the moment"
        raise SystemExit(
            f"bench: unknown experiment(s) {', '.join(unknown)}; bench/experiments.py has: {known}"
        )


def grid_from(args: argparse.Namespace) -> Grid:
    base = QUICK if args.quick else FULL
    grid = Grid(base.name, dict(base.servers), dict(base.users), base.agent_repeats, due_users=base.due_users)
    if args.servers:
        grid.servers = _grid_values(args.servers, 3)
        grid.name = "custom"
    if args.users:
        grid.users = _grid_values(args.users, 1)
        grid.name = "custom"
    if args.agent_repeats:
        grid.agent_repeats = args.agent_repeats
    if args.only:
        grid.metrics = {m.strip().upper() for m in args.only.split(",") if m.strip()}
        grid.name = grid.name if grid.name != "full" else "partial"
    return grid


# --------------------------------------------------------------------------------------------- machine


def machine(note: str = "") -> dict[str, Any]:
    import moto

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        total = meminfo.read_text().splitlines()[0].split()[1]
        memory = f"{int(total) / 1024 / 1024:.1f} GiB"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "moto": moto.__version__,
        "commit": commit,
        "note": note,
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------------------------- run


def _run(module: str, spec: dict[str, Any], label: str) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", module, json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{label}: exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    print(f"  {label}: {time.perf_counter() - started:.1f}s (load {load_average()[0]})", flush=True)
    return result


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "seconds_median": round(_median(values), 3),
        "seconds_min": round(min(values), 3),
        "seconds_max": round(max(values), 3),
    }


def _median_calls(runs: list[dict[str, Any]]) -> dict[str, float]:
    ops = sorted({op for run in runs for op in run["calls"]})
    return {op: _median([run["calls"].get(op, 0) for run in runs]) for op in ops}


def _context(grid: Grid, args: argparse.Namespace, loads: list[list[float]], repeats: int) -> dict[str, Any]:
    return {
        "agents": "cold" if args.cold_agents else "default (warm interpreter if the sandbox has one)",
        "grid": grid.name,
        "repeats": repeats,
        "poll_seconds": args.poll_seconds,
        "load_average_1m": [load[0] for load in loads],
        "date": _now(),
    }


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rotation_records(n: int, runs: list[dict[str, Any]], context: dict[str, Any]) -> list[dict[str, Any]]:
    """P1, P2, P3 for 1 user x n servers from `runs` of the same scenario."""
    for run in runs:
        if run["result"] != "rotated" or run["violations"]:
            raise RuntimeError(
                f"1 user x {n} servers: result {run['result']}, violations {run['violations']}"
            )
    totals = [float(sum(run["calls"].values())) for run in runs]
    polls = _median([run["polls"] for run in runs])
    calls = _median_calls(runs)
    floor_ops = floor.rotation_floor(n, round(polls))
    floor_total = sum(floor_ops.values())
    transitions = _median([run["transitions"] for run in runs])
    seconds = [run["seconds"] for run in runs]
    within = {op: floor.bound_ok(op, calls.get(op, 0), n, polls) for op in floor.SCALING}
    common = {
        "agent_python": _agent_python(runs),
        "users": 1,
        "servers": n,
        "api_calls": _median(totals),
        "api_calls_floor": floor_total,
        "transitions": transitions,
        "polls": polls,
        **_spread(seconds),
        "context": context,
    }
    lambda_seconds = _median([run["lambda_seconds"] for run in runs])
    invocations = _median([run["lambda_invocations"] for run in runs])
    price = cost.rotation_cost(
        transitions=transitions,
        calls=calls,
        lambda_invocations=invocations,
        lambda_seconds=lambda_seconds,
        servers=n,
    )
    p1 = {
        "metric": "P1",
        **common,
        "ratio": round(_median(totals) / floor_total, 2),
        "calls_by_operation": calls,
        "floor_by_operation": floor_ops,
        "api_calls_floor_one_poll_each": sum(floor.rotation_floor(n, 2).values()),
        "lambda_invocations": invocations,
        "lambda_seconds": lambda_seconds,
        "cost_usd": price,
        "target": "O(N/50): scaling operations within ⌈N/50⌉ per call site and poll; every other "
        "operation independent of N (compared with N=1)",
        "met": all(within.values()),
        "scaling_within_bound": within,
        "runs": [_run_summary(run) for run in runs],
    }
    p2 = {
        "metric": "P2",
        **common,
        "transitions_fixed": round(transitions - P2_PER_POLL * polls, 1),
        "transitions_by_type": {
            k: _median([run["transitions_by_type"].get(k, 0) for run in runs])
            for k in sorted({k for run in runs for k in run["transitions_by_type"]})
        },
        "transitions_per_poll_measured": _per_poll(runs),
        "target": f"≤ {P2_FIXED} + {P2_PER_POLL} per poll, independent of N",
        "met": transitions <= P2_FIXED + P2_PER_POLL * polls,
    }
    target = P3_TARGETS.get(n)
    p3 = {
        "metric": "P3",
        **common,
        "target": f"≤ {target:.0f} s" if target else None,
        "met": (_median(seconds) <= target) if target else None,
        "setup_seconds": {
            k: _median([run["setup_seconds"].get(k, 0) for run in runs]) for k in runs[0]["setup_seconds"]
        },
        "phases": runs[len(runs) // 2]["phases"],
        "cpu_seconds_bench_process": _median([run["cpu_self"] for run in runs]),
        "cpu_seconds_agents": _median([run["cpu_children"] for run in runs]),
        "agent_runs": _median([run["agent_runs"] for run in runs]),
        "agent_wall_seconds_sum": _median([run["agent_seconds"] for run in runs]),
        "history_bytes": _median([run.get("history_bytes", 0) for run in runs]),
        "lambda_seconds": lambda_seconds,
        "lambda_seconds_by_step": {
            step: _median([run["by_function"].get(step, {}).get("seconds", 0) for run in runs])
            for step in sorted({s for run in runs for s in run["by_function"]})
        },
    }
    return [p1, p2, p3]


def _agent_python(runs: list[dict[str, Any]]) -> str:
    modes = sorted({str(run.get("agent_python", "not recorded")) for run in runs})
    return ",".join(modes)


def _per_poll(runs: list[dict[str, Any]]) -> float | None:
    """Transitions added by one more poll, from the run with the most and the fewest polls."""
    low = min(runs, key=lambda r: r["polls"])
    high = max(runs, key=lambda r: r["polls"])
    if high["polls"] == low["polls"]:
        return None
    return round((high["transitions"] - low["transitions"]) / (high["polls"] - low["polls"]), 2)


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "seconds": round(run["seconds"], 3),
        "api_calls": sum(run["calls"].values()),
        "transitions": run["transitions"],
        "polls": run["polls"],
        "cpu_agents": run["cpu_children"],
        "cpu_bench_process": run["cpu_self"],
    }


def derive(records: list[dict[str, Any]]) -> None:
    """Cross-record figures: fixed-call independence of N (P1), transitions per poll (P2), cost at 2 polls."""
    p1 = sorted((r for r in records if r["metric"] == "P1"), key=lambda r: r["servers"])
    if p1:
        base = {op: c for op, c in p1[0]["calls_by_operation"].items() if op not in floor.SCALING}
        for record in p1:
            fixed = {op: c for op, c in record["calls_by_operation"].items() if op not in floor.SCALING}
            record["fixed_calls_same_as_smallest_n"] = fixed == base
            record["met"] = bool(all(record["scaling_within_bound"].values()) and fixed == base)
    # Transitions per poll, from records of the same code (commit): the state machine changes over time.
    slopes: dict[str, float] = {}
    by_commit: dict[str, list[dict[str, Any]]] = {}
    for record in (r for r in records if r["metric"] == "P2"):
        by_commit.setdefault(str(record.get("machine", {}).get("commit")), []).append(record)
    for commit, group in by_commit.items():
        if len({r["polls"] for r in group}) < 2:
            continue
        low = min(group, key=lambda r: r["polls"])
        high = max(group, key=lambda r: r["polls"])
        slopes[commit] = (high["transitions"] - low["transitions"]) / (high["polls"] - low["polls"])
        for record in group:
            record["transitions_per_poll_measured"] = round(slopes[commit], 2)
            record["transitions_without_polls"] = round(
                record["transitions"] - slopes[commit] * record["polls"], 1
            )
    for record in p1:
        per_poll = slopes.get(str(record.get("machine", {}).get("commit")))
        if per_poll is None:
            continue
        # What the same rotation costs when each distribution is polled once (production polls every 30 s
        # by default; the sandbox every second): the extra polls are transitions and Lambda invocations.
        extra = max(0.0, record["polls"] - 2)
        invocations = record["lambda_invocations"] - extra
        record["cost_usd_one_poll_per_distribution"] = cost.rotation_cost(
            transitions=record["transitions"] - per_poll * extra,
            calls=record["calls_by_operation"],
            lambda_invocations=invocations,
            lambda_seconds=record["lambda_seconds"] * invocations / max(record["lambda_invocations"], 1),
            servers=record["servers"],
        )


def scheduled_record(
    m: int, runs: list[dict[str, Any]], context: dict[str, Any], synth: dict[str, Any]
) -> dict[str, Any]:
    totals = [float(sum(run["calls"].values())) for run in runs]
    seconds = [run["seconds"] for run in runs]
    due = runs[0]["users_due"]
    rotated = [run["users_rotated"] for run in runs]
    calls = _median_calls(runs)
    polls = _median([run["polls"] for run in runs])
    per_rotation = floor.rotation_floor(1, max(2, round(polls / max(due, 1))))
    floor_ops = floor.scheduled_floor(m, due, per_rotation)
    target = P4_TARGETS.get(m)
    all_rotated = all(r == due for r in rotated) and all(run["result"] == "rotated" for run in runs)
    transitions = _median([run["transitions"] for run in runs])
    return {
        "metric": "P4",
        "agent_python": _agent_python(runs),
        "users": m,
        "servers": 1,
        "users_due": due,
        "users_rotated_min": min(rotated),
        "every_due_user_rotated": all_rotated,
        "failed_executions": [f for run in runs for f in (run.get("outcomes") or {}).get("failed", [])][:20],
        "api_calls": _median(totals),
        "api_calls_floor": sum(floor_ops.values()),
        "ratio": round(_median(totals) / sum(floor_ops.values()), 2),
        "calls_by_operation": calls,
        "transitions": transitions,
        "polls": polls,
        "executions": runs[0]["executions"],
        **_spread(seconds),
        "lambda_invocations": _median([run["lambda_invocations"] for run in runs]),
        "lambda_seconds": _median([run["lambda_seconds"] for run in runs]),
        "cpu_seconds_bench_process": _median([run["cpu_self"] for run in runs]),
        "cpu_seconds_agents": _median([run["cpu_children"] for run in runs]),
        "setup_seconds": {
            k: _median([run["setup_seconds"].get(k, 0) for run in runs]) for k in runs[0]["setup_seconds"]
        },
        "synth": synth,
        "cost_usd": cost.rotation_cost(
            transitions=transitions,
            calls=calls,
            lambda_invocations=_median([r["lambda_invocations"] for r in runs]),
            lambda_seconds=_median([r["lambda_seconds"] for r in runs]),
            servers=m,
        ),
        "target": (f"≤ {target:.0f} s and every due user rotated" if target else "every due user rotated"),
        "met": all_rotated and (_median(seconds) <= target if target else True),
        "context": context,
        "runs": [_run_summary(run) for run in runs],
    }


def agent_records(result: dict[str, Any], context: dict[str, Any]) -> list[dict[str, Any]]:
    records = []
    measured = [
        (path, actions, result.get("agent_python", "cold")) for path, actions in result["paths"].items()
    ]
    warm = result.get("warm") or {}
    if warm.get("agent_python") == "warm":  # the sandbox's warm python3: only the sandbox runs it that way
        measured += [
            (f"{path} (sandbox warm python3)", actions, "warm") for path, actions in warm["paths"].items()
        ]
    for path, actions, agent_python in measured:
        for action, figures in actions.items():
            wall, cpu = figures["wall"], figures["cpu"]
            records.append(
                {
                    "metric": "P5",
                    "users": 1,
                    "servers": 1,
                    "path": path,
                    "action": action,
                    "api_calls": None,
                    "api_calls_floor": None,
                    "transitions": None,
                    "seconds_median": wall["median"],
                    "seconds_min": wall["min"],
                    "seconds_max": wall["max"],
                    "cpu_seconds_median": cpu["median"],
                    "cpu_seconds_min": cpu["min"],
                    "cpu_seconds_max": cpu["max"],
                    "samples": wall["n"],
                    "agent_python": agent_python,
                    "target": None,
                    "met": None,
                    "context": context,
                }
            )
    records.append(
        {
            "metric": "P5",
            "users": 1,
            "servers": 1,
            "path": "parts",
            "action": "verify",
            "api_calls": None,
            "api_calls_floor": None,
            "transitions": None,
            "seconds_median": None,
            "seconds_min": None,
            "seconds_max": None,
            "parts": result["parts"],
            "target": None,
            "met": None,
            "context": context,
        }
    )
    return records


# ------------------------------------------------------------------------------------------------ main


def _key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (
        record["metric"],
        record.get("users"),
        record.get("servers"),
        record.get("path"),
        record.get("action"),
        str(record.get("agent_python", "")).split(" ")[0].rstrip(","),
        "experiment" in str(record.get("agent_python", "")),
    )


def _write(args: argparse.Namespace, records: list[dict[str, Any]]) -> None:
    records.sort(
        key=lambda r: (
            r["metric"],
            r.get("users") or 0,
            r.get("servers") or 0,
            r.get("path") or "",
            r.get("action") or "",
            str(r.get("agent_python", "")),
        )
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(records, indent=1) + "\n")
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(report.render(records))


def combine(args: argparse.Namespace) -> int:
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in args.combine:
        for record in json.loads(path.read_text()):
            merged[_key(record)] = record
    records = list(merged.values())
    derive(records)
    _write(args, records)
    print(f"bench: {len(records)} records from {len(args.combine)} file(s) -> {args.results}, {args.doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.combine:
        return combine(args)
    check_experiments(args.experiment)
    grid = grid_from(args)
    started = time.perf_counter()
    before = load_average()
    print(f"bench: grid {grid.name} ({', '.join(sorted(grid.metrics))}); load average {before}", flush=True)
    records: list[dict[str, Any]] = []
    synth: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="keyrotation-bench-") as tmp:
        workdir = Path(tmp)

        def assembly(users: int) -> Path:
            directory = workdir / f"assembly-{users}"
            if users not in synth:
                directory.mkdir()
                synth[users] = synthesize(users, directory)
                print(f"  synthesized {users} user(s): {synth[users]}", flush=True)
            return directory

        def profile(label: str) -> str:
            if args.profile_dir is None:
                return ""
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            return str((args.profile_dir / f"{label}.prof").resolve())

        if grid.metrics & {"P1", "P2", "P3"}:
            for n, repeats in sorted(grid.servers.items()):
                runs, loads = [], []
                for i in range(repeats):
                    loads.append(load_average())
                    spec = {
                        "kind": "rotation",
                        "users": 1,
                        "servers": n,
                        "assembly_dir": str(assembly(1)),
                        "poll_seconds": args.poll_seconds,
                        "workers": args.workers,
                        "cold_agents": args.cold_agents,
                        "experiment": args.experiment,
                        "profile": profile(f"rotation-{n}-{i}"),
                    }
                    runs.append(_run("bench.probe", spec, f"1 user x {n} servers, run {i + 1}/{repeats}"))
                wanted = [
                    r
                    for r in rotation_records(n, runs, _context(grid, args, loads, repeats))
                    if r["metric"] in grid.metrics
                ]
                records.extend(wanted)
        if "P4" in grid.metrics:
            for m, repeats in sorted(grid.users.items()):
                runs, loads = [], []
                for i in range(repeats):
                    loads.append(load_average())
                    spec = {
                        "kind": "scheduled",
                        "users": m,
                        "servers": 1,
                        "assembly_dir": str(assembly(m)),
                        "poll_seconds": args.poll_seconds,
                        "workers": args.workers,
                        "cold_agents": args.cold_agents,
                        "experiment": args.experiment,
                        "profile": profile(f"scheduled-{m}-{i}"),
                    }
                    runs.append(
                        _run("bench.probe", spec, f"scheduled {m} users x 1 server, run {i + 1}/{repeats}")
                    )
                records.append(scheduled_record(m, runs, _context(grid, args, loads, repeats), synth[m]))
        if "P5" in grid.metrics:
            loads = [load_average()]
            result = _run(
                "bench.agent",
                {"assembly_dir": str(assembly(1)), "repeats": grid.agent_repeats},
                f"agent alone, {grid.agent_repeats} samples per path and action",
            )
            records.extend(agent_records(result, _context(grid, args, loads, grid.agent_repeats)))
        if "P6" in grid.metrics:
            from bench import throughput

            print(f"  P6: the scheduled run in real time for {', '.join(map(str, grid.due_users))} due users "
                  "(production waits, injected IAM latency)", flush=True)
            loads = [load_average()]
            template = throughput.production_template(workdir / "production")
            for record in throughput.model(template, list(grid.due_users)):
                record["context"] = _context(grid, args, loads, 1)
                records.append(record)
    after = load_average()
    info = machine()
    info.update(
        {
            "load_average_before": before,
            "load_average_after": after,
            "grid": grid.name,
            "bench_seconds": round(time.perf_counter() - started, 1),
            "date": _now(),
            "synth": {str(k): v for k, v in synth.items()},
        }
    )
    for record in records:
        record["machine"] = info
    if args.merge and args.results.exists():
        measured = {_key(r) for r in records}
        records = [r for r in json.loads(args.results.read_text()) if _key(r) not in measured] + records
    derive(records)
    _write(args, records)
    print(
        f"bench: {len(records)} records -> {args.results}, {args.doc} "
        f"in {time.perf_counter() - started:.0f}s; "
        f"load average {after}",
        flush=True,
    )
    return 0
