"""Names of the rotation executions the scheduled machine starts.

Step Functions allows 1-80 characters and, for executions whose logs go to CloudWatch Logs (ours), only
`0-9A-Za-z-_`. IAM user names may also hold `+ = , . @`, so the name is a safe form of the user name (each
other character becomes `_`, truncated to fit) plus a short hash of the exact name, then the run's minute:
`svc.web@corp` at 2026-12-03 10:51 UTC → `svc_web_corp-1a2b3c4d-20261203T1051`. Deterministic: a retried
start of the same run reuses the name (Step Functions then refuses a second execution of the same user);
collision-free: `check_unique_stems` refuses, at settings load, two users whose stems are equal.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import datetime

from rotation.errors import InvalidSettings

MAX_EXECUTION_NAME = 80
ALLOWED = re.compile(r"^[0-9A-Za-z_-]{1,80}$")
_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")
_HASH_CHARS = 8
_WHEN = "%Y%m%dT%H%M"  # 13 characters
_SAFE_CHARS = MAX_EXECUTION_NAME - (1 + _HASH_CHARS) - (1 + 13)


def execution_stem(user: str) -> str:
    """`<safe user name>-<8 hex of sha256(user)>`: the part of the name that identifies the user."""
    digest = hashlib.sha256(user.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{_UNSAFE.sub('_', user)[:_SAFE_CHARS]}-{digest}"


def execution_name(user: str, when: datetime) -> str:
    """The name of `user`'s rotation execution started by the scheduled run of `when` (UTC, to the minute)."""
    return f"{execution_stem(user)}-{when.strftime(_WHEN)}"


def check_unique_stems(users: Iterable[str], path: str) -> None:
    """Two users whose execution stems are equal would share execution names: refuse the settings."""
    seen: dict[str, str] = {}
    for user in users:
        stem = execution_stem(user)
        if stem in seen:
            raise InvalidSettings(
                f"{path}: users {seen[stem]!r} and {user!r} would get the same execution name stem {stem!r}; "
                "rename one of them"
            )
        seen[stem] = user
