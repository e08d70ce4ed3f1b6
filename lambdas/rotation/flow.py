"""The rotation's flow, declared once: the modes, which steps each mode runs after `prepare`, in order, the
state each `resume_from` enters, and where the modes part ways (FORKS).

The CDK construct (infra/constructs/workflows.py) builds its mode Choice states from FORKS and its resume
Choice from RESUME_TARGETS; the unit harness (tests/unit/rotation_harness.py) drives ORDERS; `distribute`
(rotation/steps.py) reads ORDERS to choose its action; tests/infra/test_rotation_machine.py walks the
synthesized machine to check it runs exactly ORDERS. Who may deactivate before the fleet confirmed is not
read from here: rotation/steps.py names the emergency mode itself (invariant 1).

`check_distribution` repeats until the distribution is done (a Wait of `poll_seconds` between polls); the
machine's Waits (observe, grace) are not steps. `rollback` and `notify` are the failure path and the end.
Which Lambda, domain function and permissions each step has: infra/constructs/steps.py, `STEPS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Mode = Literal["standard", "emergency", "dry_run"]
STANDARD_MODE: Final = "standard"  # the default mode, and the Choice states' `otherwise`
EMERGENCY_MODE: Final = "emergency"
DRY_RUN_MODE: Final = "dry_run"
MODES: tuple[Mode, ...] = (STANDARD_MODE, EMERGENCY_MODE, DRY_RUN_MODE)

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
# Each mode's steps between prepare and notify; a dry run reports its plan and runs none.
ORDERS: dict[Mode, tuple[str, ...]] = {STANDARD_MODE: STANDARD, EMERGENCY_MODE: EMERGENCY, DRY_RUN_MODE: ()}

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
# A fork's next state meaning "the state RESUME_TARGETS names for the rotation's `resume_from`".
RESUME: Final = "resume"


@dataclass(frozen=True)
class Fork:
    """A Choice state where the modes part ways: `next[mode]` is the state each mode goes to.

    The Choice tests the modes whose next state differs from standard's, in this order, then `by_action`
    (the rotation's `action` -> next state: where standard's `rotate` and `verify` distributions part ways),
    and sends every other rotation standard's way. A mode not in `next` never reaches the fork.
    """

    next: Mapping[Mode, str]
    by_action: Mapping[str, str] = field(default_factory=dict)


# Choice state name -> where each mode goes from it (the machine's other transitions are the same in every
# mode). Emergency deactivates the old key right after promotion, before the fleet has the new key, and
# deletes it as soon as the fleet confirms (no observation, no grace period).
FORKS: dict[str, Fork] = {
    # after prepare: a dry run only reports; the others resume where prepare found the work done.
    "route": Fork(next={STANDARD_MODE: RESUME, EMERGENCY_MODE: RESUME, DRY_RUN_MODE: "notify"}),
    "after_promote": Fork(next={STANDARD_MODE: "distribute", EMERGENCY_MODE: "deactivate"}),
    "after_deactivate": Fork(next={STANDARD_MODE: "wait_grace", EMERGENCY_MODE: "distribute"}),
    # after a confirmed distribution: standard observes the old key after `rotate`, deletes it after `verify`.
    "after_distribution": Fork(
        next={STANDARD_MODE: "wait_observe", EMERGENCY_MODE: "delete"}, by_action={"verify": "delete"}
    ),
}


def verifies(mode: Mode) -> bool:
    """`mode` distributes the new key a second time, to `verify` it once the old key is Inactive."""
    return ORDERS[mode].count("distribute") > 1
