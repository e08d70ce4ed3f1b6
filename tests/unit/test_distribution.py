"""Distribution: only servers that succeeded *and* reported the new key count; failures are named."""

from __future__ import annotations

import pytest
from rotation.fleet import RESULT_MARKER, parse_result
from rotation_harness import World, drive, handler


def _fail_one(world: World, behaviour: str) -> str:
    instance_id = sorted(world.ssm.servers)[0]
    world.ssm.servers[instance_id].behaviour = behaviour
    return instance_id


def test_partial_failure_names_the_server_and_leaves_the_old_key_active(world: World) -> None:
    # GIVEN one of three servers cannot write its credentials file
    (old_key,) = world.iam_keys()
    failing = _fail_one(world, "fail")
    # WHEN the rotation runs
    run = drive(world)
    # THEN it fails naming the server and the agent's reason
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert (
        f"{failing} (Failed: write_failed: cannot write /home/app/.aws/credentials)" in run.error["message"]
    )
    # AND the old key is untouched (still Active), so the failing server keeps working
    assert world.iam_keys()[old_key] == "Active"
    assert "deactivate" not in run.ran
    # AND the lock is released and the operator is told which server failed
    assert world.lock_owner() is None
    (message,) = world.messages()
    assert failing in message and "TargetsUnconfirmed" in message
    # AND the last successful poll's counts are not passed off as the final ones (the error line has them)
    distribution_line = next(line for line in message.splitlines() if line.startswith("Distribution"))
    assert "at the poll before the failing one" in distribution_line, message


def test_after_fixing_the_server_a_new_run_resumes_at_distribution(world: World) -> None:
    failing = _fail_one(world, "fail")
    first = drive(world)
    world.ssm.servers[failing].behaviour = "ok"
    run = drive(world)
    assert run.error is None, run.error
    assert run.rotation["classification"] == "resumable"
    assert run.rotation["new_key_id"] == first.rotation["new_key_id"]
    assert world.server_keys() == {first.rotation["new_key_id"]}


def test_success_without_the_marker_is_not_confirmed(world: World) -> None:
    (old_key,) = world.iam_keys()
    silent = _fail_one(world, "no_marker")
    run = drive(world)
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert f"{silent} (Success: no {RESULT_MARKER} line in the output)" in run.error["message"]
    assert world.iam_keys()[old_key] == "Active"


def test_a_server_reporting_another_key_is_not_confirmed(world: World) -> None:
    wrong = _fail_one(world, "wrong_key")
    run = drive(world)
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert f"{wrong} (Success: agent reported key AKIAWRONGWRONGWRONG0" in run.error["message"]


def test_a_server_that_never_answers_fails_after_max_polls(world: World) -> None:
    (old_key,) = world.iam_keys()
    stuck = _fail_one(world, "pending")
    run = drive(world)
    assert run.error is not None and run.error["name"] == "TargetsUnconfirmed"
    assert "did not confirm" in run.error["message"] and stuck in run.error["message"]
    assert "after 5 polls" in run.error["message"]
    assert run.ran.count("check_distribution") == 4  # the 5th poll raised
    assert world.iam_keys()[old_key] == "Active"


def test_invocations_not_yet_visible_count_as_pending(world: World) -> None:
    # GIVEN ListCommandInvocations answers InvocationDoesNotExist right after SendCommand
    world.ssm.not_yet_visible = 1
    run = drive(world)
    # THEN the poll loop simply polls again
    assert run.error is None, run.error
    assert run.ran.count("check_distribution") == 4  # 2 per round


def test_many_servers_are_sent_in_batches_of_50_and_read_across_pages(world: World) -> None:
    world.ssm.add(117)  # 120 in total
    run = drive(world)
    assert run.error is None, run.error
    rotate = [c for c in world.ssm.commands if c["Parameters"]["Action"] == ["rotate"]]
    assert [len(c["InstanceIds"]) for c in rotate] == [50, 50, 20]
    assert run.rotation["distribution"]["confirmed"] == 120
    assert world.server_keys() == {run.rotation["new_key_id"]}


