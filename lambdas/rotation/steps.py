"""The rotation's steps (docs/design.md §2), one function each, composed from the domain modules.

Every step first looks at AWS for the work it would do and only then acts, so running it twice, or running a
new execution after a crash at any point, never creates a third key and never deletes a key we did not
create. AWS clients, settings and the clock come in as arguments.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from rotation import flow, keys, lock, secrets
from rotation.errors import (
    InvalidRequest,
    KeyLimitReached,
    NewKeyNotYetValid,
    StateConflict,
    TargetsUnconfirmed,
    UnknownUser,
)
from rotation.fleet import check_targets, name_some, plan_reach, read_outcome, resolve_targets, send
from rotation.lock import LockTable
from rotation.plan import classify, orphan_keys
from rotation.secrets import Credentials
from rotation.settings import Settings, User, Waits
from rotation.state import Action, Distribution, DocumentSettings, Request, Rotation, resolved_waits
from rotation.usage import check_unused_since, last_use

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_sts import STSClient

TOKEN_NAMESPACE = uuid.UUID("4b5d8a4e-2c67-4e8e-9a59-6a3c4d0f1e21")
# sts:GetCallerIdentity answers these while a new key propagates through IAM.
NOT_YET_VALID = frozenset({"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException"})


def token_for(execution_id: str) -> str:
    """The ClientRequestToken of a new rotation: derived from the execution, so a retried step reuses it."""
    return str(uuid.uuid5(TOKEN_NAMESPACE, execution_id))


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def lock_ttl(waits: Waits, settings: Settings) -> int:
    """How long a rotation may hold its lock between two steps: the longest path through the machine."""
    distribution = waits.max_polls * waits.poll_seconds + settings.defaults.command_timeout_seconds
    return 300 + 2 * distribution + waits.observe_seconds + waits.grace_seconds + 3600


def _user(settings: Settings, name: str) -> User:
    user = settings.user(name)
    if user is None:
        raise UnknownUser(f"user {name!r} is not in the settings; add it to config/settings.yaml and deploy")
    return user


def prepare(
    request: Request,
    execution_id: str,
    settings: Settings,
    *,
    iam: IAMClient,
    sm: SecretsManagerClient,
    ssm: SSMClient,
    table: LockTable,
    owner_alive: Callable[[str], bool],
    now: datetime,
) -> Rotation:
    user = _user(settings, request.user)
    path = keys.user_path(iam, user.name, managed_path=settings.managed_path)
    if not path.startswith(settings.managed_path):
        raise UnknownUser(
            f"IAM user {user.name!r} has path {path}, not under the managed path "
            f"{settings.managed_path}; the engine may not touch its keys"
        )
    secret_id = settings.secret_id(user)
    state = secrets.read_state(sm, secret_id)
    held = lock.read(table, user.name)
    user_keys = keys.list_keys(iam, user.name)
    plan = classify(user.name, user_keys, state, held.creating)
    resume_from = plan.resume_from
    old_active = any(key.key_id == plan.old_key_id and key.active for key in user_keys)
    if request.mode == flow.EMERGENCY_MODE and resume_from == "distribute" and old_active:
        # The old key is believed leaked: it goes Inactive before the fleet is touched again.
        resume_from = "deactivate"
    group = settings.group(user.server_group)
    targets = resolve_targets(ssm, group)
    allow_offline = request.allow_offline if request.allow_offline is not None else user.allow_offline
    check_targets(targets, group, allow_offline=allow_offline)
    waits = resolved_waits(settings.defaults.waits, request)
    notes = list(plan.notes)
    if not state.exists:
        notes.insert(0, f"create the secret {secret_id} (it does not exist yet: no key stored)")
    if targets.offline:
        notes.append(f"skip {len(targets.offline)} offline servers (allow_offline)")
    rotation = Rotation(
        user=user.name,
        mode=request.mode,
        execution_id=execution_id,
        token=plan.token or token_for(execution_id),
        secret_id=secret_id,
        old_key_id=plan.old_key_id,
        new_key_id=plan.new_key_id,
        new_version_id=plan.new_version_id,
        resume_from=resume_from,
        classification=plan.classification,
        targets=targets.online,
        waits=waits,
        settings=DocumentSettings(
            credentials_file=user.credentials_file,
            profile=user.profile,
            file_owner=user.file_owner,
            reload_hook=user.reload_hook,
        ),
        plan=tuple(notes),
        offline=tuple(instance_id for instance_id, _ in targets.offline),
        allow_offline=allow_offline,
    )
    if request.mode == flow.DRY_RUN_MODE:
        if held.owner and held.owner != execution_id:
            notes.append(f"note: the lock is currently held by {held.owner}")
        return replace(
            rotation,
            resume_from="done",
            outcome="dry_run",
            plan=(*notes, f"dry run: a real run would start at {resume_from}"),
        )
    lock.acquire(
        table,
        user.name,
        execution_id,
        now=now,
        ttl_seconds=lock_ttl(waits, settings),
        owner_alive=owner_alive,
    )
    return replace(rotation, lock_held=True)


def _hold(rotation: Rotation, settings: Settings, table: LockTable, now: datetime) -> None:
    if rotation.mode == flow.DRY_RUN_MODE:
        raise InvalidRequest("rotation.mode: a dry run changes nothing; this step must not run")
    lock.confirm(
        table, rotation.user, rotation.execution_id, now=now, ttl_seconds=lock_ttl(rotation.waits, settings)
    )


def create_key(
    rotation: Rotation,
    settings: Settings,
    *,
    iam: IAMClient,
    sm: SecretsManagerClient,
    table: LockTable,
    now: datetime,
    secrets_key_arn: str,
) -> Rotation:
    _hold(rotation, settings, table, now)
    state = secrets.read_state(sm, rotation.secret_id)
    if not state.exists:
        # First rotation under this name: the secret is created (holding no key) before any key exists,
        # so a failure here leaves nothing behind, and a retry finds the secret and carries on.
        user = _user(settings, rotation.user)
        if not secrets.create(sm, rotation.secret_id, user=user.name, server_group=user.server_group,
                              kms_key_arn=secrets_key_arn):
            state = secrets.read_state(sm, rotation.secret_id)
    current_keys = keys.list_keys(iam, rotation.user)
    by_id = {key.key_id: key for key in current_keys}
    for stored in (state.pending, state.current):
        # Already done by an earlier attempt of this rotation: the key is stored under our token.
        if stored is not None and stored.rotation_token == rotation.token and stored.access_key_id in by_id:
            lock.clear_intent(table, rotation.user)
            return replace(rotation, new_key_id=stored.access_key_id, new_version_id=stored.version_id)
    if rotation.token in secrets.version_stages(sm, rotation.secret_id):
        # The version id is the token: its key was deleted by someone, and the token cannot be reused.
        raise StateConflict(
            f"secret version {rotation.token} of this rotation holds a key the user no longer "
            "has; start a new execution"
        )
    if rotation.old_key_id is not None and rotation.old_key_id not in by_id:
        raise StateConflict(f"old key {rotation.old_key_id} of {rotation.user!r} disappeared since prepare")
    journal = lock.read(table, rotation.user).creating
    for key in orphan_keys(current_keys, state, journal):
        if key.key_id != rotation.old_key_id:
            keys.delete_key(iam, rotation.user, key.key_id)
            by_id.pop(key.key_id)
    for key in list(by_id.values()):
        # The 2-key limit: only an inactive key that neither AWSCURRENT nor AWSPENDING holds may go.
        if key.key_id != rotation.old_key_id and not key.active and not state.holds(key.key_id):
            keys.delete_key(iam, rotation.user, key.key_id)
            by_id.pop(key.key_id)
    if len(by_id) >= keys.MAX_KEYS:
        raise KeyLimitReached(
            f"user {rotation.user!r} has {len(by_id)} keys ({', '.join(sorted(by_id))}) and none may be "
            "deleted (active, or held by the secret); deactivate the one nothing uses, then run again"
        )
    lock.record_intent(table, rotation.user, rotation.execution_id, rotation.token, now)
    new = keys.create_key(iam, rotation.user)
    version_id = secrets.put_pending(
        sm, rotation.secret_id, rotation.token, new, user=rotation.user, replaces=rotation.old_key_id, now=now
    )
    lock.clear_intent(table, rotation.user)
    return replace(rotation, new_key_id=new.key_id, new_version_id=version_id)


def verify_key(
    rotation: Rotation, *, sm: SecretsManagerClient, sts_factory: Callable[[Credentials], STSClient]
) -> Rotation:
    new_key_id, version_id = _new_key(rotation)
    credentials = secrets.read_credentials(sm, rotation.secret_id, version_id)
    if credentials.access_key_id != new_key_id:
        raise StateConflict(
            f"secret version {version_id} holds key {credentials.access_key_id}, not {new_key_id}"
        )
    try:
        arn = sts_factory(credentials).get_caller_identity()["Arn"]
    except ClientError as exc:
        code = keys.error_code(exc)
        if code in NOT_YET_VALID:
            raise NewKeyNotYetValid(f"new key {new_key_id} is not accepted by STS yet ({code})") from None
        raise
    if not arn.endswith(f"/{rotation.user}") or ":user/" not in arn:
        raise StateConflict(f"new key {new_key_id} signs as {arn}, not as user {rotation.user!r}")
    return rotation


def promote(
    rotation: Rotation, settings: Settings, *, sm: SecretsManagerClient, table: LockTable, now: datetime
) -> Rotation:
    _hold(rotation, settings, table, now)
    _, version_id = _new_key(rotation)
    secrets.promote(sm, rotation.secret_id, version_id)
    return rotation


def distribute(
    rotation: Rotation, settings: Settings, *, ssm: SSMClient, table: LockTable, document: str, now: datetime
) -> Rotation:
    _hold(rotation, settings, table, now)
    new_key_id, _ = _new_key(rotation)
    confirmed_before = (
        rotation.distribution is not None
        and rotation.distribution.complete
        and rotation.distribution.key_id == new_key_id
    )
    # Standard mode distributes twice: `rotate`, then after the grace period `verify` (servers prove the new
    # key still works while the old one is inactive). Emergency mode distributes once.
    action: Action = "verify" if confirmed_before and flow.verifies(rotation.mode) else "rotate"
    if not rotation.targets:
        raise StateConflict("rotation.targets is empty")
    # The group as it is now (servers leave, fail and join during a day): see fleet.plan_reach for the rule.
    group = settings.group(_user(settings, rotation.user).server_group)
    reach = plan_reach(rotation.targets, resolve_targets(ssm, group), action=action,
                       allow_offline=rotation.allow_offline)
    notes = list(rotation.plan)
    if reach.released:
        notes.append(f"{action}: {len(reach.released)} servers confirmed the new key and have left or are "
                     f"unreachable since; not verified, no reason to keep the old key: "
                     f"{name_some(f'{i} ({status})' for i, status in reach.released)}")
    if reach.skipped:
        notes.append(f"{action}: skip {len(reach.skipped)} offline servers (allow_offline): "
                     f"{name_some(f'{i} ({status})' for i, status in reach.skipped)}")
    joined = [i for i in reach.send if i not in rotation.targets] + list(reach.rotate_joined)
    if joined:
        notes.append(f"{action}: {len(joined)} servers joined the group since prepare and get the new key: "
                     f"{name_some(joined)}")

    def send_to(targets: tuple[str, ...], what: Action, comment: str) -> list[str]:
        defaults = settings.defaults
        return send(ssm, document=document, targets=targets, secret_id=rotation.secret_id, key_id=new_key_id,
                    settings=rotation.settings, action=what, max_concurrency=defaults.max_concurrency,
                    timeout_seconds=defaults.command_timeout_seconds, comment=comment)

    command_ids: list[str] = []
    if reach.send:
        command_ids += send_to(reach.send, action, f"keyrotation {action} {rotation.user} {new_key_id}")
    if reach.rotate_joined:
        command_ids += send_to(reach.rotate_joined, "rotate",
                               f"keyrotation rotate {rotation.user} {new_key_id} (joined)")
    if reach.blocked:
        sent = (f"the other {len(reach.send)} were sent the new key ({action}); " if reach.send else "")
        raise TargetsUnconfirmed(
            f"{len(reach.blocked)} servers of group {group.name!r} cannot be reached for {action} and do not "
            f"hold the new key {new_key_id}: "
            f"{name_some(f'{i} ({status})' for i, status in reach.blocked)}; {sent}the old key stays as it "
            "was. Bring them back online, or remove them from the group, and start the rotation again: it "
            "resumes from this distribution"
        )
    targets = (*reach.send, *reach.rotate_joined)
    total = len(targets)
    if total == 0 and action == "rotate":
        # Every server went offline since prepare (and allow_offline skips them): none would hold the new
        # key, so nothing may count as confirmed.
        raise TargetsUnconfirmed(
            f"no server of group {group.name!r} can receive the new key {new_key_id} now: "
            f"{name_some(f'{i} ({status})' for i, status in reach.skipped)}; the old key stays as it was"
        )
    return replace(
        rotation,
        targets=targets,
        command_ids=tuple(command_ids),
        settled_command_ids=(),
        action=action,
        polls=0,
        plan=tuple(notes),
        distribution=Distribution(
            action=action, key_id=new_key_id, confirmed=0, total=total, pending=total, failed=(),
            done=total == 0,
        ),
    )


def check_distribution(rotation: Rotation, *, ssm: SSMClient, now: datetime) -> Rotation:
    new_key_id, _ = _new_key(rotation)
    if rotation.distribution is not None and rotation.distribution.done and rotation.distribution.total == 0:
        return rotation  # every server confirmed the key in `rotate` and has left since: nothing to verify
    if rotation.action is None or not rotation.command_ids:
        raise InvalidRequest("rotation.command_ids: nothing was distributed yet")
    outcome = read_outcome(
        ssm, rotation.command_ids, rotation.targets, new_key_id, settled=rotation.settled_command_ids
    )
    polls = rotation.polls + 1
    done = not outcome.pending and not outcome.failed
    distribution = Distribution(
        action=rotation.action,
        key_id=new_key_id,
        confirmed=len(outcome.confirmed),
        total=len(rotation.targets),
        pending=len(outcome.pending),
        failed=outcome.failed,
        done=done,
    )
    what = f"key {new_key_id} ({rotation.action})"
    # A failure is reported once no server is still running, so that every broken server is named (one that
    # fails a few seconds after another would otherwise be counted as merely "pending"). Waiting is safe:
    # the old key is untouched until every server has confirmed.
    failed = name_some(f"{f.instance_id} ({f.status}: {f.reason})" for f in outcome.failed)
    if outcome.failed and not outcome.pending:
        raise TargetsUnconfirmed(
            f"{len(outcome.failed)} of {distribution.total} servers failed to confirm {what}: {failed}; "
            f"{distribution.confirmed} confirmed. The old key stays as it was"
        )
    if outcome.pending and polls >= rotation.waits.max_polls:
        also = f"; {len(outcome.failed)} failed: {failed}" if outcome.failed else ""
        raise TargetsUnconfirmed(
            f"{len(outcome.pending)} of {distribution.total} servers did not confirm {what} after {polls} "
            f"polls: {name_some(outcome.pending)}{also}; {distribution.confirmed} confirmed. The old key "
            "stays as it was"
        )
    cutover_at = rotation.cutover_at
    if done and rotation.action == "rotate":
        cutover_at = iso(now)
    return replace(
        rotation,
        polls=polls,
        distribution=distribution,
        cutover_at=cutover_at,
        settled_command_ids=outcome.settled,
    )


def check_usage(rotation: Rotation, settings: Settings, *, iam: IAMClient) -> Rotation:
    old = _existing_old_key(rotation, iam)
    if old is None:
        return replace(rotation, usage={"checked": False, "reason": "no old key"})
    if not old.active:
        # Inactive keys cannot authenticate: nothing can be using it (emergency mode, or a resumed rotation).
        return replace(rotation, usage={"checked": False, "reason": "old key already Inactive"})
    if rotation.cutover_at is None:
        raise StateConflict("no cut-over recorded: the distribution was not confirmed")
    cutover = datetime.strptime(rotation.cutover_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    use = last_use(iam, old.key_id)
    check_unused_since(use, old.key_id, cutover, settings.defaults.usage_margin_seconds)
    return replace(
        rotation,
        usage={
            "checked": True,
            "last_used_at": iso(use.at) if use.at else None,
            "service": use.service,
            "region": use.region,
        },
    )


def deactivate(
    rotation: Rotation,
    settings: Settings,
    *,
    iam: IAMClient,
    sm: SecretsManagerClient,
    table: LockTable,
    now: datetime,
) -> Rotation:
    _hold(rotation, settings, table, now)
    old = _existing_old_key(rotation, iam)
    if old is None or not old.active:
        return rotation
    new_key_id, _ = _new_key(rotation)
    state = secrets.read_state(sm, rotation.secret_id)
    if state.current is None or state.current.access_key_id != new_key_id:
        raise StateConflict(
            f"refusing to deactivate {old.key_id}: the secret's AWSCURRENT is not the new key {new_key_id}"
        )
    # Only after the fleet confirmed the new key. Only the explicit emergency mode may do it before (invariant
    # 1): kept as a plain comparison, so that no edit of the flow table can drop this check for another mode.
    if rotation.mode != flow.EMERGENCY_MODE:
        _require_confirmed(rotation, new_key_id, f"deactivate {old.key_id}")
    keys.set_status(iam, rotation.user, old.key_id, "Inactive")
    return rotation


def delete(
    rotation: Rotation,
    settings: Settings,
    *,
    iam: IAMClient,
    sm: SecretsManagerClient,
    table: LockTable,
    now: datetime,
) -> Rotation:
    old = _existing_old_key(rotation, iam)
    if old is None and lock.read(table, rotation.user).owner is None:
        # An earlier attempt finished this step: releasing the lock is its last action.
        return replace(rotation, lock_held=False, outcome="rotated")
    _hold(rotation, settings, table, now)
    new_key_id, _ = _new_key(rotation)
    if old is not None:
        if old.active:
            raise StateConflict(f"refusing to delete {old.key_id}: it is Active (deactivate comes first)")
        _require_confirmed(rotation, new_key_id, f"delete {old.key_id}")
        keys.delete_key(iam, rotation.user, old.key_id)
    state = secrets.read_state(sm, rotation.secret_id)
    remaining = {key.key_id for key in keys.list_keys(iam, rotation.user)}
    previous = state.previous
    if previous is not None and (previous.access_key_id is None or previous.access_key_id not in remaining):
        secrets.remove_label(sm, rotation.secret_id, secrets.PREVIOUS, previous.version_id)
    if state.current is not None:
        secrets.remove_label(sm, rotation.secret_id, secrets.PENDING, state.current.version_id)
    lock.clear_intent(table, rotation.user)
    lock.release(table, rotation.user, rotation.execution_id)
    return replace(rotation, lock_held=False, outcome="rotated")


def rollback(rotation: Rotation, error: dict[str, str], *, iam: IAMClient, table: LockTable) -> Rotation:
    """Failure path: reactivate the old key if this rotation deactivated it, release the lock, report.

    Every rotation starts with an active old key, so an inactive one was deactivated by this rotation. In
    emergency mode the old key is believed leaked and stays inactive. The new key and the secret are left as
    they are: a new run resumes from them.
    """
    notes = list(rotation.plan)
    holder = lock.read(table, rotation.user).owner
    if holder != rotation.execution_id:
        notes.append("rollback: this execution does not hold the lock; nothing touched")
        return replace(rotation, lock_held=False, outcome="failed", error=error, plan=tuple(notes))
    old = _existing_old_key(rotation, iam)
    if old is not None and not old.active:
        if rotation.mode == flow.EMERGENCY_MODE:
            notes.append(f"rollback: old key {old.key_id} stays Inactive (emergency mode)")
        else:
            keys.set_status(iam, rotation.user, old.key_id, "Active")
            notes.append(f"rollback: reactivated old key {old.key_id}")
    lock.release(table, rotation.user, rotation.execution_id)
    return replace(rotation, lock_held=False, outcome="failed", error=error, plan=tuple(notes))


def _new_key(rotation: Rotation) -> tuple[str, str]:
    if rotation.new_key_id is None or rotation.new_version_id is None:
        raise InvalidRequest("rotation.new_key_id: no new key yet (create_key has not run)")
    return rotation.new_key_id, rotation.new_version_id


def _existing_old_key(rotation: Rotation, iam: IAMClient) -> keys.AccessKey | None:
    if rotation.old_key_id is None:
        return None
    return next(
        (key for key in keys.list_keys(iam, rotation.user) if key.key_id == rotation.old_key_id), None
    )


def _require_confirmed(rotation: Rotation, new_key_id: str, what: str) -> None:
    distribution = rotation.distribution
    if distribution is None or not distribution.complete or distribution.key_id != new_key_id:
        raise StateConflict(f"refusing to {what}: not every server confirmed the new key {new_key_id}")
