"""The Lambda environment, validated in one place (docs/design.md §2).

| variable | used by |
|---|---|
| SETTINGS_PATH | every step: the bundled settings.json, relative to the task root or absolute |
| LOCK_TABLE | prepare, create_key, promote, distribute, deactivate, delete, rollback |
| DOCUMENT_NAME | distribute |
| TOPIC_ARN | notify |
| SECRETS_KEY_ARN | create_key: the stack's KMS key, which encrypts the secrets it creates |
| ROTATION_MACHINE_ARN | select_due: the rotation state machine it starts executions of |
| REPORTS_BUCKET | audit, audit_report: the bucket the audit reports go to |
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rotation.errors import InvalidEnvironment
from rotation.settings import Settings, load_settings_file

# Without LAMBDA_TASK_ROOT (tests, the sandbox) relative paths resolve against the asset root `lambdas/`.
ASSET_ROOT = Path(__file__).resolve().parents[1]

PATTERNS = {
    "SETTINGS_PATH": r"^[^\0]{1,4096}$",
    "LOCK_TABLE": r"^[A-Za-z0-9_.-]{3,255}$",
    "DOCUMENT_NAME": r"^(arn:[a-z-]+:ssm:[a-z0-9-]+:\d{12}:document/)?[A-Za-z0-9_.-]{3,128}$",
    "TOPIC_ARN": r"^arn:[a-z-]+:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$",
    "SECRETS_KEY_ARN": r"^arn:[a-z-]+:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]{1,128}$",
    "ROTATION_MACHINE_ARN": r"^arn:[a-z-]+:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$",
    "REPORTS_BUCKET": r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
}


@dataclass(frozen=True)
class Env:
    settings_path: Path
    lock_table: str
    document_name: str
    topic_arn: str
    secrets_key_arn: str = ""
    rotation_machine_arn: str = ""
    reports_bucket: str = ""

    def settings(self) -> Settings:
        """Read on every invocation (validated once per distinct content: `load_settings_file`)."""
        return load_settings_file(self.settings_path)


def load_env(*required: str, environ: Mapping[str, str] | None = None) -> Env:
    """Check that each `required` variable is set and every set one is well-formed."""
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    for name, pattern in PATTERNS.items():
        value = environ.get(name, "")
        if not value:
            if name in required:
                raise InvalidEnvironment(f"environment variable {name} is not set")
            continue
        if not re.fullmatch(pattern, value):
            raise InvalidEnvironment(f"environment variable {name} is malformed: {value[:200]!r}")
        values[name] = value
    unknown = set(required) - PATTERNS.keys()
    if unknown:  # a programming error in a handler
        raise InvalidEnvironment(f"unknown environment variable(s) required: {', '.join(sorted(unknown))}")
    path = Path(values.get("SETTINGS_PATH", "settings.json"))
    if not path.is_absolute():
        path = Path(environ.get("LAMBDA_TASK_ROOT") or ASSET_ROOT) / path
    return Env(settings_path=path, lock_table=values.get("LOCK_TABLE", ""),
               document_name=values.get("DOCUMENT_NAME", ""), topic_arn=values.get("TOPIC_ARN", ""),
               secrets_key_arn=values.get("SECRETS_KEY_ARN", ""),
               rotation_machine_arn=values.get("ROTATION_MACHINE_ARN", ""),
               reports_bucket=values.get("REPORTS_BUCKET", ""))
