"""Emulated Run Command on simulated hybrid nodes: what the engine relies on, as AWS behaves."""

from __future__ import annotations

import json
from typing import Any

import botocore.config
import pytest
from botocore.exceptions import ClientError
from keyrotation import contract

from sandbox.emulator import Emulator, wait_for
from sandbox.fleet import Fleet
from sandbox.moto import run_command

DOCUMENT = {
    "schemaVersion": "2.2",
    "description": "test document",
    "parameters": {
        "Message": {"type": "String", "allowedPattern": "^[a-z ]{1,20}$", "interpolationType": "ENV_VAR"},
        "Repeat": {"type": "String", "default": "1", "allowedPattern": "^[0-9]+$"},
    },
    "mainSteps": [
        {"action": "aws:runPowerShellScript", "name": "windows",
         "precondition": {"StringEquals": ["platformType", "Windows"]},
         "inputs": {"runCommand": ["exit 7"]}},
        {"action": "aws:runShellScript", "name": "linux",
         "precondition": {"StringEquals": ["platformType", "Linux"]},
         "inputs": {"runCommand": [
             'echo "env=$SSM_Message sub={{ Message }} root=$KEYROTATION_ROOT"',
             'i=0; while [ "$i" -lt "$SSM_Repeat" ]; do printf x; i=$((i+1)); done; echo',
             'cat "$KEYROTATION_ROOT/marker" 2>/dev/null || true',
             '[ "$SSM_Message" != "fail please" ]',
         ]}},
    ],
}


def _setup(emulator: Emulator, fleet: Fleet, count: int = 3) -> list[str]:
    servers = fleet.add_servers("web", count, {"keyrotation-group": "web"})
    fleet.add_servers("db", 1, {"keyrotation-group": "db"})
    emulator.attach_fleet(fleet)
    emulator.client("ssm").create_document(Name="test-doc", DocumentType="Command", DocumentFormat="JSON",
                                           Content=json.dumps(DOCUMENT))
    return [s.instance_id for s in servers]


def _send(emulator: Emulator, ids: list[str], message: str = "hello", **extra: Any) -> str:
    response = emulator.client("ssm").send_command(
        DocumentName="test-doc", InstanceIds=ids, Parameters={"Message": [message], **extra}
    )
    return str(response["Command"]["CommandId"])


def _invocations(emulator: Emulator, command_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    paginator = emulator.client("ssm").get_paginator("list_command_invocations")
    pages = paginator.paginate(CommandId=command_id, Details=True, **kwargs)
    return [i for page in pages for i in page["CommandInvocations"]]


def _finished(emulator: Emulator, command_id: str) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        invocations = _invocations(emulator, command_id)
        return invocations if all(i["Status"] not in ("Pending", "InProgress") for i in invocations) else None

    return list(wait_for(done))


def test_command_runs_the_linux_step_on_every_node_with_its_parameters(
    emulator: Emulator, fleet: Fleet
) -> None:
    ids = _setup(emulator, fleet)
    command_id = _send(emulator, ids, Repeat=["3"])
    invocations = _finished(emulator, command_id)
    assert sorted(i["InstanceId"] for i in invocations) == sorted(ids)
    for invocation in invocations:
        server = fleet.servers[invocation["InstanceId"]]
        [plugin] = invocation["CommandPlugins"]
        assert invocation["Status"] == "Success" and plugin["Name"] == "linux" and plugin["ResponseCode"] == 0
        assert f"env=hello sub=hello root={server.root}" in plugin["Output"]
        assert "xxx" in plugin["Output"]
    ssm = emulator.client("ssm")
    command = ssm.list_commands(CommandId=command_id)["Commands"][0]
    assert command["Status"] == "Success" and command["CompletedCount"] == len(ids)
    one = ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[0])
    assert one["Status"] == "Success" and "env=hello" in one["StandardOutputContent"]
    assert one["ResponseCode"] == 0 and one["PluginName"] == "linux"


def test_list_command_invocations_paginates(emulator: Emulator, fleet: Fleet) -> None:
    ids = _setup(emulator, fleet, count=7)
    command_id = _send(emulator, ids)
    _finished(emulator, command_id)
    first = emulator.client("ssm").list_command_invocations(CommandId=command_id, MaxResults=5)
    assert len(first["CommandInvocations"]) == 5 and "NextToken" in first
    assert len(_invocations(emulator, command_id, PaginationConfig={"PageSize": 2})) == 7


