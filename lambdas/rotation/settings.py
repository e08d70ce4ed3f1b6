"""The one validator of the rotation settings (docs/design.md §1), shared by the CDK app and the Lambdas.

`load_settings(dict)` returns frozen dataclasses or raises `InvalidSettings` whose message starts with the
path of the bad field (`users[2].profile: ...`). Unknown keys are refused so that a typo is not silently
ignored. `Settings.to_dict()` is the JSON the CDK app bundles; `load_settings(s.to_dict()) == s`.

The patterns below are also the `allowedPattern`s of the Run Command document's parameters (a contract test
compares them): they must stay valid in both Python `re` and Go RE2 (no look-arounds, no backreferences).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from keyrotation.contract import PATTERNS

from rotation.errors import InvalidSettings
from rotation.names import check_unique_stems
from rotation.validate import integer, mapping, only, sequence, string, unique

__all__ = [
    "CREDENTIALS_FILE_PATTERN",
    "FILE_OWNER_PATTERN",
    "INSTANCE_ID_PATTERN",
    "MANAGED_PATH_PATTERN",
    "PROFILE_PATTERN",
    "RELOAD_HOOK_PATTERN",
    "SECRET_ID_PATTERN",
    "SERVER_GROUP_PATTERN",
    "USER_NAME_PATTERN",
    "Alerts",
    "Defaults",
    "InvalidSettings",
    "Schedule",
    "ServerGroup",
    "Settings",
    "Tag",
    "User",
    "Waits",
    "load_settings",
    "load_settings_file",
    "parse_waits",
    "secret_name",
]

# IAM user names: [\w+=,.@-]{1,64}, written out in ASCII (Python's \w is Unicode-aware, Go's is not).
USER_NAME_PATTERN = r"^[A-Za-z0-9_+=,.@-]{1,64}$"
MANAGED_PATH_PATTERN = r"^/([A-Za-z0-9_+=,.@-]+/)*$"
# Absolute Linux path of ≤ 16 segments of ≤ 60 characters; a segment may start with at most one dot, so `.`,
# `..` and `..x` are impossible. (The document's pattern also admits Windows drive paths; this is a subset.)
CREDENTIALS_FILE_PATTERN = r"^(/\.?[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,59}){1,16}$"
PROFILE_PATTERN = PATTERNS["Profile"]  # the document's own (keyrotation.contract)
# A file name in the agent's hooks directory; starts with a letter or digit (no `.`/`..` escapes).
RELOAD_HOOK_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CONFIG_RULE_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
# Portable POSIX user name.
FILE_OWNER_PATTERN = PATTERNS["FileOwner"]
INSTANCE_ID_PATTERN = r"^(mi-[0-9a-f]{17}|i-[0-9a-f]{8,17})$"
SERVER_GROUP_PATTERN = r"^[a-z0-9-]{1,32}$"
# One scheduled execution starts at most this many rotations (docs/config.md "Limits"): its inline Map
# writes ≈ 8 history events per user (Step Functions keeps 25,000 per execution) and holds the due list plus
# one short result per user in its 256 KiB state.
MAX_USERS_PER_RUN = 100_000
MAX_USERS_PER_RUN_DEFAULT = 10_000
# Rotations the scheduled run starts per minute: each start soon makes ~10 IAM, STS, Secrets Manager and SSM
# calls, whose quotas are account-wide and cannot be raised (docs/design.md, "The scheduled run").
STARTS_PER_MINUTE_DEFAULT = 180
MAX_STARTS_PER_MINUTE = 1200
OVERDUE_ALARM_DAYS_DEFAULT = 7
NOTICE_DAYS_DEFAULT = 7
# A key's owner: an e-mail address, or an https webhook (SNS subscription protocols email and https).
OWNER_PATTERN = r"^([A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}|https://[^\s]{1,492})$"

# Secrets Manager names: letters, digits and /_+=.@-, starting with a letter or digit (as the document wants).
SECRET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9/_+=.@-]{0,511}$"  # noqa: S105 (a name pattern)
SECRET_PREFIX_PATTERN = r"^[A-Za-z0-9/_+=.@-]{0,256}$"  # noqa: S105
TAG_KEY_PATTERN = r"^[A-Za-z0-9 _.:/=+@-]{1,128}$"
TAG_VALUE_PATTERN = r"^[A-Za-z0-9 _.:/=+@-]{1,256}$"
MAX_CONCURRENCY_PATTERN = r"^([1-9][0-9]{0,4}|[1-9][0-9]?%|100%)$"
SCHEDULE_PATTERN = r"^(cron|rate|at)\(.{1,250}\)$"
TIMEZONE_PATTERN = r"^[A-Za-z0-9_+/-]{1,64}$"
EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$"

# The SSM Agent of a hybrid node owns this profile of this file and rewrites it (docs/design.md §1).
AGENT_CREDENTIALS_FILE = "/root/.aws/credentials"

WAIT_FIELDS = ("verify_interval_seconds", "poll_seconds", "max_polls", "observe_seconds", "grace_seconds")
# Upper bounds keep the longest path through the rotation machine (two distributions of max_polls polls, the
# observation and the grace period: about 120 days at these maxima) well inside a Standard execution's one
# year, so no run can end inside a Wait, outside every Catch, with no rollback and no alert.
WAIT_MAXIMA = {
    "verify_interval_seconds": 60,
    "poll_seconds": 3_600,
    "max_polls": 1_000,
    "observe_seconds": 7 * 86_400,
    "grace_seconds": 30 * 86_400,
}


@dataclass(frozen=True)
class Waits:
    verify_interval_seconds: int
    poll_seconds: int
    max_polls: int
    observe_seconds: int
    grace_seconds: int

    def to_dict(self) -> dict[str, int]:
        return {field: getattr(self, field) for field in WAIT_FIELDS}


@dataclass(frozen=True)
class Defaults:
    max_key_age_days: int
    waits: Waits
    usage_margin_seconds: int
    command_timeout_seconds: int
    max_concurrency: str


@dataclass(frozen=True)
class Schedule:
    expression: str
    timezone: str
    duration_hours: int
    cutoff_hours: int
    # Due users one scheduled run starts (the rest are deferred to the next run); the run does not wait for
    # the rotations it starts, so this bounds a run's length (max_users_per_run / starts_per_minute), not
    # Step Functions' quotas (≈ 10 history events per 100 users checked, state of constant size).
    max_users_per_run: int = MAX_USERS_PER_RUN_DEFAULT
    starts_per_minute: int = STARTS_PER_MINUTE_DEFAULT
    # The watchdog counts users whose key is overdue by more than this (a schedule that fell behind).
    overdue_alarm_days: int = OVERDUE_ALARM_DAYS_DEFAULT
    # Owners hear this many days before their user's key is due (0: no advance notice).
    notice_days: int = NOTICE_DAYS_DEFAULT


@dataclass(frozen=True)
class Alerts:
    email: str | None
    # An AWS Config rule that judges key age (the managed rule access-keys-rotated, under the name it was
    # deployed with): after a rotation deletes an old key, notify asks Config to evaluate it again.
    config_rule: str | None = None


@dataclass(frozen=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True)
class ServerGroup:
    name: str
    tag: Tag | None
    instance_ids: tuple[str, ...]


@dataclass(frozen=True)
class User:
    name: str
    server_group: str
    credentials_file: str
    profile: str
    file_owner: str
    reload_hook: str | None
    max_key_age_days: int | None
    allow_offline: bool
    # Not rotated by the scheduled run until this day (inclusive), for the stated reason; the audit reports
    # the exemption, and flags it once it has expired.
    exempt_until: date | None = None
    exempt_reason: str | None = None
    # Who hears about this user's key (an e-mail address, or an https webhook of a chat tool): SNS delivers
    # the notices and results tagged with it (message attribute `owner`) through a filtered subscription.
    owner: str | None = None

    def exempt_on(self, day: date) -> bool:
        return self.exempt_until is not None and day <= self.exempt_until


@dataclass(frozen=True)
class Settings:
    managed_path: str
    secret_prefix: str
    defaults: Defaults
    schedule: Schedule
    alerts: Alerts
    server_groups: tuple[ServerGroup, ...]
    users: tuple[User, ...]

    def user(self, name: str) -> User | None:
        """The user's entry; IAM user names are unique case-insensitively, lookups are exact."""
        return next((user for user in self.users if user.name == name), None)

    def group(self, name: str) -> ServerGroup:
        return next(group for group in self.server_groups if group.name == name)

    def secret_id(self, user: User) -> str:
        """The user's secret: `secret_prefix + server_group + "/" + name` (docs/design.md §3)."""
        return secret_name(self.secret_prefix, user.server_group, user.name)

    def max_key_age_days(self, user: User) -> int:
        return user.max_key_age_days if user.max_key_age_days is not None else self.defaults.max_key_age_days

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form; `load_settings` of it gives back an equal `Settings`."""
        return {
            "managed_path": self.managed_path,
            "secret_prefix": self.secret_prefix,
            "defaults": {
                "max_key_age_days": self.defaults.max_key_age_days,
                "waits": self.defaults.waits.to_dict(),
                "usage_margin_seconds": self.defaults.usage_margin_seconds,
                "command_timeout_seconds": self.defaults.command_timeout_seconds,
                "max_concurrency": self.defaults.max_concurrency,
            },
            "schedule": {
                "expression": self.schedule.expression,
                "timezone": self.schedule.timezone,
                "duration_hours": self.schedule.duration_hours,
                "cutoff_hours": self.schedule.cutoff_hours,
                "max_users_per_run": self.schedule.max_users_per_run,
                "starts_per_minute": self.schedule.starts_per_minute,
                "overdue_alarm_days": self.schedule.overdue_alarm_days,
                "notice_days": self.schedule.notice_days,
            },
            "alerts": {"email": self.alerts.email,
                       **({"config_rule": self.alerts.config_rule} if self.alerts.config_rule else {})},
            "server_groups": [_group_to_dict(group) for group in self.server_groups],
            "users": [
                {
                    "name": user.name,
                    "server_group": user.server_group,
                    "credentials_file": user.credentials_file,
                    "profile": user.profile,
                    "file_owner": user.file_owner,
                    "reload_hook": user.reload_hook,
                    "max_key_age_days": user.max_key_age_days,
                    "allow_offline": user.allow_offline,
                    **({"exempt_until": user.exempt_until.isoformat(), "exempt_reason": user.exempt_reason}
                       if user.exempt_until is not None else {}),
                    **({"owner": user.owner} if user.owner is not None else {}),
                }
                for user in self.users
            ],
        }


def _group_to_dict(group: ServerGroup) -> dict[str, Any]:
    if group.tag is not None:
        return {"name": group.name, "tag": {"key": group.tag.key, "value": group.tag.value}}
    return {"name": group.name, "instance_ids": list(group.instance_ids)}


def secret_name(secret_prefix: str, server_group: str, user: str) -> str:
    """The name of a user's secret. Grouping by server group lets one name-prefix policy per group
    (`secret_prefix + group + "/*"`) grant a group's servers exactly its users' secrets."""
    return f"{secret_prefix}{server_group}/{user}"


def load_settings_file(path: str | Path) -> Settings:
    """Read a JSON settings file (the form the CDK app bundles into the Lambda asset).

    The file is read on every call; its validation is done once per distinct content (`Settings` is
    immutable): with thousands of users it costs more than the step itself, on every invocation.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSettings(f"cannot read settings file {path}: {exc.strerror}") from exc
    return _settings_from_text(str(path), text)


