"""select_due (scheduled machine): managed users whose active key is older than their max age.

Returns `{"due": [{"name": execution name, "input": {"user": name, "mode": "standard"}}, ...], "checked": n,
"not_in_iam": [...], "deferred": n, "deferred_users": [...]}`; each item of `due` is the name
(rotation/names.py: only characters Step Functions allows, per user and minute) and the input of a rotation
execution, the most overdue first and at most `schedule.max_users_per_run`; `deferred` counts the due users
left to the next run (`deferred_users` names the first few of them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rotation.due import select_due
from rotation.names import execution_name

from handlers import _clients
from handlers._common import step_handler
from handlers._env import load_env

DEFERRED_NAMED = 20  # the output stays small whatever the backlog


def run(event: Any) -> dict[str, Any]:
    env = load_env("SETTINGS_PATH")
    now = datetime.now(UTC)
    report = select_due(_clients.iam(), env.settings(), now)
    return {"due": [{"name": execution_name(user, now), "input": {"user": user, "mode": "standard"}}
                    for user in report.due],
            "checked": report.checked,
            "not_in_iam": list(report.not_in_iam), "deferred": len(report.deferred),
            "deferred_users": list(report.deferred[:DEFERRED_NAMED])}


handler = step_handler("select_due", run)
