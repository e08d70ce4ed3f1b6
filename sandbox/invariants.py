"""Safety invariants of a rotation, checked against the emulator and the simulated servers.

Each check returns a list of violations (empty = holds), naming what is wrong but never a secret;
`check_all` runs them all. They hold after *any* rotation, successful or not:
- every server's credentials file holds an Active key of its user, and that key authenticates;
- no user has more than 2 keys;
- the secret's AWSCURRENT version holds an Active key of its user (a user whose secret the engine has not
  created yet holds no key there: nothing to check);
- no secret access key appears in execution histories, Run Command parameters or output, SNS messages or
  CloudWatch Logs (nor in any extra text handed in, e.g. the CLI's own output).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sandbox.deploy import Deployment
from sandbox.emulator import Emulator
from sandbox.fleet import Fleet


def _keys(emulator: Emulator, user: str) -> dict[str, str]:
    """key id -> Status."""
    pages = emulator.client("iam").get_paginator("list_access_keys").paginate(UserName=user)
    return {k["AccessKeyId"]: k["Status"] for page in pages for k in page["AccessKeyMetadata"]}


def _secret_keys(emulator: Emulator, user: str) -> dict[str, str]:
    """key id -> secret access key, from the emulator's IAM (the truth the files are compared with)."""
    backend = emulator.backend("iam")
    return {k.access_key_id: k.secret_access_key for k in backend.get_user(user).access_keys}


def server_files_hold_active_keys(emulator: Emulator, deployment: Deployment, fleet: Fleet) -> list[str]:
    problems = []
    sts_arns: dict[str, str] = {}
    for user in deployment.settings["users"]:
        name = user["name"]
        statuses = _keys(emulator, name)
        secrets = _secret_keys(emulator, name)
        user_arn = emulator.client("iam").get_user(UserName=name)["User"]["Arn"]
        for server in fleet.in_group(user["server_group"]):
            where = f"{server.instance_id} {user['credentials_file']} [{user['profile']}] ({name})"
            held = fleet.read_credentials(server, user["credentials_file"], user["profile"])
            if held is None:
                problems.append(f"{where}: no key")
                continue
            key_id, secret = held
            if statuses.get(key_id) != "Active":
                problems.append(f"{where}: key {key_id} is {statuses.get(key_id, 'not a key of the user')}")
                continue
            if secrets.get(key_id) != secret:
                problems.append(f"{where}: key {key_id} has the wrong secret access key")
                continue
            mode = server.path(user["credentials_file"]).stat().st_mode & 0o777
            if mode & 0o077:
                problems.append(f"{where}: file mode {mode:o} lets others read it")
            if key_id not in sts_arns:
                sts_arns[key_id] = _caller_arn(emulator, name, key_id, secret)
            if sts_arns[key_id] != user_arn:
                problems.append(f"{where}: key {key_id} authenticates as {sts_arns[key_id]}")
    return problems


def _caller_arn(emulator: Emulator, user: str, key_id: str, secret: str) -> str:
    """Who the key signs as. Checking must not look like use: the key's last-used record (which the
    rotation's check_usage step reads) is put back as it was."""
    key = next(k for k in emulator.backend("iam").get_user(user).access_keys if k.access_key_id == key_id)
    last_used = key.last_used
    try:
        sts = emulator.client("sts", aws_access_key_id=key_id, aws_secret_access_key=secret)
        return str(sts.get_caller_identity()["Arn"])
    finally:
        key.last_used = last_used


def at_most_two_keys(emulator: Emulator, deployment: Deployment) -> list[str]:
    problems = []
    for user in deployment.settings["users"]:
        keys = _keys(emulator, user["name"])
        if len(keys) > 2:
            problems.append(f"{user['name']}: {len(keys)} keys")
    return problems


def _existing_secrets(emulator: Emulator, deployment: Deployment) -> dict[str, str]:
    """user -> secret name, of the users whose secret exists (created by their first rotation)."""
    client = emulator.client("secretsmanager")
    names = set()
    for page in client.get_paginator("list_secrets").paginate():
        names.update(secret["Name"] for secret in page["SecretList"])
    return {user: name for user, name in deployment.secrets.items() if name in names}


