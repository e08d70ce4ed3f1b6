"""Render a synthesized state machine's `DefinitionString` to the plain ASL JSON Step Functions would see.

CDK writes the definition as an `Fn::Join` of JSON text and intrinsic functions (`Ref`, `Fn::GetAtt`).
`render_definition` joins it, replacing each intrinsic by what `resolve` returns — by default a realistic
ARN or name in a fixed placeholder account — so asl-validator (tests/infra) or a walk of the machine
(bench/throughput.py) can read it. Not part of the CDK app: nothing under infra/ uses it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

PARTITION = "aws"
REGION = "us-east-1"
ACCOUNT = "123456789012"

Resolver = Callable[[Mapping[str, Any]], str]

_PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
}
# ARN of a resource by CloudFormation type, for Ref/GetAtt Arn in a definition; {0} is the logical id.
_ARNS = {
    "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{{0}}",
    "AWS::StepFunctions::StateMachine": f"arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{{0}}",
    "AWS::SNS::Topic": f"arn:{PARTITION}:sns:{REGION}:{ACCOUNT}:{{0}}",
    "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{{0}}",
}
# Resource types whose Ref is their ARN (the rest return a name).
_REF_IS_ARN = {"AWS::StepFunctions::StateMachine", "AWS::SNS::Topic"}


def placeholder_resolver(template: Mapping[str, Any]) -> Resolver:
    resources: Mapping[str, Any] = template.get("Resources", {})

    def resolve(intrinsic: Mapping[str, Any]) -> str:
        if "Ref" in intrinsic:
            name = str(intrinsic["Ref"])
            if name in _PSEUDO:
                return _PSEUDO[name]
            kind = resources[name]["Type"]
            return _ARNS[kind].format(name) if kind in _REF_IS_ARN else name
        if "Fn::GetAtt" in intrinsic:
            name, attribute = (str(item) for item in intrinsic["Fn::GetAtt"])
            kind = resources[name]["Type"]
            if attribute == "Arn" and kind in _ARNS:
                return _ARNS[kind].format(name)
            if attribute == "Name":
                return name
        raise ValueError(f"cannot resolve {json.dumps(intrinsic)} in a state machine definition")

    return resolve


def definition_text(definition: Any, resolve: Resolver) -> str:
    """The JSON text of a `DefinitionString` value (a string or an `Fn::Join` of strings and intrinsics)."""
    if isinstance(definition, str):
        return definition
    if isinstance(definition, Mapping) and "Fn::Join" in definition:
        separator, parts = definition["Fn::Join"]
        return str(separator).join(
            part if isinstance(part, str) else resolve(part) for part in parts
        )
    raise ValueError(f"unexpected DefinitionString: {json.dumps(definition)[:200]}")


def render_definition(
    template: Mapping[str, Any], logical_id: str, resolve: Resolver | None = None
) -> dict[str, Any]:
    """The plain ASL of state machine `logical_id` in `template` (with `DefinitionSubstitutions` applied)."""
    properties = template["Resources"][logical_id]["Properties"]
    resolver = resolve or placeholder_resolver(template)
    text = definition_text(properties["DefinitionString"], resolver)
    for key, value in properties.get("DefinitionSubstitutions", {}).items():
        text = text.replace("${" + key + "}", value if isinstance(value, str) else resolver(value))
    rendered: dict[str, Any] = json.loads(text)
    return rendered


def state_machines(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every state machine of the template, by logical id, rendered with placeholder values."""
    return {
        logical_id: render_definition(template, logical_id)
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::StepFunctions::StateMachine"
    }
