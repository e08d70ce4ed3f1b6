"""Acknowledging cdk-nag findings: always one finding, always with the reason a reviewer needs."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge exactly one finding (e.g. `AwsSolutions-IAM5[Resource::*]`) on `scope` and its children."""
    if not reason.strip():
        raise ValueError(f"acknowledging {finding} needs a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=finding, reason=reason))
