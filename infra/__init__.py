"""The CDK app of the IAM access-key rotation system (docs/design.md, docs/deploy.md)."""
