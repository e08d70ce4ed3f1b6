"""The Lambda asset: the `lambdas/` tree, the agent contract and the validated settings (`settings.json`)."""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

from infra.config import InfraConfig
from infra.constructs.steps import SETTINGS_FILE

# The engine's half of the contract with the agent: the same module the document ships to the servers, in its
# package (`keyrotation.contract`; the package's __init__ imports nothing).
AGENT_PACKAGE = Path(__file__).resolve().parent.parent / "agent_scripts" / "keyrotation"
CONTRACT_FILES = ("__init__.py", "contract.py")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", SETTINGS_FILE)


def stage_lambda_asset(config: InfraConfig, lambdas_dir: Path) -> Path:
    """Copy `lambdas_dir` into a fresh directory, add the contract and `settings.json`; it goes at exit.

    CDK copies the asset into the cloud assembly (content-hashed) when the function is created, so the
    staging directory is only needed while the app is built. A fresh directory per call keeps parallel synths
    (pytest workers, the sandbox) from seeing each other's settings.
    """
    staging = Path(tempfile.mkdtemp(prefix="keyrotation-lambda-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    shutil.copytree(lambdas_dir, staging, ignore=_IGNORED, dirs_exist_ok=True)
    (staging / AGENT_PACKAGE.name).mkdir()
    for name in CONTRACT_FILES:  # fleet.py imports keyrotation.contract (docs/design.md §4)
        shutil.copy2(AGENT_PACKAGE / name, staging / AGENT_PACKAGE.name / name)
    (staging / SETTINGS_FILE).write_text(
        json.dumps(config.lambda_settings(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return staging
