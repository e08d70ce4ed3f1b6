"""Deploy what the CDK app synthesizes into the emulator, and provision users and servers around it.

The sandbox does not hand-write any resource of the product: it synthesizes the real app (`app.build_app`)
with a generated settings file and creates, in the emulator, what the template says — state machines from
their `DefinitionString`, Lambda functions with the template's handler, environment and asset code, the SSM
document content, KMS keys, the lock table, the SNS topic and its policy, log groups, roles, the maintenance
window with its task and the alarms (their actions run as AWS would authorize them, sandbox/moto/alarms.py).
Resource types without an effect here (event rules, other policies) are recorded as skipped. The
users' secrets are not in the template (the engine creates each on the user's first rotation): their names
come from the settings. Then it plays the operator: IAM users under the managed path with an initial key
written into every server's credentials file and, unless the scenario wants the first rotation to adopt it,
stored in the user's secret as a previous rotation would have left it.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import re
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandbox import patches
from sandbox.emulator import Emulator
from sandbox.fleet import Fleet, Server

REPO = Path(__file__).resolve().parent.parent
STACK_NAME = "IamKeyRotation"
GROUP_TAG = "keyrotation-group"
CREDENTIALS_FILE = "/home/app/.aws/credentials"
PROFILE = "app"
RELOAD_HOOK = "restart-app"
# The hook the sandbox installs on every server: proves the agent ran it after writing the file. The agent
# runs hooks with a clean environment, so the server's root is written into the script.
HOOK_SCRIPT = '#!/bin/sh\necho "reloaded $(date +%s)" >> "{root}/var/log/app-reloads.log"\n'

# Waits for the sandbox (docs/design.md §2): no observation or grace period, 1 s between polls.
SANDBOX_WAITS = {"verify_interval_seconds": 1, "poll_seconds": 1, "max_polls": 120, "observe_seconds": 0,
                 "grace_seconds": 0}


# ------------------------------------------------------------------------------------------- settings


def user_names(count: int) -> list[str]:
    return ["svc-web"] if count == 1 else [f"svc-app{i + 1}" for i in range(count)]


def group_of(user: str) -> str:
    return "g-" + re.sub(r"[^a-z0-9-]", "", user.lower())[:30]


def groups_of(names: list[str], users_per_group: int) -> dict[str, str]:
    """user -> server group: one group per user (`g-<user>`), or `users_per_group` users per group
    (`g-1`, `g-2`, … in the order of `names`)."""
    if users_per_group < 1:
        raise ValueError("users_per_group must be at least 1")
    if users_per_group == 1:
        return {name: group_of(name) for name in names}
    return {name: f"g-{i // users_per_group + 1}" for i, name in enumerate(names)}


def users_per_group_for(users: int) -> int:
    """The fewest users per server group that fit `users` users into one stack (1 up to its group limit)."""
    _lambdas_on_path()
    from infra.config import MAX_SERVER_GROUPS

    return max(1, math.ceil(users / MAX_SERVER_GROUPS))


def sandbox_settings(users: int, *, max_polls: int = 120, users_per_group: int = 1) -> dict[str, Any]:
    """A settings document (config/settings.yaml schema), server groups selected by tag.

    `users_per_group = 1`: one server group per user, each user in profile `PROFILE` of its servers'
    `CREDENTIALS_FILE`. More: the group's users share its servers, each in its own profile (its user name) of
    the same file (settings require (group, file, profile) unique). A stack deploys at most
    `infra.config.MAX_SERVER_GROUPS` groups.
    """
    names = user_names(users)
    group = groups_of(names, users_per_group)
    return {
        "managed_path": "/keyrotation/",
        "secret_prefix": "keyrotation/",
        "defaults": {
            "max_key_age_days": 90,
            "waits": {**SANDBOX_WAITS, "max_polls": max_polls},
            "usage_margin_seconds": 900,
            "command_timeout_seconds": 600,
            "max_concurrency": "50",
        },
        # The sandbox compresses time: the scheduled run starts rotations at the fastest rate allowed.
        "schedule": {"expression": "cron(0 3 ? * SUN *)", "timezone": "Etc/UTC", "duration_hours": 4,
                     "cutoff_hours": 1, "starts_per_minute": 1200},
        "alerts": {"email": None},
        "server_groups": [
            {"name": g, "tag": {"key": GROUP_TAG, "value": g}} for g in dict.fromkeys(group.values())
        ],
        "users": [
            {
                "name": name,
                "server_group": group[name],
                "credentials_file": CREDENTIALS_FILE,
                "profile": PROFILE if users_per_group == 1 else name,
                # A local account of every simulated server (see Fleet.local_users).
                "file_owner": PROFILE,
                # The agent runs hooks only from a root-owned directory chain: as another user, no hook.
                "reload_hook": RELOAD_HOOK if os.geteuid() == 0 else None,
            }
            for name in names
        ],
    }


def write_settings(path: Path, settings: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------- synth


@dataclass
class Assembly:
    """The synthesized cloud assembly of the stack."""

    outdir: Path
    template: dict[str, Any]
    assets: dict[str, Any]
    _zips: dict[str, bytes] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template["Resources"]
        return resources

    def zipped(self, object_key: str) -> bytes:
        """The asset as Lambda receives it (a zip of the asset directory), built once per asset."""
        if object_key not in self._zips:
            code_dir = self.asset_dir(object_key)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
                for path in sorted(code_dir.rglob("*")):
                    if path.is_file() and "__pycache__" not in path.parts:
                        archive.write(path, path.relative_to(code_dir).as_posix())
            self._zips[object_key] = buffer.getvalue()
        return self._zips[object_key]

    def asset_dir(self, object_key: str) -> Path:
        for file in self.assets["files"].values():
            for destination in file["destinations"].values():
                if destination["objectKey"] == object_key:
                    return self.outdir / file["source"]["path"]
        raise KeyError(f"no asset for {object_key} in {STACK_NAME}.assets.json")


def synthesize(settings_path: Path, outdir: Path) -> Assembly:
    """Synthesize the app in-process (what `cdk synth` runs), with cdk.json's context."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")
    os.environ.setdefault("CDK_VALIDATION", "false")  # the built-in template validator: ~1.4 s, not needed
    _lambdas_on_path()
    import app as cdk_app  # the repository's app.py

    context = json.loads((REPO / "cdk.json").read_text())["context"]
    cdk_app.build_app(settings_path, context=context, outdir=str(outdir), checks=False).synth()
    return Assembly(
        outdir=outdir,
        template=json.loads((outdir / f"{STACK_NAME}.template.json").read_text()),
        assets=json.loads((outdir / f"{STACK_NAME}.assets.json").read_text()),
    )


