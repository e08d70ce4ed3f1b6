"""The list of steps the CDK app deploys is exactly the set of handler modules."""

from __future__ import annotations

from pathlib import Path

from handlers import STEPS


def test_every_step_has_a_handler_module_and_every_handler_module_is_a_step() -> None:
    # GIVEN the handler package on disk
    package = Path(__file__).resolve().parents[2] / "lambdas" / "handlers"
    modules = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
    # THEN STEPS names each module once, and nothing else
    assert len(STEPS) == len(set(STEPS))
    assert set(STEPS) == modules
