"""The engine's unit-test harness: moto in-process, a fake Run Command fleet, a leak watch and a helper that
drives a rotation through the steps the way the state machine does. Fixtures are exported by conftest.py;
tests import helpers from here (a unique module name: every test directory has its own conftest)."""

from __future__ import annotations

import importlib
import json
import logging
import pkgutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.exceptions import ClientError
from keyrotation import contract
from moto import mock_aws
from rotation import flow

from sandbox.moto.lambda_runtime import LambdaContext

MANAGED_PATH = "/keyrotation/"
# Every step's handler module (lambdas/handlers/, but the `_` helpers).
HANDLER_STEPS = tuple(
    m.name for m in pkgutil.iter_modules([str(Path(__file__).resolve().parents[2] / "lambdas" / "handlers")])
    if not m.name.startswith("_")
)
REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "keyrotation",
        "POWERTOOLS_METRICS_NAMESPACE": "KeyRotation",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "LAMBDA_TASK_ROOT"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------------------------------
# Leak watch: every secret access key created during a test must never appear in a log record, in printed
# output, in a handler's return value, in a raised exception's message, in an SNS message or in a Run Command
# parameter.


@dataclass
class LeakWatch:
    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)

    def see(self, where: str, value: Any) -> None:
        try:
            text = json.dumps(value, default=str, sort_keys=True)
        except (TypeError, ValueError):
            text = repr(value)
        self.texts.append((where, text))

    def findings(self) -> list[str]:
        return [
            f"{where}: contains a secret access key"
            for where, text in self.texts
            for secret in self.secrets
            if secret and secret in text
        ]

    def forget(self) -> None:
        self.texts.clear()


@pytest.fixture(autouse=True)
def leak_watch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[LeakWatch]:
    watch = LeakWatch()
    original_call = botocore.client.BaseClient._make_api_call

    def recording_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation in {"Publish", "SendCommand"}:
            watch.see(f"{operation} request", params)
        result = original_call(self, operation, params)
        if operation == "CreateAccessKey":
            watch.secrets.add(result["AccessKey"]["SecretAccessKey"])
        return result

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording_call)

    original_handle = logging.Logger.handle

    def recording_handle(self: logging.Logger, record: logging.LogRecord) -> None:
        watch.see(
            f"log record of {record.name}",
            {
                "message": record.getMessage(),
                **{k: v for k, v in record.__dict__.items() if k not in {"msg", "args", "exc_info"}},
            },
        )
        if record.exc_info and record.exc_info[1] is not None:
            watch.see("logged exception", str(record.exc_info[1]))
        original_handle(self, record)

    monkeypatch.setattr(logging.Logger, "handle", recording_handle)
    # Every record of ours is checked whatever its level; the SDK's and moto's own wire-level DEBUG logs
    # (which print response bodies, as botocore does when told to) stay at their default.
    monkeypatch.setattr(logging.root, "level", logging.DEBUG)
    for noisy in ("botocore", "boto3", "urllib3", "moto", "s3transfer", "werkzeug", "aws_xray_sdk"):
        monkeypatch.setattr(logging.getLogger(noisy), "level", logging.WARNING)
    # Powertools bound its handler to the sys.stdout of the first test; follow pytest's capture instead.
    from handlers._common import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        monkeypatch.setattr(handler, "stream", _CurrentStdout())

    for step in HANDLER_STEPS:
        module = importlib.import_module(f"handlers.{step}")
        monkeypatch.setattr(module, "handler", _recording(watch, step, module.handler))

    yield watch

    captured = capsys.readouterr()
    watch.see("stdout", captured.out)
    watch.see("stderr", captured.err)
    leaks = watch.findings()
    assert not leaks, "secret leaked:\n" + "\n".join(leaks)


