"""R1: a crash at every step boundary of the rotation machine, then a new execution resumes or stops safely.

A boundary = (mode, step, phase, kind):
- step: every Lambda task of the machine on that mode's path (rollback and notify included);
- phase: `before` the handler (nothing done) or `after` it (its side effect done, Step Functions sees a
  failure);
- kind: `lambda` (the function errors: Retry/Catch/rollback run as designed) or `abort` (the execution is
  stopped right there: no Catch, no rollback, the lock stays with a dead execution).

After the crashed execution I1–I5 must hold (emergency mode may leave the old key Inactive: documented), and
a new execution of the same mode must finish the rotation with the user's second key — never a third.
`make test` runs a sample (FAST); `-m safety_slow` runs every boundary.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from safety_harness import Harness

from sandbox import faults

STANDARD_PATH = ("prepare", "create_key", "verify_key", "promote", "distribute", "check_distribution",
                 "check_usage", "deactivate", "delete", "notify", "rollback")
# Emergency: deactivate right after promote; no usage check, no grace, no verify round.
EMERGENCY_PATH = ("prepare", "create_key", "verify_key", "promote", "deactivate", "distribute",
                  "check_distribution", "delete", "notify", "rollback")
PHASES = ("before", "after")
KINDS = ("lambda", "abort")

BOUNDARIES = [
    (mode, step, phase, kind)
    for mode, path in (("standard", STANDARD_PATH), ("emergency", EMERGENCY_PATH))
    for step in path
    for phase in PHASES
    for kind in KINDS
]
# The sample `make test` runs: both modes, both phases, both kinds, the steps with the riskiest side effects.
FAST = {
    ("standard", "create_key", "after", "abort"),
    ("standard", "deactivate", "after", "lambda"),
    ("emergency", "deactivate", "after", "abort"),
}


def _param(boundary: tuple[str, str, str, str]) -> object:
    marks = () if boundary in FAST else (pytest.mark.safety_slow,)
    return pytest.param(*boundary, id="-".join(boundary), marks=marks)


def _crash_run(harness: Harness, mode: str, step: str, phase: str, kind: str) -> faults.Crash:
    """Start a rotation and crash it at the boundary. Rollback is reached by failing check_distribution."""
    arn = harness.start(mode=mode, name=f"crash-{mode}-{step}-{phase}-{kind}")
    function = harness.function(step)
    with faults.crash_step(harness.emulator, function, phase,  # type: ignore[arg-type]
                           kind=kind, execution_arn=arn) as crash:  # type: ignore[arg-type]
        if step == "rollback":
            # rollback runs only on the failure path: make the first distribution check fail first
            with faults.crash_step(harness.emulator, harness.function("check_distribution"), "after"):
                harness.wait(arn)
        else:
            harness.wait(arn)
    assert crash.crashed == [function], f"the boundary {step}/{phase} was never reached"
    status = harness.emulator.client("stepfunctions").describe_execution(executionArn=arn)["status"]
    entered = harness.states_entered(arn)
    if kind == "abort":
        # moto ends a stopped execution whose task then fails as FAILED (AWS: ABORTED); either way nothing
        # after the crashed step ran: no Catch, no rollback, no notify
        assert status in ("ABORTED", "FAILED") and entered[-1] == step, (status, entered)
    else:
        # the failure path ran: rollback, then notify (each may be the crashed step itself); a crashed notify
        # goes straight to the Fail state (the rotation itself may have finished)
        path = {"notify"} if step == "notify" else {"rollback", "notify"}
        assert status == "FAILED" and path <= set(entered) and entered[-1] == "failed", (status, entered)
    return crash


@pytest.mark.parametrize(("mode", "step", "phase", "kind"), [_param(b) for b in BOUNDARIES])
def test_crash_at_a_boundary_then_a_new_execution_finishes(
    make_harness: Callable[..., Harness], mode: str, step: str, phase: str, kind: str
) -> None:
    # GIVEN a user whose key is on 2 servers
    harness = make_harness(users=1, servers=2)
    with faults.throttle(rate=0.0) as calls:  # rate 0: only counts what was executed
        # WHEN the rotation dies at the boundary
        _crash_run(harness, mode, step, phase, kind)
        # THEN nothing unsafe is left behind (emergency: the leaked old key may already be Inactive)
        after_crash = harness.outcome(mode=mode, early_deactivation_ok=True)
        assert after_crash.violations == [], after_crash.violations
        if mode == "standard" and kind == "lambda" and step != "rollback":
            # the failure path's rollback reactivated the old key if the crashed run had deactivated it
            assert after_crash.user.old_key in ("Active", "deleted"), after_crash.user
        # WHEN the operator starts a new execution of the same mode
        resumed = harness.run(mode=mode)
    # THEN it finishes the rotation: every server on the new key, old key deleted, I1-I5 hold
    assert resumed.status == "SUCCEEDED", (resumed.user.error, resumed.user.cause)
    assert resumed.violations == [], resumed.violations
    keys = harness.keys()
    assert list(keys.values()) == ["Active"] and resumed.user.old_key == "deleted", keys
    [new_key] = keys
    assert set(harness.held().values()) == {new_key}
    # AND exactly one key was ever created: the crash never led to a third (or a second new) key
    created = calls.executed["iam:CreateAccessKey"]
    if after_crash.user.old_key == "deleted":
        # the crashed execution had already finished the rotation; the new one is a rotation of its own
        assert step in ("delete", "notify") and phase == "after" or step == "notify", (step, phase)
        assert created == 2, dict(calls.executed)
    else:
        assert created == 1, dict(calls.executed)


def test_the_matrix_covers_every_task_of_the_deployed_machine(make_harness: Callable[..., Harness]) -> None:
    # A step added to the machine without a row in this matrix fails here.
    harness = make_harness(users=1, servers=1)
    sfn = harness.emulator.client("stepfunctions")
    definition = json.loads(sfn.describe_state_machine(
        stateMachineArn=harness.deployment.rotation_machine)["definition"])
    tasks = {name for name, state in definition["States"].items() if state["Type"] == "Task"}
    assert tasks == set(STANDARD_PATH)
    assert set(EMERGENCY_PATH) == set(STANDARD_PATH) - {"check_usage"}
    assert len(BOUNDARIES) == (len(STANDARD_PATH) + len(EMERGENCY_PATH)) * len(PHASES) * len(KINDS) == 84
