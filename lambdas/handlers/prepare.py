"""prepare: validate the request, classify the user's keys, resolve servers, take the lock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rotation import steps
from rotation.lock import LockTable

from handlers import _clients
from handlers._common import step_handler
from handlers._env import load_env
from handlers._event import prepare_event


def run(event: Any) -> dict[str, Any]:
    request, execution_id = prepare_event(event)
    env = load_env("SETTINGS_PATH", "LOCK_TABLE")
    rotation = steps.prepare(
        request, execution_id, env.settings(),
        iam=_clients.iam(), sm=_clients.secretsmanager(), ssm=_clients.ssm(),
        table=LockTable(_clients.dynamodb(), env.lock_table), owner_alive=_clients.execution_running,
        now=datetime.now(UTC),
    )
    return rotation.to_dict()


handler = step_handler("prepare", run)
