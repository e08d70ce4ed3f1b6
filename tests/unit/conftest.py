"""Fixtures of the engine's unit tests; they live in rotation_harness.py (see there)."""

from rotation_harness import aws_env, drive_rotation, leak_watch, world

__all__ = ["aws_env", "drive_rotation", "leak_watch", "world"]