def current_secret_is_active(emulator: Emulator, deployment: Deployment) -> list[str]:
    problems = []
    client = emulator.client("secretsmanager")
    existing = _existing_secrets(emulator, deployment)
    for user in deployment.settings["users"]:
        name = user["name"]
        if name not in existing:
            continue
        value = json.loads(client.get_secret_value(SecretId=existing[name],
                                                   VersionStage="AWSCURRENT")["SecretString"])
        if "aws_access_key_id" not in value:
            continue  # the placeholder the engine creates the secret with: no key stored yet
        key_id = value.get("aws_access_key_id")
        status = _keys(emulator, name).get(key_id or "")
        if status != "Active":
            problems.append(f"{name}: AWSCURRENT holds key {key_id}, which is "
                            f"{status or 'not a key of the user'}")
        elif _secret_keys(emulator, name).get(key_id) != value.get("aws_secret_access_key"):
            problems.append(f"{name}: AWSCURRENT's secret access key does not match key {key_id}")
    return problems


def secret_values(emulator: Emulator, deployment: Deployment) -> set[str]:
    """Every secret access key the system ever held: all IAM keys of the users, all secret versions."""
    values: set[str] = set()
    client = emulator.client("secretsmanager")
    existing = _existing_secrets(emulator, deployment)
    for user in deployment.settings["users"]:
        values.update(_secret_keys(emulator, user["name"]).values())
        if user["name"] not in existing:
            continue
        arn = existing[user["name"]]
        versions = client.list_secret_version_ids(SecretId=arn, IncludeDeprecated=True)["Versions"]
        for version in versions:
            text = client.get_secret_value(SecretId=arn, VersionId=version["VersionId"])["SecretString"]
            secret = json.loads(text).get("aws_secret_access_key")
            if secret:
                values.add(secret)
    return values


def observable_texts(emulator: Emulator, deployment: Deployment) -> Iterable[tuple[str, str]]:
    """(where, text) for everything an operator or an attacker with read access to the services could see."""
    sfn = emulator.client("stepfunctions")
    for machine in (deployment.rotation_machine, deployment.scheduled_machine):
        for execution in sfn.list_executions(stateMachineArn=machine)["executions"]:
            arn = execution["executionArn"]
            yield f"execution {execution['name']}", json.dumps(sfn.describe_execution(executionArn=arn),
                                                                default=str)
            history = sfn.get_execution_history(executionArn=arn)["events"]
            yield f"history of {execution['name']}", json.dumps(history, default=str)
    ssm = emulator.backend("ssm")
    for command in ssm._commands:
        yield f"command {command.command_id} parameters", json.dumps(command.parameters)
        for invocation in command.invocations:
            plugins = invocation.get("_plugins") or []
            text = json.dumps({k: v for k, v in invocation.items() if not k.startswith("_")}, default=str)
            text += "".join(p.stdout + p.stderr for p in plugins)
            yield f"command {command.command_id} on {invocation['InstanceId']}", text
    for topic in emulator.backend("sns").topics.values():
        yield f"sns {topic.name}", json.dumps(topic.sent_notifications, default=str)
    logs = emulator.client("logs")
    for group in logs.describe_log_groups()["logGroups"]:
        name = group["logGroupName"]
        events = logs.filter_log_events(logGroupName=name)["events"]
        yield f"logs {name}", "\n".join(e["message"] for e in events)


def no_secret_leaks(emulator: Emulator, deployment: Deployment,
                    extra: dict[str, str] | None = None) -> list[str]:
    secrets = secret_values(emulator, deployment)
    problems = []
    texts = list(observable_texts(emulator, deployment)) + list((extra or {}).items())
    for where, text in texts:
        if any(secret in text for secret in secrets):
            problems.append(f"a secret access key appears in {where}")
    if not secrets:
        problems.append("no secret values found to scan for (the check would prove nothing)")
    return problems


def check_all(emulator: Emulator, deployment: Deployment, fleet: Fleet,
              extra_texts: dict[str, str] | None = None) -> list[str]:
    return (
        server_files_hold_active_keys(emulator, deployment, fleet)
        + at_most_two_keys(emulator, deployment)
        + current_secret_is_active(emulator, deployment)
        + no_secret_leaks(emulator, deployment, extra_texts)
    )