# --------------------------------------------------------------------------------------------- deploy


@dataclass
class Deployment:
    """What was deployed, by role in the system."""

    settings: dict[str, Any]
    physical: dict[str, dict[str, str]] = field(default_factory=dict)  # logical id -> {Ref, Arn, ...}
    rotation_machine: str = ""
    scheduled_machine: str = ""
    document_name: str = ""
    topic_arn: str = ""
    lock_table: str = ""
    functions: dict[str, str] = field(default_factory=dict)  # step -> function name
    secrets: dict[str, str] = field(default_factory=dict)  # user -> secret name (created by the engine)
    secrets_key_arn: str = ""  # the KMS key the engine encrypts the secrets with (create_key's environment)
    group_roles: dict[str, str] = field(default_factory=dict)  # group -> role ARN
    window_id: str = ""
    window_task_input: str = ""
    skipped: dict[str, int] = field(default_factory=dict)  # resource type -> count
    alarms: dict[str, str] = field(default_factory=dict)  # alarm name -> logical id
    audit_machine: str = ""
    reports_bucket: str = ""

    def user(self, name: str) -> dict[str, Any]:
        return next(u for u in self.settings["users"] if u["name"] == name)


class _Resolver:
    """CloudFormation intrinsics over the physical ids of resources deployed so far."""

    def __init__(self, emulator: Emulator, template: dict[str, Any], physical: dict[str, dict[str, str]]):
        self.pseudo = {
            "AWS::Region": emulator.region,
            "AWS::AccountId": emulator.account_id,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK_NAME,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        parameters = template.get("Parameters", {})
        self.parameters = {name: spec.get("Default", "") for name, spec in parameters.items()}
        self.physical = physical

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.physical[logical][attribute]
            if key == "Fn::Join":
                return str(arg[0]).join(str(self(v)) for v in arg[1])
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            if key == "Fn::Split":
                return str(self(arg[1])).split(arg[0])
        return {k: self(v) for k, v in value.items()}

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        return self.physical[name]["Ref"]

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return str(self.physical[logical][attribute])
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)


