"""ARN patterns used by more than one unit (tokens only: no literal partition, region or account)."""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Stack
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