def test_script_failure_fails_the_invocation_and_the_command(emulator: Emulator, fleet: Fleet) -> None:
    ids = _setup(emulator, fleet, count=2)
    invocations = _finished(emulator, _send(emulator, ids, "fail please"))
    assert {i["Status"] for i in invocations} == {"Failed"}
    assert all(i["CommandPlugins"][0]["ResponseCode"] == 1 for i in invocations)
    [command] = emulator.client("ssm").list_commands()["Commands"]
    assert command["Status"] == "Failed" and command["ErrorCount"] == 2


def test_parameters_are_validated_like_the_api(emulator: Emulator, fleet: Fleet) -> None:
    ids = _setup(emulator, fleet, count=1)
    with pytest.raises(ClientError, match="InvalidParameters"):
        _send(emulator, ids, "NOT lower case")
    with pytest.raises(ClientError, match="InvalidParameters"):
        _send(emulator, ids, Unknown=["x"])


def test_unknown_managed_instance_is_rejected(emulator: Emulator, fleet: Fleet) -> None:
    _setup(emulator, fleet, count=1)
    with pytest.raises(ClientError) as error:
        _send(emulator, ["mi-0123456789abcdef0"])
    assert error.value.response["Error"]["Code"] == "InvalidInstanceId"


def test_targets_by_tag_reach_only_that_group(emulator: Emulator, fleet: Fleet) -> None:
    ids = _setup(emulator, fleet, count=2)
    response = emulator.client("ssm").send_command(
        DocumentName="test-doc", Targets=[{"Key": "tag:keyrotation-group", "Values": ["web"]}],
        Parameters={"Message": ["hi"]},
    )
    invocations = _finished(emulator, response["Command"]["CommandId"])
    assert sorted(i["InstanceId"] for i in invocations) == sorted(ids)


def test_offline_node_stays_in_progress_until_delivery_timeout(emulator: Emulator, fleet: Fleet) -> None:
    ids = _setup(emulator, fleet, count=2)
    fleet.servers[ids[1]].online = False
    # botocore enforces TimeoutSeconds >= 30 client-side; the emulator does not
    ssm = emulator.client("ssm", config=botocore.config.Config(parameter_validation=False))
    command_id = ssm.send_command(DocumentName="test-doc", InstanceIds=ids, TimeoutSeconds=2,
                                  Parameters={"Message": ["hi"]})["Command"]["CommandId"]

    def status(instance_id: str) -> str:
        return str(ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)["Status"])

    # within the timeout: the offline node is InProgress (checked first: timing matters on a loaded machine)
    assert status(ids[1]) == "InProgress"
    assert ssm.list_commands(CommandId=command_id)["Commands"][0]["Status"] == "InProgress"
    wait_for(lambda: status(ids[0]) == "Success")
    assert fleet.servers[ids[1]].runs == 0
    timed_out = wait_for(lambda: (i := ssm.get_command_invocation(CommandId=command_id, InstanceId=ids[1]))
                         ["Status"] == "TimedOut" and i, timeout=10)
    assert timed_out["StatusDetails"] == "Delivery Timed Out"
    command = ssm.list_commands(CommandId=command_id)["Commands"][0]
    assert command["Status"] == "TimedOut" and command["DeliveryTimedOutCount"] == 1


def test_describe_instance_information_filters(emulator: Emulator, fleet: Fleet) -> None:
    ids = _setup(emulator, fleet, count=3)
    fleet.servers[ids[0]].online = False
    ssm = emulator.client("ssm")

    def describe(**kwargs: Any) -> list[dict[str, Any]]:
        pages = ssm.get_paginator("describe_instance_information").paginate(**kwargs)
        return [i for page in pages for i in page["InstanceInformationList"]]

    web = describe(Filters=[{"Key": "tag:keyrotation-group", "Values": ["web"]}])
    assert sorted(i["InstanceId"] for i in web) == sorted(ids)
    assert all(i["PlatformType"] == "Linux" and i["ResourceType"] == "ManagedInstance" for i in web)
    online = describe(Filters=[{"Key": "tag:keyrotation-group", "Values": ["web"]},
                               {"Key": "PingStatus", "Values": ["Online"]}])
    assert sorted(i["InstanceId"] for i in online) == sorted(ids[1:])
    picked = describe(InstanceInformationFilterList=[{"key": "InstanceIds", "valueSet": ids[:2]}])
    assert {i["InstanceId"]: i["PingStatus"] for i in picked} == {ids[0]: "ConnectionLost", ids[1]: "Online"}
    assert len(describe()) == 4
    assert len(describe(PaginationConfig={"PageSize": 5})) == 4


