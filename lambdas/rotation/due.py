"""The scheduled run: which users are due, and starting their rotations without waiting for them.

One call (`start_page`) takes the next page of the settings' users, reads their keys concurrently, and
starts a rotation execution for each due one, at most `schedule.starts_per_minute` (IAM, STS, Secrets Manager
and SSM quotas are account-wide and cannot be raised; every rotation makes its calls soon after it starts).
The scheduled machine calls it again with the returned cursor until the last page: its history grows by a
few events per page, its state stays the same size (counts plus the first few names of each kind), and a
day-long grace period of one user never holds up another.

Overlapping runs are safe: a user whose rotation is running (lock held by a live execution) is reported
`in_progress`, and a rotation is named per user and UTC day (rotation/names.py), so two runs that select the
same user at once start one execution (Step Functions answers a second StartExecution with the same name
and input with the running one; with a closed one, ExecutionAlreadyExists): `already_started`, no alert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rotation import lock
from rotation.errors import UnknownUser
from rotation.keys import AccessKey, error_code, list_keys
from rotation.lock import LockTable
from rotation.names import execution_name
from rotation.settings import Settings, User

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_stepfunctions import SFNClient

NAMED = 20  # names kept per kind in the run's state: the output stays small whatever the fleet
PAGE_SECONDS = 240  # pacing budget of one call (its Lambda may run 900 s)
MAX_PAGE = 100  # users checked per call
KEY_READERS = 8  # concurrent ListAccessKeys calls (IAM's global endpoint answers in ~50-150 ms)
KINDS = ("started", "already_started", "in_progress", "deferred", "not_in_iam", "failed_to_start", "overdue",
         "exempt", "noticed")
# notice(user, subject, message): tell a user's owner ahead of its rotation (the handler publishes to SNS)
Notice = Callable[[User, str, str], None]


@dataclass(frozen=True)
class Totals:
    """What a scheduled run did so far: a count and the first `NAMED` users of each kind."""

    checked: int = 0
    counts: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    names: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {k: () for k in KINDS})

    def add(self, kind: str, user: str) -> Totals:
        counts = {**self.counts, kind: self.counts[kind] + 1}
        shown = self.names[kind]
        names = {**self.names, kind: shown + (user,) if len(shown) < NAMED else shown}
        return replace(self, counts=counts, names=names)

    def to_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, **self.counts, "users": {k: list(v) for k, v in self.names.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Totals:
        if not data:
            return cls()
        users = data.get("users") or {}
        return cls(checked=int(data.get("checked", 0)),
                   counts={k: int(data.get(k, 0)) for k in KINDS},
                   names={k: tuple(str(u) for u in users.get(k, ()))[:NAMED] for k in KINDS})


@dataclass(frozen=True)
class Page:
    totals: Totals
    cursor: int | None  # where the next call starts; None after the last page


def page_size(settings: Settings) -> int:
    """Users per call: as many as the call can start at the configured rate within its pacing budget."""
    return max(1, min(MAX_PAGE, settings.schedule.starts_per_minute * PAGE_SECONDS // 60))


def _overdue(user: User, user_keys: Sequence[AccessKey], settings: Settings,
             now: datetime) -> timedelta | None:
    max_age = timedelta(days=settings.max_key_age_days(user))
    late = [now - key.created - max_age for key in user_keys if key.active]
    return max(late) if late and max(late) > timedelta(0) else None


def _read_keys(iam: IAMClient, users: Sequence[User]) -> list[tuple[User, list[AccessKey] | None]]:
    """Each user's keys (None: not an IAM user the engine may see), read concurrently."""

    def read(user: User) -> tuple[User, list[AccessKey] | None]:
        try:
            return user, list_keys(iam, user.name)
        except UnknownUser:
            return user, None
        except ClientError as exc:
            if error_code(exc) == "AccessDenied":  # outside the managed path: the role may not list its keys
                return user, None
            raise

    with ThreadPoolExecutor(max_workers=min(KEY_READERS, max(1, len(users)))) as pool:
        return list(pool.map(read, users))


def start_page(
    settings: Settings,
    *,
    iam: IAMClient,
    sfn: SFNClient,
    table: LockTable,
    rotation_machine: str,
    owner_alive: Callable[[str], bool],
    cursor: int,
    totals: Totals,
    run_started: datetime,
    now: datetime,
    sleep: Callable[[float], None],
    monotonic: Callable[[], float],
    notice: Notice | None = None,
) -> Page:
    """Check the users `cursor … cursor + page_size` and start the due ones' rotations, at most
    `starts_per_minute` (one start per interval: the time a start takes counts towards its interval)."""
    users = settings.users[cursor:cursor + page_size(settings)]
    found = _read_keys(iam, users)
    overdue_limit = timedelta(days=settings.schedule.overdue_alarm_days)
    due: list[tuple[timedelta, User]] = []
    for user, user_keys in found:
        if user_keys is None:
            totals = totals.add("not_in_iam", user.name)
            continue
        late = _overdue(user, user_keys, settings, now)
        if late is None and notice is not None and user.owner and settings.schedule.notice_days:
            coming = _overdue(user, user_keys, settings, now + timedelta(days=settings.schedule.notice_days))
            if coming is not None:
                due_on = (now + timedelta(days=settings.schedule.notice_days) - coming).date()
                notice(user, f"Key rotation of {user.name} due on {due_on:%Y-%m-%d}"[:100],
                       f"The access key of IAM user {user.name} reaches its maximum age of "
                       f"{settings.max_key_age_days(user)} days on {due_on:%Y-%m-%d}. The first scheduled "
                       "run after that date rotates it: every server of group "
                       f"{user.server_group} gets the new key, then the old one is deactivated and deleted. "
                       "Nothing to do unless an application outside that group uses the key.")
                totals = totals.add("noticed", user.name)
        if late is not None and user.exempt_on(now.date()):
            totals = totals.add("exempt", user.name)  # due, but exempt until its date: not overdue either
        elif late is not None:
            due.append((late, user))
            if late > overdue_limit:
                totals = totals.add("overdue", user.name)
    totals = replace(totals, checked=totals.checked + len(found))
    interval = 60.0 / settings.schedule.starts_per_minute
    next_start = monotonic()
    for _, user in sorted(due, key=lambda item: (-item[0], item[1].name)):  # the most overdue first
        if totals.counts["started"] >= settings.schedule.max_users_per_run:
            totals = totals.add("deferred", user.name)
            continue
        held = lock.read(table, user.name)
        expired = held.expires_at is not None and held.expires_at <= now.timestamp()
        if held.owner and not expired and owner_alive(held.owner):
            totals = totals.add("in_progress", user.name)
            continue
        wait = next_start - monotonic()
        if wait > 0:
            sleep(wait)
        totals = totals.add(_start(sfn, rotation_machine, user, run_started), user.name)
        next_start = max(next_start, monotonic() - interval) + interval
    following = cursor + len(users)
    return Page(totals=totals, cursor=following if following < len(settings.users) else None)


def _start(sfn: SFNClient, machine: str, user: User, run_started: datetime) -> str:
    try:
        sfn.start_execution(stateMachineArn=machine, name=execution_name(user.name, run_started),
                            input=json.dumps({"user": user.name, "mode": "standard"}))
    except ClientError as exc:
        if error_code(exc) == "ExecutionAlreadyExists":
            return "already_started"  # today's rotation of this user exists (another run started it)
        return "failed_to_start"
    return "started"

