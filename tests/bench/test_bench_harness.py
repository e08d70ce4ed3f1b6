"""The `make bench` harness on a tiny grid (1 user x 2 servers), so that it cannot rot between benchmark runs.

GIVEN the real app synthesized for one user and the sandbox
WHEN the bench measures one rotation in-process
THEN the API counter saw exactly the Lambdas' control-plane calls, and the records have the published schema.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cli, probe, report

REQUIRED = {
    "metric",
    "users",
    "servers",
    "api_calls",
    "api_calls_floor",
    "transitions",
    "seconds_median",
    "seconds_min",
    "seconds_max",
    "target",
    "met",
}


@pytest.fixture(scope="module")
def measurement(tmp_path_factory: pytest.TempPathFactory) -> probe.Measurement:
    assembly_dir = tmp_path_factory.mktemp("assembly")
    probe.synthesize(1, assembly_dir)
    # No wait between polls: the test checks the harness, not the timing.
    spec = probe.Spec(
        kind="rotation", users=1, servers=2, assembly_dir=str(assembly_dir), poll_seconds=0, timeout=120
    )
    return probe.measure(spec, tmp_path_factory.mktemp("work"))


def test_rotation_is_measured_and_counted_inside_lambdas_only(measurement: probe.Measurement) -> None:
    m = measurement
    assert m.result == "rotated" and not m.violations
    calls = m.calls
    # The rotation's own writes happen once each.
    for op in (
        "iam:CreateAccessKey",
        "secretsmanager:PutSecretValue",
        "iam:UpdateAccessKey",
        "iam:DeleteAccessKey",
        "iam:GetAccessKeyLastUsed",
        "sns:Publish",
    ):
        assert calls.get(op) == 1, op
    assert calls["sts:GetCallerIdentity"] >= 1
    assert calls["ssm:SendCommand"] == 2  # rotate + verify, 2 servers fit one batch
    assert calls["ssm:ListCommandInvocations"] == m.polls  # one page per poll for 2 servers
    # Not counted: the operator's provisioning, the harness following the execution, Step Functions itself.
    for op in (
        "iam:CreateUser",
        "stepfunctions:StartExecution",
        "stepfunctions:DescribeExecution",
        "lambda:Invoke",
        "secretsmanager:CreateSecret",
    ):
        assert op not in calls, op
    assert m.lambda_invocations == m.transitions_by_type["TaskStateEntered"]
    assert m.agent_runs == 4 and m.cpu_children > 0
    assert m.transitions > m.polls > 0


def test_records_have_the_published_schema(measurement: probe.Measurement, tmp_path: Path) -> None:
    from dataclasses import asdict

    context = {"grid": "test", "repeats": 1, "poll_seconds": 1, "load_average_1m": [0.0], "date": "now"}
    records = cli.rotation_records(2, [asdict(measurement)], context)
    cli.derive(records)
    assert [r["metric"] for r in records] == ["P1", "P2", "P3"]
    for record in records:
        assert record.keys() >= REQUIRED, REQUIRED - record.keys()
        assert (record["users"], record["servers"]) == (1, 2)
    p1 = records[0]
    assert p1["calls_by_operation"]["iam:CreateAccessKey"] == 1
    assert p1["floor_by_operation"]["iam:CreateAccessKey"] == 1
    assert p1["api_calls"] >= p1["api_calls_floor"] > 0 and p1["met"] is True
    assert p1["cost_usd"]["total_usd"] > 0
    for record in records:
        record["machine"] = cli.machine()
    text = report.render(json.loads(json.dumps(records)))
    assert "## P1" in text and "## P3" in text and "1 user × 2 servers" in text


def test_an_unknown_experiment_is_refused_before_anything_runs() -> None:
    from bench.cli import main

    # GIVEN a candidate name bench/experiments.py does not have WHEN asked to apply it THEN a clear refusal
    with pytest.raises(SystemExit, match="unknown experiment.*fast-lci"):
        main(["--experiment", "fast-lci", "--quick"])