def test_output_limits_match_aws(emulator: Emulator, fleet: Fleet) -> None:
    ids = _setup(emulator, fleet, count=1)
    command_id = _send(emulator, ids, Repeat=["30000"])
    [invocation] = _finished(emulator, command_id)
    assert len(invocation["CommandPlugins"][0]["Output"]) == run_command.PLUGIN_OUTPUT_LIMIT
    full = emulator.client("ssm").get_command_invocation(CommandId=command_id, InstanceId=ids[0])
    assert len(full["StandardOutputContent"]) == run_command.STDOUT_LIMIT


def test_plugin_output_is_truncated_like_the_ssm_agent() -> None:
    """The SSM Agent's TruncateOutput: stdout and stderr share 2,500 characters; a short one is kept whole,
    and when both are long each keeps only its head."""
    title = "\n----------ERROR-------\n"
    assert run_command._plugin_output("out\n", "") == "out\n"
    assert run_command._plugin_output("out\n", "err\n") == "out\n" + title + "err\n"
    short = run_command._plugin_output("RESULT\n", "e" * 10_000)
    assert short.startswith("RESULT\n" + title + "eee") and short.endswith("\n---Error truncated----")
    assert len(short) == run_command.PLUGIN_OUTPUT_LIMIT
    both = run_command._plugin_output("o" * 10_000, "e" * 10_000)
    assert both == "o" * 1215 + "\n---Output truncated---" + title + "e" * 1215 + "\n---Error truncated----"
    long_out = run_command._plugin_output("o" * 10_000, "err")
    assert long_out.endswith("\n---Output truncated---" + title + "err") and len(long_out) == 2500


def test_nodes_run_with_their_group_role_credentials(emulator: Emulator, fleet: Fleet) -> None:
    iam = emulator.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName="web-nodes", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    ids = _setup(emulator, fleet, count=1)
    fleet.set_role("web", role)
    document = {"schemaVersion": "2.2", "description": "whoami", "mainSteps": [
        {"action": "aws:runShellScript", "name": "whoami", "inputs": {"runCommand": [
            "python3 -c \"import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])\""]}}]}
    emulator.client("ssm").create_document(Name="whoami", DocumentType="Command", DocumentFormat="JSON",
                                           Content=json.dumps(document))
    sent = emulator.client("ssm").send_command(DocumentName="whoami", InstanceIds=ids)
    command_id = sent["Command"]["CommandId"]
    [invocation] = _finished(emulator, command_id)
    assert invocation["Status"] == "Success", invocation
    assert ":assumed-role/web-nodes/" in invocation["CommandPlugins"][0]["Output"]


@pytest.mark.parametrize("fault", ["fail", "wrong_key_id", "no_marker"])
def test_fault_injection(emulator: Emulator, fleet: Fleet, fault: str) -> None:
    ids = _setup(emulator, fleet, count=2)
    marker = contract.result_line(status="ok", access_key_id="AKIAREALKEY000000000") + "\n"
    for instance_id in ids:
        fleet.servers[instance_id].path("/marker").write_text(marker)
    setattr(fleet.servers[ids[0]].faults, fault, True)
    by_id = {i["InstanceId"]: i for i in _finished(emulator, _send(emulator, ids))}
    healthy, faulty = by_id[ids[1]], by_id[ids[0]]
    assert healthy["Status"] == "Success" and "AKIAREALKEY000000000" in healthy["CommandPlugins"][0]["Output"]
    output = faulty["CommandPlugins"][0]["Output"]
    if fault == "fail":
        assert faulty["Status"] == "Failed" and "KEYROTATION_RESULT" not in output
    elif fault == "wrong_key_id":
        assert faulty["Status"] == "Success" and "AKIASANDBOXWRONGKEY0" in output
        assert "AKIAREALKEY000000000" not in output
    else:
        assert faulty["Status"] == "Success" and "KEYROTATION_RESULT" not in output
