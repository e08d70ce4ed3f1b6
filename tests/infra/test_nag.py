"""cdk-nag's AwsSolutionsChecks (run once, in the shared synthesis): no unacknowledged finding."""

from __future__ import annotations

import json
import re

from infra_synth import Synth

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
