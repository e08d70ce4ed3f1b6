"""The servers of a user: resolve them, send them the Run Command document, read what they answered.

A server counts as confirmed only when its invocation ended in `Success` **and** its output carries the
agent's result line (`KEYROTATION_RESULT {json}`, docs/design.md §5) with status ok and the new key id:
`Success` alone only means a script exited 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError
from keyrotation.contract import RESULT_MARKER, command_parameters, parse_result

from rotation.errors import NoTargets, TargetsOffline, TargetsUnsupported
from rotation.keys import error_code
from rotation.settings import ServerGroup
from rotation.state import DocumentSettings, Failure

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

# The document's Action values (keyrotation.contract.ACTIONS): a rotation's two passes, and the read-only
# audit (rotation/audit.py).
DocumentAction = Literal["rotate", "verify", "audit"]
BATCH_SIZE = 50  # SendCommand accepts at most 50 InstanceIds
PENDING_STATUSES = frozenset({"Pending", "InProgress", "Delayed"})
MAX_NAMED = 20  # servers named in one error message; the rest are counted
# The document passes its parameters as environment variables (`interpolationType: ENV_VAR`), which SSM Agents
# before this version ignore: every SSM_* variable would be empty on such a server.
MIN_AGENT_VERSION = (3, 3, 2746, 0)
NOT_REGISTERED = "not registered"


@dataclass(frozen=True)
class Targets:
    online: tuple[str, ...]
    offline: tuple[tuple[str, str], ...]  # (instance id, ping status or "not registered")
    unsupported: tuple[tuple[str, str], ...] = ()  # (instance id, why the document cannot run there)

    def status(self, instance_id: str) -> str:
        """"Online", a ping status, "not registered", or "unsupported: <why>"."""
        if instance_id in self.online:
            return "Online"
        reason = dict(self.unsupported).get(instance_id)
        if reason is not None:
            return f"unsupported: {reason}"
        return dict(self.offline).get(instance_id, NOT_REGISTERED)

    @property
    def members(self) -> tuple[str, ...]:
        """Every registered instance the group matches now, whatever its state."""
        return tuple(sorted({*self.online, *(i for i, ping in self.offline if ping != NOT_REGISTERED),
                             *(i for i, _ in self.unsupported)}))


def _agent_version(text: object) -> tuple[int, ...] | None:
    parts = str(text or "").split(".")
    return tuple(int(p) for p in parts) if parts and all(p.isdigit() for p in parts) else None


def unsupported_reason(info: Mapping[str, Any], group: ServerGroup) -> str | None:
    """Why the document cannot rotate the key on this node, or None. Known before anything changes."""
    instance_id = str(info["InstanceId"])
    if group.tag is not None and instance_id.startswith("i-"):
        return ("an EC2 instance matched by the group's tag: tag groups are for hybrid-activated servers "
                "(mi-…); list EC2 instances by id in an instance_ids group")
    platform = str(info.get("PlatformType") or "unknown")
    if platform != "Linux":
        return f"{platform} servers are not supported yet (Linux only)"
    version = info.get("AgentVersion")
    parsed = _agent_version(version)
    if parsed is None or parsed < MIN_AGENT_VERSION:
        shown = ".".join(map(str, MIN_AGENT_VERSION))
        return (f"SSM Agent {version or '(version unknown)'} is older than {shown}, which the document's "
                "environment-variable parameters need; update the agent")
    return None


def resolve_targets(ssm: SSMClient, group: ServerGroup) -> Targets:
    """The group's managed instances and whether each is online and able to run the document
    (DescribeInstanceInformation: ping status, platform, SSM Agent version)."""
    found: dict[str, str] = {}
    unsupported: dict[str, str] = {}
    if group.tag is not None:
        filters = [[{"Key": f"tag:{group.tag.key}", "Values": [group.tag.value]}]]
    else:
        filters = [[{"Key": "InstanceIds", "Values": list(batch)}] for batch in _batches(group.instance_ids)]
    for filter_set in filters:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Filters": filter_set, "MaxResults": 50}
            if token:
                kwargs["NextToken"] = token
            page = ssm.describe_instance_information(**kwargs)
            for info in page.get("InstanceInformationList", []):
                reason = unsupported_reason(info, group)
                if reason is not None:
                    unsupported[info["InstanceId"]] = reason
                else:
                    found[info["InstanceId"]] = info.get("PingStatus", "Unknown")
            token = page.get("NextToken")
            if not token:
                break
    for instance_id in group.instance_ids:
        if instance_id not in unsupported:
            found.setdefault(instance_id, NOT_REGISTERED)
    online = tuple(sorted(i for i, ping in found.items() if ping == "Online"))
    offline = tuple(sorted((i, ping) for i, ping in found.items() if ping != "Online"))
    return Targets(online=online, offline=offline, unsupported=tuple(sorted(unsupported.items())))


def check_targets(targets: Targets, group: ServerGroup, *, allow_offline: bool) -> None:
    where = (
        f"tag {group.tag.key}={group.tag.value}"
        if group.tag is not None
        else f"instance ids {', '.join(group.instance_ids)}"
    )
    if not targets.online and not targets.offline and not targets.unsupported:
        raise NoTargets(f"server group {group.name!r} ({where}) matches no managed instance")
    if targets.unsupported:
        raise TargetsUnsupported(
            f"{len(targets.unsupported)} servers of group {group.name!r} cannot run the rotation document: "
            f"{name_some(f'{i} ({why})' for i, why in targets.unsupported)}; nothing was changed"
        )
    if targets.offline and not allow_offline:
        raise TargetsOffline(
            f"{len(targets.offline)} of {len(targets.online) + len(targets.offline)} servers of "
            f"group {group.name!r} are not online: "
            f"{name_some(f'{i} ({ping})' for i, ping in targets.offline)}; "
            "bring them online, or start with allow_offline=true to skip them"
        )
    if not targets.online:
        raise NoTargets(f"server group {group.name!r} has no online instance")


@dataclass(frozen=True)
class Reach:
    """Who gets the document at a distribution, from prepare's targets and the group as it is now."""

    send: tuple[str, ...]  # online and able to run it: the command goes to these
    rotate_joined: tuple[str, ...] = ()  # verify pass: joined the group since prepare, get `rotate` instead
    blocked: tuple[tuple[str, str], ...] = ()  # (id, status) cannot be reached and still needs the new key
    skipped: tuple[tuple[str, str], ...] = ()  # (id, status) offline, skipped as allow_offline asks
    released: tuple[tuple[str, str], ...] = ()  # (id, status) confirmed the new key, gone since: not needed


