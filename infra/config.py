"""Read the settings file once for the CDK app.

Validation lives in one place, the engine's `rotation.settings.load_settings`; this module only reads the
YAML, calls it and adds the checks that exist because of how the stack is built (not because of what the
Lambdas do). Every error is an `InvalidSettings` whose message names the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rotation.errors import InvalidSettings
from rotation.settings import Settings, load_settings

__all__ = ["InfraConfig", "InvalidSettings", "load_config"]

# CloudFormation's quotas per stack, and what this stack uses of them (measured with `python -m
# bench.stack_size`, docs/config.md "Limits"): 113 resources (114 with an alert e-mail subscription) and no
# output without server groups; each server group adds 1 resource (its role, policy inline) and 1 output
# (the role's name); users add nothing (the engine creates their secrets at run time). Template: 185 KB, and
# 827 KB at 200 groups with the longest names the settings allow (1 MB allowed).
CFN_MAX_RESOURCES = 500
CFN_MAX_OUTPUTS = 200
STACK_RESOURCES_WITHOUT_GROUPS = 114
MAX_SERVER_GROUPS = min(CFN_MAX_OUTPUTS, CFN_MAX_RESOURCES - STACK_RESOURCES_WITHOUT_GROUPS)

# The scheduled machine names executions by lambdas/rotation/names.py: `0-9A-Za-z-_` only, at most 80.


@dataclass(frozen=True)
class InfraConfig:
    """The validated settings and the JSON the Lambdas get (`settings.json` at the asset root)."""

    source: Path
    settings: Settings

    def lambda_settings(self) -> dict[str, Any]:
        return self.settings.to_dict()


def load_config(path: str | Path) -> InfraConfig:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidSettings(f"{source}: cannot read the settings file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidSettings(f"{source}: not valid YAML ({exc})") from exc
    try:
        settings = load_settings(data)
        _check_infra(settings)
    except InvalidSettings as exc:
        raise InvalidSettings(f"{source}: {exc}") from exc
    return InfraConfig(source=source, settings=settings)


def _check_infra(settings: Settings) -> None:
    if settings.defaults.waits.verify_interval_seconds < 1:
        # It becomes the IntervalSeconds of verify_key's Retry, which Step Functions requires to be >= 1.
        raise InvalidSettings("defaults.waits.verify_interval_seconds: must be at least 1 (a Retry interval)")
    if not settings.users:
        raise InvalidSettings("users: at least one user is needed to deploy the rotation system")
    if not settings.secret_prefix.endswith("/"):
        # The steps may read, write and create every secret named `secret_prefix*`.
        raise InvalidSettings(
            f"secret_prefix: {settings.secret_prefix!r} must end with '/' (e.g. keyrotation/): the "
            "rotation's permissions cover every secret whose name starts with it, so it must be a namespace "
            "of its own"
        )
    groups = len(settings.server_groups)
    owners = len({user.owner for user in settings.users if user.owner})
    if groups + owners > CFN_MAX_RESOURCES - STACK_RESOURCES_WITHOUT_GROUPS:
        raise InvalidSettings(
            f"users[].owner: {owners} distinct owners and {groups} server groups, but each costs a resource "
            f"(a subscription, a role) and one stack holds "
            f"{CFN_MAX_RESOURCES - STACK_RESOURCES_WITHOUT_GROUPS} of them; share owners (e.g. a team "
            "address) or split the stack"
        )
    if groups > MAX_SERVER_GROUPS:
        raise InvalidSettings(
            f"server_groups: {groups} server groups, but one stack deploys at most {MAX_SERVER_GROUPS}: "
            f"CloudFormation allows {CFN_MAX_OUTPUTS} outputs per stack and each group has one (its "
            f"activation role's name), besides its role ({STACK_RESOURCES_WITHOUT_GROUPS} + {groups} "
            f"resources of {CFN_MAX_RESOURCES} allowed). Split the groups over several settings files and "
            "stacks, each with its own secret_prefix (docs/config.md, Limits)"
        )
