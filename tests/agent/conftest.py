"""Fixtures: a moto server for the whole session, and per test a simulated server and an IAM identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_support import FakeSts, Identity, Server, make_identity, make_server, running_moto


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    yield from running_moto()


@pytest.fixture
def identity(moto_url: str) -> Identity:
    return make_identity(moto_url)


@pytest.fixture
def server(tmp_path: Path, moto_url: str) -> Server:
    root = tmp_path / "server"
    root.mkdir()
    return make_server(root, moto_url)


@pytest.fixture
def fake_sts() -> Iterator[type[FakeSts]]:
    made: list[FakeSts] = []

    class Factory(FakeSts):
        def __init__(self, failures: int) -> None:
            super().__init__(failures)
            made.append(self)

    yield Factory
    for sts in made:
        sts.close()
