"""create_key: create the user's secret if missing, make room (2-key limit), create the new key, store it as
AWSPENDING under rotation.token."""

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
    env = load_env("SETTINGS_PATH", "LOCK_TABLE", "SECRETS_KEY_ARN")
    return steps.create_key(
        rotation, env.settings(), iam=_clients.iam(), sm=_clients.secretsmanager(),
        table=LockTable(_clients.dynamodb(), env.lock_table), now=datetime.now(UTC),
        secrets_key_arn=env.secrets_key_arn,
    ).to_dict()


handler = step_handler("create_key", run)
