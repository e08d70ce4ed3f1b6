"""The rotation's flow, declared once: which steps each mode runs after `prepare`, in order, and the state
each `resume_from` enters. The CDK construct (infra/constructs/workflows.py) builds its resume Choice from
RESUME_TARGETS, the unit harness (tests/unit/rotation_harness.py) drives STANDARD and EMERGENCY, and
tests/infra/test_rotation_machine.py walks the synthesized machine to check it runs exactly these orders.

`check_distribution` repeats until the distribution is done (a Wait of `poll_seconds` between polls); the
machine's Waits (observe, grace) are not steps. `rollback` and `notify` are the failure path and the end.
"""

from __future__ import annotations

# Standard: distribute twice — `rotate`, then, after the old key is deactivated and the grace period,
# `verify` (every server proves the new key still works) — then delete.
STANDARD = (
    "create_key",
    "verify_key",
    "promote",
    "distribute",
    "check_distribution",
    "check_usage",
    "deactivate",
    "distribute",
    "check_distribution",
    "delete",
)
# Emergency (old key believed leaked): deactivate right after promote, one `rotate` distribution, delete.
EMERGENCY = (
    "create_key",
    "verify_key",
    "promote",
    "deactivate",
    "distribute",
    "check_distribution",
    "delete",
)
# `resume_from` (what prepare found done) -> the state a rotation resumes at. check_usage resumes at the
# observation Wait before it: last-used data right after a cut-over is not yet trustworthy.
RESUME_TARGETS = {
    "create_key": "create_key",
    "verify_key": "verify_key",
    "promote": "promote",
    "distribute": "distribute",
    "check_usage": "wait_observe",
    "deactivate": "deactivate",
    "delete": "delete",
    "done": "notify",
}
RESUME_POINTS = tuple(RESUME_TARGETS)
