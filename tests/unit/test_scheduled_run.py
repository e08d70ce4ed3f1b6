"""The scheduled run's step: select the due users page by page and start their rotations without waiting,
paced, skipping users whose rotation runs, and naming each rotation so that two runs start it once."""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from rotation.due import page_size
from rotation.names import execution_name
from rotation.settings import load_settings
from rotation_harness import World, handler, settings_dict

STARTED_AT = "2026-12-06T03:00:00.123Z"


def _users(count: int, **overrides: Any) -> dict[str, Any]:
    data = settings_dict()
    template = data["users"][0]
    data["users"] = [{**copy.deepcopy(template), "name": f"svc-{i:03d}", "profile": f"p{i}"}
                     for i in range(count)]
    data["schedule"].update(overrides)
    return data


def _run(world: World, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], list[float], int]:
    """Drive the scheduled machine's loop (begin → select_due → more_users?) to its end."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    selection: dict[str, Any] = {"cursor": 0, "totals": {"checked": 0}, "done": False}
    calls = 0
    while not selection["done"]:
        selection = handler("select_due")({"cursor": selection["cursor"], "totals": selection["totals"],
                                           "started_at": STARTED_AT})
        calls += 1
    return selection["totals"], slept, calls


def _aged(world: World, users: list[str], days: int) -> None:
    """IAM users (under the managed path) whose one key is `days` old; the scheduled run reads IAM only."""
    for user in users:
        world.iam.create_user(UserName=user, Path="/keyrotation/")
        key = world.iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
        world.age_key(user, key, days=days)


def test_due_users_are_started_without_waiting_and_the_others_left_alone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN svc-web's key is 100 days old (max 90), svc-db's is new, and a settings user is not in IAM
    data = settings_dict()
    world.write_settings(data)
    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=100)
    world.add_user("svc-db")
    world.iam.create_user(UserName="svc-other", Path="/keyrotation/")  # managed path, not in the settings
    world.iam.create_access_key(UserName="svc-other")
    # WHEN the scheduled run runs
    totals, slept, _ = _run(world, monkeypatch)
    # THEN exactly svc-web's rotation was started, named after the user and the run's UTC day
    assert world.sfn.users_started() == ["svc-web"]
    assert list(world.sfn.executions) == [execution_name("svc-web", datetime(2026, 12, 6, tzinfo=UTC))]
    assert (totals["checked"], totals["started"], totals["users"]["started"]) == (2, 1, ["svc-web"])
    assert totals["not_in_iam"] == 0 and totals["in_progress"] == 0
    # AND a single start waits for nothing (pacing spaces starts, see the next tests)
    assert slept == []


def test_a_user_outside_iam_or_the_managed_path_is_reported_not_started(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=100)
    totals, _, _ = _run(world, monkeypatch)  # svc-db is in the settings, not in IAM
    assert totals["users"]["not_in_iam"] == ["svc-db"] and world.sfn.users_started() == ["svc-web"]


def test_a_user_whose_rotation_runs_is_in_progress_not_started_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rotation import lock
    from rotation.lock import LockTable

    # GIVEN svc-web is due but its rotation (started by an earlier run) holds the lock, in its grace period
    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=100)
    owner = "arn:aws:states:us-east-1:123456789012:execution:keyrotation-rotation:earlier"
    world.running.add(owner)
    lock.acquire(LockTable(world.ddb, world.table), "svc-web", owner, now=datetime.now(UTC),
                 ttl_seconds=90_000, owner_alive=lambda arn: True)
    # WHEN a scheduled run runs THEN it reports svc-web in progress and starts nothing
    totals, _, _ = _run(world, monkeypatch)
    assert (totals["in_progress"], totals["users"]["in_progress"], totals["started"]) == (1, ["svc-web"], 0)
    assert world.sfn.calls == []
    # AND once that execution has died (lock left behind), the next run starts it (the rotation resumes)
    world.running.discard(owner)
    totals, _, _ = _run(world, monkeypatch)
    assert totals["started"] == 1 and world.sfn.users_started() == ["svc-web"]


def test_two_runs_of_one_day_start_each_due_user_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN both users due
    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=100)
    _aged(world, ["svc-db"], days=95)
    # WHEN two scheduled runs of the same day select them (before either rotation took its lock)
    first, _, _ = _run(world, monkeypatch)
    second, _, _ = _run(world, monkeypatch)
    # THEN one execution per user exists (Step Functions answers the second run's start of a running
    # execution of the same name and input with that execution), and nothing failed
    assert sorted(world.sfn.users_started()) == ["svc-db", "svc-web"] and len(world.sfn.calls) == 4
    assert first["started"] == 2 and second["failed_to_start"] == 0
    # AND once the executions closed, a third run that day does not start another: already started
    for execution in world.sfn.executions.values():
        execution["status"] = "FAILED"
    third, _, _ = _run(world, monkeypatch)
    assert (third["started"], third["already_started"]) == (0, 2)


def test_the_most_overdue_first_and_the_rest_deferred_over_the_cap(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = settings_dict()
    data["schedule"]["max_users_per_run"] = 1
    world.write_settings(data)
    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=100)
    _aged(world, ["svc-db"], days=130)
    totals, _, _ = _run(world, monkeypatch)
    assert world.sfn.users_started() == ["svc-db"]
    assert (totals["deferred"], totals["users"]["deferred"]) == (1, ["svc-web"])


def test_thousands_of_users_take_a_page_a_call_and_a_state_of_constant_size(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    # GIVEN 250 users in the settings (a few in IAM, the rest not), paced at 30 starts a minute
    data = _users(250, starts_per_minute=30)
    world.write_settings(data)
    settings = load_settings(data)
    _aged(world, [f"svc-{i:03d}" for i in range(0, 250, 50)], days=100)
    # WHEN the run loops to its end
    totals, slept, calls = _run(world, monkeypatch)
    # THEN each call checked one page (30 a minute × 240 s = 100 users), every user once
    assert page_size(settings) == 100 and calls == 3 and totals["checked"] == 250
    # AND the starts within a call were spaced 60 s / 30 = 2 s apart (two calls started two users each)
    assert totals["started"] == 5 and slept == [pytest.approx(2.0, abs=0.05)] * 2
    # AND the state carries counts and at most 20 names of a kind, whatever the number of users
    assert totals["not_in_iam"] == 245 and len(totals["users"]["not_in_iam"]) == 20
    assert len(json.dumps(totals)) < 4096


def test_users_overdue_beyond_the_alarm_days_are_counted_and_published_for_the_watchdog(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from handlers import OVERDUE_USERS_METRIC, SCHEDULED_RUN_METRIC

    # GIVEN svc-web 10 days overdue (alarm after 7), svc-db 3 days
    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=100)
    _aged(world, ["svc-db"], days=93)
    capsys.readouterr()
    totals, _, _ = _run(world, monkeypatch)
    assert (totals["overdue"], totals["users"]["overdue"]) == (1, ["svc-web"])
    # THEN the last page published one finished run and the overdue count (the watchdog's two alarms)
    metrics = [line for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    (last,) = [json_line for json_line in metrics if SCHEDULED_RUN_METRIC in json_line]
    import json

    document = json.loads(last)
    assert document[SCHEDULED_RUN_METRIC] == [1.0] and document[OVERDUE_USERS_METRIC] == [1.0]
    assert (document["service"], document["step"]) == ("keyrotation", "select_due")


def test_a_rotation_that_cannot_be_started_fails_the_run_naming_it_after_the_others_started(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rotation.errors import RotationsNotStarted

    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=100)
    _aged(world, ["svc-db"], days=95)
    world.sfn.failing.add(execution_name("svc-db", datetime(2026, 12, 6, tzinfo=UTC)))
    with pytest.raises(RotationsNotStarted, match=r"1 due users' rotations could not be started: svc-db; 1 "
                                                  r"started"):
        _run(world, monkeypatch)
    assert world.sfn.users_started() == ["svc-web"]


@pytest.mark.parametrize(("event", "message"), [
    ({"cursor": -1}, "cursor: must be a non-negative integer"),
    ({"cursor": "0"}, "cursor: must be a non-negative integer"),
    ({"totals": []}, "totals: must be an object or null"),
    ({"started_at": "yesterday"}, "started_at: not an ISO 8601 time"),
])
def test_a_malformed_event_is_refused_and_starts_nothing(world: World, event: dict[str, Any],
                                                         message: str) -> None:
    from rotation.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=message):
        handler("select_due")(event)
    assert world.sfn.calls == []




def test_starts_are_paced_at_the_rate_counting_the_time_each_start_takes(world: World) -> None:
    from rotation import due
    from rotation.lock import LockTable

    # GIVEN 6 due users and 60 starts a minute, StartExecution taking 0.3 s, on a simulated clock
    data = _users(6, starts_per_minute=60)
    world.write_settings(data)
    _aged(world, [f"svc-{i:03d}" for i in range(6)], days=100)
    clock = [0.0]
    starts: list[float] = []

    class SlowSfn:
        def start_execution(self, **_: Any) -> dict[str, Any]:
            starts.append(clock[0])
            clock[0] += 0.3
            return {"executionArn": "arn"}

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    now = datetime.now(UTC)
    # WHEN one call starts them
    page = due.start_page(load_settings(data), iam=world.iam, sfn=SlowSfn(),  # type: ignore[arg-type]
                          table=LockTable(world.ddb, world.table), rotation_machine="arn",
                          owner_alive=lambda _: True, cursor=0, totals=due.Totals(), run_started=now, now=now,
                          sleep=sleep, monotonic=lambda: clock[0])
    # THEN they began exactly one second apart, not 1.3 s (and never faster than the rate)
    assert page.totals.counts["started"] == 6 and page.cursor is None
    assert [round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)] == [1.0] * 5


def test_an_exempt_user_is_skipped_until_its_date_then_rotated(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN svc-web is due, and exempt until tomorrow (for its reason)
    (web_key,) = world.iam_keys()
    world.age_key("svc-web", web_key, days=120)
    data = settings_dict()
    tomorrow = datetime.now(UTC).date().toordinal() + 1
    data["users"][0].update(exempt_until=datetime.fromordinal(tomorrow).date().isoformat(),
                            exempt_reason="vendor appliance, ticket OPS-42")
    world.write_settings(data)
    # WHEN a scheduled run runs THEN svc-web is reported exempt, not started, and not counted overdue
    totals, _, _ = _run(world, monkeypatch)
    assert (totals["exempt"], totals["users"]["exempt"], totals["started"], totals["overdue"]) == (
        1, ["svc-web"], 0, 0)
    # AND once the exemption has passed, it is rotated like any due user
    data["users"][0].update(exempt_until="2020-01-01")
    world.write_settings(data)
    totals, _, _ = _run(world, monkeypatch)
    assert totals["started"] == 1 and totals["exempt"] == 0
