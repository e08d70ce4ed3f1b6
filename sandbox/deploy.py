"""Deploy what the CDK app synthesizes (sandbox/synth.py) into the emulator.

The sandbox does not hand-write any resource of the product: it creates, in the emulator, what the template
of the real app says — state machines from their `DefinitionString`, Lambda functions with the template's
handler, environment and asset code, the SSM document content, KMS keys, the lock table, the SNS topic and
its policy, log groups, roles, the maintenance window with its task and the alarms (their actions run as AWS
would authorize them, sandbox/moto/alarms.py). Resource types without an effect here (event rules, other
policies) are recorded as skipped. The users' secrets are not in the template (the engine creates each on
the user's first rotation): their names come from the settings. The operator's part (users, their first
keys, servers) is sandbox/provision.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sandbox.emulator import Emulator
from sandbox.moto.lambda_runtime import set_log_group
from sandbox.synth import STACK_NAME, Assembly


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



def _physical_name(logical: str, limit: int = 64) -> str:
    return f"{STACK_NAME}-{logical}"[:limit]



def secret_names(settings: dict[str, Any]) -> dict[str, str]:
    """user -> the name of its secret, by the engine's own rule (`Settings.secret_id`)."""
    from rotation.settings import secret_name

    return {u["name"]: secret_name(settings["secret_prefix"], u["server_group"], u["name"])
            for u in settings["users"]}



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
        set_log_group(emulator.account_id, emulator.region, name, group)
    return {"Ref": name, "Arn": fn["FunctionArn"]}

