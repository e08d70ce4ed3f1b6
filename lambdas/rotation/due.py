"""Which users the scheduled run should rotate: managed users whose active key is older than their max age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rotation.keys import list_keys
from rotation.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient


@dataclass(frozen=True)
class DueReport:
    due: tuple[str, ...]
    checked: int
    not_in_iam: tuple[str, ...]  # in the settings, but not a user under the managed path


def select_due(iam: IAMClient, settings: Settings, now: datetime) -> DueReport:
    wanted = {user.name: user for user in settings.users}
    seen: list[str] = []
    due: list[str] = []
    # Accounts have thousands of users: page through the managed path only.
    for page in iam.get_paginator("list_users").paginate(PathPrefix=settings.managed_path):
        for item in page["Users"]:
            user = wanted.get(item["UserName"])
            if user is None:
                continue
            seen.append(user.name)
            max_age = timedelta(days=settings.max_key_age_days(user))
            if any(key.active and now - key.created > max_age for key in list_keys(iam, user.name)):
                due.append(user.name)
    return DueReport(
        due=tuple(sorted(due)), checked=len(seen), not_in_iam=tuple(sorted(set(wanted) - set(seen)))
    )
