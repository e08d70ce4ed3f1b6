"""Step Functions as AWS runs it where moto 5.2.5 differs: aws-sdk task error names, the execution's
StartTime, and the optimized `states:startExecution` integration's parameter and response names.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from sandbox.moto.registry import PatchError

# --------------------------------------------------------------------------------------------------
# Step Functions: aws-sdk task error names. AWS reports `Ssm.InvalidInstanceIdException`; moto `ssm.…`.
# --------------------------------------------------------------------------------------------------

_ERROR_NAMES = {"ssm": "Ssm"}


def _error_name_table() -> dict[str, str]:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_aws_sdk as aws_sdk,
    )

    table: dict[str, str] = aws_sdk._SERVICE_ERROR_NAMES
    return table


def check_error_name_table() -> None:
    table = _error_name_table()
    for service in _ERROR_NAMES:
        if service in table:
            raise PatchError(f"moto now names aws-sdk {service} errors itself: drop the sandbox's entry")


def install_error_names() -> None:
    _error_name_table().update(_ERROR_NAMES)


def uninstall_error_names() -> None:
    table = _error_name_table()
    for service in _ERROR_NAMES:
        table.pop(service, None)


def wrap_start_time(original: Callable[..., Any]) -> Callable[..., Any]:
    """`$$.Execution.StartTime` is an ISO 8601 string in AWS (`2026-11-22T03:00:00.123Z`); moto puts a
    datetime there, which breaks intrinsic functions on it (the scheduled machine names executions with
    `States.StringSplit($$.Execution.StartTime, ':')`)."""

    def get_evaluation_environment(self: Any) -> Any:
        env = original(self)
        execution = env.states.context_object.context_object_data["Execution"]
        start = execution.get("StartTime")
        if isinstance(start, datetime.datetime):
            if start.tzinfo is None:
                start = start.replace(tzinfo=datetime.UTC)
            utc = start.astimezone(datetime.UTC)
            execution["StartTime"] = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
        return env

    return get_evaluation_environment


# Step Functions' optimized `states:startExecution[.sync[:2]]` integration takes and returns PascalCase
# (`StateMachineArn`, `Input`; `ExecutionArn`, `Status`), the boto3 client camelCase. moto's executor (ported
# from LocalStack) leaves the translation to `_normalise_parameters/_normalise_response`, which are no-ops in
# moto: the call fails on `Input`, and `$.ExecutionArn`/`$.Status` selectors find nothing.


def check_sfn_normalisation_missing() -> None:
    import inspect

    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    for name in ("_normalise_parameters", "_normalise_response"):
        body = inspect.getsource(getattr(StateTaskService, name)).rstrip()
        if not body.endswith("pass"):
            raise PatchError(f"moto now implements StateTaskService.{name}: drop the sandbox's sfn patch")


def wrap_sfn_parameters(original: Callable[..., Any]) -> Callable[..., Any]:
    def normalise_parameters(self: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                             service_action_name: str | None = None) -> None:
        original(self, parameters, boto_service_name=boto_service_name,
                 service_action_name=service_action_name)
        for key in [k for k in parameters if k[:1].isupper()]:
            parameters[key[0].lower() + key[1:]] = parameters.pop(key)

    return normalise_parameters


def sfn_response(self: Any, response: Any, boto_service_name: str | None = None,
                  service_action_name: str | None = None) -> None:
    if isinstance(response, dict):
        for key in [k for k in response if k[:1].islower()]:
            response[key[0].upper() + key[1:]] = response.pop(key)