def plan_reach(planned: Sequence[str], now: Targets, *, action: str, allow_offline: bool) -> Reach:
    """The rule for servers that leave, fail or join between prepare and a distribution (docs/design.md §5).

    SendCommand refuses the whole call if one listed node is deregistered or its agent is not running, so
    only nodes online now are listed. A planned server that cannot be reached:
    - in the `rotate` pass has not got the new key: it blocks the rotation (named; the others are still
      sent the key, and the old key stays Active), unless it is merely offline and allow_offline is set;
    - in the `verify` pass confirmed the new key in `rotate`: its leaving (decommissioned, untagged,
      unreachable) is no reason to keep the old key, so it is released, named in the plan, not verified.
    A server that joined the group since prepare gets the key: in `rotate` with the others, in `verify` by
    its own `rotate` command. One that joined and cannot be reached blocks, as any server without the key.
    """
    send_to: list[str] = []
    blocked: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    released: list[tuple[str, str]] = []
    for instance_id in planned:
        status = now.status(instance_id)
        if status == "Online":
            send_to.append(instance_id)
        elif action == "verify":
            released.append((instance_id, status))
        elif allow_offline and status not in (NOT_REGISTERED,) and not status.startswith("unsupported"):
            skipped.append((instance_id, status))
        else:
            blocked.append((instance_id, status))
    joined: list[str] = []
    for instance_id in now.members:
        if instance_id in planned:
            continue
        status = now.status(instance_id)
        if status == "Online":
            joined.append(instance_id)
        elif allow_offline and not status.startswith("unsupported"):
            skipped.append((instance_id, status))
        else:
            blocked.append((instance_id, status))
    if action == "verify":
        return Reach(tuple(send_to), tuple(joined), tuple(blocked), tuple(skipped), tuple(released))
    return Reach(tuple(send_to + joined), (), tuple(blocked), tuple(skipped), tuple(released))


def send(
    ssm: SSMClient,
    *,
    document: str,
    targets: Sequence[str],
    secret_id: str,
    key_id: str,
    settings: DocumentSettings,
    action: DocumentAction,
    max_concurrency: str,
    timeout_seconds: int,
    comment: str,
) -> list[str]:
    """SendCommand in batches of ≤ 50 instance ids. Parameters carry names and ids, never a secret."""
    parameters = command_parameters({
        "SecretId": secret_id,
        "CredentialsFile": settings.credentials_file,
        "Profile": settings.profile,
        "FileOwner": settings.file_owner,
        "ExpectedAccessKeyId": key_id,
        "ReloadHook": settings.reload_hook or "",
        "Action": action,
    })
    command_ids = []
    for batch in _batches(targets):
        response = ssm.send_command(
            DocumentName=document,
            InstanceIds=list(batch),
            Parameters=parameters,
            MaxConcurrency=max_concurrency,
            MaxErrors="0",
            TimeoutSeconds=timeout_seconds,
            Comment=comment[:100],
        )
        command_ids.append(response["Command"]["CommandId"])
    return command_ids