def test_check_distribution_reports_progress(world: World) -> None:
    state = drive(world, crash_after=5).state  # prepare .. distribute
    assert state["rotation"]["distribution"]["done"] is False
    result = handler("check_distribution")(state)
    assert result["distribution"] == {
        "action": "rotate",
        "key_id": result["new_key_id"],
        "confirmed": 3,
        "total": 3,
        "pending": 0,
        "failed": [],
        "done": True,
    }
    assert result["polls"] == 1 and result["cutover_at"] is not None


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            'KEYROTATION_RESULT {"status": "ok", "access_key_id": "AKIA1"}',
            {"status": "ok", "access_key_id": "AKIA1"},
        ),
        ('noise\nKEYROTATION_RESULT {"status": "ok"}\nmore noise\n', {"status": "ok"}),
        ('KEYROTATION_RESULT {"status": "error"}\nKEYROTATION_RESULT {"status": "ok"}', {"status": "ok"}),
        ("KEYROTATION_RESULT {not json", None),
        ('KEYROTATION_RESULT ["ok"]', None),
        ('echo KEYROTATION_RESULT {"status": "ok"}', None),
        ("", None),
    ],
)
def test_parse_result(output: str, expected: object) -> None:
    assert parse_result(output) == expected


def test_result_marker_is_the_contract_value() -> None:
    assert RESULT_MARKER == "KEYROTATION_RESULT"


# -- polls read only what can still change --------------------------------------------------------


class _RecordingInvocations:
    """ListCommandInvocations over fixed answers, recording which commands were read."""

    def __init__(self, answers: dict[str, list[dict[str, object]]]) -> None:
        self.answers = answers
        self.read: list[str] = []

    def list_command_invocations(self, CommandId: str, **_: object) -> dict[str, object]:  # noqa: N803
        self.read.append(CommandId)
        return {"CommandInvocations": self.answers[CommandId]}


def _answer(instance_id: str, key_id: str, status: str = "Success") -> dict[str, object]:
    marker = f'{RESULT_MARKER} {{"status": "ok", "access_key_id": "{key_id}"}}'
    return {"InstanceId": instance_id, "Status": status, "CommandPlugins": [{"Output": marker}]}


def test_a_poll_does_not_read_again_the_commands_whose_servers_all_confirmed() -> None:
    from rotation.fleet import BATCH_SIZE, read_outcome

    # GIVEN 120 servers reached by three commands (batches of 50), the second with one server still running
    key = "AKIANEWKEY0000000001"
    targets = [f"mi-{i:017x}" for i in range(120)]
    batches = [targets[:BATCH_SIZE], targets[BATCH_SIZE : 2 * BATCH_SIZE], targets[2 * BATCH_SIZE :]]
    answers = {f"cmd-{n}": [_answer(i, key) for i in batch] for n, batch in enumerate(batches)}
    answers["cmd-1"][0]["Status"] = "InProgress"
    ssm = _RecordingInvocations(answers)
    # WHEN the first poll reads every command
    first = read_outcome(ssm, list(answers), targets, key)  # type: ignore[arg-type]
    # THEN the two fully confirmed commands are settled
    assert first.settled == ("cmd-0", "cmd-2") and len(first.confirmed) == 119 and len(first.pending) == 1
    # WHEN the next poll is told so and the last server confirms
    answers["cmd-1"][0]["Status"] = "Success"
    ssm.read.clear()
    second = read_outcome(ssm, list(answers), targets, key, settled=first.settled)  # type: ignore[arg-type]
    # THEN only the unsettled command is read, and every server counts as confirmed
    assert ssm.read == ["cmd-1"]
    assert set(second.confirmed) == set(targets) and not second.pending and not second.failed
    assert second.settled == ("cmd-0", "cmd-1", "cmd-2")


def test_settled_ids_that_do_not_match_the_batches_are_ignored() -> None:
    from rotation.fleet import read_outcome

    # GIVEN a "settled" list naming a command that is not one of this distribution's
    key = "AKIANEWKEY0000000001"
    targets = ["mi-00000000000000001", "mi-00000000000000002"]
    ssm = _RecordingInvocations({"cmd-0": [_answer(targets[0], key)]})
    # WHEN a poll reads with it THEN the real command is still read and the missing server is pending
    outcome = read_outcome(ssm, ["cmd-0"], targets, key, settled=["cmd-other"])  # type: ignore[arg-type]
    assert ssm.read == ["cmd-0"] and outcome.pending == (targets[1],) and outcome.settled == ()