@functools.lru_cache(maxsize=8)
def _settings_from_text(path: str, text: str) -> Settings:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSettings(f"settings file {path} is not JSON: {exc.msg} at line {exc.lineno}") from exc
    return load_settings(data)


def load_settings(data: Any) -> Settings:
    """Validate the whole settings document; raise `InvalidSettings` naming the first bad field."""
    root = mapping(data, "settings")
    only(root, "settings", required={"managed_path", "secret_prefix", "defaults", "schedule",
                                      "server_groups", "users"}, optional={"alerts"})
    managed_path = string(root["managed_path"], "managed_path", MANAGED_PATH_PATTERN,
                          "an IAM path like /keyrotation/")
    if len(managed_path) > 512:
        raise InvalidSettings("managed_path: longer than 512 characters")
    secret_prefix = string(root["secret_prefix"], "secret_prefix", SECRET_PREFIX_PATTERN,
                           "letters, digits and /_+=.@- (may be empty)")
    defaults = _defaults(root["defaults"], "defaults")
    schedule = _schedule(root["schedule"], "schedule")
    alerts = _alerts(root.get("alerts", {"email": None}), "alerts")
    groups = tuple(_server_group(item, f"server_groups[{i}]")
                   for i, item in enumerate(sequence(root["server_groups"], "server_groups")))
    unique([group.name for group in groups], "server_groups", "name")
    group_names = {group.name for group in groups}
    users = tuple(_user(item, f"users[{i}]", group_names, secret_prefix)
                  for i, item in enumerate(sequence(root["users"], "users")))
    # IAM user names are unique regardless of case.
    unique([user.name.lower() for user in users], "users", "name")
    check_unique_stems([user.name for user in users], "users")
    _no_shared_profiles(users)
    return Settings(managed_path=managed_path, secret_prefix=secret_prefix, defaults=defaults,
                    schedule=schedule, alerts=alerts, server_groups=groups, users=users)


