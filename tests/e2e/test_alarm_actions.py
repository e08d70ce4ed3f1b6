"""Alarms reach the operators: in the sandbox CloudWatch runs an alarm's SNS action only as AWS would
authorize it (sandbox/moto/alarms.py evaluates the deployed topic policy and the topic's KMS key policy)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from sandbox import deploy
from sandbox.demo import Sandbox
from sandbox.emulator import Emulator
from sandbox.moto import alarms
from sandbox.synth import Assembly


def _alarm(emulator: Emulator, name: str) -> Any:
    from moto.cloudwatch import cloudwatch_backends

    return cloudwatch_backends[emulator.account_id][emulator.region].alarms[name]


def _topic_messages(emulator: Emulator, topic_arn: str) -> list[dict[str, Any]]:
    from moto.sns import sns_backends

    topic = sns_backends[emulator.account_id][emulator.region].topics[topic_arn]
    return [json.loads(message) for _, message, *_ in topic.sent_notifications]


def test_a_step_alarm_in_alarm_state_publishes_to_the_alert_topic(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    # GIVEN the deployed stack: an alarm per step with the alert topic as its action
    sandbox = make_sandbox(users=1, servers=1)
    emulator, deployment = sandbox.emulator, sandbox.deployment
    name = next(n for n in deployment.alarms if "Errorsprepare" in n.replace("-", ""))
    # WHEN the prepare step's unexpected-error alarm fires
    emulator.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue="ALARM",
                                                  StateReason="Threshold Crossed: 1 datapoint [1.0]")
    # THEN the topic got CloudWatch's notification naming the alarm and its description
    (attempt,) = alarms.actions_of(_alarm(emulator, name))
    assert attempt.delivered, attempt.summary
    (message,) = _topic_messages(emulator, deployment.topic_arn)
    assert message["AlarmName"] == name and message["NewStateValue"] == "ALARM"
    assert "prepare step" in message["AlarmDescription"]


def test_a_topic_policy_without_cloudwatch_silences_every_alarm(
    emulator: Emulator, synthesized: Callable[[int], tuple[Assembly, dict[str, Any]]]
) -> None:
    # GIVEN the stack as CDK made it before: the topic policy (enforce_ssl + the EventBridge target) allows
    # only events.amazonaws.com, so it replaces the default policy that let the account's services publish
    assembly, settings = synthesized(1)
    template = copy.deepcopy(assembly.template)
    (policy,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    policy["Properties"]["PolicyDocument"]["Statement"] = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "cloudwatch.amazonaws.com" not in json.dumps(s.get("Principal"))
    ]
    deployment = deploy.deploy(emulator, dataclasses.replace(assembly, template=template), settings)
    name = next(iter(deployment.alarms))
    # WHEN an alarm fires
    emulator.client("cloudwatch").set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    # THEN nothing reaches the topic, and the alarm's history says why
    (attempt,) = alarms.actions_of(_alarm(emulator, name))
    assert not attempt.delivered
    assert "not authorized to perform: SNS:Publish" in attempt.summary
    assert _topic_messages(emulator, deployment.topic_arn) == []
