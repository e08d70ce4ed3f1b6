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

# The scheduled machine names executions `<user>-<YYYY-MM-DD>T<HHMM>`: at most 80 characters, and none of
# whitespace < > { } [ ] ? * " # % \ ^ | ~ ` $ & , ; : /. The engine's rules already keep IAM user names
# (at most 64 characters) clear of all of them but ','; secret names (prefix + user) exclude ',' too.


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
