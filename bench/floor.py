"""The API-call floor of one rotation: what the design (docs/design.md §2) cannot do with fewer calls.

Each fact is read once, each change written once, Run Command addressed by tag (one SendCommand per
distribution, whatever N), results read ⌈N/50⌉ pages per poll (ListCommandInvocations returns at most 50
invocations per page), targets resolved ⌈N/50⌉ pages (DescribeInstanceInformation, 50 per page).
"""

from __future__ import annotations

import math

PAGE = 50  # ListCommandInvocations / DescribeInstanceInformation MaxResults; SendCommand InstanceIds

# Operations whose count may grow with the number of servers (everything else must not).
SCALING = ("ssm:DescribeInstanceInformation", "ssm:SendCommand", "ssm:ListCommandInvocations")


def pages(servers: int) -> int:
    return max(1, math.ceil(servers / PAGE))


def rotation_floor(servers: int, polls: int) -> dict[str, int]:
    """Per operation, for 1 user x `servers` servers and `polls` distribution polls (rotate + verify)."""
    p = pages(servers)
    return {
        # prepare: classify the user's keys and secret, resolve the targets and their ping status, lock
        "iam:ListAccessKeys": 1,
        "secretsmanager:GetSecretValue": 1,
        # (and again at each distribution: servers come and go between prepare and a distribution)
        "ssm:DescribeInstanceInformation": 3 * p,
        "dynamodb:UpdateItem": 2,  # take the lock (conditional write) ... release it in delete
        # create_key, verify_key, promote
        "iam:CreateAccessKey": 1,
        "secretsmanager:PutSecretValue": 1,  # AWSPENDING
        "sts:GetCallerIdentity": 1,
        # AWSCURRENT -> new version, AWSPENDING off it, AWSPREVIOUS off the old version once deleted
        "secretsmanager:UpdateSecretVersionStage": 3,
        # distribute (rotate, verify) by tag, and the polls
        "ssm:SendCommand": 2,
        "ssm:ListCommandInvocations": max(polls, 2) * p,
        # check_usage, deactivate, delete, notify
        "iam:GetAccessKeyLastUsed": 1,
        "iam:UpdateAccessKey": 1,
        "iam:DeleteAccessKey": 1,
        "sns:Publish": 1,
    }


def scheduled_floor(users: int, due: int, per_rotation: dict[str, int]) -> dict[str, int]:
    """select_due (ListAccessKeys per user; per due user its lock and its StartExecution) plus one rotation
    floor per due user."""
    floor = {"iam:ListAccessKeys": users, "dynamodb:GetItem": due, "states:StartExecution": due}
    for op, count in per_rotation.items():
        floor[op] = floor.get(op, 0) + count * due
    return floor


def bound_ok(op: str, count: float, servers: int, polls: float) -> bool:
    """Whether a scaling operation stays within O(N/50) (never one call per server)."""
    p = pages(servers)
    limits = {
        "ssm:DescribeInstanceInformation": 3 * p,
        "ssm:SendCommand": 2 * p,  # batches of 50 instance ids instead of one call by tag
        "ssm:ListCommandInvocations": max(polls, 2) * p,
    }
    return count <= limits[op]
