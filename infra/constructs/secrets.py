"""The customer-managed KMS key of the users' secrets, and who may decrypt them.

The secrets themselves are created by the engine on each user's first rotation (docs/design.md §3), so the
stack's size does not grow with its users. What a per-secret resource policy used to do — keep other
principals of the account out — is one statement in this key's policy, of constant size per group.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.arns import secrets_manager_via


class UserSecrets(Construct):
    """`key` encrypts every user's secret; `restrict_decryption` names the only principals that read them."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        # The construct id "Key" keeps the key of stacks deployed before the engine created the secrets.
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the rotated IAM access keys of the key-rotation system",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def restrict_decryption(self, readers: Sequence[iam.IRole]) -> None:
        """Deny decrypting through Secrets Manager to every principal but `readers`.

        Reading a secret's value (GetSecretValue) is a kms:Decrypt via Secrets Manager, so this keeps out the
        account's principals with broad Secrets Manager and KMS permissions, for every secret under the key.
        Only kms:Decrypt via Secrets Manager is denied: the key's administrators (the account root statement
        CDK writes) still manage the key, its policy included, so nobody is locked out.
        The readers' own policies must not name this key (each group role would then depend on the key and
        the key on the role): group roles are granted kms:Decrypt by encryption context instead.
        """
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheRotationAndItsServersDecryptSecrets",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions={
                    "StringEquals": {"kms:ViaService": secrets_manager_via()},
                    "ArnNotEquals": {"aws:PrincipalArn": [role.role_arn for role in readers]},
                },
            )
        )
