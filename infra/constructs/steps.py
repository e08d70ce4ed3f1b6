"""The steps: one Lambda per step, each with its own role allowed only what that step does.

The registry `STEPS` is the one place to read, for a step (= its state's name), its handler module, the
domain function that handler calls, its machine, what it may do and its timeout; `docs/design.md` §2 says
what each step does, lambdas/rotation/flow.py in which order the rotation runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from rotation import secrets as engine_secrets
from rotation.settings import Settings

from infra.arns import executions_arn, managed_users_arn, secrets_arn, secrets_manager_via
from infra.constructs.reports import REPORTS_PREFIX, AuditReports
from infra.nag import acknowledge, resource_finding

# The settings file inside the asset (docs/design.md §1); SETTINGS_PATH is relative to the task root.
SETTINGS_FILE = "settings.json"
SERVICE_NAME = "keyrotation"


@dataclass(frozen=True)
class Access:
    """What one step may do. Resources are fixed per kind (see `RotationSteps._grant`)."""

    iam_keys: tuple[str, ...] = ()  # on IAM users under the managed path only
    secrets: tuple[str, ...] = ()  # on secrets under the secret prefix only
    secret_writes: bool = False  # kms:GenerateDataKey (PutSecretValue) besides kms:Decrypt
    create_secrets: bool = False  # CreateSecret (+ TagResource) under the prefix, with our key and tags only
    lock: tuple[str, ...] = ()  # on the lock table only
    send_command: bool = False  # ssm:SendCommand with our document on managed instances only
    fleet_reads: tuple[str, ...] = ()  # SSM reads that IAM cannot scope to a resource
    publish: bool = False  # sns:Publish to the alert topic
    lock_owner_check: bool = False  # states:DescribeExecution of rotation executions (lock owner alive?)
    start_rotations: bool = False  # states:StartExecution of the rotation machine (the scheduled run)
    reports: tuple[str, ...] = ()  # S3 actions on the reports bucket's audits/ objects (audit)
    list_reports: bool = False  # s3:ListBucket of the reports bucket, audits/ prefix only
    credential_report: bool = False  # iam:GenerateCredentialReport / GetCredentialReport (account-wide)
    config_rule: bool = False  # config:StartConfigRulesEvaluation, when the settings name a Config rule


# The lock is taken, confirmed and released with conditional UpdateItem; read with GetItem.
_LOCK = ("dynamodb:GetItem", "dynamodb:UpdateItem")
_LIST_KEYS = "iam:ListAccessKeys"
_READ_SECRET = ("secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue")
_RELABEL = "secretsmanager:UpdateSecretVersionStage"


@dataclass(frozen=True)
class Step:
    """One step of a machine: its Lambda runs `handler` (module `handlers.<name>`), which parses the event
    and calls the domain function `domain` (module.function under lambdas/)."""

    name: str
    domain: str
    machine: Literal["rotation", "scheduled", "audit"]
    access: Access
    timeout_seconds: int = 120

    @property
    def module(self) -> str:
        return f"handlers.{self.name}"

    @property
    def handler(self) -> str:
        return f"{self.module}.handler"


# The steps, in the rotation's order, then the scheduled run's and the audit's. Timeouts: the steps that
# wait on purpose within one call — select_due paces its starts for up to 240 s (rotation/due.py
# PAGE_SECONDS), audit waits up to 120 s for its servers' answers (handlers/audit.py WAIT_SECONDS),
# audit_report polls the IAM credential report for up to 40 s; every other step: 2 minutes.
STEPS: dict[str, Step] = {step.name: step for step in (
    Step("prepare", "rotation.steps.prepare", "rotation", Access(
        iam_keys=("iam:GetUser", _LIST_KEYS),
        secrets=_READ_SECRET,
        lock=_LOCK,
        fleet_reads=("ssm:DescribeInstanceInformation",),
        lock_owner_check=True,
    )),
    Step("create_key", "rotation.steps.create_key", "rotation", Access(
        iam_keys=(_LIST_KEYS, "iam:CreateAccessKey", "iam:DeleteAccessKey"),
        secrets=(*_READ_SECRET, "secretsmanager:PutSecretValue"),
        secret_writes=True,
        create_secrets=True,
        lock=_LOCK,
    )),
    # sts:GetCallerIdentity is signed by the new key itself
    Step("verify_key", "rotation.steps.verify_key", "rotation", Access(secrets=_READ_SECRET)),
    Step("promote", "rotation.steps.promote", "rotation",
         Access(secrets=("secretsmanager:DescribeSecret", _RELABEL), lock=_LOCK)),
    # DescribeInstanceInformation: the group is resolved again at each distribution (servers come and go).
    Step("distribute", "rotation.steps.distribute", "rotation",
         Access(send_command=True, lock=_LOCK, fleet_reads=("ssm:DescribeInstanceInformation",))),
    Step("check_distribution", "rotation.steps.check_distribution", "rotation",
         Access(fleet_reads=("ssm:ListCommandInvocations",))),
    Step("check_usage", "rotation.steps.check_usage", "rotation",
         Access(iam_keys=(_LIST_KEYS, "iam:GetAccessKeyLastUsed"))),
    Step("deactivate", "rotation.steps.deactivate", "rotation",
         Access(iam_keys=(_LIST_KEYS, "iam:UpdateAccessKey"), secrets=_READ_SECRET, lock=_LOCK)),
    Step("delete", "rotation.steps.delete", "rotation", Access(
        iam_keys=(_LIST_KEYS, "iam:DeleteAccessKey"),
        secrets=(*_READ_SECRET, _RELABEL),
        lock=_LOCK,
    )),
    Step("rollback", "rotation.steps.rollback", "rotation",
         Access(iam_keys=(_LIST_KEYS, "iam:UpdateAccessKey"), lock=_LOCK)),
    Step("notify", "rotation.notify.summary", "rotation", Access(publish=True, config_rule=True)),
    # The scheduled run: reads keys, skips users whose rotation runs (lock), starts the due ones' rotations.
    # (and tells owners of keys coming due, on the alert topic)
    Step("select_due", "rotation.due.start_page", "scheduled",
         Access(iam_keys=(_LIST_KEYS,), lock=("dynamodb:GetItem",), lock_owner_check=True,
                start_rotations=True, publish=True),
         timeout_seconds=360),
    # The audit only reads (IAM, the secrets, the fleet) and asks servers for the document's read-only audit
    # action; it writes nothing but its own report objects.
    Step("audit", "rotation.audit.audit_page", "audit", Access(
        iam_keys=(_LIST_KEYS, "iam:GetAccessKeyLastUsed"),
        secrets=_READ_SECRET,
        send_command=True,
        fleet_reads=("ssm:DescribeInstanceInformation", "ssm:ListCommandInvocations"),
        reports=("s3:PutObject",),
    ), timeout_seconds=360),
    Step("audit_report", "rotation.audit_report.build", "audit",
         Access(reports=("s3:GetObject", "s3:PutObject"), list_reports=True, credential_report=True,
                publish=True),
         timeout_seconds=300),
)}


class RotationSteps(Construct):
    """`functions[name]` for every step of `STEPS`, from one asset: `lambdas/` plus `settings.json`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        asset_dir: Path,
        powertools_layer_arn: str,
        secrets_key: kms.IKey,
        lock_table: dynamodb.ITable,
        document_name: str,
        topic: sns.ITopic,
        topic_key: kms.IKey,
        reports: AuditReports,
    ) -> None:
        super().__init__(scope, construct_id)
        self._reports = reports
        self._settings = settings
        self._secrets_key = secrets_key
        self._lock_table = lock_table
        self._document_name = document_name
        self._topic = topic
        self._topic_key = topic_key
        code = lambda_.Code.from_asset(str(asset_dir), exclude=["__pycache__", "*.pyc"])
        layer = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", powertools_layer_arn)
        environment = {
            "SETTINGS_PATH": SETTINGS_FILE,
            "LOCK_TABLE": lock_table.table_name,
            "DOCUMENT_NAME": document_name,
            "TOPIC_ARN": topic.topic_arn,
            "SECRETS_KEY_ARN": secrets_key.key_arn,
            "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        }
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        for step, registered in STEPS.items():
            role = iam.Role(
                self,
                f"Role-{step}",
                description=f"Key rotation: the {step} step",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            )
            log_group = logs.LogGroup(
                self,
                f"Logs-{step}",
                retention=logs.RetentionDays.ONE_YEAR,
                removal_policy=RemovalPolicy.DESTROY,
            )
            function = lambda_.Function(
                self,
                f"Step-{step}",
                description=f"Key rotation: the {step} step",
                runtime=lambda_.Runtime.PYTHON_3_12,
                handler=registered.handler,
                code=code,
                role=role,
                layers=[layer],
                environment=environment,
                timeout=Duration.seconds(registered.timeout_seconds),
                memory_size=256,
                tracing=lambda_.Tracing.ACTIVE,
                log_group=log_group,
            )
            log_group.grant_write(role)
            if registered.access.reports:
                function.add_environment("REPORTS_BUCKET", reports.bucket.bucket_name)
            self._grant(step, role, registered.access)
            self._acknowledge(step, function, role)
            self.functions[step] = function
            self.roles[step] = role

    def allow_lock_owner_checks(self, rotation_machine: sfn.IStateMachine) -> None:
        """Steps that may take over a lock ask Step Functions whether the lock's owner still runs; the
        scheduled run's step starts rotations of that machine (and is told which in its environment)."""
        stack = Stack.of(self)
        for step, registered in STEPS.items():
            if registered.access.start_rotations:
                function = self.functions[step]
                function.add_environment("ROTATION_MACHINE_ARN", rotation_machine.state_machine_arn)
                rotation_machine.grant_start_execution(self.roles[step])
        executions = executions_arn(rotation_machine)
        for step, registered in STEPS.items():
            if registered.access.lock_owner_check:
                policy = iam.Policy(self, f"LockOwnerCheck-{step}", roles=[self.roles[step]], statements=[
                    iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions])
                ])
                acknowledge(
                    policy,
                    resource_finding(stack, executions),
                    "Lock owners are rotation executions with generated names; only the rotation machine's "
                    "executions can be named, and only to read their status.",
                )

    def secret_readers(self) -> list[iam.IRole]:
        """The step roles that read a secret's value (the secrets key's policy lets only them and the server
        groups decrypt)."""
        return [self.roles[step] for step, registered in STEPS.items()
                if "secretsmanager:GetSecretValue" in registered.access.secrets]

    def _grant(self, step: str, role: iam.Role, access: Access) -> None:
        stack = Stack.of(self)
        statements: list[iam.PolicyStatement] = []
        if access.iam_keys:
            statements.append(iam.PolicyStatement(
                sid="KeysOfManagedUsersOnly",
                actions=list(access.iam_keys),
                resources=[managed_users_arn(self._settings.managed_path)],
            ))
        secrets = self._secrets_pattern()
        if access.secrets:
            statements.append(iam.PolicyStatement(
                sid="SecretsUnderThePrefixOnly",
                actions=list(access.secrets),
                resources=[secrets],
            ))
            kms_actions = ["kms:Decrypt", "kms:GenerateDataKey"] if access.secret_writes else ["kms:Decrypt"]
            statements.append(iam.PolicyStatement(
                sid="SecretsKeyViaSecretsManagerOnly",
                actions=kms_actions,
                resources=[self._secrets_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": secrets_manager_via()}},
            ))
        if access.create_secrets:
            tag_keys = [engine_secrets.TAG_USER, engine_secrets.TAG_SERVER_GROUP]
            # A new secret must be encrypted with the stack's key and carry the engine's tags (and no others).
            statements.append(iam.PolicyStatement(
                sid="CreateSecretsUnderThePrefixWithOurKeyAndTags",
                actions=["secretsmanager:CreateSecret"],
                resources=[secrets],
                conditions={
                    "StringEquals": {"secretsmanager:KmsKeyArn": self._secrets_key.key_arn},
                    "Null": {f"aws:RequestTag/{key}": "false" for key in tag_keys},
                    "ForAllValues:StringEquals": {"aws:TagKeys": tag_keys},
                },
            ))
            # CreateSecret with Tags also needs TagResource; only the engine's tag keys.
            statements.append(iam.PolicyStatement(
                sid="TagSecretsWithOurTagKeysOnly",
                actions=["secretsmanager:TagResource"],
                resources=[secrets],
                conditions={"ForAllValues:StringEquals": {"aws:TagKeys": tag_keys}},
            ))
        if access.lock:
            statements.append(iam.PolicyStatement(
                sid="LockTableOnly",
                actions=list(access.lock),
                resources=[self._lock_table.table_arn],
            ))
        if access.send_command:
            statements.append(iam.PolicyStatement(
                sid="OurDocumentOnManagedInstancesOnly",
                actions=["ssm:SendCommand"],
                resources=[
                    stack.format_arn(service="ssm", resource="document", resource_name=self._document_name),
                    *send_command_targets(stack, self._settings),
                ],
            ))
        if access.fleet_reads:
            statements.append(iam.PolicyStatement(
                sid="FleetReadsWithoutResourceTypes",
                actions=list(access.fleet_reads),
                resources=["*"],
            ))
        if access.reports:
            statements.append(iam.PolicyStatement(
                sid="AuditReportsOnly", actions=list(access.reports), resources=[self._reports.objects_arn()]
            ))
        if access.list_reports:
            statements.append(iam.PolicyStatement(
                sid="ListAuditReportsOnly", actions=["s3:ListBucket"],
                resources=[self._reports.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [REPORTS_PREFIX + "*"]}},
            ))
        if access.credential_report:
            statements.append(iam.PolicyStatement(
                sid="CredentialReportHasNoResourceType",
                actions=["iam:GenerateCredentialReport", "iam:GetCredentialReport"], resources=["*"],
            ))
        if access.config_rule and self._settings.alerts.config_rule:
            # The rule's ARN holds its generated id (config-rule/config-rule-ab12cd), not its name.
            statements.append(iam.PolicyStatement(
                sid="ReevaluateTheKeyAgeRule", actions=["config:StartConfigRulesEvaluation"],
                resources=[stack.format_arn(service="config", resource="config-rule", resource_name="*")],
            ))
        if access.publish:
            statements.append(iam.PolicyStatement(
                sid="AlertTopicOnly", actions=["sns:Publish"], resources=[self._topic.topic_arn]
            ))
            statements.append(iam.PolicyStatement(
                sid="AlertTopicKeyViaSnsOnly",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[self._topic_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sns.{Aws.REGION}.amazonaws.com"}},
            ))
        iam.Policy(self, f"Policy-{step}", roles=[role], statements=statements)

    def _secrets_pattern(self) -> str:
        """Every secret under the prefix: the users' secrets, created by the engine at run time."""
        return secrets_arn(self._settings.secret_prefix + "*")

    def _acknowledge(self, step: str, function: lambda_.Function, role: iam.Role) -> None:
        access = STEPS[step].access
        policy = self.node.find_child(f"Policy-{step}")
        if access.secrets or access.create_secrets:
            acknowledge(
                policy,
                resource_finding(Stack.of(self), self._secrets_pattern()),
                "The users' secrets are created by the engine at run time under the secret prefix (a user's "
                "name is only in the settings); the prefix is this system's own namespace.",
            )
        if access.iam_keys:
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:user"
                f"{self._settings.managed_path}*]",
                "IAM key actions are limited to users under the managed IAM path, the documented boundary "
                "of this system; users are added by configuration, so the path cannot be enumerated here.",
            )
        if access.fleet_reads:
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::*]",
                f"{', '.join(access.fleet_reads)} support no resource-level permissions (IAM requires "
                "\"*\"); they only read fleet and command status.",
            )
        if access.reports:
            acknowledge(
                policy,
                resource_finding(Stack.of(self), self._reports.objects_arn()),
                "The audit writes (and audit_report reads) its report objects under audits/ of the stack's "
                "own reports bucket; each run's objects are named after the execution.",
            )
        if access.config_rule and self._settings.alerts.config_rule:
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:config:<AWS::Region>:<AWS::AccountId>:"
                "config-rule/*]",
                "A Config rule's ARN carries its generated id, not the name the settings give; the action "
                "only asks Config to evaluate a rule again.",
            )
        if access.credential_report:
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::*]",
                "iam:GenerateCredentialReport and iam:GetCredentialReport support no resource-level "
                "permissions (IAM requires \"*\"); the report lists users and key dates, no credentials.",
            )
        if access.send_command:
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:"
                "managed-instance/*]",
                "Servers join by hybrid activation at any time, so their mi- ids are not known at deploy "
                "time; the same statement limits SendCommand to this stack's document.",
            )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "Added by CDK for active X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords "
            "support no resource-level permissions.",
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "Python 3.12 is the runtime the pinned Powertools v3 layer and requirements/lambda.txt target; "
            "moving to a newer runtime is a deliberate upgrade of both.",
        )


def send_command_targets(stack: Stack, settings: Settings) -> list[str]:
    """Managed (hybrid) instances; EC2 instance ARNs only when a group lists EC2 instance ids."""
    targets = [stack.format_arn(service="ssm", resource="managed-instance", resource_name="*")]
    if any(instance.startswith("i-") for group in settings.server_groups for instance in group.instance_ids):
        targets.append(stack.format_arn(service="ec2", resource="instance", resource_name="*"))
    return targets
