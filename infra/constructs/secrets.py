"""One Secrets Manager secret per managed user, encrypted with a customer-managed KMS key."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct
from rotation.settings import Settings

from infra.nag import acknowledge


class UserSecrets(Construct):
    """`secrets[user]` holds the user's current key; nobody but the listed readers may read its value.

    The secret is created with a placeholder without any key (CloudFormation requires an initial value);
    the first rotation writes the real key. CloudFormation never rewrites it: the placeholder is constant.
    """

    def __init__(self, scope: Construct, construct_id: str, *, settings: Settings) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the rotated IAM access keys of the key-rotation system",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.secrets: dict[str, secretsmanager.Secret] = {}
        for user in settings.users:
            secret = secretsmanager.Secret(
                self,
                f"Secret-{user.name}",
                secret_name=settings.secret_id(user),
                description=f"Current IAM access key of {user.name} (managed by the key-rotation system)",
                encryption_key=self.key,
                removal_policy=RemovalPolicy.RETAIN,
            )
            # The L2 Secret would generate a random string; store a placeholder without key material instead
            # (the engine treats a value without aws_access_key_id as "no key stored yet").
            resource = secret.node.default_child
            if not isinstance(resource, secretsmanager.CfnSecret):
                raise TypeError(f"{secret.node.path}: expected an AWS::SecretsManager::Secret")
            resource.generate_secret_string = None
            resource.secret_string = json.dumps({"user": user.name}, sort_keys=True)
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "The key-rotation state machine rotates this secret itself (multi-day, fleet-confirmed "
                "protocol); Secrets Manager's single-Lambda rotation cannot express the grace period.",
            )
            self.secrets[user.name] = secret

    def restrict_readers(self, readers: Mapping[str, list[iam.IRole]]) -> None:
        """Deny GetSecretValue on each user's secret to every principal but `readers[user]`.

        Identity policies already limit our roles; this resource policy also keeps out other principals of
        the account that have broad Secrets Manager permissions.
        """
        for user, secret in self.secrets.items():
            allowed = readers.get(user, [])
            if not allowed:
                continue
            secret.add_to_resource_policy(
                iam.PolicyStatement(
                    sid="OnlyRotationAndItsServersReadTheKey",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["secretsmanager:GetSecretValue"],
                    resources=["*"],
                    conditions={"ArnNotEquals": {"aws:PrincipalArn": [role.role_arn for role in allowed]}},
                )
            )
