"""Per server group, the IAM role its hybrid-activated servers (SSM managed instances `mi-…`) run with."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct
from rotation.settings import Settings, secret_name

from infra.arns import kms_keys_arn, secrets_arn, secrets_manager_via, ssm_arn_pattern
from infra.nag import acknowledge, resource_finding


class ServerGroupRoles(Construct):
    """`roles[group]`: trusted by SSM for hybrid activations of this account only; reads its users' secrets.

    One resource per group: the role, with its grant inline. The grant is by name prefix — every secret
    under `secret_prefix + group + "/"`, i.e. the group's users' secrets, whether they exist yet or not — so
    it does not grow with the users. The role name is an output: `aws ssm create-activation --iam-role
    <name>` registers servers with it.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.roles: dict[str, iam.Role] = {}
        for group in settings.server_groups:
            secrets = secrets_arn(secret_name(settings.secret_prefix, group.name, "*"))
            keys = kms_keys_arn()
            role = iam.Role(
                self,
                f"Role-{group.name}",
                description=f"Hybrid-activation role of the servers of group {group.name} (key rotation)",
                assumed_by=iam.ServicePrincipal(
                    "ssm.amazonaws.com",
                    conditions={
                        # Confused-deputy protection: only SSM acting for this account's activations.
                        "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                        "ArnLike": {"aws:SourceArn": ssm_arn_pattern()},
                    },
                ),
                managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
                inline_policies={
                    "ReadTheGroupsSecrets": iam.PolicyDocument(statements=[
                        iam.PolicyStatement(
                            sid="TheGroupsSecretsOnly",
                            actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                            resources=[secrets],
                        ),
                        # The secrets' key is not named (the key's policy names this role: a reference back
                        # would be a dependency cycle); Secrets Manager's encryption context names the secret.
                        iam.PolicyStatement(
                            sid="DecryptTheGroupsSecretsViaSecretsManagerOnly",
                            actions=["kms:Decrypt"],
                            resources=[keys],
                            conditions={
                                "StringEquals": {"kms:ViaService": secrets_manager_via()},
                                "StringLike": {"kms:EncryptionContext:SecretARN": secrets},
                            },
                        ),
                    ])
                },
            )
            acknowledge(
                role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
                "The SSM Agent of a hybrid node needs exactly this AWS-maintained policy to register, "
                "receive Run Command and report; AWS keeps it current with the agent.",
            )
            acknowledge(
                role,
                resource_finding(stack, secrets),
                "The engine creates each user's secret on its first rotation, under the group's name prefix; "
                "the prefix is exactly the group's users' secrets.",
            )
            acknowledge(
                role,
                resource_finding(stack, keys),
                "kms:Decrypt only through Secrets Manager and only for secrets under the group's prefix "
                "(kms:EncryptionContext:SecretARN); naming the key would make a dependency cycle with the "
                "key policy that names this role.",
            )
            self.roles[group.name] = role
            CfnOutput(
                self,
                f"ActivationRole-{group.name}",
                value=role.role_name,
                description=f"Role for `aws ssm create-activation --iam-role` (server group {group.name})",
            )