def parse_waits(data: Any, path: str, base: Waits | None = None) -> Waits:
    """Validate a `waits` mapping; with `base`, every field is optional and overrides the base value."""
    raw = mapping(data, path)
    if base is None:
        only(raw, path, required=set(WAIT_FIELDS), optional=set())
        values = {}
    else:
        only(raw, path, required=set(), optional=set(WAIT_FIELDS))
        values = base.to_dict()
    for field in raw:
        values[field] = integer(raw[field], f"{path}.{field}", minimum=1 if field == "max_polls" else 0,
                                maximum=WAIT_MAXIMA[field])
    return Waits(**values)


def _defaults(data: Any, path: str) -> Defaults:
    raw = mapping(data, path)
    only(raw, path, required={"max_key_age_days", "waits", "usage_margin_seconds",
                              "command_timeout_seconds", "max_concurrency"}, optional=set())
    return Defaults(
        max_key_age_days=integer(raw["max_key_age_days"], f"{path}.max_key_age_days", minimum=1),
        waits=parse_waits(raw["waits"], f"{path}.waits"),
        usage_margin_seconds=integer(raw["usage_margin_seconds"], f"{path}.usage_margin_seconds", minimum=0),
        # SendCommand's TimeoutSeconds accepts 30..2592000.
        command_timeout_seconds=integer(raw["command_timeout_seconds"], f"{path}.command_timeout_seconds",
                                        minimum=30, maximum=2_592_000),
        max_concurrency=string(raw["max_concurrency"], f"{path}.max_concurrency", MAX_CONCURRENCY_PATTERN,
                               'a count like "50" or a percentage like "10%"'),
    )