class _CurrentStdout:
    """Writes to whatever sys.stdout is now (pytest swaps it per test; Powertools keeps the first one)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _recording(watch: LeakWatch, step: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(event: Any, context: LambdaContext) -> Any:
        try:
            result = handler(event, context)
        except Exception as exc:
            watch.see(f"{step} raised {type(exc).__name__}", str(exc))
            raise
        watch.see(f"{step} returned", result)
        return result

    return wrapper


# --------------------------------------------------------------------------------------------------
# A fake Run Command fleet (moto has no DescribeInstanceInformation/ListCommandInvocations and runs nothing).


def _client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)




ROTATION_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:keyrotation-rotation"


class FakeSfn:
    """StartExecution as Step Functions answers it: a second start with the same name and input while the
    first runs returns it; with another input, or once it has closed, ExecutionAlreadyExists."""

    def __init__(self) -> None:
        self.executions: dict[str, dict[str, Any]] = {}  # name -> {"input", "status", "arn"}
        self.calls: list[str] = []  # every StartExecution's name, in order
        self.failing: set[str] = set()  # names whose start fails (e.g. AccessDenied)

    def start_execution(self, *, stateMachineArn: str, name: str, input: str) -> dict[str, Any]:  # noqa: A002
        assert stateMachineArn == ROTATION_MACHINE
        self.calls.append(name)
        if name in self.failing:
            raise _client_error("AccessDeniedException", "not authorized", "StartExecution")
        existing = self.executions.get(name)
        if existing is not None:
            if existing["input"] == input and existing["status"] == "RUNNING":
                return {"executionArn": existing["arn"]}
            raise _client_error("ExecutionAlreadyExists", f"Execution Already Exists: '{name}'",
                                "StartExecution")
        arn = f"{ROTATION_MACHINE.replace(':stateMachine:', ':execution:')}:{name}"
        self.executions[name] = {"input": input, "status": "RUNNING", "arn": arn}
        return {"executionArn": arn}

    def users_started(self) -> list[str]:
        return [json.loads(e["input"])["user"] for e in self.executions.values()]


@dataclass
class Server:
    instance_id: str
    tags: dict[str, str]
    ping: str = "Online"
    behaviour: str = "ok"  # ok | fail | fail_verify | no_marker | pending | wrong_key
    key_id: str | None = None  # the access key id in its credentials file
    agent_version: str = "3.3.2957.0"  # the SSM Agent's (DescribeInstanceInformation AgentVersion)
    platform: str = "Linux"


class FakeSsm:
    """Servers behave like the agent: `ok` servers fetch AWSCURRENT of the secret and report its key id."""

    def __init__(self, page_size: int = 2) -> None:
        self.servers: dict[str, Server] = {}
        self.commands: list[dict[str, Any]] = []
        self.invocations: dict[str, dict[str, dict[str, Any]]] = {}
        self.page_size = page_size
        self.not_yet_visible = (
            0  # ListCommandInvocations calls per new command that raise InvocationDoesNotExist
        )
        self._hidden: dict[str, int] = {}

    def add(self, count: int, *, group: str = "web", **kwargs: Any) -> list[str]:
        ids = []
        for _ in range(count):
            instance_id = "mi-" + uuid.uuid4().hex[:17]
            self.servers[instance_id] = Server(instance_id, {"keyrotation-group": group}, **kwargs)
            ids.append(instance_id)
        return ids

    def describe_instance_information(
        self, *, Filters: list[dict[str, Any]], MaxResults: int = 50, NextToken: str | None = None
    ) -> dict[str, Any]:
        assert MaxResults <= 50
        matches = list(self.servers.values())
        for item in Filters:
            if item["Key"].startswith("tag:"):
                key = item["Key"][4:]
                matches = [s for s in matches if s.tags.get(key) in item["Values"]]
            elif item["Key"] == "InstanceIds":
                assert len(item["Values"]) <= 50
                matches = [s for s in matches if s.instance_id in item["Values"]]
            else:
                raise AssertionError(f"unexpected filter {item}")
        start = int(NextToken or 0)
        page = matches[start : start + self.page_size]
        response: dict[str, Any] = {
            "InstanceInformationList": [
                {"InstanceId": s.instance_id, "PingStatus": s.ping, "PlatformType": s.platform,
                 "AgentVersion": s.agent_version} for s in page
            ]
        }
        if start + self.page_size < len(matches):
            response["NextToken"] = str(start + self.page_size)
        return response

    def send_command(self, **kwargs: Any) -> dict[str, Any]:
        assert len(kwargs["InstanceIds"]) <= 50
        assert kwargs["MaxErrors"] == "0"
        assert tuple(kwargs["Parameters"]) == contract.PARAMETER_NAMES, kwargs["Parameters"]
        # AWS refuses the whole call if one node is deregistered or its agent is not running.
        listed = kwargs["InstanceIds"]
        invalid = [i for i in listed if i not in self.servers or self.servers[i].ping != "Online"]
        if invalid:
            raise _client_error("InvalidInstanceId", f"Instances {invalid} not in a valid state",
                                "SendCommand")
        command_id = str(uuid.uuid4())
        self.commands.append({"CommandId": command_id, **kwargs})
        self._hidden[command_id] = self.not_yet_visible
        params = {name: values[0] for name, values in kwargs["Parameters"].items()}
        self.invocations[command_id] = {i: self._run(self.servers[i], params) for i in kwargs["InstanceIds"]}
        return {"Command": {"CommandId": command_id, "Status": "Pending"}}

    def _run(self, server: Server, params: dict[str, str]) -> dict[str, Any]:
        if server.ping != "Online" or server.behaviour == "pending":
            return {"Status": "InProgress", "StatusDetails": "InProgress", "Output": ""}
        if server.behaviour == "fail" or (server.behaviour == "fail_verify" and params["Action"] == "verify"):
            line = {
                "status": "error",
                "action": params["Action"],
                "error": "write_failed",
                "message": f"cannot write {params['CredentialsFile']}",
            }
            return {
                "Status": "Failed",
                "StatusDetails": "Failed",
                "Output": contract.result_line(**line),
            }
        if server.behaviour == "no_marker":
            return {"Status": "Success", "StatusDetails": "Success", "Output": "credentials updated\n"}
        value = json.loads(
            boto3.client("secretsmanager").get_secret_value(
                SecretId=params["SecretId"], VersionStage="AWSCURRENT"
            )["SecretString"]
        )
        key_id = value["aws_access_key_id"] if server.behaviour != "wrong_key" else "AKIAWRONGWRONGWRONG0"
        server.key_id = key_id
        line = {
            "status": "ok",
            "action": params["Action"],
            "profile": params["Profile"],
            "file": params["CredentialsFile"],
            "access_key_id": key_id,
            "caller_arn": f"arn:aws:iam::{ACCOUNT}:user/x",
        }
        return {
            "Status": "Success",
            "StatusDetails": "Success",
            "Output": "fetching secret\n" + contract.result_line(**line) + "\n",
        }

    def list_command_invocations(
        self, *, CommandId: str, Details: bool = False, NextToken: str | None = None
    ) -> dict[str, Any]:
        assert Details is True
        if self._hidden.get(CommandId, 0) > 0:
            self._hidden[CommandId] -= 1
            raise _client_error("InvocationDoesNotExist", "not yet", "ListCommandInvocations")
        items = list(self.invocations[CommandId].items())
        start = int(NextToken or 0)
        page = items[start : start + self.page_size]
        response: dict[str, Any] = {
            "CommandInvocations": [
                {
                    "CommandId": CommandId,
                    "InstanceId": i,
                    "Status": inv["Status"],
                    "StatusDetails": inv["StatusDetails"],
                    "CommandPlugins": [{"Name": "rotate", "Output": inv["Output"]}],
                }
                for i, inv in page
            ]
        }
        if start + self.page_size < len(items):
            response["NextToken"] = str(start + self.page_size)
        return response


# --------------------------------------------------------------------------------------------------
# The world: moto accounts with one managed user, its key, its secret, the lock table, a topic and a fleet.


def settings_dict(**user_overrides: Any) -> dict[str, Any]:
    return {
        "managed_path": MANAGED_PATH,
        "secret_prefix": "keyrotation/",
        "defaults": {
            "max_key_age_days": 90,
            "waits": {
                "verify_interval_seconds": 0,
                "poll_seconds": 0,
                "max_polls": 5,
                "observe_seconds": 0,
                "grace_seconds": 0,
            },
            "usage_margin_seconds": 60,
            "command_timeout_seconds": 600,
            "max_concurrency": "50",
        },
        "schedule": {
            "expression": "cron(0 3 ? * SUN *)",
            "timezone": "Etc/UTC",
            "duration_hours": 4,
            "cutoff_hours": 1,
        },
        "alerts": {"email": None},
        "server_groups": [
            {"name": "web", "tag": {"key": "keyrotation-group", "value": "web"}},
            {"name": "db", "tag": {"key": "keyrotation-group", "value": "db"}},
        ],
        "users": [
            {
                "name": "svc-web",
                "server_group": "web",
                "credentials_file": "/home/app/.aws/credentials",
                "profile": "app",
                "file_owner": "app",
                "reload_hook": "restart-app",
                **user_overrides,
            },
            {
                "name": "svc-db",
                "server_group": "db",
                "credentials_file": "/home/db/.aws/credentials",
                "profile": "db",
                "file_owner": "db",
            },
        ],
    }


# The server group of each user of `settings_dict()`; a user's secret is keyrotation/<group>/<user>.
GROUP_OF = {"svc-web": "web", "svc-db": "db"}


def secret_id(user: str) -> str:
    return f"keyrotation/{GROUP_OF[user]}/{user}"


@dataclass
class World:
    iam: Any
    sm: Any
    ddb: Any
    sns: Any
    ssm: FakeSsm
    settings_path: Path
    sfn: FakeSfn = field(default_factory=FakeSfn)
    running: set[str] = field(default_factory=set)
    topic_arn: str = ""
    table: str = "keyrotation-locks"
    secrets_key_arn: str = ""

    # -- arrangement helpers ----------------------------------------------------------------------
    def add_user(
        self,
        name: str,
        *,
        path: str = MANAGED_PATH,
        with_key: bool = True,
        secret_state: str | None = "stored",  # noqa: S107 (not a password)
    ) -> str | None:
        """Create a user; `secret_state`: "stored" (its key), "placeholder" ({}), None (no secret)."""
        self.iam.create_user(UserName=name, Path=path)
        key_id = None
        value: Any = {}
        if with_key:
            key = self.iam.create_access_key(UserName=name)["AccessKey"]
            key_id = key["AccessKeyId"]
            value = {"aws_access_key_id": key_id, "aws_secret_access_key": key["SecretAccessKey"]}
        if secret_state == "placeholder":
            value = {}
        if secret_state is not None:
            self.sm.create_secret(Name=secret_id(name), SecretString=json.dumps(value))
        return key_id

    def write_settings(self, data: dict[str, Any]) -> None:
        self.settings_path.write_text(json.dumps(data))

    # -- observations -----------------------------------------------------------------------------
    def iam_keys(self, user: str = "svc-web") -> dict[str, str]:
        return {
            k["AccessKeyId"]: k["Status"]
            for k in self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        }

    def current(self, user: str = "svc-web") -> dict[str, Any]:
        return json.loads(
            self.sm.get_secret_value(SecretId=secret_id(user), VersionStage="AWSCURRENT")[
                "SecretString"
            ]
        )

    def stages(self, user: str = "svc-web") -> dict[str, list[str]]:
        return self.sm.describe_secret(SecretId=secret_id(user))["VersionIdsToStages"]

    def lock_owner(self, user: str = "svc-web") -> str | None:
        item = self.ddb.get_item(TableName=self.table, Key={"user": {"S": user}}).get("Item") or {}
        return item.get("owner", {}).get("S")

    def server_keys(self) -> set[str | None]:
        return {server.key_id for server in self.ssm.servers.values()}

    def messages(self) -> list[str]:
        return [message for message, _ in self.messages_with_owner()]

    def messages_with_owner(self) -> list[tuple[str, str | None]]:
        """(message, its `owner` message attribute) of every notification on the topic."""
        from moto.sns.models import sns_backends

        backend = sns_backends[ACCOUNT][REGION]
        found = []
        for _, message, _subject, attributes, *_ in backend.topics[self.topic_arn].sent_notifications:
            owner = (attributes or {}).get("owner", {})
            found.append((message, owner.get("Value") or owner.get("StringValue")))
        return found

    def age_key(self, user: str, key_id: str, days: int) -> None:
        self._backend_key(key_id).create_date = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=days)

    def mark_used(self, key_id: str, at: datetime, service: str = "s3", region: str = "eu-west-1") -> None:
        from moto.iam.models import AccessKeyLastUsed

        self._backend_key(key_id).last_used = AccessKeyLastUsed(
            at.astimezone(UTC).replace(tzinfo=None), service, region
        )

    def _backend_key(self, key_id: str) -> Any:
        from moto.iam.models import iam_backends

        return iam_backends[ACCOUNT]["global"].access_keys[key_id]


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:
    with mock_aws():
        from handlers import _clients

        fake = FakeSsm()
        world = World(
            iam=boto3.client("iam"),
            sm=boto3.client("secretsmanager"),
            ddb=boto3.client("dynamodb"),
            sns=boto3.client("sns"),
            ssm=fake,
            settings_path=tmp_path / "settings.json",
        )
        world.ddb.create_table(
            TableName=world.table,
            KeySchema=[{"AttributeName": "user", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "user", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        world.topic_arn = world.sns.create_topic(Name="keyrotation")["TopicArn"]
        world.secrets_key_arn = boto3.client("kms").create_key(Description="secrets")["KeyMetadata"]["Arn"]
        world.write_settings(settings_dict())
        world.add_user("svc-web")
        fake.add(3)
        monkeypatch.setenv("SETTINGS_PATH", str(world.settings_path))
        monkeypatch.setenv("LOCK_TABLE", world.table)
        monkeypatch.setenv("DOCUMENT_NAME", "keyrotation-rotate-access-key")
        monkeypatch.setenv("TOPIC_ARN", world.topic_arn)
        monkeypatch.setenv("SECRETS_KEY_ARN", world.secrets_key_arn)
        monkeypatch.setenv("ROTATION_MACHINE_ARN", ROTATION_MACHINE)
        monkeypatch.setattr(_clients, "ssm", lambda: fake)
        monkeypatch.setattr(_clients, "stepfunctions", lambda: world.sfn)
        monkeypatch.setattr(_clients, "execution_running", lambda arn: arn in world.running)
        yield world


# --------------------------------------------------------------------------------------------------
# Driving a rotation the way the state machine does.

STANDARD, EMERGENCY = flow.STANDARD, flow.EMERGENCY  # the machine's orders (rotation/flow.py)


def handler(step: str) -> Callable[[Any], Any]:
    """The step's handler, called as Lambda calls it: with a context of its own for each call."""
    module = importlib.import_module(f"handlers.{step}")

    def call(event: Any) -> Any:
        return module.handler(event, LambdaContext.for_call(f"keyrotation-{step}", region=REGION,
                                                            account_id=ACCOUNT))

    return call


