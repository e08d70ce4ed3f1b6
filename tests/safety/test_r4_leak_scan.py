"""R4: no secret access key anywhere but Secrets Manager and the target files (I5), failure paths included.

Every scenario of the matrix ends with `Harness.check()`, which runs this scan; here it runs over the
noisiest paths (failing agents, a crash after create_key, an exception in a step, a rollback) with the test's
own captured logs and the exceptions' text added, and the scanner proves it can find a planted secret in
each place it reads.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from safety_harness import Harness

from sandbox import faults


def _secret_of(harness: Harness, user: str = "svc-web") -> str:
    value = harness.emulator.client("secretsmanager").get_secret_value(
        SecretId=harness.deployment.secrets[user], VersionStage="AWSCURRENT")["SecretString"]
    secret: str = json.loads(value)["aws_secret_access_key"]
    return secret


@pytest.mark.safety_slow
def test_failure_paths_leak_no_secret(make_harness: Callable[..., Harness], caplog: pytest.LogCaptureFixture,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    # GIVEN 3 servers, one of which fails and one prints another key id
    harness = make_harness(users=1, servers=3)
    failing, wrong, _ = harness.fleet.servers.values()
    failing.faults.fail = True
    wrong.faults.wrong_key_id = True
    # WHEN a run crashes right after creating the key, the next fails on the fleet, and a third one crashes
    # verify_key with an unexpected exception after the fleet is fixed
    arn = harness.start()
    with faults.crash_step(harness.emulator, harness.function("create_key"), "after"):
        harness.wait(arn)
    blocked = harness.run()
    assert blocked.user.error == "TargetsUnconfirmed"
    failing.faults.fail = wrong.faults.wrong_key_id = False
    with faults.crash_step(harness.emulator, harness.function("distribute"), "before"):
        crashed = harness.run()
    assert crashed.status == "FAILED"
    done = harness.run()
    assert done.status == "SUCCEEDED"
    # THEN no secret appears in histories, commands and outputs, SNS, Lambda logs, server files (other than
    # the targets), error causes, nor in this test's captured logs and output
    out, err = capfd.readouterr()
    harness.texts.update({"pytest log": caplog.text, "captured stdout": out, "captured stderr": err,
                          "causes": json.dumps([blocked.user.cause, crashed.user.cause])})
    assert harness.no_leaks() == []
    assert done.violations == []


PLACES = ("sns", "lambda log", "server file", "execution input", "extra text")


@pytest.mark.parametrize("place", PLACES)
def test_the_scan_finds_a_planted_secret(make_harness: Callable[..., Harness], place: str) -> None:
    # GIVEN a deployed system with a user's key on a server (nothing leaked)
    harness = make_harness(users=1, servers=1)
    assert harness.no_leaks() == []
    secret = _secret_of(harness)
    # WHEN a secret access key is planted in one place the scan reads
    if place == "sns":
        sns = harness.emulator.client("sns")
        sns.publish(TopicArn=harness.deployment.topic_arn, Message=f"oops {secret}")
    elif place == "lambda log":
        logs = harness.emulator.client("logs")
        group = f"/aws/lambda/{harness.function('prepare')}"
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="planted")
        logs.put_log_events(logGroupName=group, logStreamName="planted",
                            logEvents=[{"timestamp": int(time.time() * 1000), "message": f"debug {secret}"}])
    elif place == "server file":
        [server] = harness.fleet.servers.values()
        server.path("/tmp/debug.txt").parent.mkdir(parents=True, exist_ok=True)
        server.path("/tmp/debug.txt").write_text(f"key={secret}")
    elif place == "execution input":
        harness.start(raw_input=json.dumps({"user": "svc-web", "note": secret}))
        harness.wait(list(harness.sandbox.executions)[-1])
    else:
        harness.texts["an exception"] = f"ClientError: bad signature for {secret}"
    # THEN the scan reports it
    assert harness.no_leaks() != [], f"the scan missed a secret planted in {place}"