def _schedule(data: Any, path: str) -> Schedule:
    raw = mapping(data, path)
    if "max_parallel_users" in raw:
        raise InvalidSettings(
            f"{path}.max_parallel_users: no longer a setting: the scheduled run starts rotations without "
            "waiting for them; remove it (schedule.starts_per_minute sets how fast it starts them)"
        )
    only(raw, path, required={"expression", "timezone", "duration_hours", "cutoff_hours"},
         optional={"max_users_per_run", "starts_per_minute", "overdue_alarm_days", "notice_days"})
    duration = integer(raw["duration_hours"], f"{path}.duration_hours", minimum=1, maximum=24)
    cutoff = integer(raw["cutoff_hours"], f"{path}.cutoff_hours", minimum=0, maximum=23)
    if cutoff >= duration:
        raise InvalidSettings(f"{path}.cutoff_hours: must be less than duration_hours ({duration})")
    return Schedule(
        expression=string(raw["expression"], f"{path}.expression", SCHEDULE_PATTERN,
                          "cron(...), rate(...) or at(...)"),
        timezone=string(raw["timezone"], f"{path}.timezone", TIMEZONE_PATTERN, "an IANA time zone"),
        duration_hours=duration,
        cutoff_hours=cutoff,
        max_users_per_run=integer(raw.get("max_users_per_run", MAX_USERS_PER_RUN_DEFAULT),
                                  f"{path}.max_users_per_run", minimum=1, maximum=MAX_USERS_PER_RUN),
        starts_per_minute=integer(raw.get("starts_per_minute", STARTS_PER_MINUTE_DEFAULT),
                                  f"{path}.starts_per_minute", minimum=1, maximum=MAX_STARTS_PER_MINUTE),
        overdue_alarm_days=integer(raw.get("overdue_alarm_days", OVERDUE_ALARM_DAYS_DEFAULT),
                                   f"{path}.overdue_alarm_days", minimum=1, maximum=365),
        notice_days=integer(raw.get("notice_days", NOTICE_DAYS_DEFAULT), f"{path}.notice_days", minimum=0,
                            maximum=90),
    )


