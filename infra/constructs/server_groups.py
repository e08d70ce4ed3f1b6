"""Per server group, the IAM role its hybrid-activated servers (SSM managed instances `mi-…`) run with."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct
from rotation.settings import Settings

from infra.nag import acknowledge


class ServerGroupRoles(Construct):
    """`roles[group]`: trusted by SSM for hybrid activations of this account only; reads its users' secrets.

    The role name is an output: `aws ssm create-activation --iam-role <name>` registers servers with it.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        secrets: dict[str, secretsmanager.Secret],
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.roles: dict[str, iam.Role] = {}
        for group in settings.server_groups:
            role = iam.Role(
                self,
                f"Role-{group.name}",
                description=f"Hybrid-activation role of the servers of group {group.name} (key rotation)",
                assumed_by=iam.ServicePrincipal(
                    "ssm.amazonaws.com",
                    conditions={
                        # Confused-deputy protection: only SSM acting for this account's activations.
                        "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                        "ArnLike": {
                            "aws:SourceArn": stack.format_arn(service="ssm", resource="*", region=Aws.REGION)
                        },
                    },
                ),
                managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")],
            )
            acknowledge(
                role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]",
                "The SSM Agent of a hybrid node needs exactly this AWS-maintained policy to register, "
                "receive Run Command and report; AWS keeps it current with the agent.",
            )
            users = [user for user in settings.users if user.server_group == group.name]
            for user in users:
                # GetSecretValue/DescribeSecret on this secret only, and kms:Decrypt via Secrets Manager.
                secrets[user.name].grant_read(role)
            self.roles[group.name] = role
            CfnOutput(
                self,
                f"ActivationRole-{group.name}",
                value=role.role_name,
                description=f"Role for `aws ssm create-activation --iam-role` (server group {group.name})",
            )
