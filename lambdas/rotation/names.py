"""Names of the rotation executions the scheduled machine starts.

Step Functions allows 1-80 characters and, for executions whose logs go to CloudWatch Logs (ours), only
`0-9A-Za-z-_`. IAM user names may also hold `+ = , . @`, so the name is a safe form of the user name (each
other character becomes `_`, truncated to fit) plus a short hash of the exact name, then the run's UTC day:
`svc.web@corp` on 2026-12-03 → `svc_web_corp-1a2b3c4d-20261203`. Deterministic: two scheduled runs of one
day that select the same user name the same execution, so only one starts (rotation/due.py);
collision-free: `check_unique_stems` refuses, at settings load, two users whose stems are equal.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from rotation.errors import InvalidSettings

MAX_EXECUTION_NAME = 80
ALLOWED = re.compile(r"^[0-9A-Za-z_-]{1,80}$")
_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")
_HASH_CHARS = 8
_DAY = "%Y%m%d"  # 8 characters
_SAFE_CHARS = MAX_EXECUTION_NAME - (1 + _HASH_CHARS) - (1 + 8)


def execution_stem(user: str) -> str:
    """`<safe user name>-<8 hex of sha256(user)>`: the part of the name that identifies the user."""
    digest = hashlib.sha256(user.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{_UNSAFE.sub('_', user)[:_SAFE_CHARS]}-{digest}"


def execution_name(user: str, when: datetime) -> str:
    """The name of `user`'s rotation started by a scheduled run of `when`'s UTC day."""
    return f"{execution_stem(user)}-{when.astimezone(UTC).strftime(_DAY)}"


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
