"""cdk-nag's AwsSolutionsChecks (run once, in the shared synthesis): no unacknowledged finding."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from infra_synth import SETTINGS, Synth

import app as cdk_app
from app import STACK_ID


def _violations(synth: Synth) -> list[str]:
    report = synth.nag_report or {}
    return [
        f"{violation['ruleName']} at {construct['constructPath']}"
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
        for construct in violation.get("violatingConstructs", [])
    ]


def test_aws_solutions_checks_find_nothing_unacknowledged(synth: Synth) -> None:
    # GIVEN the app synthesized with AwsSolutionsChecks (cdk.json's context, test settings)
    # THEN the synthesis succeeded and the report lists no violation
    assert synth.nag_failure is None, "\n".join(_violations(synth)) or synth.nag_failure
    assert _violations(synth) == []


def test_every_acknowledgment_names_one_finding_with_a_reason(synth: Synth) -> None:
    # GIVEN the acknowledgments recorded in the cloud assembly's metadata
    metadata = json.loads((synth.outdir / f"{STACK_ID}.metadata.json").read_text(encoding="utf-8"))
    acknowledgments = [
        (path, rule, reason)
        for path, entries in metadata.items()
        for entry in entries
        if entry["type"] == "aws:cdk:acknowledged-rules"
        for rule, reason in entry["data"].items()
    ]
    assert acknowledgments
    for path, rule, reason in acknowledgments:
        # THEN each names one AwsSolutions rule, and a wildcard finding (IAM5) always names its one resource
        assert re.fullmatch(r"Annotation::AwsSolutions-[A-Z]+[0-9]+(\[.+\])?", rule), (path, rule)
        assert not rule.endswith("AwsSolutions-IAM5"), (path, rule)
        # AND gives a reason a reviewer can judge
        assert len(reason) >= 60, (path, rule, reason)


def test_build_app_runs_aws_solutions_checks_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN build_app with the stack and the plugin replaced by recorders (no synthesis needed)
    added: list[object] = []

    class RecordingValidations:
        @staticmethod
        def of(scope: object) -> SimpleNamespace:
            return SimpleNamespace(add_plugins=lambda *plugins: added.extend(plugins))

    monkeypatch.setattr(cdk_app.cdk, "Validations", RecordingValidations)
    monkeypatch.setattr(cdk_app, "KeyRotationStack", lambda *args, **kwargs: None)
    monkeypatch.setattr(cdk_app, "AwsSolutionsChecks", lambda app: "AwsSolutionsChecks")
    # WHEN the app is built as `cdk synth` and the tests' synthesis build it, THEN the checks are added
    cdk_app.build_app(SETTINGS)
    assert added == ["AwsSolutionsChecks"]
    # AND only an explicit checks=False (the sandbox) leaves them out
    cdk_app.build_app(SETTINGS, checks=False)
    assert added == ["AwsSolutionsChecks"]
