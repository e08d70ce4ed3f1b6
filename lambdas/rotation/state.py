"""The `rotation` object the state machine carries between steps (docs/design.md §2), and the request.

Only non-secret data lives here: key ids, version ids, instance ids, counts, times. `Rotation.from_dict`
validates what a step receives (a state edited by hand in the console must not make a step act on the
wrong key) and raises `InvalidRequest` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from rotation.errors import InvalidRequest, InvalidSettings
from rotation.flow import MODES, RESUME_POINTS, STANDARD_MODE, Mode
from rotation.settings import (
    INSTANCE_ID_PATTERN,
    SECRET_ID_PATTERN,
    USER_NAME_PATTERN,
    WAIT_FIELDS,
    Waits,
    parse_waits,
)

Action = Literal["rotate", "verify"]
ACTIONS: tuple[Action, ...] = ("rotate", "verify")
CLASSIFICATIONS = ("fresh", "resumable", "adopt", "orphan", "blocked")

ACCESS_KEY_ID_PATTERN = r"^[A-Z0-9]{16,128}$"
# Secrets Manager version ids are the ClientRequestToken: 32..64 characters.
TOKEN_PATTERN = r"^[A-Za-z0-9-]{32,64}$"  # noqa: S105 (a pattern)
COMMAND_ID_PATTERN = r"^[A-Za-z0-9-]{36}$"


@dataclass(frozen=True)
class Request:
    """A validated execution input."""

    user: str
    mode: Mode
    waits: Mapping[str, Any]
    allow_offline: bool | None


def parse_request(data: Any) -> Request:
    """Validate the execution input an operator (or the scheduled machine) started the rotation with."""
    if not isinstance(data, Mapping):
        raise InvalidRequest("input: must be a JSON object")
    unknown = sorted(set(data) - {"user", "mode", "waits", "allow_offline"})
    if unknown:
        raise InvalidRequest(f"input.{unknown[0]}: unknown field (expected user, mode, waits, allow_offline)")
    user = data.get("user")
    if not isinstance(user, str) or not re.fullmatch(USER_NAME_PATTERN, user):
        raise InvalidRequest("input.user: required, an IAM user name")
    mode = data.get("mode", STANDARD_MODE)
    if mode == "audit":
        raise InvalidRequest("input.mode: an audit changes nothing and runs on the audit state machine "
                             "(WorkflowsAudit…): start it with {\"mode\": \"audit\", \"user\": …}, or "
                             "without a user for all")
    if mode not in MODES:
        raise InvalidRequest(f"input.mode: must be one of {', '.join(MODES)}")
    waits = data.get("waits", {})
    if not isinstance(waits, Mapping):
        raise InvalidRequest("input.waits: must be an object")
    try:
        # Validated against a dummy base here; the real base (settings) is applied in prepare.
        parse_waits(waits, "input.waits", Waits(0, 0, 1, 0, 0))
    except InvalidSettings as exc:
        raise InvalidRequest(str(exc)) from None
    allow_offline = data.get("allow_offline")
    if allow_offline is not None and not isinstance(allow_offline, bool):
        raise InvalidRequest("input.allow_offline: must be true or false")
    return Request(user=user, mode=cast(Mode, mode), waits=dict(waits), allow_offline=allow_offline)


@dataclass(frozen=True)
class DocumentSettings:
    """What the Run Command document needs besides the secret id and the key id."""

    credentials_file: str
    profile: str
    file_owner: str
    reload_hook: str | None


@dataclass(frozen=True)
class Failure:
    instance_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class Distribution:
    action: Action
    key_id: str
    confirmed: int
    total: int
    pending: int
    failed: tuple[Failure, ...]
    done: bool

    @property
    def complete(self) -> bool:
        """Every target confirmed this key."""
        return self.done and not self.failed and self.pending == 0 and self.confirmed == self.total


@dataclass(frozen=True)
class Rotation:
    user: str
    mode: Mode
    execution_id: str
    token: str
    secret_id: str
    old_key_id: str | None
    new_key_id: str | None
    new_version_id: str | None
    resume_from: str
    classification: str
    targets: tuple[str, ...]
    waits: Waits
    settings: DocumentSettings
    command_ids: tuple[str, ...] = ()
    settled_command_ids: tuple[str, ...] = ()  # of command_ids: every server confirmed, not read again
    action: Action | None = None
    polls: int = 0
    cutover_at: str | None = None
    distribution: Distribution | None = None
    lock_held: bool = False
    # Beyond the contract's list, for operators: what prepare found and planned, offline servers that were
    # skipped, the old key's last use, and how the rotation ended.
    plan: tuple[str, ...] = ()
    offline: tuple[str, ...] = ()
    allow_offline: bool = False  # the request's (or the user's) choice, applied again at each distribution
    usage: Mapping[str, Any] | None = None
    outcome: str | None = None
    error: Mapping[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["targets"] = list(self.targets)
        data["command_ids"] = list(self.command_ids)
        data["settled_command_ids"] = list(self.settled_command_ids)
        data["plan"] = list(self.plan)
        data["offline"] = list(self.offline)
        if self.distribution is not None:
            data["distribution"]["failed"] = [asdict(item) for item in self.distribution.failed]
        data["usage"] = dict(self.usage) if self.usage is not None else None
        data["error"] = dict(self.error) if self.error is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Rotation:
        return _parse_rotation(data)


def _parse_rotation(data: Any) -> Rotation:
    if not isinstance(data, Mapping):
        raise InvalidRequest("rotation: must be an object")
    p = _Fields(data, "rotation")
    settings = _Fields(p.mapping("settings"), "rotation.settings")
    distribution = None
    if data.get("distribution") is not None:
        d = _Fields(p.mapping("distribution"), "rotation.distribution")
        failed = []
        for i, item in enumerate(d.items("failed")):
            f = _Fields(item if isinstance(item, Mapping) else {}, f"rotation.distribution.failed[{i}]")
            failed.append(
                Failure(
                    instance_id=f.string("instance_id"), status=f.string("status"), reason=f.string("reason")
                )
            )
        distribution = Distribution(
            action=cast(Action, d.choice("action", ACTIONS)),
            key_id=d.string("key_id", ACCESS_KEY_ID_PATTERN),
            confirmed=d.integer("confirmed"),
            total=d.integer("total"),
            pending=d.integer("pending"),
            failed=tuple(failed),
            done=d.boolean("done"),
        )
    try:
        waits = parse_waits(p.mapping("waits"), "rotation.waits")
    except InvalidSettings as exc:
        raise InvalidRequest(str(exc)) from None
    action = data.get("action")
    return Rotation(
        user=p.string("user", USER_NAME_PATTERN),
        mode=cast(Mode, p.choice("mode", MODES)),
        execution_id=p.string("execution_id"),
        token=p.string("token", TOKEN_PATTERN),
        secret_id=p.string("secret_id", SECRET_ID_PATTERN),
        old_key_id=p.optional_string("old_key_id", ACCESS_KEY_ID_PATTERN),
        new_key_id=p.optional_string("new_key_id", ACCESS_KEY_ID_PATTERN),
        new_version_id=p.optional_string("new_version_id", TOKEN_PATTERN),
        resume_from=p.choice("resume_from", RESUME_POINTS),
        classification=p.choice("classification", CLASSIFICATIONS),
        targets=tuple(p.strings("targets", INSTANCE_ID_PATTERN)),
        waits=waits,
        settings=DocumentSettings(
            credentials_file=settings.string("credentials_file"),
            profile=settings.string("profile"),
            file_owner=settings.string("file_owner"),
            reload_hook=settings.optional_string("reload_hook"),
        ),
        command_ids=tuple(p.strings("command_ids", COMMAND_ID_PATTERN, required=False)),
        settled_command_ids=tuple(p.strings("settled_command_ids", COMMAND_ID_PATTERN, required=False)),
        action=None if action is None else cast(Action, p.choice("action", ACTIONS)),
        polls=p.integer("polls", required=False),
        cutover_at=p.optional_string("cutover_at"),
        distribution=distribution,
        lock_held=p.boolean("lock_held", required=False),
        plan=tuple(p.strings("plan", None, required=False)),
        offline=tuple(p.strings("offline", None, required=False)),
        allow_offline=p.boolean("allow_offline", required=False),
        usage=data.get("usage") if isinstance(data.get("usage"), Mapping) else None,
        outcome=p.optional_string("outcome"),
        error=data.get("error") if isinstance(data.get("error"), Mapping) else None,
    )


class _Fields:
    """Typed access to one JSON object, raising `InvalidRequest` with the field's path."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path

    def _fail(self, name: str, expected: str) -> InvalidRequest:
        return InvalidRequest(f"{self.path}.{name}: {expected}")

    def string(self, name: str, pattern: str | None = None) -> str:
        value = self.data.get(name)
        if not isinstance(value, str) or not value or (pattern and not re.fullmatch(pattern, value)):
            raise self._fail(name, "required, a valid string")
        return value

    def optional_string(self, name: str, pattern: str | None = None) -> str | None:
        if self.data.get(name) is None:
            return None
        return self.string(name, pattern)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.data.get(name)
        if value not in choices:
            raise self._fail(name, f"must be one of {', '.join(choices)}")
        return cast(str, value)

    def integer(self, name: str, required: bool = True) -> int:
        value = self.data.get(name, None if required else 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._fail(name, "must be a non-negative integer")
        return value

    def boolean(self, name: str, required: bool = True) -> bool:
        value = self.data.get(name, None if required else False)
        if not isinstance(value, bool):
            raise self._fail(name, "must be true or false")
        return value

    def mapping(self, name: str) -> Mapping[str, Any]:
        value = self.data.get(name)
        if not isinstance(value, Mapping):
            raise self._fail(name, "required, an object")
        return value

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list):
            raise self._fail(name, "required, a list")
        return value

    def strings(self, name: str, pattern: str | None, required: bool = True) -> list[str]:
        value = self.data.get(name, None if required else [])
        if not isinstance(value, list):
            raise self._fail(name, "required, a list of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or (pattern and not re.fullmatch(pattern, item)):
                raise InvalidRequest(f"{self.path}.{name}[{i}]: not a valid value")
        return value


def resolved_waits(settings_waits: Waits, request: Request) -> Waits:
    try:
        return parse_waits(request.waits, "input.waits", settings_waits)
    except InvalidSettings as exc:  # pragma: no cover - parse_request already checked the same rules
        raise InvalidRequest(str(exc)) from None


__all__ = [
    "ACTIONS",
    "MODES",
    "RESUME_POINTS",
    "WAIT_FIELDS",
    "Distribution",
    "DocumentSettings",
    "Failure",
    "Request",
    "Rotation",
    "parse_request",
    "resolved_waits",
]
