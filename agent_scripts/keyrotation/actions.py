"""The three actions: rotate (write the new key, prove it, restore on failure), audit (report the key
id the profile holds) and verify (check only)."""

import os
import re
from typing import Any, Dict, List, Optional, Tuple

from .aws import AwsClient, parse_secret, prove_key_works, region_for
from .base import BACKUP_SUFFIX, KEY_ID, AgentError, env_float, log
from .credentials import check_rewrite, decode_credentials, parse_credentials, rewrite_profile
from .files import Directory, FileAttributes
from .hooks import run_hook
from .owner import check_owner_reads
from .paths import resolve_owner


def split_file(logical: str) -> Tuple[str, str]:
    match = re.match(r"^(.*)[/\\]([^/\\]+)$", logical)
    if not match:
        raise AgentError("invalid_parameter", "CredentialsFile has no directory")
    return (match.group(1) or "/"), match.group(2)


def rotate(params: Dict[str, str], result: Dict[str, Any], secrets: List[str]) -> None:
    logical = params["CredentialsFile"]
    profile = params["Profile"]
    owner = resolve_owner(params["FileOwner"])
    logical_dir, name = split_file(logical)
    aws = AwsClient()
    directory = Directory(logical_dir, owner, create=True)
    try:
        directory.lock(env_float("KEYROTATION_LOCK_TIMEOUT", 120.0))
        directory.remove_stale_temps(name)
        found = directory.read_file(name)
        data, attributes = found if found is not None else (None, None)
        old_text = decode_credentials(data, logical) if data is not None else ""

        key_id, secret = parse_secret(
            aws.get_secret_string(params["SecretId"]), params["ExpectedAccessKeyId"]
        )
        secrets.append(secret)
        result["access_key_id"] = key_id

        new_text = rewrite_profile(old_text, profile, key_id, secret)
        check_rewrite(old_text, new_text, profile, key_id, secret)
        new_data = new_text.encode("utf-8")
        changed = data is None or new_text != old_text
        result["changed"] = changed
        if changed:
            # A new file: 0600, owned by FileOwner. An existing one keeps its owner, group, mode and
            # extended attributes (ACLs, SELinux label), or is refused before anything changes.
            kept = (
                attributes.kept()
                if attributes is not None
                else FileAttributes(owner[0], owner[1], 0o600, None)
            )
            try:
                temp = directory.prepare(name, new_data, kept)
            except OSError as exc:
                raise AgentError(
                    "write_failed", "cannot write %s: %s" % (logical, exc.strerror or exc)
                ) from None
            try:
                if data is not None:
                    directory.write_atomic(name + BACKUP_SUFFIX, data, FileAttributes(0, 0, 0o600, None))
                    result["backup"] = logical + BACKUP_SUFFIX
                directory.commit(temp, name)
            except OSError as exc:
                directory.discard(temp)
                raise AgentError(
                    "write_failed", "cannot write %s: %s" % (logical, exc.strerror or exc)
                ) from None
            log("wrote profile %s of %s" % (profile, logical))
        else:
            if attributes is not None:
                directory.tighten(name, attributes)
            log("profile %s of %s already holds %s" % (profile, logical, key_id))
        try:
            check_owner_reads(logical, params["FileOwner"], owner, new_data)
            result["caller_arn"] = prove_key_works(
                aws, directory_file(directory, name), profile, key_id, region_for(params["SecretId"])
            )
        except AgentError as failure:
            if changed:
                restore(directory, name, data, attributes, logical)
                failure.message += "; the previous file was restored"
            raise failure from None
    finally:
        directory.close()
    if params["ReloadHook"]:
        run_hook(
            params["ReloadHook"],
            {
                "KEYROTATION_PROFILE": profile,
                "KEYROTATION_CREDENTIALS_FILE": logical,
                "KEYROTATION_FILE_OWNER": params["FileOwner"],
                "KEYROTATION_ACCESS_KEY_ID": key_id,
            },
        )
        result["hook"] = params["ReloadHook"]


def directory_file(directory: Directory, name: str) -> str:
    return os.path.join(directory.path, name)


def restore(
    directory: Directory,
    name: str,
    data: Optional[bytes],
    attributes: Optional[FileAttributes],
    logical: str,
) -> None:
    """Put back the file as it was (content and attributes), or remove the one the agent created."""
    try:
        if data is None or attributes is None:
            directory.remove(name)
        else:
            directory.write_atomic(name, data, attributes)
        log("restored the previous %s" % logical)
    except (OSError, AgentError) as exc:
        reason = exc.message if isinstance(exc, AgentError) else exc.strerror or str(exc)
        raise AgentError(
            "restore_failed", "the rotation failed and restoring %s failed: %s" % (logical, reason)
        ) from None


def audit(params: Dict[str, str], result: Dict[str, Any]) -> None:
    """Report which access key id the profile holds (``held``: key, no_file or no_profile) and whether it is
    ExpectedAccessKeyId (``matches``). Read-only: no lock (the file is only ever replaced by a rename, so a
    read is never torn), no AWS call, no secret fetched, nothing written; the secret in the file is never
    read into the result."""
    logical = params["CredentialsFile"]
    profile = params["Profile"]
    owner = resolve_owner(params["FileOwner"])
    logical_dir, name = split_file(logical)
    try:
        directory = Directory(logical_dir, owner, create=False)
    except AgentError as exc:
        if "does not exist" in exc.message:
            result["held"] = "no_file"
            return
        raise
    try:
        found = directory.read_file(name)
        if found is None:
            result["held"] = "no_file"
            return
        section = parse_credentials(decode_credentials(found[0], logical)).get(profile)
        if section is None:
            result["held"] = "no_profile"
            return
        result["held"] = "key"
        result["access_key_id"] = section.get(KEY_ID, "") or None
        result["matches"] = bool(params["ExpectedAccessKeyId"]) and (
            result["access_key_id"] == params["ExpectedAccessKeyId"]
        )
    finally:
        directory.close()


def verify(params: Dict[str, str], result: Dict[str, Any]) -> None:
    logical = params["CredentialsFile"]
    profile = params["Profile"]
    owner = resolve_owner(params["FileOwner"])
    logical_dir, name = split_file(logical)
    aws = AwsClient()
    try:
        directory = Directory(logical_dir, owner, create=False)
    except AgentError as exc:
        if "does not exist" in exc.message:
            raise AgentError("key_mismatch", exc.message) from None
        raise
    try:
        directory.lock(env_float("KEYROTATION_LOCK_TIMEOUT", 120.0))
        found = directory.read_file(name)
        if found is None:
            raise AgentError("key_mismatch", "%s does not exist" % logical)
        data = found[0]
        section = parse_credentials(decode_credentials(data, logical)).get(profile)
        if section is None:
            raise AgentError("key_mismatch", "%s has no profile %s" % (logical, profile))
        key_found = section.get(KEY_ID, "")
        result["access_key_id"] = key_found
        if key_found != params["ExpectedAccessKeyId"]:
            raise AgentError(
                "key_mismatch",
                "profile %s holds %s, expected %s"
                % (profile, key_found or "no key", params["ExpectedAccessKeyId"]),
            )
        check_owner_reads(logical, params["FileOwner"], owner, data)
        result["caller_arn"] = prove_key_works(
            aws, directory_file(directory, name), profile, key_found, region_for(params["SecretId"])
        )
    finally:
        directory.close()
