"""The Lambda asset stands on its own, as Lambda runs it: only the asset directory (LAMBDA_TASK_ROOT) and the
installed packages on sys.path. The sandbox and the tests also have lambdas/ and agent_scripts/ on their path,
so a module the asset lacks (the agent contract, say) would be found there and no other test would notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from infra_synth import SETTINGS

from infra.asset import stage_lambda_asset
from infra.config import load_config

REPO = Path(__file__).resolve().parents[2]
# Import every handler with nothing but the asset on the path, and report where each of our modules came from.
PROBE = """
import importlib, json, pkgutil, sys
sys.path.insert(0, sys.argv[1])
import handlers
steps = [m.name for m in pkgutil.iter_modules(handlers.__path__) if not m.name.startswith("_")]
for step in steps:
    importlib.import_module("handlers." + step)
ours = {name: getattr(module, "__file__", None) for name, module in sys.modules.items()
        if name.split(".")[0] in ("handlers", "rotation", "keyrotation")}
print(json.dumps({"steps": steps, "modules": ours}))
"""


def test_every_handler_imports_from_the_asset_alone(tmp_path: Path) -> None:
    # GIVEN the asset the CDK app stages
    asset = stage_lambda_asset(load_config(SETTINGS), REPO / "lambdas")
    # (of the agent's package, it carries only the contract, not the agent itself)
    assert sorted(p.name for p in (asset / "keyrotation").iterdir()) == ["__init__.py", "contract.py"]
    # WHEN a fresh, isolated interpreter (no PYTHONPATH, no current directory) imports every handler from it
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(POWERTOOLS_SERVICE_NAME="keyrotation", AWS_DEFAULT_REGION="us-east-1")
    env["LAMBDA_TASK_ROOT"] = str(asset)
    proc = subprocess.run([sys.executable, "-I", "-B", "-c", PROBE, str(asset)], capture_output=True,
                          text=True, cwd=tmp_path, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    # THEN every step's handler imported, and every module of ours came from the asset (the contract too)
    assert "distribute" in found["steps"] and "check_distribution" in found["steps"]
    assert "keyrotation.contract" in found["modules"]
    outside = {name: file for name, file in found["modules"].items() if not str(file).startswith(str(asset))}
    assert outside == {}
