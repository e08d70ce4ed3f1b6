#!/usr/bin/env python3
"""The CDK app: read the settings, stage the Lambda asset, build the stack. Makes no AWS calls.

`cdk synth` runs this file; tests and the sandbox call `build_app()` to synthesize in-process.
Settings file: context key `settings` (`cdk synth -c settings=path.yaml`), default `config/settings.yaml`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
# The engine's settings validator lives in lambdas/ (the Lambda asset root), and is imported as `rotation`;
# the contract with the agent (agent_scripts/keyrotation/contract.py) by the engine and the renderer.
for code_root in (ROOT / "lambdas", ROOT / "agent_scripts"):
    if str(code_root) not in sys.path:
        sys.path.insert(0, str(code_root))

import aws_cdk as cdk  # noqa: E402
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.asset import stage_lambda_asset  # noqa: E402
from infra.config import load_config  # noqa: E402
from infra.stack import KeyRotationStack  # noqa: E402
from ssm_documents.render import render_document  # noqa: E402

STACK_ID = "IamKeyRotation"
DEFAULT_SETTINGS = "config/settings.yaml"
LAMBDA_REQUIREMENTS = ROOT / "requirements" / "lambda.txt"


def powertools_version(requirements: Path = LAMBDA_REQUIREMENTS) -> str:
    """The Powertools release pinned for the Lambdas; the deployed layer is that same release."""
    match = re.search(r"^aws-lambda-powertools==(\S+)\s*$", requirements.read_text(encoding="utf-8"), re.M)
    if match is None:
        raise ValueError(f"{requirements}: aws-lambda-powertools is not pinned with ==")
    return match.group(1)


def build_app(
    settings_path: str | Path | None = None,
    *,
    context: dict[str, Any] | None = None,
    outdir: str | None = None,
    checks: bool = True,
    builtin_validation: bool = True,
) -> cdk.App:
    """The app with its one stack (`STACK_ID`), not yet synthesized.

    `settings_path` wins over the `settings` context key; a relative path is relative to the repository.
    `checks` adds cdk-nag's AwsSolutionsChecks, whose unacknowledged findings fail the synth.
    `builtin_validation=False` skips aws-cdk-lib's own template validator (~1.5 s; tests run cfn-lint).
    """
    app = cdk.App(context=context, outdir=outdir, builtin_cloud_formation_validation=builtin_validation)
    chosen = settings_path or app.node.try_get_context("settings") or DEFAULT_SETTINGS
    path = Path(chosen)
    config = load_config(path if path.is_absolute() else ROOT / path)
    KeyRotationStack(
        app,
        STACK_ID,
        # Several stacks in one account and region (e.g. more server groups than one stack holds) need
        # their own CloudFormation names: `cdk deploy -c stack_name=IamKeyRotation-b -c settings=…`.
        stack_name=app.node.try_get_context("stack_name"),
        description="IAM access-key rotation for servers outside AWS (SSM hybrid nodes)",
        config=config,
        asset_dir=stage_lambda_asset(config, ROOT / "lambdas"),
        document_content=render_document(),
        powertools_version=powertools_version(),
        # Where Powertools' public parameter does not exist: `-c powertools_layer_parameter=/my/layer-arn`.
        powertools_parameter=app.node.try_get_context("powertools_layer_parameter"),
    )
    if checks:
        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


if __name__ == "__main__":
    build_app().synth()
