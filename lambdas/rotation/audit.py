"""The audit: which key each managed user has, which key each of its servers holds, and the account's
unmanaged old keys. Read-only everywhere: IAM and Secrets Manager are only read, the servers run the
document's `audit` action (the agent reports the key id a profile holds, writes nothing, calls nothing), and
the report goes to the stack's reports bucket and a summary to the topic (rotation/audit_report.py).

One call (`audit_page`) audits the next `AUDIT_PAGE` users: their keys and the secret's AWSCURRENT key id,
an audit command per user to the group's online servers, and the servers' answers, read until every one
answered or `wait_seconds` passed. A server is `current` (holds AWSCURRENT's key), `stale` (another key of the
user, e.g. the old one), `unknown_key`, `missing` (no file or no profile), `offline` (not online: not asked),
`unsupported` (cannot run the document) or `unreachable` (asked, no answer in time, or the agent failed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from keyrotation.contract import parse_result

from rotation import fleet, secrets
from rotation.errors import RotationError, UnknownUser
from rotation.fleet import Targets, resolve_targets
from rotation.keys import AccessKey, error_code, list_keys
from rotation.settings import ServerGroup, Settings, User
from rotation.state import DocumentSettings
from rotation.usage import last_use

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

AUDIT_PAGE = 20  # users per call: their audit commands run at once, and are read together
POLL_SECONDS = 5.0
SERVER_STATES = ("current", "stale", "unknown_key", "missing", "offline", "unsupported", "unreachable")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_facts(iam: IAMClient, key: AccessKey, now: datetime) -> dict[str, Any]:
    use = last_use(iam, key.key_id)
    return {"key_id": key.key_id, "status": "Active" if key.active else "Inactive",
            "created": _iso(key.created), "age_days": (now - key.created).days,
            "last_used": _iso(use.at), "last_used_service": use.service, "last_used_region": use.region}


def user_facts(iam: IAMClient, sm: SecretsManagerClient, settings: Settings, user: User,
               now: datetime) -> dict[str, Any]:
    """The user's keys (with last use), its secret's AWSCURRENT key id, compliance and exemption."""
    facts: dict[str, Any] = {"user": user.name, "server_group": user.server_group}
    try:
        user_keys = list_keys(iam, user.name)
    except UnknownUser as exc:
        return {**facts, "error": str(exc)}
    except ClientError as exc:
        if error_code(exc) == "AccessDenied":
            return {**facts, "error": f"IAM user {user.name!r} is not under the managed path (AccessDenied)"}
        raise
    max_age = settings.max_key_age_days(user)
    facts["keys"] = [key_facts(iam, key, now) for key in user_keys]
    try:
        state = secrets.read_state(sm, settings.secret_id(user))
        facts["current_key_id"] = state.current.access_key_id if state.current else None
    except (ClientError, RotationError) as exc:  # a secret the audit cannot read is reported, not fatal
        facts["current_key_id"] = None
        facts["secret_error"] = type(exc).__name__
    facts["max_key_age_days"] = max_age
    overdue = [key.key_id for key in user_keys if key.active and now - key.created > timedelta(days=max_age)]
    facts["compliant"] = not overdue
    facts["overdue_keys"] = overdue
    if user.exempt_until is not None:
        facts["exemption"] = {"until": user.exempt_until.isoformat(), "reason": user.exempt_reason,
                              "expired": not user.exempt_on(now.date())}
    return facts


def classify_server(result: Mapping[str, Any] | None, current: str | None,
                    others: set[str]) -> tuple[str, str]:
    """(state, detail) of one server from its agent's audit result line."""
    if result is None:
        return "unreachable", "no result line"
    if result.get("status") != "ok":
        return "unreachable", f"{result.get('error')}: {str(result.get('message') or '')[:120]}"
    held = result.get("held")
    if held in ("no_file", "no_profile"):
        return "missing", str(held)
    key = str(result.get("access_key_id") or "")
    if current and key == current:
        return "current", key
    if key in others:
        return "stale", key
    return "unknown_key", key or "empty key id"


@dataclass(frozen=True)
class Sent:
    user: User
    command_ids: tuple[str, ...]
    targets: Targets


