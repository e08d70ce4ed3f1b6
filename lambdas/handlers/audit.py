"""audit (audit machine): audit the next page of users, read-only, and store the page in the reports bucket.

Event: `{"input": <execution input>, "run": <execution name>, "cursor": n}`. The input is
`{"mode": "audit"}` (every managed user) or `{"mode": "audit", "user": name}` (one). Returns
`{"cursor": next | null, "done": bool, "audited": n}`; the entries are in
`audits/<run>/users-<cursor>.json` (rotation/audit.py).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rotation.audit import AUDIT_PAGE, audit_page
from rotation.audit_report import write_page
from rotation.errors import InvalidRequest, UnknownUser
from rotation.settings import USER_NAME_PATTERN, Settings, User

from handlers import _clients
from handlers._common import step_handler
from handlers._env import load_env

RUN_PATTERN = r"^[0-9A-Za-z_-]{1,80}$"
WAIT_SECONDS = 120  # how long a page waits for its servers' answers


def _parse(event: Any) -> tuple[str | None, str, int]:
    if not isinstance(event, Mapping):
        raise InvalidRequest("audit: the event must be an object")
    given = event.get("input")
    raw: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    unknown = set(raw) - {"mode", "user"}
    if unknown:
        raise InvalidRequest(f"input: unknown field(s) {', '.join(sorted(unknown))}; an audit takes mode "
                             "and user")
    if raw.get("mode", "audit") != "audit":
        raise InvalidRequest("input.mode: the audit machine only audits (mode 'audit'), not "
                             f"{raw.get('mode')!r}")
    user = raw.get("user")
    if user is not None and (not isinstance(user, str) or not re.fullmatch(USER_NAME_PATTERN, user)):
        raise InvalidRequest(f"input.user: {str(user)[:80]!r} is not an IAM user name")
    run = event.get("run")
    if not isinstance(run, str) or not re.fullmatch(RUN_PATTERN, run):
        raise InvalidRequest(f"run: {str(run)[:80]!r} is not an execution name")
    cursor = event.get("cursor", 0)
    if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
        raise InvalidRequest(f"cursor: must be a non-negative integer, not {cursor!r}")
    return user, run, cursor


def users_to_audit(settings: Settings, user: str | None) -> tuple[User, ...]:
    if user is None:
        return settings.users
    found = settings.user(user)
    if found is None:
        raise UnknownUser(f"user {user!r} is not in the settings; add it to config/settings.yaml and deploy")
    return (found,)


def run(event: Any) -> dict[str, Any]:
    user, run_name, cursor = _parse(event)
    env = load_env("SETTINGS_PATH", "DOCUMENT_NAME", "REPORTS_BUCKET")
    settings = env.settings()
    users = users_to_audit(settings, user)
    page = users[cursor:cursor + AUDIT_PAGE]
    entries = audit_page(settings, iam=_clients.iam(), sm=_clients.secretsmanager(), ssm=_clients.ssm(),
                         document=env.document_name, users=page, now=datetime.now(UTC),
                         wait_seconds=WAIT_SECONDS, sleep=time.sleep, monotonic=time.monotonic)
    write_page(_clients.s3(), env.reports_bucket, run_name, cursor, entries)
    following = cursor + len(page)
    done = following >= len(users)
    return {"cursor": None if done else following, "done": done, "audited": len(entries)}


handler = step_handler("audit", run)