# The AWS::CloudWatch::Alarm properties that are PutMetricAlarm's parameters of the same name.
_ALARM_PROPERTIES = (
    "AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions", "InsufficientDataActions",
    "MetricName", "Namespace", "Statistic", "Dimensions", "Period", "EvaluationPeriods", "DatapointsToAlarm",
    "Threshold", "ComparisonOperator", "TreatMissingData", "Metrics",
)

# Creation order: what later resources reference comes first.
_ORDER = [
    "AWS::KMS::Key",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::SNS::Topic",
    "AWS::S3::Bucket",
    "AWS::DynamoDB::Table",
    "AWS::SSM::Document",
    "AWS::Lambda::Function",
    "AWS::StepFunctions::StateMachine",
    "AWS::SSM::MaintenanceWindow",
    "AWS::SSM::MaintenanceWindowTask",
    "AWS::SNS::TopicPolicy",
    "AWS::CloudWatch::Alarm",  # actions run as the topic and key policies allow (sandbox/moto/alarms.py)
    "AWS::IAM::Policy",  # names functions and machines; moto does not enforce IAM anyway
]


def synthesis_cache(new_dir: Callable[[str], Path], *, max_polls: int
                    ) -> Callable[..., tuple[Assembly, dict[str, Any]]]:
    """`get(users, users_per_group=1)`: the real CDK app synthesized for that many sandbox users, once per
    shape (jsii and the synth take seconds). `new_dir(name)` gives a fresh directory (pytest's
    `tmp_path_factory.mktemp`)."""
    cache: dict[tuple[int, int], tuple[Assembly, dict[str, Any]]] = {}

    def get(users: int, users_per_group: int = 1) -> tuple[Assembly, dict[str, Any]]:
        if (users, users_per_group) not in cache:
            workdir = new_dir(f"synth-{users}-{users_per_group}")
            settings = sandbox_settings(users, max_polls=max_polls, users_per_group=users_per_group)
            path = write_settings(workdir / "settings.yaml", settings)
            cache[users, users_per_group] = (synthesize(path, workdir / "cdk.out"), settings)
        return cache[users, users_per_group]

    return get


def _physical_name(logical: str, limit: int = 64) -> str:
    return f"{STACK_NAME}-{logical}"[:limit]


def secret_names(settings: dict[str, Any]) -> dict[str, str]:
    """user -> the name of its secret, by the engine's own rule (`Settings.secret_id`)."""
    _lambdas_on_path()
    from rotation.settings import secret_name

    return {u["name"]: secret_name(settings["secret_prefix"], u["server_group"], u["name"])
            for u in settings["users"]}


def _lambdas_on_path() -> None:
    for path in (str(REPO), str(REPO / "lambdas"), str(REPO / "agent_scripts")):
        if path not in sys.path:
            sys.path.insert(0, path)


def deploy(emulator: Emulator, assembly: Assembly, settings: dict[str, Any]) -> Deployment:
    deployment = Deployment(settings=settings, secrets=secret_names(settings))
    resolve = _Resolver(emulator, assembly.template, deployment.physical)
    resources = assembly.resources
    by_type: dict[str, list[str]] = {}
    for logical, resource in resources.items():
        by_type.setdefault(resource["Type"], []).append(logical)
    for kind in [k for k in by_type if k not in _ORDER]:
        deployment.skipped[kind] = len(by_type[kind])
    for kind in _ORDER:
        for logical in by_type.get(kind, []):
            _create(emulator, assembly, deployment, resolve, logical, resources[logical])
    for logical in by_type.get("AWS::KMS::Key", []):
        policy = resources[logical].get("Properties", {}).get("KeyPolicy")
        if policy:
            key_id = deployment.physical[logical]["Ref"]
            emulator.client("kms").put_key_policy(KeyId=key_id, PolicyName="default",
                                                  Policy=json.dumps(resolve(policy)))
    # Environment variables naming resources created after the functions (select_due's rotation machine).
    for logical in by_type.get("AWS::Lambda::Function", []):
        environment = resources[logical]["Properties"].get("Environment", {"Variables": {}})
        variables = environment.get("Variables", {}).values()
        if any(_names_later_resource(value, resources) for value in variables):
            emulator.client("lambda").update_function_configuration(
                FunctionName=deployment.physical[logical]["Ref"], Environment=resolve(environment))
    return deployment


