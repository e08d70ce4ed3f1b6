"""Sandbox test fixtures: one emulator per test module (moto's state is process-wide), reset per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sandbox import synth
from sandbox.demo import Sandbox, Scenario
from sandbox.emulator import Emulator
from sandbox.fleet import Fleet
from sandbox.synth import Assembly


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


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], tuple[Assembly, dict[str, Any]]]:
    """The real CDK app, synthesized once per user count."""
    return synth.synthesis_cache(tmp_path_factory.mktemp, max_polls=60)


@pytest.fixture
def make_sandbox(emulator: Emulator, synthesized: Callable[[int], tuple[Assembly, dict[str, Any]]],
                 tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    made: list[Sandbox] = []

    def make(users: int = 1, **scenario: Any) -> Sandbox:
        assembly, settings = synthesized(users)
        sandbox = Sandbox(emulator, assembly, settings, tmp_path, Scenario(users=users, **scenario))
        made.append(sandbox)
        return sandbox

    yield make
    for sandbox in made:
        sandbox.close()
