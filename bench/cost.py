"""What a rotation would cost in a real AWS account, from the counts the bench measured.

Prices are assumptions, written down here and in docs/benchmarks.md: public on-demand list prices for
us-east-1 (USD) as we know them, free tiers ignored. Check https://aws.amazon.com/pricing before quoting.
IAM, STS and SSM Run Command on hybrid nodes of the standard tier are free; the agents' own calls
(GetSecretValue per server on `rotate`, KMS Decrypt behind it) are priced from the agent's code: one
GetSecretValue per server per rotation.
"""

from __future__ import annotations

from typing import Any

PRICES: dict[str, tuple[float, str]] = {
    "sfn_transition": (0.025 / 1_000, "Step Functions Standard: $0.025 per 1,000 state transitions"),
    "lambda_request": (0.20 / 1_000_000, "Lambda: $0.20 per 1M requests"),
    "lambda_gb_second": (0.0000166667, "Lambda (x86): $0.0000166667 per GB-second"),
    "secrets_api": (0.05 / 10_000, "Secrets Manager: $0.05 per 10,000 API calls"),
    "secret_month": (0.40, "Secrets Manager: $0.40 per secret per month (not per rotation)"),
    "kms_request": (0.03 / 10_000, "KMS: $0.03 per 10,000 requests (Secrets Manager decrypts/encrypts)"),
    "ddb_write": (0.625 / 1_000_000, "DynamoDB on-demand: $0.625 per 1M write request units"),
    "ddb_read": (0.125 / 1_000_000, "DynamoDB on-demand: $0.125 per 1M read request units"),
    "sns_publish": (0.50 / 1_000_000, "SNS: $0.50 per 1M publishes (email delivery extra)"),
    "free": (
        0.0,
        "IAM, STS, SSM Run Command / DescribeInstanceInformation / ListCommandInvocations: no charge",
    ),
}

LAMBDA_MEMORY_GB = 256 / 1024  # infra/constructs/steps.py: memory_size=256
LAMBDA_MIN_BILLED_SECONDS = 0.001


def rotation_cost(
    *,
    transitions: float,
    calls: dict[str, float],
    lambda_invocations: float,
    lambda_seconds: float,
    servers: int,
) -> dict[str, Any]:
    """USD for one measured run; `lambda_seconds` is the handlers' wall time in the sandbox (an upper
    bound for warm Lambdas, which do not share a CPU with an emulator and N agents)."""
    secrets_calls = sum(v for k, v in calls.items() if k.startswith("secretsmanager:"))
    kms = sum(
        v for k, v in calls.items() if k in ("secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue")
    )
    ddb_writes = sum(
        v for k, v in calls.items() if k in ("dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
    )
    ddb_reads = sum(v for k, v in calls.items() if k in ("dynamodb:GetItem", "dynamodb:Query"))
    items = {
        "step_functions": transitions * PRICES["sfn_transition"][0],
        "lambda": lambda_invocations * PRICES["lambda_request"][0]
        + max(lambda_seconds, lambda_invocations * LAMBDA_MIN_BILLED_SECONDS)
        * LAMBDA_MEMORY_GB
        * PRICES["lambda_gb_second"][0],
        "secrets_manager": (secrets_calls + servers) * PRICES["secrets_api"][0],
        "kms": (kms + servers) * PRICES["kms_request"][0],
        "dynamodb": ddb_writes * PRICES["ddb_write"][0] + ddb_reads * PRICES["ddb_read"][0],
        "sns": calls.get("sns:Publish", 0) * PRICES["sns_publish"][0],
    }
    return {
        "total_usd": round(sum(items.values()), 6),
        "items_usd": {k: round(v, 6) for k, v in items.items()},
    }


def assumptions() -> list[str]:
    return [text for _, text in PRICES.values()] + [
        f"Lambda memory {int(LAMBDA_MEMORY_GB * 1024)} MB; billed duration = the handlers' measured wall "
        "time in the sandbox (pessimistic: it shares 2 cores with the emulator and the agents)",
        "agents: 1 GetSecretValue (+1 KMS Decrypt) per server per rotation (action rotate; verify reads no "
        "secret); their sts:GetCallerIdentity calls are free",
    ]