def _names_later_resource(value: Any, resources: dict[str, Any]) -> bool:
    """Whether a template value refers to a resource created after the Lambda functions (see _ORDER)."""
    later = set(_ORDER[_ORDER.index("AWS::Lambda::Function") + 1:])
    text = json.dumps(value)
    return any(resource["Type"] in later and f'"{logical}"' in text
               for logical, resource in resources.items())


def _created_environment(resolve: _Resolver, environment: dict[str, Any]) -> dict[str, Any]:
    """The environment as far as it resolves now: variables naming resources not created yet are left out
    (set once everything exists, by `deploy`)."""
    variables = {}
    for name, value in environment.get("Variables", {}).items():
        try:
            variables[name] = resolve(value)
        except KeyError:
            continue
    return {"Variables": variables}


def _create(emulator: Emulator, assembly: Assembly, deployment: Deployment, resolve: _Resolver, logical: str,
            resource: dict[str, Any]) -> None:
    kind = resource["Type"]
    props = resource.get("Properties", {})
    account, region = emulator.account_id, emulator.region
    out: dict[str, str]
    if kind == "AWS::KMS::Key":
        # The key policy names roles created later: it is applied once everything exists (`deploy`).
        key = emulator.client("kms").create_key(Description=props.get("Description", ""))
        out = {"Ref": key["KeyMetadata"]["KeyId"], "Arn": key["KeyMetadata"]["Arn"]}
    elif kind == "AWS::IAM::Role":
        name = props.get("RoleName") or _physical_name(logical)
        role = emulator.client("iam").create_role(
            RoleName=name, Path=props.get("Path", "/"),
            AssumeRolePolicyDocument=json.dumps(resolve(props["AssumeRolePolicyDocument"])),
            Description=props.get("Description", ""),
        )["Role"]
        out = {"Ref": name, "Arn": role["Arn"], "RoleId": role["RoleId"]}
        for policy in resolve(props.get("Policies", [])):
            emulator.client("iam").put_role_policy(RoleName=name, PolicyName=policy["PolicyName"],
                                                   PolicyDocument=json.dumps(policy["PolicyDocument"]))
    elif kind == "AWS::IAM::Policy":
        document = json.dumps(resolve(props["PolicyDocument"]))
        for role in resolve(props.get("Roles", [])):
            emulator.client("iam").put_role_policy(RoleName=role, PolicyName=props["PolicyName"],
                                                   PolicyDocument=document)
        out = {"Ref": props["PolicyName"]}
    elif kind == "AWS::Logs::LogGroup":
        name = resolve(props.get("LogGroupName")) or _physical_name(logical, 512)
        emulator.client("logs").create_log_group(logGroupName=name)
        out = {"Ref": name, "Arn": f"arn:aws:logs:{region}:{account}:log-group:{name}:*"}
    elif kind == "AWS::SNS::Topic":
        name = props.get("TopicName") or _physical_name(logical, 256)
        attributes = {"KmsMasterKeyId": resolve(props["KmsMasterKeyId"])} if "KmsMasterKeyId" in props else {}
        arn = emulator.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        out = {"Ref": arn, "TopicArn": arn, "TopicName": name}
        deployment.topic_arn = arn
    elif kind == "AWS::SNS::TopicPolicy":
        # Replaces each topic's default policy, as CloudFormation does (sandbox/moto/alarms.py evaluates it).
        policy = json.dumps(resolve(props["PolicyDocument"]))
        for topic in resolve(props["Topics"]):
            emulator.client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy",
                                                        AttributeValue=policy)
        out = {"Ref": logical}
    elif kind == "AWS::CloudWatch::Alarm":
        name = props.get("AlarmName") or _physical_name(logical, 255)
        alarm = {key: resolve(props[key]) for key in _ALARM_PROPERTIES if key in props}
        emulator.client("cloudwatch").put_metric_alarm(AlarmName=name, **alarm)
        out = {"Ref": name, "Arn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"}
        deployment.alarms[name] = logical
    elif kind == "AWS::S3::Bucket":
        name = props.get("BucketName") or _physical_name(logical, 63).lower()
        emulator.client("s3").create_bucket(Bucket=name)
        if props.get("VersioningConfiguration", {}).get("Status") == "Enabled":
            emulator.client("s3").put_bucket_versioning(Bucket=name,
                                                        VersioningConfiguration={"Status": "Enabled"})
        out = {"Ref": name, "Arn": f"arn:aws:s3:::{name}"}
        deployment.reports_bucket = name
    elif kind == "AWS::DynamoDB::Table":
        name = props.get("TableName") or _physical_name(logical, 255)
        table = emulator.client("dynamodb").create_table(
            TableName=name, AttributeDefinitions=props["AttributeDefinitions"], KeySchema=props["KeySchema"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )["TableDescription"]
        out = {"Ref": name, "Arn": table["TableArn"]}
        deployment.lock_table = name
    elif kind == "AWS::SSM::Document":
        name = props.get("Name") or _physical_name(logical, 128)
        content = props["Content"]
        emulator.client("ssm").create_document(
            Name=name, DocumentType=props.get("DocumentType", "Command"), DocumentFormat="JSON",
            Content=content if isinstance(content, str) else json.dumps(resolve(content)),
        )
        out = {"Ref": name}
        deployment.document_name = name
    elif kind == "AWS::Lambda::Function":
        out = _create_function(emulator, assembly, resolve, logical, props)
        deployment.functions[props["Handler"].split(".")[1]] = out["Ref"]
        variables = _created_environment(resolve, props.get("Environment", {})).get("Variables", {})
        deployment.secrets_key_arn = variables.get("SECRETS_KEY_ARN", deployment.secrets_key_arn)
    elif kind == "AWS::StepFunctions::StateMachine":
        definition = resolve(props["DefinitionString"])
        for key, value in resolve(props.get("DefinitionSubstitutions", {})).items():
            definition = definition.replace("${" + key + "}", str(value))
        json.loads(definition)  # a broken template fails here, not at run time
        name = props.get("StateMachineName") or _physical_name(logical, 80)
        arn = emulator.client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=resolve(props["RoleArn"]),
            type=props.get("StateMachineType", "STANDARD"),
        )["stateMachineArn"]
        out = {"Ref": arn, "Arn": arn, "Name": name}
        if '"select_due":{' in definition:  # the scheduled machine has the select_due state
            deployment.scheduled_machine = arn
        elif '"audit_report":{' in definition:
            deployment.audit_machine = arn
        else:
            deployment.rotation_machine = arn
    elif kind == "AWS::SSM::MaintenanceWindow":
        window = emulator.client("ssm").create_maintenance_window(
            Name=resolve(props["Name"]), Schedule=props["Schedule"], Duration=props["Duration"],
            Cutoff=props["Cutoff"], AllowUnassociatedTargets=props.get("AllowUnassociatedTargets", False),
            ScheduleTimezone=props.get("ScheduleTimezone", "Etc/UTC"),
        )
        out = {"Ref": window["WindowId"]}
        deployment.window_id = window["WindowId"]
    elif kind == "AWS::SSM::MaintenanceWindowTask":
        # CloudFormation's MaintenanceWindowStepFunctionsParameters is the API's StepFunctions.
        invocation = resolve(props.get("TaskInvocationParameters", {}))
        params = invocation["MaintenanceWindowStepFunctionsParameters"]
        emulator.client("ssm").register_task_with_maintenance_window(
            WindowId=resolve(props["WindowId"]), TaskArn=resolve(props["TaskArn"]),
            TaskType=props["TaskType"],
            ServiceRoleArn=resolve(props["ServiceRoleArn"]), Priority=props.get("Priority", 1),
            Name=props.get("Name", logical), TaskInvocationParameters={"StepFunctions": params},
        )
        deployment.window_task_input = params["Input"]
        out = {"Ref": logical}
    else:  # pragma: no cover - _ORDER lists exactly the kinds handled above
        raise AssertionError(kind)
    deployment.physical[logical] = out
    if kind == "AWS::IAM::Role":
        _note_group_role(deployment, props, out)


