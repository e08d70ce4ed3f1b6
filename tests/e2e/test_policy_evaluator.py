"""sandbox/policy.py decides as AWS's policy evaluation logic documents: explicit deny wins, an allow is
needed, every condition must hold, and an operator it does not know is an error, never a pass."""

from __future__ import annotations

import pytest

from sandbox.policy import Service, UnsupportedPolicy, evaluate

TOPIC = "arn:aws:sns:eu-west-1:123456789012:alerts"
CW = Service("cloudwatch.amazonaws.com")
OURS = {"aws:SourceAccount": "123456789012", "aws:SecureTransport": "true",
        "aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:a"}


def _allow(**condition: dict[str, str]) -> dict[str, object]:
    return {"Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
            "Resource": TOPIC, "Condition": condition}


def _policy(*statements: dict[str, object]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_an_allow_whose_conditions_hold_allows() -> None:
    policy = _policy(_allow(StringEquals={"aws:SourceAccount": "123456789012"},
                            ArnLike={"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:*"}))
    assert evaluate(policy, principal=CW, action="SNS:Publish", resource=TOPIC, context=OURS).allowed


@pytest.mark.parametrize("context", [
    {**OURS, "aws:SourceAccount": "999999999999"},
    {k: v for k, v in OURS.items() if k != "aws:SourceAccount"},  # a missing key fails a positive operator
])
def test_an_allow_whose_condition_fails_does_not(context: dict[str, str]) -> None:
    policy = _policy(_allow(StringEquals={"aws:SourceAccount": "123456789012"}))
    decision = evaluate(policy, principal=CW, action="sns:Publish", resource=TOPIC, context=context)
    assert not decision.allowed and decision.reason == "no statement allows it"


def test_an_explicit_deny_wins_over_an_allow() -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sns:Publish", "Resource": TOPIC, "Sid": "TlsOnly",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    policy = _policy(_allow(), deny)
    decision = evaluate(policy, principal=CW, action="sns:Publish", resource=TOPIC,
                        context={**OURS, "aws:SecureTransport": "false"})
    assert not decision.allowed and decision.reason == "explicitly denied by TlsOnly"
    assert evaluate(policy, principal=CW, action="sns:Publish", resource=TOPIC, context=OURS).allowed


def test_another_principal_action_or_resource_is_not_allowed() -> None:
    policy = _policy(_allow())
    assert not evaluate(policy, principal=Service("events.amazonaws.com"), action="sns:Publish",
                        resource=TOPIC, context=OURS).allowed
    assert not evaluate(policy, principal=CW, action="sns:Subscribe", resource=TOPIC, context=OURS).allowed
    assert not evaluate(policy, principal=CW, action="sns:Publish", resource=TOPIC + "-2",
                        context=OURS).allowed


def test_a_negated_operator_holds_when_the_key_is_missing() -> None:
    policy = _policy(_allow(StringNotEquals={"aws:PrincipalTag/team": "other"}))
    assert evaluate(policy, principal=CW, action="sns:Publish", resource=TOPIC, context=OURS).allowed


def test_an_unknown_condition_operator_is_an_error_not_a_pass() -> None:
    policy = _policy(_allow(NumericLessThan={"aws:MultiFactorAuthAge": "300"}))
    with pytest.raises(UnsupportedPolicy, match="NumericLessThan"):
        evaluate(policy, principal=CW, action="sns:Publish", resource=TOPIC, context=OURS)
