"""A tiny walker over a rendered state machine, to test its *paths* without AWS.

It follows Next, Choice rules, Catch and End for the constructs our machines use; a Task calls
`run(step, state)`, which returns the step's result or raises `StepFailed(error_name)`. Retries, timing and
Map are not modelled (asl-validator and the template tests cover those).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

_MISSING = object()


class StepFailed(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Walk:
    status: str = ""
    visited: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    task_inputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _get(data: Any, path: str) -> Any:
    if path == "$":
        return data
    current = data
    for key in path.removeprefix("$.").split("."):
        if not isinstance(current, Mapping) or key not in current:
            return _MISSING
        current = current[key]
    return current


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    if path == "$":
        return dict(value)
    keys = path.removeprefix("$.").split(".")
    target = data
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value
    return data


def _parameters(template: Mapping[str, Any], state: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    result: dict[str, Any] = {}
    for key, value in template.items():
        if key.endswith(".$"):
            source = context if value.startswith("$$.") else state
            result[key[:-2]] = _get(source, value.replace("$$.", "$.", 1))
        else:
            result[key] = value
    return result


def _rule(rule: Mapping[str, Any], state: Mapping[str, Any]) -> bool:
    if "Not" in rule:
        return not _rule(rule["Not"], state)
    if "And" in rule:
        return all(_rule(item, state) for item in rule["And"])
    if "Or" in rule:
        return any(_rule(item, state) for item in rule["Or"])
    value = _get(state, rule["Variable"])
    if "IsPresent" in rule:
        return (value is not _MISSING) == rule["IsPresent"]
    if value is _MISSING:
        # Step Functions fails the whole execution here (States.Runtime), with no Catch possible.
        raise AssertionError(f"Choice read missing {rule['Variable']}: the execution would fail uncaught")
    if "IsNumeric" in rule:
        return (isinstance(value, int | float) and not isinstance(value, bool)) == rule["IsNumeric"]
    if "IsBoolean" in rule:
        return isinstance(value, bool) == rule["IsBoolean"]
    if "StringEquals" in rule:
        return bool(value == rule["StringEquals"])
    if "BooleanEquals" in rule:
        return bool(value is rule["BooleanEquals"])
    if "NumericLessThanPath" in rule:
        other = _get(state, rule["NumericLessThanPath"])
        return bool(value < other)
    raise NotImplementedError(f"Choice rule {rule}")


def walk(
    definition: Mapping[str, Any],
    execution_input: Mapping[str, Any],
    run: Callable[[str, dict[str, Any]], Any],
    step_of: Callable[[str], str],
    max_transitions: int = 1000,
) -> Walk:
    """Run `definition`; `step_of(resource)` names the step a Task's Resource invokes."""
    result = Walk(state=copy.deepcopy(dict(execution_input)))
    context = {"Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:m:e"}}
    name = definition["StartAt"]
    for _ in range(max_transitions):
        spec = definition["States"][name]
        result.visited.append(name)
        kind = spec["Type"]
        following: str | None = spec.get("Next")
        if kind == "Task":
            step = step_of(spec["Resource"])
            payload = (
                copy.deepcopy(_parameters(spec["Parameters"], result.state, context))
                if "Parameters" in spec
                else copy.deepcopy(result.state)
            )
            result.tasks.append(step)
            result.task_inputs.append((step, payload))
            try:
                output = run(step, payload)
            except StepFailed as failure:
                catch = next(
                    c
                    for c in spec.get("Catch", [])
                    if failure.error in c["ErrorEquals"] or "States.ALL" in c["ErrorEquals"]
                )
                result.state = _set(
                    result.state,
                    catch.get("ResultPath", "$"),
                    {"Error": failure.error, "Cause": f"{failure.error} (test)"},
                )
                following = catch["Next"]
            else:
                result.state = _set(result.state, spec.get("ResultPath", "$"), output)
        elif kind == "Pass":
            value = _parameters(spec["Parameters"], result.state, context) if "Parameters" in spec else {}
            result.state = _set(result.state, spec.get("ResultPath", "$"), value)
        elif kind == "Choice":
            following = next(
                (rule["Next"] for rule in spec["Choices"] if _rule(rule, result.state)), spec.get("Default")
            )
            assert following is not None, f"Choice {name} has no matching rule and no Default"
        elif kind in ("Succeed", "Fail"):
            result.status = "SUCCEEDED" if kind == "Succeed" else "FAILED"
            return result
        elif kind != "Wait":
            raise NotImplementedError(kind)
        if spec.get("End"):
            result.status = "SUCCEEDED"
            return result
        assert following is not None, f"{name} has neither Next nor End"
        name = following
    raise AssertionError(f"no end after {max_transitions} transitions: {result.visited[-20:]}")
