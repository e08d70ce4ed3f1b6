"""The emulator's patches to moto, installed together: counted, reversible, checked (sandbox.moto.registry).

moto 5.2.5 executes state machines but cannot run Lambda code without Docker, records Run Command without
running anything, lacks `ListCommandInvocations` and `DescribeInstanceInformation`, and runs no alarm action.
The patches are inert until used: Lambda functions run their own code (the zip moto stores) and Run Command
dispatches to a fleet only when one is attached to the SSM backend (`sandbox.moto.ssm.attach_fleet`).
"""

from __future__ import annotations

import threading
from typing import Any

from sandbox.moto import (
    alarms,
    instance_information,
    lambda_runtime,
    registry,
    run_command,
    speed,
    stepfunctions,
)
from sandbox.moto.registry import Patch, adds

MOTO_VERSION = registry.PINNED["moto"]
MOTO_CONFIG: dict[str, Any] = {
    "stepfunctions": {"execute_state_machine": True},
    "lambda": {"use_docker": False},
}

_INSTALL_LOCK = threading.Lock()
_installed: list[Patch] = []
_saved_config: dict[str, Any] = {}


def _emulator_patches() -> list[Patch]:
    from moto import backends as moto_backends
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.cloudwatch.models import Alarm
    from moto.ssm import models as ssm_models
    from moto.ssm.responses import SimpleSystemManagerResponse
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_sfn
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
        StateTaskServiceSfn,
    )
    from moto.stepfunctions.parser.asl.utils import json_path
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    backend = ssm_models.SimpleSystemManagerBackend
    response = SimpleSystemManagerResponse

    sfn, ssm, info = stepfunctions, run_command, instance_information
    return [
        Patch(LambdaSimpleBackend, "invoke", adds(lambda_runtime.invoke), must_exist=True),
        Patch(ExecutionWorker, "_get_evaluation_environment", sfn.wrap_start_time, must_exist=True),
        # Speed only (bench/analysis.md, P4): moto's executor makes a new boto3 client for every Lambda task
        # and every poll of a child execution, and rebuilds a JSONPath parser (yacc tables) for every path.
        Patch(lambda_eval_utils, "boto_client_for", speed.reusing_clients, must_exist=True),
        Patch(state_task_service_sfn, "boto_client_for", speed.reusing_clients, must_exist=True),
        Patch(json_path, "parse", speed.memoized_json_path, must_exist=True),
        Patch(ExecutionWorker, "_get_evaluation_entrypoint", adds(speed.evaluation_entrypoint),
              must_exist=True),
        # moto's server lists its own package directory (a stat per service) to route every request.
        Patch(moto_backends, "list_of_moto_modules", speed.listed_once, must_exist=True),
        Patch(StateTaskServiceSfn, "_normalise_parameters", sfn.wrap_sfn_parameters, must_exist=True),
        Patch(StateTaskServiceSfn, "_normalise_response", adds(sfn.sfn_response), must_exist=False),
        # CloudWatch runs an alarm's SNS actions only as the topic and key policies allow (alarms.py).
        Patch(Alarm, "update_state", alarms.wrap_update_state, must_exist=True),
        Patch(backend, "send_command", ssm.wrap_send_command, must_exist=True),
        Patch(backend, "list_commands", ssm.wrap_refreshing, must_exist=True),
        Patch(ssm_models.Command, "get_invocation", ssm.wrap_get_invocation, must_exist=True),
        Patch(ssm_models.Command, "response_object", ssm.wrap_response_object, must_exist=True),
        Patch(backend, "list_command_invocations", adds(ssm.backend_list_command_invocations),
              must_exist=False),
        Patch(backend, "describe_instance_information", adds(info.backend_describe_instance_information),
              must_exist=False),
        Patch(response, "list_command_invocations", adds(ssm.response_list_command_invocations),
              must_exist=False),
        Patch(response, "describe_instance_information", adds(info.response_describe_instance_information),
              must_exist=False),
    ]


_users = 0  # emulators currently relying on the patches


def install() -> None:
    """Apply every patch and switch moto to executing state machines without Docker.

    Counted: every `install` needs its `uninstall`; the last one restores moto.
    """
    global _users
    with _INSTALL_LOCK:
        if _installed:
            _users += 1
            return
        registry.check_version("moto")
        _installed.extend(registry.apply(_emulator_patches(), checks=(
            stepfunctions.check_error_name_table, stepfunctions.check_sfn_normalisation_missing)))
        stepfunctions.install_error_names()
        from moto.core.config import default_user_config

        for section, values in MOTO_CONFIG.items():
            _saved_config[section] = dict(default_user_config.get(section, {}))  # type: ignore[call-overload]
            default_user_config.setdefault(section, {}).update(values)  # type: ignore[misc]
        _users = 1


def uninstall() -> None:
    """Restore moto exactly as it was before the first `install` (once every user has uninstalled)."""
    global _users
    with _INSTALL_LOCK:
        _users = max(0, _users - 1)
        if _users:
            return
        registry.restore(_installed)
        stepfunctions.uninstall_error_names()
        from moto.core.config import default_user_config

        for section, values in _saved_config.items():
            default_user_config[section] = values  # type: ignore[literal-required]
        _saved_config.clear()
        lambda_runtime.unroute_standard_streams()
    lambda_runtime.cleanup_lambda_code()


def is_installed() -> bool:
    return bool(_installed)