def _note_group_role(deployment: Deployment, props: dict[str, Any], out: dict[str, str]) -> None:
    match = re.match(r"Hybrid-activation role of the servers of group (\S+)", props.get("Description", ""))
    if match:
        deployment.group_roles[match.group(1)] = out["Arn"]


def _create_function(emulator: Emulator, assembly: Assembly, resolve: _Resolver, logical: str,
                     props: dict[str, Any]) -> dict[str, str]:
    code = assembly.zipped(props["Code"]["S3Key"])
    name = props.get("FunctionName") or _physical_name(logical)
    environment = _created_environment(resolve, props.get("Environment", {"Variables": {}}))
    fn = emulator.client("lambda").create_function(
        FunctionName=name, Runtime=props.get("Runtime", "python3.12"), Role=resolve(props["Role"]),
        Handler=props["Handler"], Code={"ZipFile": code}, Timeout=props.get("Timeout", 3),
        MemorySize=props.get("MemorySize", 128), Environment=environment,
        # Layers: the Powertools layer is the venv's aws-lambda-powertools here (same pinned release).
    )
    group = resolve(props.get("LoggingConfig", {})).get("LogGroup")
    if group:
        patches.set_log_group(emulator.account_id, emulator.region, name, group)
    return {"Ref": name, "Arn": fn["FunctionArn"]}


