"""The SNS summary of a rotation. Built only from the non-secret `rotation` object and error names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from rotation.keys import error_code

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


def summary(
    rotation: Mapping[str, Any] | None, *, user: str, error: Mapping[str, str] | None
) -> tuple[str, str]:
    """(subject, message) for operators."""
    rotation = rotation or {}
    outcome = "failed" if error else str(rotation.get("outcome") or "finished")
    mode = rotation.get("mode", "standard")
    subject = f"Key rotation of {user}: {outcome}"[:100]
    lines = [f"User: {user}", f"Mode: {mode}", f"Outcome: {outcome}"]
    for label, name in (
        ("Execution", "execution_id"),
        ("Classification", "classification"),
        ("Old key", "old_key_id"),
        ("New key", "new_key_id"),
        ("Secret", "secret_id"),
    ):
        if rotation.get(name):
            lines.append(f"{label}: {rotation[name]}")
    if rotation.get("targets") is not None:
        lines.append(f"Servers: {len(rotation['targets'])}")
    if rotation.get("offline"):
        lines.append(f"Skipped offline servers: {', '.join(rotation['offline'])}")
    distribution = rotation.get("distribution")
    if isinstance(distribution, Mapping):
        # check_distribution reports the poll that fails through its error, not through the rotation object:
        # the counts here are then the previous poll's, and the error line has the final ones.
        stale = error is not None and error.get("name") == "TargetsUnconfirmed"
        when = " at the poll before the failing one" if stale else ""
        lines.append(
            f"Distribution ({distribution.get('action')}){when}: {distribution.get('confirmed')} of "
            f"{distribution.get('total')} confirmed, {distribution.get('pending')} pending"
        )
        for failure in distribution.get("failed") or []:
            lines.append(
                f"  failed {failure.get('instance_id')}: {failure.get('status')} - {failure.get('reason')}"
            )
    for step in rotation.get("plan") or []:
        lines.append(f"Plan: {step}")
    if error:
        lines.append(f"Error: {error.get('name')}: {error.get('message')}")
    elif outcome == "rotated":
        # Security Hub IAM.3 / Config access-keys-rotated: every active key younger than the maximum age.
        lines.append(f"Compliance: compliant (the old key is deleted; the only active key, "
                     f"{rotation.get('new_key_id')}, was created by this rotation)")
    return subject, "\n".join(lines)


def publish(sns: SNSClient, topic_arn: str, subject: str, message: str, *, owner: str | None = None) -> str:
    """Publish to the topic; with `owner`, tagged so that the owner's filtered subscription gets it too
    (operators' subscriptions have no filter: they get everything)."""
    if not owner:
        return sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)["MessageId"]
    return sns.publish(TopicArn=topic_arn, Subject=subject, Message=message,
                       MessageAttributes={"owner": {"DataType": "String", "StringValue": owner}})["MessageId"]


def reevaluate(config: Any, rule: str) -> str:
    """Ask AWS Config to evaluate `rule` again now that the old key is gone; a note for the operator.

    Config otherwise re-evaluates on its own schedule (the managed rule access-keys-rotated: every 24 h at
    best), so a Security Hub IAM.3 finding would stay open a day after the rotation fixed it. A failure is
    reported, never raised: the rotation itself succeeded."""
    try:
        config.start_config_rules_evaluation(ConfigRuleNames=[rule])
    except ClientError as exc:
        return f"Compliance: could not ask AWS Config to re-evaluate {rule}: {error_code(exc)}"
    return f"Compliance: asked AWS Config to re-evaluate {rule}"
