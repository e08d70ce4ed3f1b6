"""Per-user lock and key-creation journal in DynamoDB (table with partition key `user`).

One item per user: `owner` (execution id holding the lock) and `expires_at` (epoch seconds), plus
`creating` = {token, started_at}, written just before CreateAccessKey and removed once the key is stored in
the secret. `creating` survives lock release and crashes: it is how the next run recognises an orphan key
(created by our unfinished rotation, never stored) and may delete it, while never touching other keys.

The lock is re-entrant for its owner. Another execution may take it over only when it has expired or when
its owner is no longer running (`owner_alive` decides, e.g. via Step Functions DescribeExecution).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from rotation.errors import RotationInProgress
from rotation.keys import error_code

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class LockTable:
    client: DynamoDBClient
    name: str


@dataclass(frozen=True)
class Intent:
    token: str
    started_at: datetime


@dataclass(frozen=True)
class LockItem:
    owner: str | None
    expires_at: int | None
    creating: Intent | None


def read(table: LockTable, user: str) -> LockItem:
    item = table.client.get_item(TableName=table.name, Key={"user": {"S": user}}, ConsistentRead=True).get(
        "Item"
    )
    if not item:
        return LockItem(owner=None, expires_at=None, creating=None)
    creating = None
    if "creating" in item:
        fields = item["creating"]["M"]
        creating = Intent(
            token=fields["token"]["S"],
            started_at=datetime.fromtimestamp(int(fields["started_at"]["N"]), tz=UTC),
        )
    return LockItem(
        owner=item["owner"]["S"] if "owner" in item else None,
        expires_at=int(item["expires_at"]["N"]) if "expires_at" in item else None,
        creating=creating,
    )


def acquire(
    table: LockTable,
    user: str,
    owner: str,
    *,
    now: datetime,
    ttl_seconds: int,
    owner_alive: Callable[[str], bool],
) -> None:
    """Take (or refresh) the lock; `RotationInProgress` naming the holder if another live execution has it."""
    try:
        _update_owner(table, user, owner, now, ttl_seconds, previous=None)
        return
    except _Held:
        pass
    holder = read(table, user)
    if holder.owner is None or holder.owner == owner:  # released or ours meanwhile: try once more
        _update_owner(table, user, owner, now, ttl_seconds, previous=None, raise_as_held=False)
        return
    if owner_alive(holder.owner):
        expires = datetime.fromtimestamp(holder.expires_at or 0, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        raise RotationInProgress(
            f"a rotation of {user!r} is already running in {holder.owner} "
            f"(lock expires {expires}); wait for it or stop that execution"
        )
    # The holder stopped (failed, aborted, timed out) without releasing: its rotation is ours to resume.
    _update_owner(table, user, owner, now, ttl_seconds, previous=holder.owner, raise_as_held=False)


def confirm(table: LockTable, user: str, owner: str, *, now: datetime, ttl_seconds: int) -> None:
    """Fail with `RotationInProgress` unless `owner` still holds the lock; extends it."""
    try:
        table.client.update_item(
            TableName=table.name,
            Key={"user": {"S": user}},
            UpdateExpression="SET expires_at = :expires",
            ConditionExpression="#owner = :me",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":me": {"S": owner},
                ":expires": {"N": str(_epoch(now) + ttl_seconds)},
            },
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            raise RotationInProgress(f"execution {owner} no longer holds the lock of {user!r}") from None
        raise


def release(table: LockTable, user: str, owner: str) -> bool:
    """Release the lock if `owner` holds it (keeps the `creating` journal). False if it did not."""
    try:
        table.client.update_item(
            TableName=table.name,
            Key={"user": {"S": user}},
            UpdateExpression="REMOVE #owner, expires_at",
            ConditionExpression="#owner = :me",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={":me": {"S": owner}},
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


def record_intent(table: LockTable, user: str, owner: str, token: str, now: datetime) -> None:
    """Journal a CreateAccessKey about to happen (only while holding the lock)."""
    try:
        table.client.update_item(
            TableName=table.name,
            Key={"user": {"S": user}},
            UpdateExpression="SET creating = :creating",
            ConditionExpression="#owner = :me",
            ExpressionAttributeNames={"#owner": "owner"},
            ExpressionAttributeValues={
                ":me": {"S": owner},
                ":creating": {"M": {"token": {"S": token}, "started_at": {"N": str(_epoch(now))}}},
            },
        )
    except ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            raise RotationInProgress(f"execution {owner} no longer holds the lock of {user!r}") from None
        raise


def clear_intent(table: LockTable, user: str) -> None:
    table.client.update_item(
        TableName=table.name, Key={"user": {"S": user}}, UpdateExpression="REMOVE creating"
    )


class _Held(Exception):
    pass


def _update_owner(
    table: LockTable,
    user: str,
    owner: str,
    now: datetime,
    ttl_seconds: int,
    *,
    previous: str | None,
    raise_as_held: bool = True,
) -> None:
    names = {"#owner": "owner"}
    values = {":me": {"S": owner}, ":expires": {"N": str(_epoch(now) + ttl_seconds)}}
    if previous is None:
        condition = "attribute_not_exists(#owner) OR #owner = :me OR expires_at < :now"
        values[":now"] = {"N": str(_epoch(now))}
    else:
        condition = "#owner = :previous"
        values[":previous"] = {"S": previous}
    try:
        table.client.update_item(
            TableName=table.name,
            Key={"user": {"S": user}},
            UpdateExpression="SET #owner = :me, expires_at = :expires",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        if raise_as_held:
            raise _Held from None
        raise RotationInProgress(f"the lock of {user!r} changed hands while being taken; try again") from None


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())
