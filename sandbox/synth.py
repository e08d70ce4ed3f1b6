"""What the sandbox synthesizes: a settings document for its users and server groups, and the real CDK app
(`app.build_app`) synthesized with it, in-process, with cdk.json's context.

The sandbox hand-writes no resource of the product: sandbox/deploy.py creates in the emulator what this
synthesis's template says, and sandbox/provision.py plays the operator around it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
STACK_NAME = "IamKeyRotation"
GROUP_TAG = "keyrotation-group"
CREDENTIALS_FILE = "/home/app/.aws/credentials"
PROFILE = "app"
RELOAD_HOOK = "restart-app"

# Waits for the sandbox (docs/design.md §2): no observation or grace period, 1 s between polls.
SANDBOX_WAITS = {"verify_interval_seconds": 1, "poll_seconds": 1, "max_polls": 120, "observe_seconds": 0,
                 "grace_seconds": 0}


# ------------------------------------------------------------------------------------------- settings


def user_names(count: int) -> list[str]:
    return ["svc-web"] if count == 1 else [f"svc-app{i + 1}" for i in range(count)]


def group_of(user: str) -> str:
    return "g-" + re.sub(r"[^a-z0-9-]", "", user.lower())[:30]


def groups_of(names: list[str], users_per_group: int) -> dict[str, str]:
    """user -> server group: one group per user (`g-<user>`), or `users_per_group` users per group
    (`g-1`, `g-2`, … in the order of `names`)."""
    if users_per_group < 1:
        raise ValueError("users_per_group must be at least 1")
    if users_per_group == 1:
        return {name: group_of(name) for name in names}
    return {name: f"g-{i // users_per_group + 1}" for i, name in enumerate(names)}


def users_per_group_for(users: int) -> int:
    """The fewest users per server group that fit `users` users into one stack (1 up to its group limit)."""
    from infra.config import MAX_SERVER_GROUPS

    return max(1, math.ceil(users / MAX_SERVER_GROUPS))


def sandbox_settings(users: int, *, max_polls: int = 120, users_per_group: int = 1) -> dict[str, Any]:
    """A settings document (config/settings.yaml schema), server groups selected by tag.

    `users_per_group = 1`: one server group per user, each user in profile `PROFILE` of its servers'
    `CREDENTIALS_FILE`. More: the group's users share its servers, each in its own profile (its user name) of
    the same file (settings require (group, file, profile) unique). A stack deploys at most
    `infra.config.MAX_SERVER_GROUPS` groups.
    """
    names = user_names(users)
    group = groups_of(names, users_per_group)
    return {
        "managed_path": "/keyrotation/",
        "secret_prefix": "keyrotation/",
        "defaults": {
            "max_key_age_days": 90,
            "waits": {**SANDBOX_WAITS, "max_polls": max_polls},
            "usage_margin_seconds": 900,
            "command_timeout_seconds": 600,
            "max_concurrency": "50",
        },
        # The sandbox compresses time: the scheduled run starts rotations at the fastest rate allowed.
        "schedule": {"expression": "cron(0 3 ? * SUN *)", "timezone": "Etc/UTC", "duration_hours": 4,
                     "cutoff_hours": 1, "starts_per_minute": 1200},
        "alerts": {"email": None},
        "server_groups": [
            {"name": g, "tag": {"key": GROUP_TAG, "value": g}} for g in dict.fromkeys(group.values())
        ],
        "users": [
            {
                "name": name,
                "server_group": group[name],
                "credentials_file": CREDENTIALS_FILE,
                "profile": PROFILE if users_per_group == 1 else name,
                # A local account of every simulated server (see Fleet.local_users).
                "file_owner": PROFILE,
                # The agent runs hooks only from a root-owned directory chain: as another user, no hook.
                "reload_hook": RELOAD_HOOK if os.geteuid() == 0 else None,
            }
            for name in names
        ],
    }


def write_settings(path: Path, settings: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------- synth


@dataclass
class Assembly:
    """The synthesized cloud assembly of the stack."""

    outdir: Path
    template: dict[str, Any]
    assets: dict[str, Any]
    _zips: dict[str, bytes] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template["Resources"]
        return resources

    def zipped(self, object_key: str) -> bytes:
        """The asset as Lambda receives it (a zip of the asset directory), built once per asset."""
        if object_key not in self._zips:
            code_dir = self.asset_dir(object_key)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
                for path in sorted(code_dir.rglob("*")):
                    if path.is_file() and "__pycache__" not in path.parts:
                        archive.write(path, path.relative_to(code_dir).as_posix())
            self._zips[object_key] = buffer.getvalue()
        return self._zips[object_key]

    def asset_dir(self, object_key: str) -> Path:
        for file in self.assets["files"].values():
            for destination in file["destinations"].values():
                if destination["objectKey"] == object_key:
                    return self.outdir / file["source"]["path"]
        raise KeyError(f"no asset for {object_key} in {STACK_NAME}.assets.json")


def synthesize(settings_path: Path, outdir: Path) -> Assembly:
    """Synthesize the app in-process (what `cdk synth` runs), with cdk.json's context."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")
    os.environ.setdefault("CDK_VALIDATION", "false")  # the built-in template validator: ~1.4 s, not needed
    import app as cdk_app  # the repository's app.py

    context = json.loads((REPO / "cdk.json").read_text())["context"]
    cdk_app.build_app(settings_path, context=context, outdir=str(outdir), checks=False).synth()
    return Assembly(
        outdir=outdir,
        template=json.loads((outdir / f"{STACK_NAME}.template.json").read_text()),
        assets=json.loads((outdir / f"{STACK_NAME}.assets.json").read_text()),
    )


def synthesis_cache(new_dir: Callable[[str], Path], *, max_polls: int
                    ) -> Callable[..., tuple[Assembly, dict[str, Any]]]:
    """`get(users, users_per_group=1)`: the real CDK app synthesized for that many sandbox users, once per
    shape (jsii and the synth take seconds). `new_dir(name)` gives a fresh directory (pytest's
    `tmp_path_factory.mktemp`)."""
    cache: dict[tuple[int, int], tuple[Assembly, dict[str, Any]]] = {}

    def get(users: int, users_per_group: int = 1) -> tuple[Assembly, dict[str, Any]]:
        if (users, users_per_group) not in cache:
            workdir = new_dir(f"synth-{users}-{users_per_group}")
            settings = sandbox_settings(users, max_polls=max_polls, users_per_group=users_per_group)
            path = write_settings(workdir / "settings.yaml", settings)
            cache[users, users_per_group] = (synthesize(path, workdir / "cdk.out"), settings)
        return cache[users, users_per_group]

    return get
