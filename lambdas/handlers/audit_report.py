"""audit_report (audit machine): the report of an audit run, from its pages, into the reports bucket and a
summary onto the alert topic.

Event: `{"run": <execution name>, "started_at": <$$.Execution.StartTime>}`. Returns `{"report":
"s3://…/report.json", "markdown": "s3://…/report.md", "summary": {...}, "notification": {...}}`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from rotation.audit import unmanaged_old_keys
from rotation.audit_report import PREFIX, build, markdown, notification, read_pages
from rotation.errors import InvalidRequest
from rotation.notify import publish

from handlers import _clients
from handlers._common import step_handler
from handlers._env import load_env
from handlers.audit import RUN_PATTERN


def run(event: Any) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        raise InvalidRequest("audit_report: the event must be an object")
    run_name = event.get("run")
    if not isinstance(run_name, str) or not re.fullmatch(RUN_PATTERN, run_name):
        raise InvalidRequest(f"run: {str(run_name)[:80]!r} is not an execution name")
    try:
        started = datetime.fromisoformat(str(event.get("started_at")).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        shown = str(event.get("started_at"))[:40]
        raise InvalidRequest(f"started_at: not an ISO 8601 time: {shown!r}") from None
    env = load_env("SETTINGS_PATH", "REPORTS_BUCKET", "TOPIC_ARN")
    settings = env.settings()
    s3 = _clients.s3()
    now = datetime.now(UTC)
    entries = read_pages(s3, env.reports_bucket, run_name)
    gap = unmanaged_old_keys(_clients.iam(), settings, now, sleep=time.sleep)
    report = build(entries, gap, run=run_name, started=started, finished=now)
    base = f"{PREFIX}{run_name}/report"
    s3.put_object(Bucket=env.reports_bucket, Key=base + ".json", Body=json.dumps(report, indent=1).encode(),
                  ContentType="application/json")
    s3.put_object(Bucket=env.reports_bucket, Key=base + ".md", Body=markdown(report).encode(),
                  ContentType="text/markdown")
    location = f"s3://{env.reports_bucket}/{base}.md"
    subject, message = notification(report, location)
    message_id = publish(_clients.sns(), env.topic_arn, subject, message)
    return {"report": f"s3://{env.reports_bucket}/{base}.json", "markdown": location,
            "summary": report["summary"], "notification": {"message_id": message_id, "subject": subject}}


handler = step_handler("audit_report", run)
