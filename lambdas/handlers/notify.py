"""notify: an SNS summary of the rotation (success or failure); never a secret."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotation.errors import InvalidRequest, RotationError
from rotation.notify import publish, reevaluate, summary

from handlers import _clients
from handlers._common import step_handler
from handlers._env import Env, load_env
from handlers._event import caught_error


def run(event: Any) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        raise InvalidRequest("event: must be a JSON object")
    rotation = event.get("rotation")
    rotation = dict(rotation) if isinstance(rotation, Mapping) else {}
    error = caught_error(event.get("error")) or rotation.get("error") or None
    raw_input = event.get("input")
    if not isinstance(raw_input, Mapping):
        raw_input = {}
    user = str(rotation.get("user") or raw_input.get("user") or "unknown")
    env = load_env("TOPIC_ARN")
    subject, message = summary(rotation, user=user, error=error)
    rule = _config_rule(env)
    if rule and not error and rotation.get("outcome") == "rotated":
        message += "\n" + reevaluate(_clients.config(), rule)
    owner = _owner_of(env, user)
    message_id = publish(_clients.sns(), env.topic_arn, subject, message, owner=owner)
    return {**rotation, "notification": {"message_id": message_id, "subject": subject}}


def _config_rule(env: Env) -> str | None:
    try:
        return env.settings().alerts.config_rule
    except RotationError:
        return None


def _owner_of(env: Env, user: str) -> str | None:
    """The user's owner in the settings, if any: the failure path must notify even when the settings are
    the problem, so an unreadable settings file only means no owner."""
    try:
        found = env.settings().user(user)
    except RotationError:
        return None
    return found.owner if found is not None else None


handler = step_handler("notify", run)
