"""Play the operator around a deployment: IAM users under the managed path, each with an initial key
written into every server of its group's credentials file and, unless the scenario wants the first rotation
to adopt it, stored in the user's secret as a previous rotation would have left it; the servers registered
with their group's role; keys backdated for the scheduled path.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Any

from sandbox.deploy import Deployment
from sandbox.emulator import Emulator
from sandbox.fleet import Fleet, Server
from sandbox.synth import GROUP_TAG

# The hook the sandbox installs on every server: proves the agent ran it after writing the file. The agent
# runs hooks with a clean environment, so the server's root is written into the script.
HOOK_SCRIPT = '#!/bin/sh\necho "reloaded $(date +%s)" >> "{root}/var/log/app-reloads.log"\n'


@dataclass
class InitialKey:
    user: str
    key_id: str


def provision(emulator: Emulator, deployment: Deployment, fleet: Fleet, servers_per_user: int,
              *, due_users: list[str] | None = None, store_keys: bool = True) -> dict[str, InitialKey]:
    """Play the operator: users, their first key (files, secret), servers registered with their group role.

    `servers_per_user` servers per server group (a group's users share them). `due_users`: users whose key is
    made older than their maximum age (for the scheduled machine); None = all keys are new. `store_keys`:
    store each initial key in the user's secret, created as the engine creates it (a system that rotated
    before); False: no secret, the first rotation creates it and adopts the key.
    """
    iam = emulator.client("iam")
    keys: dict[str, InitialKey] = {}
    servers_of: dict[str, list[Server]] = {}
    for user in deployment.settings["users"]:
        name, group = user["name"], user["server_group"]
        iam.create_user(UserName=name, Path=deployment.settings["managed_path"])
        key = iam.create_access_key(UserName=name)["AccessKey"]
        keys[name] = InitialKey(name, key["AccessKeyId"])
        if store_keys:
            _store_initial_key(emulator, deployment, user, key)
        if group not in servers_of:
            servers_of[group] = fleet.add_servers(group, servers_per_user, {GROUP_TAG: group})
        servers = servers_of[group]
        for server in servers:
            fleet.write_credentials(server, user["credentials_file"], user["profile"], key["AccessKeyId"],
                                    key["SecretAccessKey"])
            _install_hook(server, user.get("reload_hook"))
        fleet.set_role(group, deployment.group_roles[group])
        if due_users is not None and name in due_users:
            age = int(user.get("max_key_age_days") or deployment.settings["defaults"]["max_key_age_days"]) + 1
            age_key(emulator, name, key["AccessKeyId"], days=age)
    emulator.attach_fleet(fleet)
    return keys


def _store_initial_key(emulator: Emulator, deployment: Deployment, user: dict[str, Any],
                       key: dict[str, Any]) -> None:
    """The user's secret as the engine creates it (name, stack key, tags), holding `key` as AWSCURRENT."""
    from rotation import secrets as engine_secrets

    client = emulator.client("secretsmanager")
    secret_id = deployment.secrets[user["name"]]
    engine_secrets.create(client, secret_id, user=user["name"], server_group=user["server_group"],
                          kms_key_arn=deployment.secrets_key_arn)
    client.put_secret_value(
        SecretId=secret_id,
        SecretString=json.dumps({
            "aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"],
            "user": user["name"],
            "created_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "rotation_token": "initial",
        }),
        VersionStages=["AWSCURRENT"],
    )


def _install_hook(server: Server, hook: str | None) -> None:
    if not hook:
        return
    path = server.path(f"/etc/keyrotation/hooks.d/{hook}")
    path.parent.mkdir(parents=True, exist_ok=True)
    for parent in (path.parent, path.parent.parent):
        parent.chmod(0o755)
    path.write_text(HOOK_SCRIPT.format(root=server.root))
    path.chmod(0o755)
    server.path("/var/log").mkdir(parents=True, exist_ok=True)


def age_key(emulator: Emulator, user: str, key_id: str, *, days: int) -> None:
    """Backdate a key's creation (no API can: an in-process change to the emulator's IAM)."""
    backend = emulator.backend("iam")
    for key in backend.get_user(user).access_keys:
        if key.access_key_id == key_id:
            key.create_date = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
                days=days)
            return
    raise KeyError(key_id)
