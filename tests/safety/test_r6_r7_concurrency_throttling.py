"""R6: two rotations of one user started together; R7: IAM, STS, SSM and Secrets Manager throttled.

R6: exactly one proceeds; the other fails fast (before creating anything) saying which execution holds the
user; never a third key. R7: about 30 % of the product's calls to the four services are answered with the
service's throttling error by the emulator's server (botocore's standard retry mode sees real HTTP 400
throttling responses); the rotation completes and every side effect happened exactly as often as without
throttling.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from safety_harness import Harness

from sandbox import faults

# Side effects of one standard rotation of one user (rotate + verify rounds), as executed by the emulator.
ONE_ROTATION = {
    "iam:CreateAccessKey": 1,
    "iam:UpdateAccessKey": 1,
    "iam:DeleteAccessKey": 1,
    "secretsmanager:PutSecretValue": 1,
    "ssm:SendCommand": 2,
}


def _side_effects(log: faults.ThrottleLog) -> dict[str, int]:
    return {name: log.executed[name] for name in ONE_ROTATION}


@pytest.mark.parametrize("modes", [("standard", "standard"),
                                   pytest.param(("standard", "emergency"), marks=pytest.mark.safety_slow)])
def test_two_rotations_of_one_user_started_together(make_harness: Callable[..., Harness],
                                                    modes: tuple[str, str]) -> None:
    # GIVEN one user on 2 servers
    harness = make_harness(users=1, servers=2)
    with faults.throttle(rate=0.0) as calls:
        # WHEN two rotations of the user are started at the same moment
        arns = [harness.start(mode=mode, name=f"together-{i}") for i, mode in enumerate(modes)]
        harness.wait(*arns)
    sfn = harness.emulator.client("stepfunctions")
    statuses = {arn: sfn.describe_execution(executionArn=arn) for arn in arns}
    winners = [arn for arn, d in statuses.items() if d["status"] == "SUCCEEDED"]
    losers = [arn for arn, d in statuses.items() if d["status"] == "FAILED"]
    # THEN exactly one proceeds and completes
    assert len(winners) == 1 and len(losers) == 1, {a: d["status"] for a, d in statuses.items()}
    [winner], [loser] = winners, losers
    # AND the other fails fast at prepare, naming the execution that holds the user
    entered = harness.states_entered(loser)
    assert "create_key" not in entered and "distribute" not in entered, entered
    error = next(json.loads(e["stateEnteredEventDetails"]["input"])["error"] for e in harness.history(loser)
                 if e.get("stateEnteredEventDetails", {}).get("name") == "rollback")
    assert error["Error"] == "RotationInProgress", error
    assert f"already running in {winner}" in json.loads(error["Cause"])["errorMessage"], error
    assert statuses[loser]["stopDate"] < statuses[winner]["stopDate"]
    # AND the alert of the failed one says why
    assert any("RotationInProgress" in m and winner.rsplit(":", 1)[-1] in m for m in harness.notifications())
    # AND no third key: one key was created, the old one deleted, I1-I5 hold. Whichever started first wins:
    # an emergency winner distributes once (no `verify` round), a standard one twice.
    winner_mode = json.loads(statuses[winner]["input"]).get("mode", "standard")
    expected = {**ONE_ROTATION, "ssm:SendCommand": 1 if winner_mode == "emergency" else 2}
    assert _side_effects(calls) == expected, (winner_mode, dict(calls.executed))
    assert len(harness.keys()) == 1
    assert harness.check() == []


@pytest.mark.parametrize(("seed", "servers"), [(1, 1), pytest.param(2, 2, marks=pytest.mark.safety_slow),
                                               pytest.param(3, 3, marks=pytest.mark.safety_slow)])
def test_rotation_completes_with_30_percent_of_calls_throttled(make_harness: Callable[..., Harness],
                                                               seed: int, servers: int) -> None:
    # GIVEN one user on some servers, and ~30 % of IAM/STS/SSM/Secrets Manager calls throttled (the first
    # call of every API always)
    harness = make_harness(users=1, servers=servers)
    with faults.throttle(rate=0.3, seed=seed, first=1) as log:
        # WHEN the rotation runs
        outcome = harness.run()
    # THEN it completes through retries
    assert outcome.status == "SUCCEEDED", (outcome.user.error, outcome.user.cause, dict(log.throttled))
    assert log.throttled_services() == {"iam", "sts", "ssm", "secretsmanager"}, dict(log.throttled)
    share = sum(log.throttled.values()) / sum(log.attempts.values())
    assert 0.2 <= share <= 0.6, (share, dict(log.attempts))
    print(f"R7 figures: seed {seed}: {sum(log.throttled.values())} of {sum(log.attempts.values())} requests "
          f"throttled ({share:.0%}); by API {dict(log.throttled)}")
    # AND every side effect happened exactly once (twice for the two distribution rounds)
    assert _side_effects(log) == ONE_ROTATION, dict(log.executed)
    assert outcome.violations == [], outcome.violations
    assert set(harness.held().values()) == {outcome.user.new_key_id}


def test_verify_key_survives_three_throttled_sts_calls(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(users=1, servers=1)

    def verify_key_sts(service: str, action: str, user_agent: str) -> bool:
        return service == "sts" and faults.from_lambda(user_agent)

    with faults.throttle(rate=0.0, first=3, only=verify_key_sts) as log:
        outcome = harness.run()
    assert log.throttled["sts:GetCallerIdentity"] == 3, dict(log.attempts)
    assert outcome.status == "SUCCEEDED", (outcome.user.error, outcome.user.cause)