@dataclass
class Run:
    execution_id: str
    state: dict[str, Any]
    ran: list[str]
    error: dict[str, str] | None = None

    @property
    def rotation(self) -> dict[str, Any]:
        return self.state.get("rotation") or {}


def new_execution_id() -> str:
    return f"arn:aws:states:{REGION}:{ACCOUNT}:execution:keyrotation:{uuid.uuid4()}"


def drive(
    world: World,
    *,
    user: str = "svc-web",
    mode: str = "standard",
    crash_after: int | None = None,
    execution_id: str | None = None,
    repeat_each: bool = False,
    **extra: Any,
) -> Run:
    """Run prepare, then the steps from `resume_from` in the machine's order; on a typed error run
    rollback → notify like the machine's Catch. `crash_after=n`: the execution dies after the n-th step
    (no rollback, lock kept). `repeat_each`: every step runs twice (a retried Lambda)."""
    execution_id = execution_id or new_execution_id()
    world.running.add(execution_id)
    state: dict[str, Any] = {"input": {"user": user, "mode": mode, **extra}, "execution_id": execution_id}
    run = Run(execution_id, state, [])
    order = flow.ORDERS[mode]  # type: ignore[index]
    try:
        return _drive(world, run, order, crash_after, repeat_each)
    except BaseException:
        world.running.discard(execution_id)  # the Lambda (simulated) died: so did the execution
        raise


