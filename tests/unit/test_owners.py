"""Owners hear about their users' keys: results and advance notices are tagged with the owner (the SNS
message attribute their filtered subscription matches); operators' unfiltered subscription gets all."""

from __future__ import annotations

import time

import pytest
from rotation_harness import World, drive, handler, settings_dict

OWNER = "web-team@example.com"


def _with_owner(world: World, **schedule: int) -> None:
    data = settings_dict()
    data["users"][0]["owner"] = OWNER
    data["schedule"].update(schedule)
    world.write_settings(data)


def test_the_rotation_result_is_tagged_with_the_owner_and_says_it_is_compliant(world: World) -> None:
    _with_owner(world)
    run = drive(world)
    assert run.error is None, run.error
    ((message, owner),) = world.messages_with_owner()
    assert owner == OWNER and "Outcome: rotated" in message
    new_key = run.rotation["new_key_id"]
    assert f"Compliance: compliant (the old key is deleted; the only active key, {new_key}" in message


def test_a_user_without_owner_is_published_untagged(world: World) -> None:
    drive(world)
    ((_, owner),) = world.messages_with_owner()
    assert owner is None


def test_the_owner_hears_ahead_of_the_rotation_and_nothing_starts(world: World,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN svc-web's key is 86 days old (max 90) and owners hear 7 days ahead
    _with_owner(world, notice_days=7)
    (key,) = world.iam_keys()
    world.age_key("svc-web", key, days=86)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    # WHEN the scheduled run runs
    result = handler("select_due")({"cursor": 0, "totals": {"checked": 0},
                                    "started_at": "2026-12-06T03:00:00Z"})
    # THEN the owner got a notice naming the day, tagged for its subscription; no rotation was started
    ((message, owner),) = world.messages_with_owner()
    assert owner == OWNER and "reaches its maximum age of 90 days on" in message
    assert result["totals"]["noticed"] == 1 and world.sfn.calls == []


def test_no_notice_when_notices_are_off_or_the_key_is_far_from_due(world: World,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    (key,) = world.iam_keys()
    world.age_key("svc-web", key, days=86)
    _with_owner(world, notice_days=0)
    handler("select_due")({"cursor": 0, "totals": {"checked": 0}})
    _with_owner(world, notice_days=3)
    handler("select_due")({"cursor": 0, "totals": {"checked": 0}})
    assert world.messages_with_owner() == []


class FakeConfig:
    def __init__(self, error: str | None = None) -> None:
        self.asked: list[list[str]] = []
        self.error = error

    def start_config_rules_evaluation(self, *, ConfigRuleNames: list[str]) -> dict[str, object]:  # noqa: N803
        from botocore.exceptions import ClientError

        self.asked.append(ConfigRuleNames)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "StartConfigRulesEvaluation")
        return {}


def _with_config_rule(world: World) -> None:
    data = settings_dict()
    data["alerts"]["config_rule"] = "access-keys-rotated"
    world.write_settings(data)


@pytest.mark.parametrize(("error", "note"), [
    (None, "Compliance: asked AWS Config to re-evaluate access-keys-rotated"),
    ("NoSuchConfigRuleException",
     "Compliance: could not ask AWS Config to re-evaluate access-keys-rotated: NoSuchConfigRuleException"),
])
def test_after_a_rotation_aws_config_is_asked_to_reevaluate_the_key_age_rule(
    world: World, monkeypatch: pytest.MonkeyPatch, error: str | None, note: str
) -> None:
    from handlers import _clients

    # GIVEN the account's Config rule access-keys-rotated is named in the settings
    _with_config_rule(world)
    config = FakeConfig(error)
    monkeypatch.setattr(_clients, "config", lambda: config)
    # WHEN a rotation deletes the old key THEN notify asks Config to evaluate the rule again (a failure to
    # ask is reported, the rotation still succeeded)
    run = drive(world)
    assert run.error is None, run.error
    assert config.asked == [["access-keys-rotated"]]
    ((message, _),) = world.messages_with_owner()
    assert note in message


def test_a_failed_rotation_does_not_ask_config(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from handlers import _clients

    _with_config_rule(world)
    config = FakeConfig()
    monkeypatch.setattr(_clients, "config", lambda: config)
    sorted(world.ssm.servers.values(), key=lambda s: s.instance_id)[0].behaviour = "fail"
    run = drive(world)
    assert run.error is not None and config.asked == []