@dataclass(frozen=True)
class Outcome:
    confirmed: tuple[str, ...]
    pending: tuple[str, ...]
    failed: tuple[Failure, ...]
    settled: tuple[str, ...] = ()  # commands whose every server confirmed: no need to read them again


def read_outcome(
    ssm: SSMClient,
    command_ids: Iterable[str],
    targets: Sequence[str],
    key_id: str,
    settled: Iterable[str] = (),
) -> Outcome:
    """Classify every target from its invocation; targets without an invocation yet are pending.

    `settled` names commands an earlier poll found confirmed on every server of their batch: their servers
    count as confirmed without calling ListCommandInvocations again (a confirmation is final: the agent
    reported the new key and exited). Batches are `send`'s, in order; if the command ids do not match that
    layout, every command is read.
    """
    commands = list(command_ids)
    batches = [tuple(batch) for batch in _batches(targets)]
    batch_of = dict(zip(commands, batches, strict=True)) if len(commands) == len(batches) else {}
    skipped = {command_id for command_id in settled if command_id in batch_of}
    known = {instance_id for command_id in skipped for instance_id in batch_of[command_id]}
    found: dict[str, dict[str, Any]] = {}
    for command_id in commands:
        if command_id not in skipped:
            found.update((item["InstanceId"], item) for item in invocations(ssm, command_id))
    confirmed: list[str] = []
    pending: list[str] = []
    failed: list[Failure] = []
    for instance_id in targets:
        if instance_id in known:
            confirmed.append(instance_id)
            continue
        invocation = found.get(instance_id)
        if invocation is None or invocation.get("Status") in PENDING_STATUSES:
            pending.append(instance_id)
            continue
        failure = _judge(invocation, key_id)
        if failure is None:
            confirmed.append(instance_id)
        else:
            failed.append(failure)
    done = set(confirmed)
    settled_now = tuple(c for c, batch in batch_of.items() if all(i in done for i in batch))
    return Outcome(tuple(confirmed), tuple(pending), tuple(failed), settled=settled_now)


def invocations(ssm: SSMClient, command_id: str) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"CommandId": command_id, "Details": True}
        if token:
            kwargs["NextToken"] = token
        try:
            page = ssm.list_command_invocations(**kwargs)
        except ClientError as exc:
            # Just after SendCommand the invocations may not exist yet (eventual consistency).
            if error_code(exc) in {"InvocationDoesNotExist", "InvalidCommandId"}:
                return
            raise
        yield from page.get("CommandInvocations", [])  # type: ignore[misc]
        token = page.get("NextToken")
        if not token:
            return


def _judge(invocation: dict[str, Any], key_id: str) -> Failure | None:
    """None when confirmed, else why not."""
    instance_id = invocation["InstanceId"]
    status = str(invocation.get("Status", "Unknown"))
    details = str(invocation.get("StatusDetails") or status)
    output = "\n".join(str(plugin.get("Output") or "") for plugin in invocation.get("CommandPlugins", []))
    result = parse_result(output)
    if status != "Success":
        if result is not None and result.get("status") == "error":
            return Failure(instance_id, status, _agent_error(result))
        return Failure(instance_id, status, details if details != status else f"invocation {status}")
    if result is None:
        return Failure(instance_id, status, f"no {RESULT_MARKER} line in the output")
    if result.get("status") != "ok":
        return Failure(instance_id, status, _agent_error(result))
    if result.get("access_key_id") != key_id:
        return Failure(
            instance_id,
            status,
            f"agent reported key {str(result.get('access_key_id'))[:32]}, expected {key_id}",
        )
    return None


def _agent_error(result: dict[str, Any]) -> str:
    code = str(result.get("error") or "error")[:64]
    message = str(result.get("message") or "")[:200]
    return f"{code}: {message}" if message else code


def name_some(items: Iterable[str]) -> str:
    listed = list(items)
    named = ", ".join(listed[:MAX_NAMED])
    return named if len(listed) <= MAX_NAMED else f"{named} and {len(listed) - MAX_NAMED} more"


def _batches(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), BATCH_SIZE):
        yield items[start : start + BATCH_SIZE]