def _drive(world: World, run: Run, order: tuple[str, ...], crash_after: int | None, repeat_each: bool) -> Run:
    state = run.state
    execution_id = run.execution_id
    try:
        state["rotation"] = _call(run, "prepare", state, repeat_each)
        if _crashed(world, run, crash_after):
            return run
        resume = state["rotation"]["resume_from"]
        position = len(order) if resume == "done" else order.index(resume)
        while position < len(order):
            step = order[position]
            state["rotation"] = _call(run, step, state, repeat_each)
            if _crashed(world, run, crash_after):
                return run
            if step == "check_distribution" and not state["rotation"]["distribution"]["done"]:
                continue  # Wait poll_seconds, poll again (check_distribution bounds the loop)
            position += 1
    except Exception as exc:
        from rotation.errors import RotationError

        if not isinstance(exc, RotationError):
            raise
        state["error"] = {
            "Error": type(exc).__name__,
            "Cause": json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__}),
        }
        run.error = {"name": type(exc).__name__, "message": str(exc)}
        state["rotation"] = _call(run, "rollback", state, False)
    state["rotation"] = _call(run, "notify", state, False)
    world.running.discard(execution_id)
    return run


def _call(run: Run, step: str, state: dict[str, Any], repeat: bool) -> dict[str, Any]:
    from rotation.errors import NewKeyNotYetValid

    for attempt in range(10):  # the machine's Retry on NewKeyNotYetValid
        try:
            result = handler(step)(json.loads(json.dumps(state)))
            if repeat:
                result = handler(step)(json.loads(json.dumps(state)))
            break
        except NewKeyNotYetValid:
            if attempt == 9:
                raise
    run.ran.append(step)
    return result  # type: ignore[no-any-return]


def _crashed(world: World, run: Run, crash_after: int | None) -> bool:
    if crash_after is not None and len(run.ran) >= crash_after:
        # The execution dies (timeout, abort, region trouble): no Catch, no rollback, the lock stays.
        world.running.discard(run.execution_id)
        return True
    return False


@pytest.fixture
def drive_rotation(world: World) -> Callable[..., Run]:
    def run(**kwargs: Any) -> Run:
        return drive(world, **kwargs)

    return run
