"""Every alert publisher is authorized by AWS's rules, read from the template: CloudWatch alarms and the
EventBridge rule publish to the topic as service principals, so the topic's policy (which replaces SNS's
default once CDK writes an AWS::SNS::TopicPolicy) and the topic's KMS key policy alone decide. moto
evaluates neither; sandbox/policy.py evaluates both (tests/e2e/test_alarm_actions.py runs it in the sandbox).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from infra_synth import Synth, render

from sandbox.policy import Service, evaluate

ACCOUNT, REGION = "123456789012", "eu-west-1"


def _concrete(value: Any, physical: dict[str, str]) -> Any:
    """A template value with pseudo parameters and Refs replaced by one account's concrete values."""
    if isinstance(value, list):
        return [_concrete(v, physical) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("Ref", "Fn::Join", "Fn::GetAtt", "Fn::Sub"):
            text = render(value)
            text = (text.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", ACCOUNT)
                    .replace("${AWS::Region}", REGION).replace("${AWS::URLSuffix}", "amazonaws.com"))
            return re.sub(r"\$\{Ref:([^}]+)\}", lambda m: physical[m.group(1)], text)
        return {k: _concrete(v, physical) for k, v in value.items()}
    return value


def _context(source_arn: str) -> dict[str, str]:
    return {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": source_arn, "aws:SecureTransport": "true"}


def _publishers(synth: Synth, topic: str) -> list[tuple[str, Service, dict[str, str]]]:
    """(what publishes, its principal, the request context AWS gives its Publish) for every alarm action and
    event-rule target that names the topic."""
    found = []
    for logical, alarm in synth.of_type("AWS::CloudWatch::Alarm").items():
        for action in alarm["Properties"].get("AlarmActions", []):
            assert action == {"Ref": topic}, (logical, action)
            arn = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:IamKeyRotation-{logical}"
            found.append((logical, Service("cloudwatch.amazonaws.com"), _context(arn)))
    for logical, rule in synth.of_type("AWS::Events::Rule").items():
        for target in rule["Properties"]["Targets"]:
            if target["Arn"] == {"Ref": topic}:
                arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/IamKeyRotation-{logical}"
                found.append((logical, Service("events.amazonaws.com"), _context(arn)))
    return found


@pytest.fixture
def topic_and_key(synth: Synth) -> tuple[str, dict[str, str], dict[str, Any], dict[str, Any]]:
    (topic,) = synth.of_type("AWS::SNS::Topic")
    key = synth.resources[topic]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0]
    physical = {topic: f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts",
                key: f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"}
    (policy,) = synth.of_type("AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": topic}]
    topic_policy = _concrete(policy["Properties"]["PolicyDocument"], physical)
    key_policy = _concrete(synth.resources[key]["Properties"]["KeyPolicy"], physical)
    return topic, physical, topic_policy, key_policy


def test_every_alarm_and_the_failed_execution_rule_may_publish_to_the_encrypted_topic(
    synth: Synth, topic_and_key: tuple[str, dict[str, str], dict[str, Any], dict[str, Any]]
) -> None:
    topic, physical, topic_policy, key_policy = topic_and_key
    publishers = _publishers(synth, topic)
    # GIVEN one alarm per step and the failed-execution rule, all with the topic as their action
    assert {p.name for _, p, _ in publishers} == {"cloudwatch.amazonaws.com", "events.amazonaws.com"}
    assert len(publishers) == len(synth.of_type("AWS::CloudWatch::Alarm")) + 1
    for publisher, principal, context in publishers:
        # WHEN each publishes THEN the topic policy allows it and SNS may use the key on its behalf
        decision = evaluate(topic_policy, principal=principal, action="sns:Publish", resource=physical[topic],
                            context=context)
        assert decision.allowed, (publisher, decision.reason)
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            decision = evaluate(key_policy, principal=principal, action=action,
                                resource=next(v for k, v in physical.items() if k != topic), context=context)
            assert decision.allowed, (publisher, action, decision.reason)


def test_only_this_accounts_alarms_may_publish_and_only_over_tls(
    topic_and_key: tuple[str, dict[str, str], dict[str, Any], dict[str, Any]]
) -> None:
    topic, physical, topic_policy, _ = topic_and_key
    cloudwatch = Service("cloudwatch.amazonaws.com")
    other = {"aws:SourceAccount": "999999999999", "aws:SecureTransport": "true",
             "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:999999999999:alarm:theirs"}
    plain = {"aws:SourceAccount": ACCOUNT, "aws:SecureTransport": "false",
             "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:ours"}
    for context in (other, plain):
        decision = evaluate(topic_policy, principal=cloudwatch, action="sns:Publish",
                            resource=physical[topic], context=context)
        assert not decision.allowed, context
    assert not evaluate(topic_policy, principal=Service("s3.amazonaws.com"), action="sns:Publish",
                        resource=physical[topic], context={"aws:SecureTransport": "true"}).allowed
