"""The user's secret in Secrets Manager (docs/design.md §3): creation, versions, AWSPENDING, promotion.

Every read names its version by staging label (`VersionStage`), never "whatever is current by default".
Secret values are parsed here and only key ids and metadata leave this module, except through
`read_credentials`, whose result hides the secret from repr().

The engine creates a user's secret itself, on the first rotation under its name (`create`): a missing
secret reads as "no key stored yet", exactly like the placeholder it is created with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rotation.errors import SecretMalformed, SecretMissing, StateConflict
from rotation.keys import NewKey, error_code

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
ACCESS_KEY_ID = re.compile(r"^[A-Z0-9]{16,128}$")


@dataclass(frozen=True)
class StoredKey:
    """One labelled version of the secret, without its secret part."""

    version_id: str
    stages: tuple[str, ...]
    access_key_id: str | None  # None: a placeholder version (e.g. `{}`), which holds no key
    rotation_token: str | None = None
    replaces_access_key_id: str | None = None


@dataclass(frozen=True)
class SecretState:
    secret_id: str
    current: StoredKey | None
    pending: StoredKey | None  # only when AWSPENDING is on a version other than AWSCURRENT's
    previous: StoredKey | None
    exists: bool = True  # False: no secret of that name yet (create_key creates it)

    def tokens(self) -> set[str]:
        """Rotation tokens of the labelled versions."""
        return {
            item.rotation_token
            for item in (self.current, self.pending, self.previous)
            if item is not None and item.rotation_token
        }

    def holds(self, key_id: str) -> bool:
        """Whether AWSCURRENT or AWSPENDING holds this key (AWSPREVIOUS is history, not a reference)."""
        return any(item is not None and item.access_key_id == key_id for item in (self.current, self.pending))


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)


def read_state(sm: SecretsManagerClient, secret_id: str) -> SecretState:
    """Read the labelled versions. A secret that does not exist holds no key yet (`exists=False`);
    `SecretMissing` if it is scheduled for deletion, `SecretMalformed` if a version is unusable."""
    try:
        described = sm.describe_secret(SecretId=secret_id)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return SecretState(secret_id=secret_id, current=None, pending=None, previous=None, exists=False)
        raise
    if described.get("DeletedDate"):
        raise _scheduled_for_deletion(secret_id)
    stages_by_version = {
        version: tuple(stages) for version, stages in described.get("VersionIdsToStages", {}).items()
    }
    found: dict[str, StoredKey] = {}
    for stage in (CURRENT, PENDING, PREVIOUS):
        version = next((v for v, stages in stages_by_version.items() if stage in stages), None)
        if version is not None:
            found[stage] = _read_version(sm, secret_id, stage, stages_by_version[version])
    current = found.get(CURRENT)
    pending = found.get(PENDING)
    if pending is not None and current is not None and pending.version_id == current.version_id:
        pending = None
    if pending is not None and pending.access_key_id is None:
        raise SecretMalformed(f"secret {secret_id!r} version {PENDING}: has no aws_access_key_id")
    return SecretState(secret_id=secret_id, current=current, pending=pending, previous=found.get(PREVIOUS))


def _scheduled_for_deletion(secret_id: str) -> SecretMissing:
    # Its name cannot be reused until it is deleted for good, and its last key may still be in use.
    return SecretMissing(
        f"secret {secret_id!r} is scheduled for deletion; restore it (aws secretsmanager restore-secret "
        f"--secret-id {secret_id}) and run again"
    )


def _read_version(sm: SecretsManagerClient, secret_id: str, stage: str, stages: tuple[str, ...]) -> StoredKey:
    value = sm.get_secret_value(SecretId=secret_id, VersionStage=stage)
    data = _parse(secret_id, stage, value.get("SecretString"))
    key_id = data.get("aws_access_key_id")
    token = data.get("rotation_token")
    replaces = data.get("replaces_access_key_id")
    return StoredKey(
        version_id=value["VersionId"],
        stages=stages,
        access_key_id=key_id if isinstance(key_id, str) else None,
        rotation_token=token if isinstance(token, str) else None,
        replaces_access_key_id=replaces if isinstance(replaces, str) else None,
    )


def _parse(secret_id: str, stage: str, text: str | None) -> dict[str, Any]:
    """Validate a version's JSON; the messages name the field, never echo the value."""
    where = f"secret {secret_id!r} version {stage}"
    if text is None:
        raise SecretMalformed(f"{where}: has no SecretString (binary secrets are not supported)")
    try:
        data = json.loads(text)
    except ValueError:
        raise SecretMalformed(
            f"{where}: is not JSON; expected an object with aws_access_key_id and "
            "aws_secret_access_key, or {} before the first rotation"
        ) from None
    if not isinstance(data, dict):
        raise SecretMalformed(f"{where}: is not a JSON object")
    has_id, has_secret = "aws_access_key_id" in data, "aws_secret_access_key" in data
    if not has_id and not has_secret:
        return data  # placeholder: no key stored yet
    key_id = data.get("aws_access_key_id")
    if not isinstance(key_id, str) or not ACCESS_KEY_ID.fullmatch(key_id):
        raise SecretMalformed(f"{where}: aws_access_key_id is missing or not an access key id")
    secret = data.get("aws_secret_access_key")
    if not isinstance(secret, str) or not secret:
        raise SecretMalformed(f"{where}: aws_secret_access_key is missing or empty")
    return data


