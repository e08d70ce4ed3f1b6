"""Resource-policy evaluation as AWS documents it, for what moto does not evaluate: may a service principal
(CloudWatch alarms, EventBridge) publish to our topic and use its KMS key?

AWS's rule for one policy (IAM User Guide, "Policy evaluation logic"): an explicit Deny that applies wins;
otherwise an Allow that applies is needed; otherwise the request is implicitly denied. A statement applies
when its Principal, Action (or NotAction) and Resource (or NotResource) match and every condition holds. A
service principal calling on its own behalf is authorized by the resource policy alone (there is no identity
policy), which is the case this module answers: `allows(policy, principal=Service(...), ...)`.

Only the condition operators our template uses are implemented; any other raises `UnsupportedPolicy`, so a
new operator in the template is noticed instead of being read as "holds".
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class UnsupportedPolicy(ValueError):
    """The policy uses an element or condition operator this evaluator does not implement."""


@dataclass(frozen=True)
class Service:
    """A service principal, e.g. `Service("cloudwatch.amazonaws.com")`."""

    name: str


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str, *, case_sensitive: bool = True) -> bool:
    """IAM wildcards: `*` any run of characters, `?` one character (no character classes)."""
    translated = pattern.replace("[", "[[]")
    if case_sensitive:
        return fnmatch.fnmatchcase(value, translated)
    return fnmatch.fnmatchcase(value.lower(), translated.lower())


def _principal_matches(element: Any, principal: Service) -> bool:
    if element == "*":
        return True
    if not isinstance(element, Mapping):
        raise UnsupportedPolicy(f"Principal {element!r}")
    if element.get("AWS") == "*":
        return True  # "AWS": "*" is everyone, services included
    return principal.name in _as_list(element.get("Service", []))


def _arn_like(pattern: str, value: str) -> bool:
    # ArnLike compares the six colon-separated parts, each with wildcards.
    pattern_parts, value_parts = pattern.split(":", 5), value.split(":", 5)
    if len(pattern_parts) != 6 or len(value_parts) != 6:
        return False
    return all(_like(p, v) for p, v in zip(pattern_parts, value_parts, strict=True))


_OPERATORS = {
    "StringEquals": lambda expected, actual: actual == expected,
    "StringLike": lambda expected, actual: _like(expected, actual),
    "ArnEquals": lambda expected, actual: _arn_like(expected, actual),
    "ArnLike": lambda expected, actual: _arn_like(expected, actual),
    "Bool": lambda expected, actual: str(actual).lower() == str(expected).lower(),
}
_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _condition_holds(operator: str, block: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    negated = base in _NEGATED
    test = _OPERATORS.get(_NEGATED.get(base, base))
    if test is None:
        raise UnsupportedPolicy(f"condition operator {operator}")
    for key, expected in block.items():
        actual = next((v for k, v in context.items() if k.lower() == key.lower()), None)
        if actual is None:
            # A missing key: positive operators fail, negated ones and ...IfExists hold (IAM's rule).
            if not (negated or if_exists):
                return False
            continue
        matched = any(test(str(e), actual) for e in _as_list(expected))
        if matched == negated:
            return False
    return True


def statement_applies(statement: Mapping[str, Any], *, principal: Service, action: str, resource: str,
                      context: Mapping[str, str]) -> bool:
    if "NotPrincipal" in statement:
        raise UnsupportedPolicy("NotPrincipal")
    if not _principal_matches(statement.get("Principal"), principal):
        return False
    if "NotAction" in statement:
        if any(_like(a, action, case_sensitive=False) for a in _as_list(statement["NotAction"])):
            return False
    elif not any(_like(a, action, case_sensitive=False) for a in _as_list(statement.get("Action", []))):
        return False
    if "NotResource" in statement:
        if any(_like(r, resource) for r in _as_list(statement["NotResource"])):
            return False
    elif not any(_like(r, resource) for r in _as_list(statement.get("Resource", []))):
        return False
    return all(_condition_holds(op, block, context) for op, block in statement.get("Condition", {}).items())


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # the Sid (or index) of the deciding statement, or "no statement allows it"


def evaluate(policy: Mapping[str, Any], *, principal: Service, action: str, resource: str,
             context: Mapping[str, str]) -> Decision:
    """AWS's decision for `principal` doing `action` on `resource` under one resource policy."""
    allow: str | None = None
    for index, statement in enumerate(_as_list(policy.get("Statement", []))):
        if not statement_applies(statement, principal=principal, action=action, resource=resource,
                                 context=context):
            continue
        name = str(statement.get("Sid", f"statement {index}"))
        if statement.get("Effect") == "Deny":
            return Decision(False, f"explicitly denied by {name}")
        allow = allow or name
    if allow is None:
        return Decision(False, "no statement allows it")
    return Decision(True, f"allowed by {allow}")