def send_audits(ssm: SSMClient, settings: Settings, document: str,
                page: Sequence[tuple[User, dict[str, Any]]], timeout_seconds: int) -> list[Sent]:
    groups: dict[str, Targets] = {}
    sent = []
    for user, facts in page:
        if "error" in facts:
            continue
        group: ServerGroup = settings.group(user.server_group)
        if group.name not in groups:
            groups[group.name] = resolve_targets(ssm, group)
        targets = groups[group.name]
        command_ids: list[str] = []
        if targets.online:
            command_ids = fleet.send(
                ssm, document=document, targets=targets.online, secret_id=settings.secret_id(user),
                key_id=facts.get("current_key_id") or "",
                settings=DocumentSettings(credentials_file=user.credentials_file, profile=user.profile,
                                          file_owner=user.file_owner, reload_hook=None),
                action="audit", max_concurrency=settings.defaults.max_concurrency,
                timeout_seconds=timeout_seconds, comment=f"keyrotation audit {user.name}")
        sent.append(Sent(user, tuple(command_ids), targets))
    return sent


def collect(ssm: SSMClient, sent: Sequence[Sent], *, wait_seconds: float, sleep: Callable[[float], None],
            monotonic: Callable[[], float]) -> dict[str, dict[str, Any]]:
    """Each user's invocations, read until none is pending or `wait_seconds` passed."""
    deadline = monotonic() + wait_seconds
    while True:
        invocations = {s.user.name: {item["InstanceId"]: item for c in s.command_ids
                                     for item in fleet.invocations(ssm, c)} for s in sent}
        pending = any(
            i.get("Status") in fleet.PENDING_STATUSES or instance not in invocations[s.user.name]
            for s in sent for instance in s.targets.online
            for i in [invocations[s.user.name].get(instance, {})]
        )
        if not pending or monotonic() >= deadline:
            return invocations
        sleep(POLL_SECONDS)


def servers_of(sent: Sent, invocations: Mapping[str, Any],
               facts: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    current = facts.get("current_key_id")
    others = {k["key_id"] for k in facts.get("keys", [])} - {current}
    servers: dict[str, dict[str, str]] = {}
    for instance in sent.targets.online:
        invocation = invocations.get(instance)
        if invocation is None or invocation.get("Status") in fleet.PENDING_STATUSES:
            servers[instance] = {"state": "unreachable", "detail": "no answer in time"}
            continue
        output = "\n".join(str(p.get("Output") or "") for p in invocation.get("CommandPlugins", []))
        state, detail = classify_server(parse_result(output), current, others)
        servers[instance] = {"state": state, "detail": detail}
    for instance, ping in sent.targets.offline:
        servers[instance] = {"state": "offline", "detail": ping}
    for instance, why in sent.targets.unsupported:
        servers[instance] = {"state": "unsupported", "detail": why}
    return servers


def audit_page(settings: Settings, *, iam: IAMClient, sm: SecretsManagerClient, ssm: SSMClient, document: str,
               users: Sequence[User], now: datetime, wait_seconds: float, sleep: Callable[[float], None],
               monotonic: Callable[[], float]) -> list[dict[str, Any]]:
    """The audit of `users` (one page): a report entry per user, servers included."""
    page = [(user, user_facts(iam, sm, settings, user, now)) for user in users]
    sent = send_audits(ssm, settings, document, page, timeout_seconds=max(30, int(wait_seconds)))
    invocations = collect(ssm, sent, wait_seconds=wait_seconds, sleep=sleep, monotonic=monotonic)
    by_user = {s.user.name: s for s in sent}
    entries = []
    for user, facts in page:
        if user.name in by_user:
            facts["servers"] = servers_of(by_user[user.name], invocations[user.name], facts)
            counts = {state: 0 for state in SERVER_STATES}
            for server in facts["servers"].values():
                counts[server["state"]] += 1
            facts["server_counts"] = counts
        entries.append(facts)
    return entries


def unmanaged_old_keys(iam: IAMClient, settings: Settings, now: datetime, *, sleep: Callable[[float], None],
                       attempts: int = 20) -> list[dict[str, Any]]:
    """The compliance gap: IAM users of the account, not managed here, with an active access key older than
    `defaults.max_key_age_days` (from the IAM credential report, at most 4 hours old)."""
    for _ in range(attempts):
        if iam.generate_credential_report()["State"] == "COMPLETE":
            break
        sleep(2.0)
    content = iam.get_credential_report()["Content"]
    text = content.decode("utf-8") if isinstance(content, bytes) else str(content)
    managed = {user.name for user in settings.users}
    limit = timedelta(days=settings.defaults.max_key_age_days)
    found = []
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("user") in managed or row.get("user") == "<root_account>":
            continue
        for n in ("1", "2"):
            if row.get(f"access_key_{n}_active") != "true":
                continue
            created = _parse_time(row.get(f"access_key_{n}_last_rotated"))
            if created is not None and now - created > limit:
                found.append({"user": row["user"], "arn": row.get("arn"), "key": n,
                              "created": _iso(created), "age_days": (now - created).days})
    return found


def _parse_time(text: str | None) -> datetime | None:
    if not text or text in ("N/A", "not_supported", "no_information"):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
