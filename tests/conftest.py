"""Suite-wide: the heavy safety-matrix variants (`@pytest.mark.safety_slow`) run only when asked for.

`make test` skips them to stay within CI's budget; `make safety` (KEYROTATION_SAFETY_SLOW=1, or
`pytest -m safety_slow`) runs them. docs/safety.md lists what each covers.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = ("safety_slow" in (config.getoption("-m") or "")
                or os.environ.get("KEYROTATION_SAFETY_SLOW") == "1")
    if selected:
        return
    skip = pytest.mark.skip(reason="heavy safety scenario: run it with `make safety`")
    for item in items:
        if "safety_slow" in item.keywords:
            item.add_marker(skip)
