"""IAM access keys of one user: list, create, (de)activate, delete. Never logs or returns a secret."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from botocore.exceptions import ClientError

from rotation.errors import KeyLimitReached, UnknownUser

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient

Status = Literal["Active", "Inactive"]
MAX_KEYS = 2


@dataclass(frozen=True)
class AccessKey:
    key_id: str
    status: str
    created: datetime

    @property
    def active(self) -> bool:
        return self.status == "Active"


@dataclass(frozen=True)
class NewKey:
    """A key just returned by CreateAccessKey. The secret is kept out of repr() so it cannot be logged."""

    key_id: str
    secret_access_key: str = field(repr=False)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def user_path(iam: IAMClient, user: str, *, managed_path: str) -> str:
    """The user's IAM path; `UnknownUser` if IAM has no such user, or refuses to show it.

    The steps' roles may call GetUser only on users under the managed path (infra/constructs/steps.py), and
    IAM answers AccessDenied, not NoSuchEntity, for a user outside it (existing or not): that is the answer
    a user outside the managed path gets in a real account, so it is the same domain error as a wrong path.
    """
    try:
        return iam.get_user(UserName=user)["User"]["Path"]
    except ClientError as exc:
        code = error_code(exc)
        if code == "NoSuchEntity":
            raise UnknownUser(f"IAM user {user!r} does not exist") from None
        if code == "AccessDenied":
            raise UnknownUser(
                f"IAM user {user!r} is not under the managed path {managed_path} (or does not exist): IAM "
                "refused GetUser, and the engine's roles may read only users under that path; move the user "
                f"there (aws iam update-user --user-name {user} --new-path {managed_path}) or remove it from "
                "the settings"
            ) from None
        raise


def list_keys(iam: IAMClient, user: str) -> list[AccessKey]:
    keys: list[AccessKey] = []
    try:
        for page in iam.get_paginator("list_access_keys").paginate(UserName=user):
            keys.extend(
                AccessKey(key_id=item["AccessKeyId"], status=item["Status"], created=item["CreateDate"])
                for item in page["AccessKeyMetadata"]
            )
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            raise UnknownUser(f"IAM user {user!r} does not exist") from None
        raise
    return sorted(keys, key=lambda key: key.created)


def create_key(iam: IAMClient, user: str) -> NewKey:
    try:
        key = iam.create_access_key(UserName=user)["AccessKey"]
    except ClientError as exc:
        if error_code(exc) == "LimitExceeded":
            raise KeyLimitReached(f"user {user!r} already has {MAX_KEYS} access keys") from None
        raise
    return NewKey(key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"])


def set_status(iam: IAMClient, user: str, key_id: str, status: Status) -> None:
    iam.update_access_key(UserName=user, AccessKeyId=key_id, Status=status)


def delete_key(iam: IAMClient, user: str, key_id: str) -> bool:
    """Delete the key; False if it was already gone (a retried step)."""
    try:
        iam.delete_access_key(UserName=user, AccessKeyId=key_id)
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return False
        raise
    return True
