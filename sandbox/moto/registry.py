"""The one way the sandbox changes moto or botocore: a list of `Patch`es, checked, applied, restored.

A patch names the attribute it replaces (`must_exist=True`) or adds because the library lacks it
(`must_exist=False`). `apply` first checks the whole list — the owning library is the version in `PINNED`,
every replaced name exists, no added name does — and only then sets anything, so an upgrade of moto or
botocore fails loudly here instead of silently changing what the sandbox proves. `restore` puts back
exactly what `apply` replaced, in reverse order.

Standard library only, and nothing imported at module level: the warm interpreter's zygote
(sandbox/warm_python.py) applies its botocore patches through this module without importing moto.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# The versions every patch was written against (requirements/dev.txt pins the same).
PINNED = {"moto": "5.2.5", "botocore": "1.44.5"}


class PatchError(RuntimeError):
    """moto or botocore is not the version, or no longer has the shape, a patch was written for."""


@dataclass
class Patch:
    owner: Any  # the class or module that holds the attribute
    name: str
    make: Callable[[Any], Any]  # original (None for an addition) -> replacement
    must_exist: bool  # True: replaces the library's attribute; False: adds one the library lacks
    original: Any = None


def adds(value: Any) -> Callable[[Any], Any]:
    """A `make` for a replacement that does not wrap the original."""
    return lambda _original: value


def _library(owner: Any) -> str:
    module = owner.__name__ if isinstance(owner, type(importlib)) else owner.__module__
    return str(module).split(".", 1)[0]


def check_version(library: str) -> None:
    found = getattr(importlib.import_module(library), "__version__", None)
    if found != PINNED[library]:
        raise PatchError(f"sandbox patches target {library} {PINNED[library]}, found {found}: review them")


def check(patches: Sequence[Patch], checks: Sequence[Callable[[], None]] = ()) -> None:
    """Raise PatchError unless every patch fits the installed libraries (and each of `checks` passes: a
    guard for what a name alone cannot show, e.g. that a method moto has is still a no-op)."""
    for library in dict.fromkeys(_library(p.owner) for p in patches):
        check_version(library)
    for p in patches:
        exists = p.name in vars(p.owner)
        if p.must_exist and not exists:
            raise PatchError(f"{_library(p.owner)} changed: {p.owner.__name__}.{p.name} no longer exists")
        if not p.must_exist and exists:
            raise PatchError(f"{_library(p.owner)} now has {p.owner.__name__}.{p.name}: drop the sandbox's "
                             "version")
    for guard in checks:
        guard()


def apply(patches: Sequence[Patch], checks: Sequence[Callable[[], None]] = ()) -> list[Patch]:
    """Check every patch (and `checks`), then apply them all; returns what `restore` takes."""
    check(patches, checks)
    applied = []
    for p in patches:
        p.original = vars(p.owner).get(p.name)
        setattr(p.owner, p.name, p.make(p.original))
        applied.append(p)
    return applied


def restore(applied: list[Patch]) -> None:
    """Undo `apply` (emptying `applied`): the last patch applied is the first put back."""
    while applied:
        p = applied.pop()
        if p.original is None:
            delattr(p.owner, p.name)
        else:
            setattr(p.owner, p.name, p.original)


@contextlib.contextmanager
def patched(patches: Sequence[Patch]) -> Iterator[None]:
    """`patches` applied for the length of a `with` block."""
    applied = apply(patches)
    try:
        yield
    finally:
        restore(applied)
