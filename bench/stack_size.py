"""Measure what one stack holds: resources, outputs and template bytes of the real synthesis, per shape.

    .venv/bin/python -m bench.stack_size                      # the grid of docs/config.md "Limits"
    .venv/bin/python -m bench.stack_size --users 2000 --groups 200

Each cell synthesizes the app as `cdk synth` does (cdk.json's context, cdk-nag, aws-cdk-lib's own template
validation) with generated settings: `users` users spread evenly over `groups` tag-selected server groups.
Offline, no AWS account; about 5-10 s per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
GRID_USERS = (1, 100, 500, 2000)
GRID_GROUPS = (1, 10, 50, 200)


@dataclass(frozen=True)
class Size:
    users: int
    groups: int
    resources: int
    outputs: int
    template_bytes: int
    seconds: float
    error: str | None = None


def shaped_settings(users: int, groups: int, *, long_names: bool = False) -> dict[str, Any]:
    """`config/settings.yaml` with `users` users over `groups` groups (round robin, one profile per user).
    `long_names`: the longest names the settings allow where they repeat per group (32-character group
    names, a 256-character secret prefix): the template's worst case."""
    base: dict[str, Any] = yaml.safe_load((ROOT / "config" / "settings.yaml").read_text(encoding="utf-8"))
    names = [f"group-{g + 1:03d}".ljust(32, "x") if long_names else f"g{g + 1:03d}" for g in range(groups)]
    if long_names:
        base["secret_prefix"] = ("keyrotation-" + "p" * 256)[:255] + "/"
    base["server_groups"] = [{"name": n, "tag": {"key": "keyrotation-group", "value": n}} for n in names]
    base["users"] = [
        {"name": f"svc-user{u + 1:05d}", "server_group": names[u % groups],
         "credentials_file": "/home/app/.aws/credentials", "profile": f"user{u + 1:05d}", "file_owner": "app"}
        for u in range(users)
    ]
    return base


def measure(users: int, groups: int, workdir: Path, *, long_names: bool = False) -> Size:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    for entry in (str(ROOT), str(ROOT / "lambdas"), str(ROOT / "agent_scripts")):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    import app as cdk_app

    cell = workdir / f"{users}-{groups}"
    cell.mkdir(parents=True, exist_ok=True)
    settings = cell / "settings.yaml"
    shaped = shaped_settings(users, groups, long_names=long_names)
    settings.write_text(yaml.safe_dump(shaped, sort_keys=False), encoding="utf-8")
    context = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
    started = time.perf_counter()
    try:
        cdk_app.build_app(settings, context=context, outdir=str(cell / "cdk.out")).synth()
    except Exception as exc:  # jsii raises RuntimeError for synthesis failures; settings: InvalidSettings
        return Size(users, groups, 0, 0, 0, time.perf_counter() - started, str(exc).splitlines()[0][:300])
    text = (cell / "cdk.out" / f"{cdk_app.STACK_ID}.template.json").read_text(encoding="utf-8")
    template = json.loads(text)
    return Size(users, groups, len(template["Resources"]), len(template.get("Outputs", {})),
                len(text.encode()), time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, nargs="*", default=list(GRID_USERS))
    parser.add_argument("--groups", type=int, nargs="*", default=list(GRID_GROUPS))
    parser.add_argument("--long-names", action="store_true",
                        help="32-character group names and a 256-character secret_prefix (the worst case)")
    args = parser.parse_args(argv)
    print("| users | groups | resources | outputs | template bytes | synth s | result |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="stack-size-") as tmp:
        for users in args.users:
            for groups in args.groups:
                if groups > users:
                    continue
                size = measure(users, groups, Path(tmp), long_names=args.long_names)
                print(f"| {size.users:,} | {size.groups:,} | {size.resources:,} | {size.outputs:,} | "
                      f"{size.template_bytes:,} | {size.seconds:.1f} | {size.error or 'ok'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
