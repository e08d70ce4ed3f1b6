"""Fixtures of the infra tests: `synth`, one synthesis of the app per test run (session scope)."""

from __future__ import annotations

import pytest
from infra_synth import Synth, synthesize


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(tmp_path_factory.mktemp("cdk.out"), tmp_path_factory.mktemp("cdk.out-without-nag"))
