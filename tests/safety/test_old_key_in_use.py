"""The old key is still used after the cut-over by a consumer nobody knew about → deactivation is blocked,
the alert names the service and region, the old key stays Active and every server keeps a working key."""

from __future__ import annotations

from collections.abc import Callable

from safety_harness import Harness

from sandbox import faults


def test_old_key_used_after_cutover_blocks_deactivation(make_harness: Callable[..., Harness]) -> None:
    # GIVEN a user on 2 servers, and an unknown consumer that keeps using the old key from eu-west-3
    harness = make_harness(users=1, servers=2)
    old_key = next(iter(harness.keys()))

    margin = harness.deployment.settings["defaults"]["usage_margin_seconds"]

    def unknown_consumer() -> None:
        # seen after the cut-over: what IAM reports once the observation period has passed
        faults.key_used_by(harness.emulator, "svc-web", old_key, service="s3", region="eu-west-3",
                           after_seconds=margin + 60)

    # WHEN the rotation reaches its usage check (the fleet has confirmed the new key)
    with faults.on_step(harness.function("check_usage"), "before", unknown_consumer) as calls:
        outcome = harness.run()
    assert calls == [1]
    # THEN it stops with OldKeyStillInUse naming the service and the region, before deactivating anything
    assert outcome.status == "FAILED" and outcome.user.error == "OldKeyStillInUse", outcome.user
    assert "s3" in (outcome.user.cause or "") and "eu-west-3" in (outcome.user.cause or "")
    assert harness.keys()[old_key] == "Active"
    assert not [c for c in harness.changes if c.key_id == old_key], harness.changes
    alert = next(m for m in harness.notifications() if "OldKeyStillInUse" in m)
    assert "s3" in alert and "eu-west-3" in alert and old_key in alert, alert
    # AND the servers hold the new key (confirmed), which is Active: I1-I5 hold
    assert set(harness.held().values()) == {outcome.user.new_key_id}
    assert outcome.violations == [], outcome.violations
