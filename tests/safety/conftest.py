"""Fixtures of the safety matrix (docs/safety.md): one emulator per test module, reset per test; every
sandbox is watched (I4) and its Wait states run 5x faster.

`@pytest.mark.safety_slow` marks the heavy variants (the full crash matrix, 200 kills): tests/conftest.py
skips them unless selected (`make safety`), so that `make test` stays within its budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from safety_harness import Harness

from sandbox import faults, synth
from sandbox.demo import Sandbox, Scenario
from sandbox.emulator import Emulator
from sandbox.synth import Assembly

WAIT_SCALE = 0.2


@pytest.fixture(scope="module")
def _running_emulator() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(_running_emulator: Emulator) -> Iterator[Emulator]:
    _running_emulator.reset()
    with faults.scaled_waits(WAIT_SCALE):
        yield _running_emulator


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], tuple[Assembly, dict[str, Any]]]:
    """The real CDK app, synthesized once per user count."""
    return synth.synthesis_cache(tmp_path_factory.mktemp, max_polls=150)


@pytest.fixture
def make_harness(emulator: Emulator, synthesized: Callable[[int], tuple[Assembly, dict[str, Any]]],
                 tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """make_harness(users=1, servers=2) -> a deployed, provisioned sandbox whose key changes are watched."""
    stack = []

    def make(users: int = 1, servers: int = 2, **scenario: Any) -> Harness:
        assembly, settings = synthesized(users)
        sandbox = Sandbox(emulator, assembly, settings, tmp_path / f"sandbox-{len(stack)}",
                          Scenario(users=users, servers=servers, workers=2, **scenario))
        watcher = faults.watch_key_changes(emulator, lambda user, _key, _change: harness.held(user))
        harness = Harness(sandbox, watcher.__enter__())
        stack.append((sandbox, watcher))
        return harness

    yield make
    for sandbox, watcher in reversed(stack):
        watcher.__exit__(None, None, None)
        sandbox.close()
