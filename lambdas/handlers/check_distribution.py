"""check_distribution: read every invocation; confirmed = Success and a result line naming the new key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rotation import steps

from handlers import _clients
from handlers._common import step_handler
from handlers._event import rotation_event


def run(event: Any) -> dict[str, Any]:
    rotation = rotation_event(event)
    return steps.check_distribution(rotation, ssm=_clients.ssm(), now=datetime.now(UTC)).to_dict()


handler = step_handler("check_distribution", run)
