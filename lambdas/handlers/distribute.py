"""distribute: SendCommand of the document to every target (batches of ≤ 50), non-secret parameters only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rotation import steps
from rotation.lock import LockTable

from handlers import _clients
from handlers._common import step_handler
from handlers._env import load_env
from handlers._event import rotation_event


def run(event: Any) -> dict[str, Any]:
    rotation = rotation_event(event)
    env = load_env("SETTINGS_PATH", "LOCK_TABLE", "DOCUMENT_NAME")
    return steps.distribute(
        rotation, env.settings(), ssm=_clients.ssm(), table=LockTable(_clients.dynamodb(), env.lock_table),
        document=env.document_name, now=datetime.now(UTC),
    ).to_dict()


handler = step_handler("distribute", run)
