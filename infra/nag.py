"""Acknowledging cdk-nag findings: always one finding, always with the reason a reviewer needs."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge exactly one finding (e.g. `AwsSolutions-IAM5[Resource::*]`) on `scope` and its children."""
    if not reason.strip():
        raise ValueError(f"acknowledging {finding} needs a reason")
    Validations.of(scope).acknowledge(Acknowledgment(id=finding, reason=reason))


def resource_finding(stack: Stack, resource: str) -> str:
    """The `AwsSolutions-IAM5[Resource::…]` finding id cdk-nag reports for a policy resource `resource`.

    cdk-nag writes `Ref`s as `<Name>`, `Fn::GetAtt`s as `<Name.Attribute>`, an `Fn::Sub` string with its
    `${X}` as `<X>`, and any other intrinsic as its compact JSON; this renders a (tokenized) ARN the same
    way, so acknowledgments follow logical ids.
    """
    resolved = stack.resolve(resource)
    if isinstance(resolved, str):
        parts: list[Any] = [resolved]
    elif isinstance(resolved, dict) and set(resolved) == {"Fn::Sub"} and isinstance(resolved["Fn::Sub"], str):
        parts = [re.sub(r"\$\{([^}]+)\}", r"<\1>", resolved["Fn::Sub"])]
    elif isinstance(resolved, dict) and set(resolved) == {"Fn::Join"} and resolved["Fn::Join"][0] == "":
        parts = resolved["Fn::Join"][1]
    else:
        parts = [resolved]
    return "AwsSolutions-IAM5[Resource::" + "".join(_render(part) for part in parts) + "]"


def _render(part: Any) -> str:
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and set(part) == {"Ref"}:
        return f"<{part['Ref']}>"
    if isinstance(part, dict) and set(part) == {"Fn::GetAtt"}:
        return "<" + ".".join(part["Fn::GetAtt"]) + ">"
    return json.dumps(part, separators=(",", ":"))
