"""The one place AWS clients are made: at call time (never at import), with throttling-aware retries.

`AWS_ENDPOINT_URL` (the sandbox) and the region come from the standard environment variables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from rotation.keys import error_code
from rotation.secrets import Credentials

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

# IAM throttles per account with no published limits: standard mode retries throttling with backoff.
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 8}, connect_timeout=5, read_timeout=30)


def iam() -> IAMClient:
    return boto3.client("iam", config=RETRIES)


def secretsmanager() -> SecretsManagerClient:
    return boto3.client("secretsmanager", config=RETRIES)


def ssm() -> SSMClient:
    return boto3.client("ssm", config=RETRIES)


def dynamodb() -> DynamoDBClient:
    return boto3.client("dynamodb", config=RETRIES)


def sns() -> SNSClient:
    return boto3.client("sns", config=RETRIES)


def sts_with(credentials: Credentials) -> STSClient:
    """An STS client signing with the given key (to prove a new key works). Throttling is retried here like
    every other call; propagation errors (InvalidClientTokenId) are not retryable for botocore, so they reach
    the state machine, whose Retry on NewKeyNotYetValid waits between attempts."""
    return boto3.client(
        "sts",
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        aws_session_token=None,
        config=RETRIES.merge(Config(read_timeout=15)),
    )


def execution_running(execution_arn: str) -> bool:
    """Whether the execution holding a lock is still running (otherwise its lock may be taken over)."""
    try:
        status = boto3.client("stepfunctions", config=RETRIES).describe_execution(executionArn=execution_arn)
    except ClientError as exc:
        if error_code(exc) in {"ExecutionDoesNotExist", "InvalidArn"}:
            return False
        raise
    return status["status"] == "RUNNING"
