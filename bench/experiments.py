"""Candidate fixes tried from the outside, at run time, to measure them before anyone changes shared code.

`python -m bench --experiment NAME ...` applies each named candidate in every measurement process (a
function that patches and returns its undo); records carry the name and never replace the baseline's.

None is pending. The two measured so far are part of the code since 59bd4bc: `fast-lci` (the sandbox
answers ListCommandInvocations with `json.dumps`, sandbox/moto/) and `cached-clients` (Lambdas reuse
their boto3 clients, lambdas/handlers/_clients.py); bench/analysis.md has their figures.
"""

from __future__ import annotations

from collections.abc import Callable

EXPERIMENTS: dict[str, Callable[[], Callable[[], None]]] = {}
