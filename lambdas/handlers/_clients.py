"""The one place AWS clients are made: on first use (never at import), with throttling-aware retries.

`AWS_ENDPOINT_URL` (the sandbox) and the region come from the standard environment variables.

A warm Lambda container reuses its clients (AWS's advice for Lambda): creating a botocore client loads and
copies its service model and event hooks, which cost as much CPU as the step's own work (bench/analysis.md,
P4). So there is one client per service per process: a Lambda process runs one function with an environment
that does not change. `sts_with` is never cached: it signs with the key it is given.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

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
    from mypy_boto3_stepfunctions import SFNClient
    from mypy_boto3_sts import STSClient

# IAM throttles per account with no published limits: standard mode retries throttling with backoff.
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 8}, connect_timeout=5, read_timeout=30)


@functools.cache
def _client(service: str) -> Any:
    return boto3.client(service, config=RETRIES)  # type: ignore[call-overload]


def iam() -> IAMClient:
    client: IAMClient = _client("iam")
    return client


def secretsmanager() -> SecretsManagerClient:
    client: SecretsManagerClient = _client("secretsmanager")
    return client


def ssm() -> SSMClient:
    client: SSMClient = _client("ssm")
    return client


def dynamodb() -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


def s3() -> Any:
    return _client("s3")


def config() -> Any:
    return _client("config")


def sns() -> SNSClient:
    client: SNSClient = _client("sns")
    return client


def stepfunctions() -> SFNClient:
    client: SFNClient = _client("stepfunctions")
    return client


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
        status = stepfunctions().describe_execution(executionArn=execution_arn)
    except ClientError as exc:
        if error_code(exc) in {"ExecutionDoesNotExist", "InvalidArn"}:
            return False
        raise
    return status["status"] == "RUNNING"
