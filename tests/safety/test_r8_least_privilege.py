"""R8: least privilege, proven on the synthesized template of a 2-user / 2-group deployment.

Statement-level: every Allow statement of every role (tests/infra/infra_synth.grants, inline policies
included, conditions ignored — a condition only narrows, so "not allowed even without conditions" is a
proof) is evaluated against concrete ARNs: no Lambda role may create, update or delete a key of a user
outside the managed path (or in another account); no server group's role may read another group's secret
(or anything else in Secrets Manager). Each "cannot" comes with the matching "can" on the role's own
resources, so an empty policy fails the test. Secrets are named `secret_prefix + group + "/" + user` and are
created by the engine, so grants are name patterns, checked against the names the engine gives.

In the sandbox: the deployed roles carry the template's policies; the secrets are the ones the rotation
created; with `faults.enforce_iam` moto checks the policies (signature, then the caller's policies against
the user or secret the request names), and the roles' sessions are refused what the template does not grant.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from rotation import keys
from rotation.errors import UnknownUser
from safety_harness import Harness

from sandbox import faults
from sandbox.synth import Assembly

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
from infra_synth import Grant, as_list, grants, render, step_roles  # noqa: E402

ACCOUNT, REGION, OTHER_ACCOUNT = "123456789012", "us-east-1", "999999999999"
KEY_ACTIONS = ("iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey")
SECRET_READS = ("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret")
# AWS-managed policies a role may carry; none of them grants IAM key or Secrets Manager actions.
KNOWN_MANAGED = {"AmazonSSMManagedInstanceCore", "AWSLambdaBasicExecutionRole"}


def _concrete(text: str, refs: dict[str, str]) -> str:
    text = (text.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", ACCOUNT)
            .replace("${AWS::Region}", REGION))
    for logical, value in refs.items():
        text = text.replace("${Ref:" + logical + "}", value)
    return text


def _match(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower()) if "[" not in pattern else pattern == value


class Policies:
    def __init__(self, template: dict[str, Any], refs: dict[str, str]) -> None:
        self.template = template
        self.grants: list[Grant] = grants(template)
        self.refs = refs

    def allows(self, role: str, action: str, resource: str) -> bool:
        return any(
            grant.role == role
            and any(_match(pattern, action) for pattern in grant.actions)
            and any(_match(_concrete(r, self.refs), resource) for r in grant.resources)
            for grant in self.grants
        )


@pytest.fixture(scope="module")
def deployment(
    synthesized: Callable[[int], tuple[Assembly, dict[str, Any]]],
) -> tuple[Policies, dict[str, Any]]:
    assembly, settings = synthesized(2)
    return Policies(assembly.template, {}), settings


def _group_roles(template: dict[str, Any]) -> dict[str, str]:
    """server group name -> logical id of its hybrid-activation role (ssm.amazonaws.com, SSM core policy)."""
    roles = {}
    for logical, resource in template["Resources"].items():
        props = resource["Properties"]
        managed = [render(arn) for arn in as_list(props.get("ManagedPolicyArns", []))]
        hybrid = any(arn.endswith("/AmazonSSMManagedInstanceCore") for arn in managed)
        if resource["Type"] == "AWS::IAM::Role" and hybrid:
            group = re.search(r"group (\S+)", props.get("Description", ""))
            assert group, f"{logical}: which group? {props.get('Description')!r}"
            roles[group.group(1)] = logical
    return roles


def _secret_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"


def test_lambda_roles_cannot_manage_keys_outside_the_managed_path(
    deployment: tuple[Policies, dict[str, Any]],
) -> None:
    policies, settings = deployment
    path = settings["managed_path"]
    roles = step_roles(policies.template)
    user = settings["users"][0]["name"]
    inside = f"arn:aws:iam::{ACCOUNT}:user{path}{user}"
    outside = [f"arn:aws:iam::{ACCOUNT}:user/{user}", f"arn:aws:iam::{ACCOUNT}:user/admins/{user}",
               f"arn:aws:iam::{ACCOUNT}:user/keyrotation-other/{user}",
               f"arn:aws:iam::{OTHER_ACCOUNT}:user{path}{user}", f"arn:aws:iam::{ACCOUNT}:role{path}{user}"]
    # the steps that must manage keys can, on managed users
    assert policies.allows(roles["create_key"], "iam:CreateAccessKey", inside)
    assert policies.allows(roles["deactivate"], "iam:UpdateAccessKey", inside)
    assert policies.allows(roles["rollback"], "iam:UpdateAccessKey", inside)
    assert policies.allows(roles["delete"], "iam:DeleteAccessKey", inside)
    # no role of the stack can, on anyone else
    every_role = [logical for logical, r in policies.template["Resources"].items()
                  if r["Type"] == "AWS::IAM::Role"]
    allowed = [(role, action, arn) for role in every_role for action in KEY_ACTIONS for arn in outside
               if policies.allows(role, action, arn)]
    assert allowed == []


def test_a_server_groups_role_reads_only_its_own_secret(deployment: tuple[Policies, dict[str, Any]]) -> None:
    policies, settings = deployment
    roles = _group_roles(policies.template)
    prefix = settings["secret_prefix"]
    secret_of_group = {u["server_group"]: f"{prefix}{u['server_group']}/{u['name']}"
                       for u in settings["users"]}
    assert set(roles) == set(secret_of_group) and len(roles) == 2, roles
    for group, role in roles.items():
        own = _secret_arn(secret_of_group[group])
        assert all(policies.allows(role, action, own) for action in SECRET_READS), (group, role)
        others = [_secret_arn(name) for g, name in secret_of_group.items() if g != group]
        others += [_secret_arn("keyrotation/svc-unmanaged"), _secret_arn("prod/database"),
                   _secret_arn(f"{prefix}{group}x/svc-lookalike"), _secret_arn(f"{prefix}svc-old-scheme"),
                   f"arn:aws:secretsmanager:{REGION}:{OTHER_ACCOUNT}:secret:{secret_of_group[group]}-AbCdEf"]
        readable = [arn for arn in others for action in (*SECRET_READS, "secretsmanager:*")
                    if policies.allows(role, action, arn)]
        assert readable == [], (group, readable)
        # and nothing that writes secrets or touches IAM keys
        writes = [a for g in policies.grants if g.role == role for a in g.actions
                  if a.startswith(("iam:", "kms:Encrypt", "secretsmanager:Put", "secretsmanager:Update"))]
        assert writes == [], (group, writes)


def test_no_role_carries_an_unexpected_managed_policy(deployment: tuple[Policies, dict[str, Any]]) -> None:
    policies, _ = deployment
    group_roles = set(_group_roles(policies.template).values())
    for logical, resource in policies.template["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        # every grant is in an AWS::IAM::Policy, but a server group's (inline: one resource per group)
        inline = [p["PolicyName"] for p in resource["Properties"].get("Policies", [])]
        assert inline == (["ReadTheGroupsSecrets"] if logical in group_roles else []), logical
        for arn in as_list(resource["Properties"].get("ManagedPolicyArns", [])):
            assert render(arn).rsplit("/", 1)[-1] in KNOWN_MANAGED, (logical, render(arn))


def _denied_or_allowed(call: Callable[[], Any]) -> str:
    try:
        call()
    except ClientError as exc:
        code = str(exc.response["Error"]["Code"])
        # moto serializes Secrets Manager's AccessDeniedException with the HTTP status as its code
        return "denied" if code in ("AccessDenied", "AccessDeniedException", "403") else code
    return "allowed"


def test_the_emulator_enforcing_the_deployed_policies_denies_the_rest(
    make_harness: Callable[..., Harness], synthesized: Callable[[int], tuple[Assembly, dict[str, Any]]]
) -> None:
    # GIVEN the 2-group system deployed with its roles' policies, each user's secret created by its first
    # rotation (adopting the key its servers hold), and a user outside the managed path
    harness = make_harness(users=2, servers=1)
    assembly, settings = synthesized(2)
    deployment = harness.deployment
    sm = harness.emulator.client("secretsmanager")
    for user in settings["users"]:
        sm.delete_secret(SecretId=deployment.secrets[user["name"]], ForceDeleteWithoutRecovery=True)
        outcome = harness.run(user["name"])
        assert outcome.status == "SUCCEEDED", outcome.user
        assert {t["Key"] for t in sm.describe_secret(SecretId=deployment.secrets[user["name"]])["Tags"]} == {
            "keyrotation:user", "keyrotation:server-group"}
    harness.emulator.client("iam").create_user(UserName="svc-outside", Path="/")
    sts = harness.emulator.client("sts")

    def session_of(role_arn: str) -> dict[str, str]:
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="safety")["Credentials"]
        return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"]}

    groups = {g: session_of(arn) for g, arn in deployment.group_roles.items()}
    create_key = session_of(deployment.physical[step_roles(assembly.template)["create_key"]]["Arn"])
    prepare = session_of(deployment.physical[step_roles(assembly.template)["prepare"]]["Arn"])
    users = {u["name"]: u["server_group"] for u in settings["users"]}
    results: dict[tuple[str, str], str] = {}
    # WHEN moto enforces IAM and each role tries what it may and may not do
    with faults.enforce_iam():
        for group, session in groups.items():
            group_sm = harness.emulator.client("secretsmanager", **session)
            for user in users:
                results[(group, user)] = _denied_or_allowed(
                    lambda group_sm=group_sm, user=user: group_sm.get_secret_value(
                        SecretId=deployment.secrets[user], VersionStage="AWSCURRENT"))
        iam = harness.emulator.client("iam", **create_key)
        inside = next(iter(users))

        def create_and_delete_inside() -> None:
            key = iam.create_access_key(UserName=inside)["AccessKey"]["AccessKeyId"]
            iam.delete_access_key(UserName=inside, AccessKeyId=key)

        results[("create_key", inside)] = _denied_or_allowed(create_and_delete_inside)
        results[("create_key", "svc-outside")] = _denied_or_allowed(
            lambda: iam.create_access_key(UserName="svc-outside"))
        # prepare reads a user's path with the same scoping: IAM refuses it for a user outside the path,
        # which the engine reports as that user being outside the managed path (no unexpected error)
        prepare_iam = harness.emulator.client("iam", **prepare)
        results[("prepare", inside)] = _denied_or_allowed(
            lambda: keys.user_path(prepare_iam, inside, managed_path=settings["managed_path"]))
        try:
            keys.user_path(prepare_iam, "svc-outside", managed_path=settings["managed_path"])
            results[("prepare", "svc-outside")] = "allowed"
        except UnknownUser as exc:
            results[("prepare", "svc-outside")] = "UnknownUser: " + str(exc).split(":")[0]
    # THEN each group reads its own user's secret only, and create_key manages keys on the managed path only
    expected = {(group, user): "allowed" if users[user] == group else "denied"
                for group in groups for user in users}
    expected[("create_key", inside)] = "allowed"
    expected[("create_key", "svc-outside")] = "denied"
    expected[("prepare", inside)] = "allowed"
    expected[("prepare", "svc-outside")] = (
        f"UnknownUser: IAM user 'svc-outside' is not under the managed path {settings['managed_path']} "
        "(or does not exist)")
    assert results == expected
    assert harness.emulator.client("iam").list_access_keys(UserName="svc-outside")["AccessKeyMetadata"] == []
