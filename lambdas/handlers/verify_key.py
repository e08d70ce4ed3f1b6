"""verify_key: sts:GetCallerIdentity signed by the new key, read from Secrets Manager inside the Lambda."""

from __future__ import annotations

from typing import Any

from rotation import steps

from handlers import _clients
from handlers._common import step_handler
from handlers._event import rotation_event


def run(event: Any) -> dict[str, Any]:
    rotation = rotation_event(event)
    return steps.verify_key(rotation, sm=_clients.secretsmanager(), sts_factory=_clients.sts_with).to_dict()


handler = step_handler("verify_key", run)
