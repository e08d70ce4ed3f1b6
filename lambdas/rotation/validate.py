"""The shape checks of a settings document: each returns the value or raises `InvalidSettings` whose message
starts with the path of the bad field (`users[2].profile: ...`). What a field means is rotation/settings.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from rotation.errors import InvalidSettings


def mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise InvalidSettings(f"{path}: must be a mapping")
    return value


def sequence(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidSettings(f"{path}: must be a list")
    return list(value)


def only(raw: Mapping[str, Any], path: str, *, required: set[str], optional: set[str]) -> None:
    missing = sorted(required - raw.keys())
    if missing:
        raise InvalidSettings(f"{path}.{missing[0]}: required")
    unknown = sorted(raw.keys() - required - optional)
    if unknown:
        raise InvalidSettings(f"{path}.{unknown[0]}: unknown field")


def string(value: Any, path: str, pattern: str | None, expected: str) -> str:
    if not isinstance(value, str) or not value and pattern is None:
        raise InvalidSettings(f"{path}: must be a non-empty string")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise InvalidSettings(f"{path}: {value[:80]!r} is not {expected}")
    return value


def integer(value: Any, path: str, *, minimum: int, maximum: int | None = None) -> int:
    # bool is an int subclass; `true` where a number belongs is a mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSettings(f"{path}: must be an integer")
    if value < minimum:
        raise InvalidSettings(f"{path}: must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InvalidSettings(f"{path}: must be at most {maximum}")
    return value


def unique(values: list[str], path: str, field: str | None) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        where = f"{path}[{i}]" + (f".{field}" if field else "")
        if value in seen:
            raise InvalidSettings(f"{where}: duplicate of {path}[{seen[value]}]")
        seen[value] = i
