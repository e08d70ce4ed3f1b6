"""ARN patterns used by more than one unit (tokens only: no literal partition, region or account)."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Fn, Stack
from aws_cdk import aws_stepfunctions as sfn


def managed_users_arn(managed_path: str) -> str:
    """`arn:${Partition}:iam::${Account}:user<managed_path>*` — every IAM user under the managed path."""
    return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:user{managed_path}*"


def executions_arn(machine: sfn.IStateMachine, suffix: str = ":*") -> str:
    """The ARN pattern of `machine`'s executions (the name split from the ARN, as CDK's own grants do)."""
    stack = Stack.of(machine)
    name = stack.split_arn(machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
    return stack.format_arn(service="states", resource="execution", resource_name=f"{name}{suffix}",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME)


# The patterns below repeat once per server group: written as one `Fn::Sub` string each (a token-joined ARN
# is ~25 lines of the pretty-printed template), they keep a group's share of the template small enough for
# CloudFormation's 1 MB at the 200 groups its output limit allows (docs/config.md, "Limits").


def _sub_safe(text: str) -> str:
    """A name pattern inside an `Fn::Sub` string: settings names never hold `$`, `{` or `}`."""
    if any(ch in text for ch in "${}"):
        raise ValueError(f"not a plain name pattern: {text!r}")
    return text


def secrets_arn(name_pattern: str) -> str:
    """`arn:${Partition}:secretsmanager:${Region}:${Account}:secret:<name_pattern>` (names get a 6-character
    suffix in ARNs: patterns end in `*`)."""
    return Fn.sub("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
                  + _sub_safe(name_pattern))


def kms_keys_arn() -> str:
    """Every KMS key of this account and region (narrowed by conditions where used)."""
    return Fn.sub("arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*")


def ssm_arn_pattern() -> str:
    """Every SSM resource of this account and region (the hybrid roles' `aws:SourceArn`)."""
    return Fn.sub("arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:*")


def secrets_manager_via() -> str:
    """The `kms:ViaService` value of requests Secrets Manager makes to KMS for its callers."""
    return Fn.sub("secretsmanager.${AWS::Region}.amazonaws.com")
