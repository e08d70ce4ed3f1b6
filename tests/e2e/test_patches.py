"""The moto patches: Lambda runs real code, Step Functions matches its errors, the install is guarded."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from typing import Any

from sandbox.emulator import Emulator, wait_for

ROLE = "arn:aws:iam::123456789012:role/fn"

STEP_CODE = {
    "handlers/__init__.py": "",
    "handlers/errors.py": "class NotYetValid(Exception):\n    pass\n\nclass Broken(Exception):\n    pass\n",
    "handlers/step.py": (
        "import os\n"
        "from handlers.errors import Broken, NotYetValid\n"
        "CALLS = {}\n"
        "def handler(event, context):\n"
        "    run = event.get('run', '')\n"
        "    CALLS[run] = CALLS.get(run, 0) + 1\n"
        "    print('step called for', event.get('user'))\n"
        "    if event.get('fail_times', 0) >= CALLS[run]:\n"
        "        raise NotYetValid('attempt %d' % CALLS[run])\n"
        "    if event.get('broken'):\n"
        "        raise Broken('cannot')\n"
        "    return {'user': event.get('user'), 'calls': CALLS[run], 'table': os.environ['LOCK_TABLE'],\n"
        "            'function': context.function_name, 'task_root': os.environ['LAMBDA_TASK_ROOT']}\n"
    ),
}


def _zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _function(emulator: Emulator, name: str, files: dict[str, str], env: dict[str, str]) -> str:
    iam = emulator.client("iam")
    if not iam.list_roles()["Roles"]:
        statement = {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                     "Action": "sts:AssumeRole"}
        trust = {"Version": "2012-10-17", "Statement": [statement]}
        iam.create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))
    fn = emulator.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="handlers.step.handler",
        Code={"ZipFile": _zip(files)}, Environment={"Variables": env},
    )
    return str(fn["FunctionArn"])


def _run(emulator: Emulator, definition: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    sfn = emulator.client("stepfunctions")
    machine = sfn.create_state_machine(name=f"m{time.monotonic_ns()}", definition=json.dumps(definition),
                                       roleArn=ROLE)["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, name="run-1",
                              input=json.dumps(payload))["executionArn"]
    return wait_for(lambda: (d := sfn.describe_execution(executionArn=arn))["status"] != "RUNNING" and d)


def test_lambda_runs_the_functions_own_code_with_its_configured_environment(emulator: Emulator) -> None:
    # GIVEN a function whose code reads its environment
    _function(emulator, "step", STEP_CODE, {"LOCK_TABLE": "locks"})
    # WHEN it is invoked through the Lambda API
    response = emulator.client("lambda").invoke(FunctionName="step", Payload=json.dumps({"user": "svc"}),
                                                LogType="Tail")
    # THEN the handler's own result comes back, with its environment and context
    result = json.loads(response["Payload"].read())
    assert result["user"] == "svc" and result["table"] == "locks" and result["function"] == "step"
    assert "FunctionError" not in response
    # AND its output went to the function's log, not to our stdout
    assert "step called for svc" in base64.b64decode(response["LogResult"]).decode()
    events = emulator.client("logs").filter_log_events(logGroupName="/aws/lambda/step")["events"]
    assert any("step called for svc" in e["message"] for e in events)


def test_lambda_exception_is_a_function_error_named_after_the_class(emulator: Emulator) -> None:
    _function(emulator, "step", STEP_CODE, {"LOCK_TABLE": "locks"})
    response = emulator.client("lambda").invoke(FunctionName="step", Payload=json.dumps({"broken": True}))
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "Broken" and error["errorMessage"] == "cannot"


def test_functions_with_same_module_names_keep_their_own_code(emulator: Emulator) -> None:
    other = dict(STEP_CODE)
    other["handlers/step.py"] = "def handler(event, context):\n    return 'other code'\n"
    _function(emulator, "one", STEP_CODE, {"LOCK_TABLE": "one"})
    _function(emulator, "two", other, {})
    client = emulator.client("lambda")
    first = json.loads(client.invoke(FunctionName="one", Payload="{}")["Payload"].read())
    second = json.loads(client.invoke(FunctionName="two", Payload="{}")["Payload"].read())
    again = json.loads(client.invoke(FunctionName="one", Payload="{}")["Payload"].read())
    assert first["table"] == "one" and second == "other code"
    # warm container: module state survives between invocations of the same code, like Lambda
    assert again["calls"] == first["calls"] + 1


def test_each_function_has_modules_of_its_own_like_its_own_process(emulator: Emulator) -> None:
    # GIVEN two functions from the same code (the engine's steps all come from one asset)
    _function(emulator, "left", STEP_CODE, {"LOCK_TABLE": "left"})
    _function(emulator, "right", STEP_CODE, {"LOCK_TABLE": "right"})
    client = emulator.client("lambda")

    def call(name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(client.invoke(FunctionName=name, Payload="{}")["Payload"].read())
        return result

    # WHEN both run, one of them twice
    first, other, again = call("left"), call("right"), call("left")
    # THEN each kept its own module state (what a module caches, such as boto3 clients, is never another
    # function's), warm between its own invocations
    assert (first["calls"], other["calls"], again["calls"]) == (1, 1, 2)
    assert (first["table"], other["table"]) == ("left", "right")
    # WHEN a function's configuration changes THEN it runs in a new environment: new modules
    client.update_function_configuration(FunctionName="left",
                                         Environment={"Variables": {"LOCK_TABLE": "new"}})
    moved = call("left")
    assert (moved["calls"], moved["table"]) == (1, "new")


def test_state_machine_retry_and_catch_match_handler_error_names(emulator: Emulator) -> None:
    arn = _function(emulator, "step", STEP_CODE, {"LOCK_TABLE": "locks"})
    definition = {
        "StartAt": "Step",
        "States": {
            "Step": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "Retry": [{"ErrorEquals": ["NotYetValid"], "IntervalSeconds": 1, "MaxAttempts": 2,
                           "BackoffRate": 1}],
                "Catch": [{"ErrorEquals": ["Broken"], "Next": "Caught", "ResultPath": "$.error"}],
                "Next": "Done",
            },
            "Caught": {"Type": "Pass", "Result": {"caught": True}, "End": True},
            "Done": {"Type": "Succeed"},
        },
    }
    # the module keeps CALLS across invocations: 1 failure, then success on the retry
    retried = _run(emulator, definition, {"user": "svc", "fail_times": 1, "run": "retry"})
    assert retried["status"] == "SUCCEEDED", retried
    assert json.loads(retried["output"])["calls"] == 2
    caught = _run(emulator, definition, {"user": "svc", "broken": True})
    assert caught["status"] == "SUCCEEDED" and json.loads(caught["output"]) == {"caught": True}


def test_aws_sdk_ssm_errors_use_the_aws_error_name(emulator: Emulator, fleet: Any) -> None:
    # GIVEN a fleet (Run Command is emulated) and a state machine catching the AWS error name
    emulator.attach_fleet(fleet)
    emulator.client("ssm").create_document(
        Name="doc", DocumentType="Command", DocumentFormat="JSON",
        Content=json.dumps({"schemaVersion": "2.2", "description": "d", "mainSteps": [
            {"action": "aws:runShellScript", "name": "run", "inputs": {"runCommand": ["true"]}}]}),
    )
    definition = {
        "StartAt": "Send",
        "States": {
            "Send": {
                "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:ssm:sendCommand",
                "Parameters": {"DocumentName": "doc", "InstanceIds": ["mi-00000000000000000"]},
                "Catch": [{"ErrorEquals": ["Ssm.InvalidInstanceIdException"], "Next": "Caught"}],
                "End": True,
            },
            "Caught": {"Type": "Succeed"},
        },
    }
    result = _run(emulator, definition, {})
    assert result["status"] == "SUCCEEDED", result


def test_execution_start_time_is_an_iso_string_like_aws(emulator: Emulator) -> None:
    definition = {
        "StartAt": "Name",
        "States": {"Name": {"Type": "Pass", "End": True, "Parameters": {
            "start.$": "$$.Execution.StartTime",
            "hour.$": "States.ArrayGetItem(States.StringSplit($$.Execution.StartTime, ':'), 0)",
        }}},
    }
    result = _run(emulator, definition, {})
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", output["start"])
    assert output["hour"] == output["start"].split(":")[0]


def test_start_execution_sync_integration_passes_and_returns_aws_names(emulator: Emulator) -> None:
    # The optimized integration takes PascalCase parameters and returns PascalCase fields (AWS docs).
    sfn = emulator.client("stepfunctions")
    child = sfn.create_state_machine(name="child", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
    definition = {
        "StartAt": "Start",
        "States": {"Start": {
            "Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2", "End": True,
            "Parameters": {"StateMachineArn": child, "Input.$": "$.input", "Name.$": "$.name"},
            "ResultSelector": {"arn.$": "$.ExecutionArn", "status.$": "$.Status", "output.$": "$.Output"},
        }},
    }
    result = _run(emulator, definition, {"input": {"user": "u"}, "name": "child-run"})
    assert result["status"] == "SUCCEEDED", result
    output = json.loads(result["output"])
    assert output["arn"].endswith(":child:child-run") and output["status"] == "SUCCEEDED"
    assert output["output"] == {"user": "u"}


def test_the_routed_stream_survives_copies_and_never_nests() -> None:
    import copy
    import sys

    from sandbox.moto import lambda_runtime

    # GIVEN the stand-in the sandbox puts in sys.stdout while a Lambda runs
    routed = lambda_runtime._RoutedStream(io.StringIO())
    # WHEN code running in the Lambda copies an object that holds it (a logger's handler, a config)
    # THEN the copy is the stream itself, not a half-built object that recursed until RecursionError
    assert copy.copy(routed) is routed and copy.deepcopy({"stream": routed})["stream"] is routed
    bare = lambda_runtime._RoutedStream.__new__(lambda_runtime._RoutedStream)
    assert not hasattr(bare, "getvalue")  # an AttributeError, not a RecursionError
    # AND output still reaches its destination
    routed.write("hello\n")
    assert routed.getvalue() == "hello\n"
    # WHEN Lambdas run one after another
    saved, saved_err = sys.stdout, sys.stderr
    try:
        with lambda_runtime._captured_output([], None):
            first = sys.stdout
        with lambda_runtime._captured_output([], None):
            second = sys.stdout
        # THEN sys.stdout is replaced once and left in place: a thread printing meanwhile holds it as a
        # borrowed reference, which must never be freed under it (CPython 3.11's print)
        assert isinstance(first, lambda_runtime._RoutedStream) and second is first and sys.stdout is first
        assert first in lambda_runtime._ROUTED and first.__dict__["_default"] is saved
    finally:
        sys.stdout, sys.stderr = saved, saved_err
