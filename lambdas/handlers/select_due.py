"""select_due (scheduled machine): check the next page of users and start the due ones' rotations.

Event: `{"cursor": n, "totals": {...} | null, "started_at": "<$$.Execution.StartTime>"}` (the machine passes
back what the previous call returned). Returns `{"cursor": next | null, "done": bool, "totals": {"checked",
"started", "already_started", "in_progress", "deferred", "not_in_iam", "failed_to_start", "overdue", "users":
{kind: [first names]}}}`. The last page emits the watchdog's metrics (`ScheduledRun` = 1, `OverdueUsers`) and
fails with `RotationsNotStarted` if any due user's rotation could not be started (the run then alerts).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from rotation.due import Notice, Totals, start_page
from rotation.errors import InvalidRequest, RotationsNotStarted
from rotation.lock import LockTable
from rotation.notify import publish
from rotation.settings import User

from handlers import OVERDUE_USERS_METRIC, SCHEDULED_RUN_METRIC, _clients
from handlers._common import metrics, step_handler
from handlers._env import load_env


def _parse(event: Any) -> tuple[int, Totals, datetime]:
    if not isinstance(event, dict):
        raise InvalidRequest("select_due: the event must be an object")
    cursor = event.get("cursor", 0)
    if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
        raise InvalidRequest(f"cursor: must be a non-negative integer, not {cursor!r}")
    totals = event.get("totals")
    if totals is not None and not isinstance(totals, dict):
        raise InvalidRequest("totals: must be an object or null")
    started = event.get("started_at")
    try:
        run_started = datetime.fromisoformat(str(started).replace("Z", "+00:00")) if started else None
    except ValueError:
        raise InvalidRequest(f"started_at: not an ISO 8601 time: {str(started)[:40]!r}") from None
    now = datetime.now(UTC)
    return cursor, Totals.from_dict(totals), (run_started or now).astimezone(UTC)


def _notice(topic_arn: str) -> Notice | None:
    if not topic_arn:
        return None

    def notice(user: User, subject: str, message: str) -> None:
        publish(_clients.sns(), topic_arn, subject, message, owner=user.owner)

    return notice


def run(event: Any) -> dict[str, Any]:
    cursor, totals, run_started = _parse(event)
    env = load_env("SETTINGS_PATH", "LOCK_TABLE", "ROTATION_MACHINE_ARN")
    page = start_page(
        env.settings(),
        iam=_clients.iam(), sfn=_clients.stepfunctions(),
        table=LockTable(_clients.dynamodb(), env.lock_table),
        rotation_machine=env.rotation_machine_arn, owner_alive=_clients.execution_running,
        cursor=cursor, totals=totals, run_started=run_started, now=datetime.now(UTC), sleep=time.sleep,
        monotonic=time.monotonic, notice=_notice(env.topic_arn),
    )
    done = page.cursor is None
    result = page.totals.to_dict()
    if done:
        metrics.add_metric(name=SCHEDULED_RUN_METRIC, unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=OVERDUE_USERS_METRIC, unit=MetricUnit.Count, value=result["overdue"])
        if result["failed_to_start"]:
            raise RotationsNotStarted(
                f"{result['failed_to_start']} due users' rotations could not be started: "
                f"{', '.join(result['users']['failed_to_start'])}; {result['started']} started, "
                f"{result['already_started']} already started, {result['in_progress']} in progress"
            )
    return {"cursor": page.cursor, "done": done, "totals": result}


handler = step_handler("select_due", run)
