"""Fixtures of the infra tests: `synth`, one synthesis of the app per test run (shared by xdist workers)."""

from __future__ import annotations

import os

import pytest
from infra_synth import Synth, synthesize


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's directory, shared by its workers
    return synthesize(base / "infra-synth")
