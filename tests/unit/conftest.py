"""Fixtures of the engine's unit tests; most live in rotation_harness.py (see there)."""

from collections.abc import Iterator

import pytest
from rotation_harness import aws_env, drive_rotation, leak_watch, world

__all__ = ["aws_env", "drive_rotation", "fresh_clients", "leak_watch", "world"]


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    """Each test is a new Lambda process: it makes its own boto3 clients (handlers/_clients.py keeps one per
    service per process), under its own moto mock and environment."""
    from handlers import _clients  # (not at collection, like the handlers)

    _clients._client.cache_clear()
    yield
    _clients._client.cache_clear()