# Tags of the secrets the engine creates; the create_key role may only create secrets that carry them.
TAG_USER = "keyrotation:user"
TAG_SERVER_GROUP = "keyrotation:server-group"


def placeholder(user: str) -> str:
    """The value a secret is created with: no key fields, so the engine reads it as "no key stored yet"."""
    return json.dumps({"user": user}, sort_keys=True)


def create(
    sm: SecretsManagerClient, secret_id: str, *, user: str, server_group: str, kms_key_arn: str
) -> bool:
    """Create the user's secret with the placeholder, encrypted with the stack's key and tagged.

    Returns False if it exists already (an earlier attempt, or a concurrent one, created it): a retried
    create_key then carries on with the existing secret.
    """
    try:
        sm.create_secret(
            Name=secret_id,
            Description=f"Current IAM access key of {user} (managed by the key-rotation system)",
            KmsKeyId=kms_key_arn,
            SecretString=placeholder(user),
            Tags=[{"Key": TAG_USER, "Value": user}, {"Key": TAG_SERVER_GROUP, "Value": server_group}],
        )
    except ClientError as exc:
        if error_code(exc) == "ResourceExistsException":
            return False
        if error_code(exc) == "InvalidRequestException" and "deletion" in str(exc).lower():
            raise _scheduled_for_deletion(secret_id) from None
        raise
    return True


def put_pending(
    sm: SecretsManagerClient,
    secret_id: str,
    token: str,
    key: NewKey,
    *,
    user: str,
    replaces: str | None,
    now: datetime,
) -> str:
    """Store a new key as AWSPENDING with ClientRequestToken = token; the version id is the token."""
    value = {
        "aws_access_key_id": key.key_id,
        "aws_secret_access_key": key.secret_access_key,
        "user": user,
        "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "rotation_token": token,
        "replaces_access_key_id": replaces,
    }
    response = sm.put_secret_value(
        SecretId=secret_id, ClientRequestToken=token, SecretString=json.dumps(value), VersionStages=[PENDING]
    )
    return response["VersionId"]


def version_stages(sm: SecretsManagerClient, secret_id: str) -> dict[str, list[str]]:
    return {
        version: list(stages)
        for version, stages in sm.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {}).items()
    }


def read_credentials(sm: SecretsManagerClient, secret_id: str, version_id: str) -> Credentials:
    """The key stored in `version_id`, read through the label that version carries (pending or current)."""
    for stage in (PENDING, CURRENT):
        try:
            value = sm.get_secret_value(SecretId=secret_id, VersionStage=stage)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                continue
            raise
        if value["VersionId"] == version_id:
            data = _parse(secret_id, stage, value.get("SecretString"))
            if "aws_access_key_id" not in data:
                break
            return Credentials(data["aws_access_key_id"], data["aws_secret_access_key"])
    raise StateConflict(f"secret {secret_id!r}: version {version_id} is neither {PENDING} nor {CURRENT}")


def promote(sm: SecretsManagerClient, secret_id: str, version_id: str) -> bool:
    """Move AWSCURRENT to `version_id` (Secrets Manager labels the old one AWSPREVIOUS), then drop its
    AWSPENDING. Returns False if it was already current (a retried step)."""
    stages = version_stages(sm, secret_id)
    if version_id not in stages:
        raise StateConflict(f"secret {secret_id!r} has no version {version_id}")
    current = next((v for v, labels in stages.items() if CURRENT in labels), None)
    moved = current != version_id
    if moved:
        kwargs: dict[str, Any] = {
            "SecretId": secret_id,
            "VersionStage": CURRENT,
            "MoveToVersionId": version_id,
        }
        if current is not None:
            kwargs["RemoveFromVersionId"] = current
        sm.update_secret_version_stage(**kwargs)
    remove_label(sm, secret_id, PENDING, version_id)
    return moved


def remove_label(sm: SecretsManagerClient, secret_id: str, stage: str, version_id: str) -> bool:
    stages = version_stages(sm, secret_id)
    if stage not in stages.get(version_id, []):
        return False
    sm.update_secret_version_stage(SecretId=secret_id, VersionStage=stage, RemoveFromVersionId=version_id)
    return True