def _alerts(data: Any, path: str) -> Alerts:
    raw = mapping(data, path)
    only(raw, path, required=set(), optional={"email", "config_rule"})
    email = raw.get("email")
    if email is not None:
        email = string(email, f"{path}.email", EMAIL_PATTERN, "an e-mail address or null")
    rule = raw.get("config_rule")
    if rule is not None:
        rule = string(rule, f"{path}.config_rule", CONFIG_RULE_PATTERN,
                      "an AWS Config rule name ([A-Za-z0-9_-]{1,128}), e.g. access-keys-rotated")
    return Alerts(email=email, config_rule=rule)


def _server_group(data: Any, path: str) -> ServerGroup:
    raw = mapping(data, path)
    only(raw, path, required={"name"}, optional={"tag", "instance_ids"})
    name = string(raw["name"], f"{path}.name", SERVER_GROUP_PATTERN, "[a-z0-9-]{1,32}")
    if ("tag" in raw) == ("instance_ids" in raw):
        raise InvalidSettings(f"{path}: needs exactly one of tag or instance_ids")
    if "tag" in raw:
        tag_raw = mapping(raw["tag"], f"{path}.tag")
        only(tag_raw, f"{path}.tag", required={"key", "value"}, optional=set())
        key = string(tag_raw["key"], f"{path}.tag.key", TAG_KEY_PATTERN, "a tag key")
        if key.lower().startswith("aws:"):
            raise InvalidSettings(f"{path}.tag.key: the aws: prefix is reserved")
        value = string(tag_raw["value"], f"{path}.tag.value", TAG_VALUE_PATTERN, "a tag value")
        return ServerGroup(name=name, tag=Tag(key=key, value=value), instance_ids=())
    ids_raw = sequence(raw["instance_ids"], f"{path}.instance_ids")
    if not ids_raw:
        raise InvalidSettings(f"{path}.instance_ids: must not be empty")
    ids = tuple(string(item, f"{path}.instance_ids[{i}]", INSTANCE_ID_PATTERN,
                       "mi-<17 hex> or i-<8..17 hex>")
                for i, item in enumerate(ids_raw))
    unique(list(ids), f"{path}.instance_ids", None)
    return ServerGroup(name=name, tag=None, instance_ids=ids)


