"""`npx --no-install cdk synth` works from the repository, offline, with the pinned CLI (about 10 s)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from infra_synth import ROOT


@pytest.mark.slow
def test_cdk_synth_works_offline_from_the_repository(tmp_path: Path) -> None:
    npx = shutil.which("npx")
    assert npx, "node/npx is required"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "CDK_")) and key not in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
    }
    env.update(
        # The venv's python first, as `make synth` does: cdk.json says "python3 app.py".
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        CDK_DISABLE_CLI_TELEMETRY="true",
        CDK_DISABLE_VERSION_CHECK="1",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
        # No credentials, no region; any network attempt goes to a closed port.
        AWS_EC2_METADATA_DISABLED="true",
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        NO_PROXY="",
    )
    result = subprocess.run(
        [npx, "--no-install", "cdk", "synth", "--quiet", "--output", str(tmp_path / "cdk.out")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((tmp_path / "cdk.out" / "IamKeyRotation.template.json").read_text(encoding="utf-8"))
    # The default settings (config/settings.yaml) were used: its server group's role is an output.
    outputs = json.dumps(template.get("Outputs", {}))
    assert "ActivationRoleweb" in outputs.replace("-", "")
