"""Sandbox test fixtures: one emulator per test module (moto's state is process-wide), reset per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.emulator import Emulator
from sandbox.fleet import Fleet


@pytest.fixture(scope="module")
def _running_emulator() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(_running_emulator: Emulator) -> Iterator[Emulator]:
    _running_emulator.reset()
    yield _running_emulator


@pytest.fixture
def fleet(emulator: Emulator, tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path / "servers", emulator.endpoint, emulator.region, workers=4)
    yield fleet
    fleet.shutdown()
