"""Classify a user's keys and secret before anything changes: where does this rotation start?

| classification | what AWS looks like | resume_from |
|---|---|---|
| resumable | AWSPENDING holds a key IAM has (our rotation stopped before promote) | verify_key |
| resumable | AWSCURRENT is our new key and the key it replaces still exists | distribute |
| resumable | AWSCURRENT is our new key, the key it replaced is gone, AWSPREVIOUS still labels it | delete |
| orphan | a key no AWSCURRENT/AWSPENDING holds, created after our journalled CreateAccessKey | create_key |
| fresh | AWSCURRENT holds the user's only active key | create_key |
| adopt | the secret is a placeholder (`{}` or no version), the user has at most one active key | create_key |
| blocked | anything else (e.g. two active keys, neither needed by us) | raises RotationBlocked |

A key is deleted only if it is an orphan (ours, never stored) or an inactive key no current/pending version
holds. An active key we did not create is never deleted: the user is blocked instead, with instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from rotation.errors import RotationBlocked
from rotation.keys import AccessKey
from rotation.lock import Intent
from rotation.secrets import SecretState

# IAM's CreateDate comes from AWS's clock, the journal's from the Lambda's; both are NTP-synchronised.
CLOCK_SKEW = timedelta(seconds=60)


@dataclass(frozen=True)
class Plan:
    classification: str
    resume_from: str
    old_key_id: str | None
    new_key_id: str | None = None
    new_version_id: str | None = None
    token: str | None = None  # the token of the rotation being resumed
    orphans: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def orphan_keys(keys: list[AccessKey], secret: SecretState, intent: Intent | None) -> list[AccessKey]:
    """Keys created by our journalled, unfinished CreateAccessKey and never stored in the secret.

    Once a version under the journalled token exists, that creation finished (and deleted its earlier
    orphans before creating the stored key): a journal entry left behind then proves nothing.
    """
    if intent is None or intent.token in secret.tokens():
        return []
    creating_since = intent.started_at
    current = secret.current
    replaced = current.replaces_access_key_id if current is not None else None
    return [
        key
        for key in keys
        if not secret.holds(key.key_id)
        and key.key_id != replaced
        and key.created >= creating_since - CLOCK_SKEW
    ]


def classify(user: str, keys: list[AccessKey], secret: SecretState, intent: Intent | None) -> Plan:
    by_id = {key.key_id: key for key in keys}
    current, pending = secret.current, secret.pending

    if pending is not None and pending.access_key_id in by_id:
        replaced_id = pending.replaces_access_key_id if pending.replaces_access_key_id in by_id else None
        return Plan(
            "resumable",
            "verify_key",
            old_key_id=replaced_id,
            new_key_id=pending.access_key_id,
            new_version_id=pending.version_id,
            token=pending.rotation_token,
            notes=(
                f"resume: new key {pending.access_key_id} is stored as AWSPENDING; verify and promote it",
            ),
        )
    if current is not None and current.rotation_token and current.replaces_access_key_id:
        replaced = current.replaces_access_key_id
        if current.access_key_id in by_id and replaced in by_id:
            return Plan(
                "resumable",
                "distribute",
                old_key_id=replaced,
                new_key_id=current.access_key_id,
                new_version_id=current.version_id,
                token=current.rotation_token,
                notes=(
                    f"resume: new key {current.access_key_id} is current, old key {replaced} "
                    f"({by_id[replaced].status}) still exists; distribute again, then retire it",
                ),
            )
        previous = secret.previous
        if current.access_key_id in by_id and previous is not None and previous.access_key_id == replaced:
            return Plan(
                "resumable",
                "delete",
                old_key_id=replaced,
                new_key_id=current.access_key_id,
                new_version_id=current.version_id,
                token=current.rotation_token,
                notes=(f"resume: old key {replaced} is deleted; drop its AWSPREVIOUS label",),
            )

    orphans = orphan_keys(keys, secret, intent)
    remaining = [key for key in keys if key not in orphans]
    notes = [
        f"delete orphan key {key.key_id} (created {key.created:%Y-%m-%dT%H:%M:%SZ} by an unfinished "
        "rotation, never stored)"
        for key in orphans
    ]

    if current is not None and current.access_key_id is not None:
        old = by_id.get(current.access_key_id)
        if old is None:
            raise RotationBlocked(
                f"the secret's AWSCURRENT holds key {current.access_key_id}, which user {user!r} no longer "
                "has. Servers using the secret are broken: store a working key of the user in the secret (or "
                "set the secret to {} to adopt the user's key), then run again"
            )
        if not old.active:
            raise RotationBlocked(
                f"the secret's key {old.key_id} is Inactive: servers using it are failing. Reactivate it "
                f"(aws iam update-access-key --user-name {user} --access-key-id {old.key_id} "
                "--status Active), then run again"
            )
        classification = "fresh"
    else:
        active = [key for key in remaining if key.active]
        if len(active) > 1:
            raise RotationBlocked(
                f"user {user!r} has two active keys ({active[0].key_id}, {active[1].key_id}) and the secret "
                "holds neither: the engine cannot tell which one the servers use. Deactivate the unused one "
                f"(aws iam update-access-key --user-name {user} --access-key-id <id> --status Inactive), or "
                "store the used one in the secret, then run again"
            )
        old = active[0] if active else None
        classification = "adopt"
        notes.append(
            f"adopt: key {old.key_id} was never stored in the secret; it becomes the old key"
            if old
            else "adopt: the user has no active key; the new key will be its first"
        )

    stale: list[str] = []
    for key in remaining:
        if old is not None and key.key_id == old.key_id:
            continue
        if key.active:
            raise RotationBlocked(
                f"user {user!r} has a second active key {key.key_id} that the secret does not hold (the "
                f"secret's is {old.key_id if old else 'none'}). The engine never deletes an active key it "
                "did not create: if nothing uses it, deactivate it (aws iam update-access-key --user-name "
                f"{user} --access-key-id {key.key_id} --status Inactive), then run again"
            )
        stale.append(key.key_id)
        notes.append(f"delete stale inactive key {key.key_id} (the secret does not hold it) to make room")

    notes.append(f"create a new key to replace {old.key_id}" if old else "create the user's first key")
    return Plan(
        "orphan" if orphans else classification,
        "create_key",
        old_key_id=old.key_id if old else None,
        orphans=tuple(key.key_id for key in orphans),
        stale=tuple(stale),
        notes=tuple(notes),
    )
