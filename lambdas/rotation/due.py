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
    due: tuple[str, ...]  # this run's: the most overdue first, at most `schedule.max_users_per_run`
    checked: int
    not_in_iam: tuple[str, ...]  # in the settings, but not a user under the managed path
    deferred: tuple[str, ...] = ()  # due as well, left to the next run (over max_users_per_run)


def select_due(iam: IAMClient, settings: Settings, now: datetime) -> DueReport:
    wanted = {user.name: user for user in settings.users}
    seen: list[str] = []
    overdue: dict[str, timedelta] = {}
    # Accounts have thousands of users: page through the managed path only.
    for page in iam.get_paginator("list_users").paginate(PathPrefix=settings.managed_path):
        for item in page["Users"]:
            user = wanted.get(item["UserName"])
            if user is None:
                continue
            seen.append(user.name)
            max_age = timedelta(days=settings.max_key_age_days(user))
            late = [now - key.created - max_age for key in list_keys(iam, user.name) if key.active]
            if late and max(late) > timedelta(0):
                overdue[user.name] = max(late)
    # The most overdue first, so a run that cannot take every due user takes the keys that waited longest.
    ordered = sorted(overdue, key=lambda name: (-overdue[name], name))
    cap = settings.schedule.max_users_per_run
    return DueReport(
        due=tuple(ordered[:cap]),
        checked=len(seen),
        not_in_iam=tuple(sorted(set(wanted) - set(seen))),
        deferred=tuple(ordered[cap:]),
    )
