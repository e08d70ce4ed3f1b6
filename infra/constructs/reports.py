"""Where operators find the audit reports: an S3 bucket, encrypted, versioned, TLS only, never public."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.nag import acknowledge

REPORTS_PREFIX = "audits/"


class AuditReports(Construct):
    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireOldReports", prefix=REPORTS_PREFIX, expiration=Duration.days(400),
                                 noncurrent_version_expiration=Duration.days(30)),
            ],
            # Reports are the evidence of past audits: they outlive the stack (delete them by hand).
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "The reports hold key ids, names, dates and counts, never a secret; only the audit steps write "
            "them. Object-level access can be recorded with CloudTrail data events if an account wants it.",
        )

    def objects_arn(self) -> str:
        return self.bucket.arn_for_objects(REPORTS_PREFIX + "*")
