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
    # (distribute's rotate and verify, and the audit's read-only audit action)
    roles = step_roles(synth.template)
    assert sorted(grant.role for grant in allowed) == sorted([roles["distribute"], roles["audit"]])
    for grant in allowed:
        assert set(grant.resources) == {
            "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${Ref:" + document_id + "}",
            "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:managed-instance/*",
        }


def test_wildcard_resources_only_for_actions_iam_cannot_scope(synth: Synth) -> None:
    # X-Ray, log delivery and these reads have no resource-level permissions; everything else is scoped.
    unscopable = {
        "ssm:DescribeInstanceInformation",
        "ssm:ListCommandInvocations",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
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


SECRETS = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"


def test_no_secret_is_deployed_the_engine_creates_them(synth: Synth) -> None:
    # A stack's size must not grow with its users: no per-user resource at all.
    assert synth.of_type("AWS::SecretsManager::Secret") == {}
    assert synth.of_type("AWS::SecretsManager::ResourcePolicy") == {}


def test_secrets_are_only_reachable_under_the_secret_prefix(synth: Synth) -> None:
    groups = {_group_role(synth, "web"): "web/", _group_role(synth, "db"): "db/"}
    for grant in grants(synth.template):
        if any(action.startswith("secretsmanager:") for action in grant.actions):
            expected = SECRETS + "keyrotation/" + groups.get(grant.role, "") + "*"
            assert grant.resources == (expected,), (grant.role, grant.resources)


def test_secrets_key_is_used_only_through_secrets_manager(synth: Synth) -> None:
    for grant in grants(synth.template):
        if any(action.startswith("kms:") for action in grant.actions):
            service = grant.conditions["StringEquals"]["kms:ViaService"]
            assert render(service).split(".")[0] in ("secretsmanager", "sns"), grant


def _can_read(synth: Synth, role: str, secret_name: str) -> bool:
    """GetSecretValue and kms:Decrypt (by the encryption context's secret ARN) of that secret's ARN."""
    arn = SECRETS + secret_name + "-AbCdEf"
    mine = [grant for grant in grants(synth.template) if grant.role == role]
    read = any(_allows(g.actions, "secretsmanager:GetSecretValue")
               and any(fnmatch.fnmatchcase(arn, r) for r in g.resources) for g in mine)
    decrypt = any(
        _allows(g.actions, "kms:Decrypt")
        and fnmatch.fnmatchcase(arn, render(g.conditions.get("StringLike", {}).get(
            "kms:EncryptionContext:SecretARN", "*")))
        for g in mine
    )
    return read and decrypt


def _group_role(synth: Synth, group: str) -> str:
    (role,) = [lid for lid in synth.of_type("AWS::IAM::Role") if lid.startswith(f"ServerGroupsRole{group}")]
    return role


def test_a_server_group_role_reads_only_its_own_users_secrets(synth: Synth) -> None:
    web, db = _group_role(synth, "web"), _group_role(synth, "db")
    # GIVEN the secret names the engine gives (prefix + group + "/" + user), existing or not yet
    assert _can_read(synth, web, "keyrotation/web/svc-web")
    assert _can_read(synth, web, "keyrotation/web/svc-web-reports")
    assert _can_read(synth, db, "keyrotation/db/svc-db")
    # THEN no group reads another group's, an older scheme's, a look-alike group's or anyone else's secret
    for role, others in (
        (web, ["keyrotation/db/svc-db", "keyrotation/svc-web", "keyrotation/webx/svc-web", "prod/database"]),
        (db, ["keyrotation/web/svc-web", "keyrotation/svc-db", "keyrotation/db-old/x", "db/svc-db"]),
    ):
        assert [name for name in others if _can_read(synth, role, name)] == [], role


def test_the_group_roles_policy_is_inline_one_resource_per_group(synth: Synth) -> None:
    for group in ("web", "db"):
        role = _group_role(synth, group)
        assert not [p for p in synth.of_type("AWS::IAM::Policy").values()
                    if {"Ref": role} in p["Properties"]["Roles"]]
        (policy,) = synth.resources[role]["Properties"]["Policies"]
        assert policy["PolicyName"] == "ReadTheGroupsSecrets"


def test_only_create_key_creates_secrets_with_the_stack_key_and_the_engine_tags(synth: Synth) -> None:
    roles = step_roles(synth.template)
    creating = [g for g in grants(synth.template) if _allows(g.actions, "secretsmanager:CreateSecret")]
    assert {g.role for g in creating} == {roles["create_key"]}
    (create,) = creating
    (key,) = [lid for lid in synth.of_type("AWS::KMS::Key") if lid.startswith("SecretsKey")]
    assert create.conditions["StringEquals"]["secretsmanager:KmsKeyArn"] == {"Fn::GetAtt": [key, "Arn"]}
    tag_keys = ["keyrotation:user", "keyrotation:server-group"]
    assert create.conditions["ForAllValues:StringEquals"]["aws:TagKeys"] == tag_keys
    assert create.conditions["Null"] == {f"aws:RequestTag/{k}": "false" for k in tag_keys}
    tagging = [g for g in grants(synth.template) if _allows(g.actions, "secretsmanager:TagResource")]
    assert [(g.role, g.conditions) for g in tagging] == [
        (roles["create_key"], {"ForAllValues:StringEquals": {"aws:TagKeys": tag_keys}})
    ]


def test_the_secrets_key_lets_only_the_group_roles_and_the_reading_steps_decrypt(synth: Synth) -> None:
    roles = step_roles(synth.template)
    (key,) = [k for lid, k in synth.of_type("AWS::KMS::Key").items() if lid.startswith("SecretsKey")]
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    # GIVEN the one Deny: kms:Decrypt through Secrets Manager (= reading any secret's value) …
    assert deny["Action"] == "kms:Decrypt" and deny["Principal"] == {"AWS": "*"}
    via = render(deny["Condition"]["StringEquals"]["kms:ViaService"])
    assert via == "secretsmanager.${AWS::Region}.amazonaws.com"
    # … to every principal but these
    allowed = {render(arn) for arn in deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]}
    reading = ("prepare", "create_key", "verify_key", "deactivate", "delete", "audit")
    readers = {"${" + roles[step] + ".Arn}" for step in reading}
    groups = {"${" + _group_role(synth, g) + ".Arn}" for g in ("web", "db")}
    assert allowed == readers | groups
    # AND the key's administrators keep managing it: the account statement is untouched, nothing else denied
    assert any(s["Effect"] == "Allow" and s["Action"] == "kms:*" and render(s["Principal"]["AWS"]) ==
               "arn:${AWS::Partition}:iam::${AWS::AccountId}:root" for s in statements)


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


def test_notify_may_ask_config_to_reevaluate_only_when_the_settings_name_a_rule(synth: Synth) -> None:
    roles = step_roles(synth.template)
    allowed = [g for g in grants(synth.template) if "config:StartConfigRulesEvaluation" in g.actions]
    assert [g.role for g in allowed] == [roles["notify"]]
    rules = "arn:${AWS::Partition}:config:${AWS::Region}:${AWS::AccountId}:config-rule/*"
    assert allowed[0].resources == (rules,)
