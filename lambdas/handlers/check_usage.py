"""check_usage: the old key must not have been used since the cut-over (with the 15-minute margin)."""

from __future__ import annotations

from typing import Any

from rotation import steps

from handlers import _clients
from handlers._common import step_handler
from handlers._env import load_env
from handlers._event import rotation_event


def run(event: Any) -> dict[str, Any]:
    rotation = rotation_event(event)
    env = load_env("SETTINGS_PATH")
    return steps.check_usage(rotation, env.settings(), iam=_clients.iam()).to_dict()


handler = step_handler("check_usage", run)