# ------------------------------------------------------------------------------------------ provision


@dataclass
class InitialKey:
    user: str
    key_id: str


def provision(emulator: Emulator, deployment: Deployment, fleet: Fleet, servers_per_user: int,
              *, due_users: list[str] | None = None, store_keys: bool = True) -> dict[str, InitialKey]:
    """Play the operator: users, their first key (files, secret), servers registered with their group role.

    `servers_per_user` servers per server group (a group's users share them). `due_users`: users whose key is
    made older than their maximum age (for the scheduled machine); None = all keys are new. `store_keys`:
    store each initial key in the user's secret, created as the engine creates it (a system that rotated
    before); False: no secret, the first rotation creates it and adopts the key.
    """
    iam = emulator.client("iam")
    keys: dict[str, InitialKey] = {}
    servers_of: dict[str, list[Server]] = {}
    for user in deployment.settings["users"]:
        name, group = user["name"], user["server_group"]
        iam.create_user(UserName=name, Path=deployment.settings["managed_path"])
        key = iam.create_access_key(UserName=name)["AccessKey"]
        keys[name] = InitialKey(name, key["AccessKeyId"])
        if store_keys:
            _store_initial_key(emulator, deployment, user, key)
        if group not in servers_of:
            servers_of[group] = fleet.add_servers(group, servers_per_user, {GROUP_TAG: group})
        servers = servers_of[group]
        for server in servers:
            fleet.write_credentials(server, user["credentials_file"], user["profile"], key["AccessKeyId"],
                                    key["SecretAccessKey"])
            _install_hook(server, user.get("reload_hook"))
        fleet.set_role(group, deployment.group_roles[group])
        if due_users is not None and name in due_users:
            age = int(user.get("max_key_age_days") or deployment.settings["defaults"]["max_key_age_days"]) + 1
            age_key(emulator, name, key["AccessKeyId"], days=age)
    emulator.attach_fleet(fleet)
    return keys


def _store_initial_key(emulator: Emulator, deployment: Deployment, user: dict[str, Any],
                       key: dict[str, Any]) -> None:
    """The user's secret as the engine creates it (name, stack key, tags), holding `key` as AWSCURRENT."""
    _lambdas_on_path()
    from rotation import secrets as engine_secrets

    client = emulator.client("secretsmanager")
    secret_id = deployment.secrets[user["name"]]
    engine_secrets.create(client, secret_id, user=user["name"], server_group=user["server_group"],
                          kms_key_arn=deployment.secrets_key_arn)
    client.put_secret_value(
        SecretId=secret_id,
        SecretString=json.dumps({
            "aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"],
            "user": user["name"],
            "created_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "rotation_token": "initial",
        }),
        VersionStages=["AWSCURRENT"],
    )


def _install_hook(server: Server, hook: str | None) -> None:
    if not hook:
        return
    path = server.path(f"/etc/keyrotation/hooks.d/{hook}")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in (path.parent, path.parent.parent):
        parent.chmod(0o755)
    path.write_text(HOOK_SCRIPT.format(root=server.root))
    path.chmod(0o755)
    server.path("/var/log").mkdir(parents=True, exist_ok=True)


def age_key(emulator: Emulator, user: str, key_id: str, *, days: int) -> None:
    """Backdate a key's creation (no API can: an in-process change to the emulator's IAM)."""
    backend = emulator.backend("iam")
    for key in backend.get_user(user).access_keys:
        if key.access_key_id == key_id:
            key.create_date = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
                days=days)
            return
    raise KeyError(key_id)