def _user(data: Any, path: str, group_names: set[str], secret_prefix: str) -> User:
    raw = mapping(data, path)
    only(raw, path, required={"name", "server_group", "credentials_file", "profile", "file_owner"},
         optional={"reload_hook", "max_key_age_days", "allow_offline", "exempt_until", "exempt_reason",
                   "owner"})
    name = string(raw["name"], f"{path}.name", USER_NAME_PATTERN, "an IAM user name ([\\w+=,.@-]{1,64})")
    group = string(raw["server_group"], f"{path}.server_group", None, "")
    if group not in group_names:
        raise InvalidSettings(f"{path}.server_group: no server group named {group!r}")
    secret = secret_name(secret_prefix, group, name)
    if not re.fullmatch(SECRET_ID_PATTERN, secret):
        raise InvalidSettings(
            f"{path}.name: the user's secret name {secret[:80]!r} (secret_prefix + server_group + '/' + "
            "name) is not a valid secret name: letters, digits and /_+=.@-, starting with a letter or digit, "
            "at most 512 characters"
        )
    credentials_file = string(raw["credentials_file"], f"{path}.credentials_file", None, "")
    if re.match(r"^([A-Za-z]:|\\\\)", credentials_file) or "\\" in credentials_file:
        raise InvalidSettings(
            f"{path}.credentials_file: {credentials_file[:80]!r} is a Windows path; Windows servers are not "
            "supported yet (Linux only: prepare also refuses a Windows server in a group)"
        )
    if not credentials_file.startswith("/"):
        raise InvalidSettings(f"{path}.credentials_file: must be an absolute path")
    if any(part in {".", ".."} for part in credentials_file.split("/")):
        raise InvalidSettings(f"{path}.credentials_file: must not contain . or .. segments")
    if not re.fullmatch(CREDENTIALS_FILE_PATTERN, credentials_file):
        raise InvalidSettings(f"{path}.credentials_file: must be a plain absolute file path (letters, "
                              "digits, _@+-. ; at most 16 parts of at most 60 characters; no trailing slash)")
    profile = string(raw["profile"], f"{path}.profile", PROFILE_PATTERN,
                     "[A-Za-z0-9_.-]{1,64} starting with a letter or digit")
    if credentials_file == AGENT_CREDENTIALS_FILE:
        # The SSM Agent rewrites this file when it refreshes its own credentials (the default profile) with
        # no lock shared with anyone: any profile of ours in it could be lost; the agent refuses it too.
        raise InvalidSettings(f"{path}.credentials_file: {AGENT_CREDENTIALS_FILE} belongs to the SSM Agent, "
                              f"which rewrites it (profile {profile!r} could be lost); use another file")
    reload_hook = raw.get("reload_hook")
    if reload_hook is not None:
        reload_hook = string(reload_hook, f"{path}.reload_hook", RELOAD_HOOK_PATTERN,
                             "a file name in the agent's hooks directory "
                             "([A-Za-z0-9_.-]{1,64}, starting with a letter or digit)")
    max_age = raw.get("max_key_age_days")
    if max_age is not None:
        max_age = integer(max_age, f"{path}.max_key_age_days", minimum=1)
    allow_offline = raw.get("allow_offline", False)
    if not isinstance(allow_offline, bool):
        raise InvalidSettings(f"{path}.allow_offline: must be true or false")
    exempt_until, exempt_reason = _exemption(raw, path)
    owner = raw.get("owner")
    if owner is not None:
        owner = string(owner, f"{path}.owner", OWNER_PATTERN,
                       "an e-mail address or an https:// webhook URL (at most 500 characters)")
    return User(
        name=name,
        server_group=group,
        credentials_file=credentials_file,
        profile=profile,
        file_owner=string(raw["file_owner"], f"{path}.file_owner", FILE_OWNER_PATTERN, "a POSIX user name"),
        reload_hook=reload_hook,
        max_key_age_days=max_age,
        allow_offline=allow_offline,
        exempt_until=exempt_until,
        exempt_reason=exempt_reason,
        owner=owner,
    )


def _exemption(raw: Mapping[str, Any], path: str) -> tuple[date | None, str | None]:
    until, reason = raw.get("exempt_until"), raw.get("exempt_reason")
    if until is None:
        if reason is not None:
            raise InvalidSettings(f"{path}.exempt_reason: given without exempt_until")
        return None, None
    day: date | None
    if isinstance(until, date) and not isinstance(until, datetime):  # YAML reads 2027-01-31 as a date
        day = until
    else:
        try:
            day = date.fromisoformat(str(until)) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(until)) else None
        except ValueError:
            day = None
        if day is None:
            raise InvalidSettings(f"{path}.exempt_until: {str(until)[:40]!r} is not a date (YYYY-MM-DD)")
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidSettings(f"{path}.exempt_reason: an exemption needs its reason (who decided, and why)")
    if len(reason) > 500:
        raise InvalidSettings(f"{path}.exempt_reason: longer than 500 characters")
    return day, reason.strip()


def _no_shared_profiles(users: tuple[User, ...]) -> None:
    """Two users writing the same profile of the same file on the same servers would undo each other."""
    seen: dict[tuple[str, str, str], int] = {}
    for i, user in enumerate(users):
        key = (user.server_group, user.credentials_file, user.profile)
        if key in seen:
            raise InvalidSettings(f"users[{i}].profile: users[{seen[key]}] already writes profile "
                                  f"{user.profile!r} of {user.credentials_file} "
                                  f"on server group {user.server_group!r}")
        seen[key] = i
