"""CloudWatch alarm actions as AWS runs them, which moto does not: a state change publishes to the alarm's SNS
actions, as the service principal `cloudwatch.amazonaws.com`, only if the topic's policy and the topic's KMS
key policy let that principal (sandbox/policy.py evaluates both, conditions included).

moto 5.2.5 records a new alarm state and nothing else. Installed through `sandbox.moto.install` (the wrapped
`Alarm.update_state`); every attempt is recorded on the alarm (`actions_of(alarm)`) as CloudWatch's alarm
history records it: "Successfully executed action …" or "Failed to execute action …" with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.policy import Service, evaluate

PRINCIPAL = Service("cloudwatch.amazonaws.com")
# What SNS asks KMS for when a publisher sends to an encrypted topic (SNS developer guide, "Encryption at
# rest": the publisher needs kms:GenerateDataKey* and kms:Decrypt on the topic's key).
KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


@dataclass(frozen=True)
class ActionAttempt:
    action: str  # the action's ARN
    state: str  # the state the alarm entered
    delivered: bool
    summary: str  # as the alarm history puts it


def actions_of(alarm: Any) -> list[ActionAttempt]:
    attempts: list[ActionAttempt] = getattr(alarm, "sandbox_action_attempts", [])
    return attempts


def _record(alarm: Any, attempt: ActionAttempt) -> None:
    if not hasattr(alarm, "sandbox_action_attempts"):
        alarm.sandbox_action_attempts = []
    alarm.sandbox_action_attempts.append(attempt)


def _actions_for(alarm: Any, state: str) -> list[str]:
    actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions,
               "INSUFFICIENT_DATA": alarm.insufficient_data_actions}[state]
    return list(actions or [])


def _why_not(alarm: Any, topic: Any, kms_backend: Any) -> str | None:
    """None if CloudWatch may publish `alarm`'s notification to `topic`; else the reason AWS gives."""
    account = alarm.alarm_arn.split(":")[4]
    context = {"aws:SourceAccount": account, "aws:SourceArn": alarm.alarm_arn, "aws:SecureTransport": "true"}
    decision = evaluate(json.loads(topic.policy), principal=PRINCIPAL, action="sns:Publish",
                        resource=topic.arn, context=context)
    if not decision.allowed:
        return (f"CloudWatch Alarms is not authorized to perform: SNS:Publish on resource {topic.arn} "
                f"({decision.reason})")
    if topic.kms_master_key_id:
        key = kms_backend.keys[topic.kms_master_key_id.rsplit("/", 1)[-1]]
        key_arn = key.arn
        for action in KMS_ACTIONS:
            decision = evaluate(json.loads(key.policy), principal=PRINCIPAL, action=action, resource=key_arn,
                                context=context)
            if not decision.allowed:
                return ("CloudWatch Alarms does not have authorization to access the SNS topic encryption "
                        f"key ({action} on {key_arn}: {decision.reason})")
    return None


def _notification(alarm: Any, old_state: str) -> tuple[str, str]:
    region = alarm.alarm_arn.split(":")[3]
    message = {
        "AlarmName": alarm.name,
        "AlarmDescription": alarm.description,
        "AWSAccountId": alarm.alarm_arn.split(":")[4],
        "NewStateValue": alarm.state_value,
        "NewStateReason": alarm.state_reason,
        "StateChangeTime": alarm.state_updated_timestamp.isoformat(),
        "Region": region,
        "AlarmArn": alarm.alarm_arn,
        "OldStateValue": old_state,
    }
    subject = f'{alarm.state_value}: "{alarm.name}" in {region}'[:100]
    return json.dumps(message), subject


def run_actions(alarm: Any, old_state: str) -> None:
    """Publish `alarm`'s notification to each SNS action of its new state that AWS would let it reach."""
    from moto.kms import kms_backends
    from moto.sns import sns_backends

    if not alarm.actions_enabled or alarm.state_value == old_state:
        return
    for action in _actions_for(alarm, alarm.state_value):
        parts = action.split(":")
        if len(parts) < 6 or parts[2] != "sns":
            _record(alarm, ActionAttempt(action, alarm.state_value, False,
                                         f"Failed to execute action {action}: not an SNS topic (the sandbox "
                                         "runs SNS actions only)"))
            continue
        region, account = parts[3], parts[4]
        topic = sns_backends[account][region].topics.get(action)
        if topic is None:
            _record(alarm, ActionAttempt(action, alarm.state_value, False,
                                         f"Failed to execute action {action}: topic does not exist"))
            continue
        reason = _why_not(alarm, topic, kms_backends[account][region])
        if reason is not None:
            _record(alarm, ActionAttempt(action, alarm.state_value, False,
                                         f"Failed to execute action {action}. Received error: {reason}"))
            continue
        message, subject = _notification(alarm, old_state)
        topic.publish(message, subject=subject)
        _record(alarm, ActionAttempt(action, alarm.state_value, True,
                                     f"Successfully executed action {action}"))


def wrap_update_state(original: Callable[..., Any]) -> Callable[..., Any]:
    def update_state(self: Any, reason: str, reason_data: str, state_value: str) -> None:
        old_state = self.state_value
        original(self, reason, reason_data, state_value)
        run_actions(self, old_state)

    return update_state
