"""Least privilege, as a security reviewer would check it in the synthesized template."""

from __future__ import annotations

import fnmatch

import pytest
from infra_synth import Synth, grants, render, step_roles

from infra.constructs.steps import STEPS

MANAGED_USERS = "arn:${AWS::Partition}:iam::${AWS::AccountId}:user/keyrotation/*"
KEY_ACTIONS = ("iam:CreateAccessKey", "iam:DeleteAccessKey", "iam:UpdateAccessKey")


def _allows(actions: tuple[str, ...], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in actions)


@pytest.mark.parametrize("action", KEY_ACTIONS)
def test_key_actions_are_only_allowed_on_users_under_the_managed_path(synth: Synth, action: str) -> None:
    allowed = [grant for grant in grants(synth.template) if _allows(grant.actions, action)]
    assert allowed, f"nobody may {action}: the rotation could not work"
    for grant in allowed:
        assert grant.resources == (MANAGED_USERS,), (grant.role, grant.resources)


def test_only_create_key_creates_keys_and_no_role_gets_iam_wildcards(synth: Synth) -> None:
    roles = step_roles(synth.template)
    creators = {
        grant.role for grant in grants(synth.template) if _allows(grant.actions, "iam:CreateAccessKey")
    }
    assert creators == {roles["create_key"]}
    for grant in grants(synth.template):
        assert not any(action in ("*", "iam:*") or action.endswith(":*") for action in grant.actions), grant


def test_every_step_has_its_own_role(synth: Synth) -> None:
    roles = step_roles(synth.template)
    assert sorted(roles) == sorted(STEPS)
    assert len(set(roles.values())) == len(STEPS)


def test_send_command_only_with_our_document_on_managed_instances(synth: Synth) -> None:
    (document_id,) = synth.of_type("AWS::SSM::Document")
    allowed = [grant for grant in grants(synth.template) if _allows(grant.actions, "ssm:SendCommand")]
    assert [grant.role for grant in allowed] == [step_roles(synth.template)["distribute"]]
    assert set(allowed[0].resources) == {
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${Ref:" + document_id + "}",
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:managed-instance/*",
    }


def test_wildcard_resources_only_for_actions_iam_cannot_scope(synth: Synth) -> None:
    # X-Ray, log delivery and these reads have no resource-level permissions; everything else is scoped.
    unscopable = {
        "ssm:DescribeInstanceInformation",
        "ssm:ListCommandInvocations",
        "iam:ListUsers",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "xray:GetSamplingRules",
        "xray:GetSamplingTargets",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    }
    for grant in grants(synth.template):
        if "*" in grant.resources:
            assert set(grant.actions) <= unscopable, grant


def test_secrets_are_only_reachable_under_the_secret_prefix(synth: Synth) -> None:
    secrets = synth.of_type("AWS::SecretsManager::Secret")
    assert {s["Properties"]["Name"] for s in secrets.values()} == {
        "keyrotation/svc-web",
        "keyrotation/svc-web-reports",
        "keyrotation/svc-db",
    }
    for grant in grants(synth.template):
        if any(action.startswith("secretsmanager:") for action in grant.actions):
            for resource in grant.resources:
                logical_id = resource.removeprefix("${Ref:").removesuffix("}")
                assert logical_id in secrets, (grant.role, resource)


def test_secrets_key_is_used_only_through_secrets_manager(synth: Synth) -> None:
    for grant in grants(synth.template):
        if any(action.startswith("kms:") for action in grant.actions):
            service = grant.conditions["StringEquals"]["kms:ViaService"]
            assert render(service).split(".")[0] in ("secretsmanager", "sns"), grant


def _readable_secrets(synth: Synth, role: str) -> set[str]:
    return {
        resource.removeprefix("${Ref:").removesuffix("}")
        for grant in grants(synth.template)
        if grant.role == role and _allows(grant.actions, "secretsmanager:GetSecretValue")
        for resource in grant.resources
    }


def _secret_of(synth: Synth, name: str) -> str:
    (logical_id,) = [
        lid
        for lid, s in synth.of_type("AWS::SecretsManager::Secret").items()
        if s["Properties"]["Name"] == f"keyrotation/{name}"
    ]
    return logical_id


def _group_role(synth: Synth, group: str) -> str:
    (role,) = [lid for lid in synth.of_type("AWS::IAM::Role") if lid.startswith(f"ServerGroupsRole{group}")]
    return role


def test_a_server_group_role_reads_only_its_own_users_secrets(synth: Synth) -> None:
    web, db = _group_role(synth, "web"), _group_role(synth, "db")
    assert _readable_secrets(synth, web) == {
        _secret_of(synth, "svc-web"),
        _secret_of(synth, "svc-web-reports"),
    }
    assert _readable_secrets(synth, db) == {_secret_of(synth, "svc-db")}


def test_each_secret_denies_reading_to_everyone_but_its_servers_and_the_reading_steps(synth: Synth) -> None:
    roles = step_roles(synth.template)
    policies = {
        render(p["Properties"]["SecretId"]): p["Properties"]["ResourcePolicy"]
        for p in synth.of_type("AWS::SecretsManager::ResourcePolicy").values()
    }
    for user, group, other in (("svc-web", "web", "db"), ("svc-db", "db", "web")):
        (statement,) = policies["${Ref:" + _secret_of(synth, user) + "}"]["Statement"]
        assert statement["Effect"] == "Deny" and statement["Action"] == "secretsmanager:GetSecretValue"
        allowed = {render(arn) for arn in statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}
        assert "${" + _group_role(synth, group) + ".Arn}" in allowed
        assert "${" + _group_role(synth, other) + ".Arn}" not in allowed
        assert "${" + roles["notify"] + ".Arn}" not in allowed
        assert "${" + roles["verify_key"] + ".Arn}" in allowed


def test_hybrid_activation_roles_trust_only_ssm_of_this_account(synth: Synth) -> None:
    for group in ("web", "db"):
        role = synth.resources[_group_role(synth, group)]["Properties"]
        (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ssm.amazonaws.com"}
        assert render(statement["Condition"]["StringEquals"]["aws:SourceAccount"]) == "${AWS::AccountId}"
        assert render(statement["Condition"]["ArnLike"]["aws:SourceArn"]) == (
            "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:*"
        )
        managed = [render(arn) for arn in role["ManagedPolicyArns"]]
        assert managed == ["arn:${AWS::Partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"]


def test_activation_role_names_are_outputs(synth: Synth) -> None:
    outputs = {render(output["Value"]) for output in synth.template["Outputs"].values()}
    assert outputs == {"${Ref:" + _group_role(synth, group) + "}" for group in ("web", "db")}


def test_lock_owner_checks_only_read_rotation_executions(synth: Synth) -> None:
    (machine,) = [
        lid
        for lid in synth.of_type("AWS::StepFunctions::StateMachine")
        if lid.startswith("WorkflowsRotation")
    ]
    describe = [
        grant
        for grant in grants(synth.template)
        if grant.role == step_roles(synth.template)["prepare"] and "states:DescribeExecution" in grant.actions
    ]
    assert describe and all(g.actions == ("states:DescribeExecution",) for g in describe)
    assert all(
        machine in resource and ":execution:" in resource for g in describe for resource in g.resources
    )
