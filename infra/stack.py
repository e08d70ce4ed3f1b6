"""The stack: composes the units of `infra.constructs` and passes grants between them; nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import CfnParameter, Stack
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.alerts import Alerts
from infra.constructs.document import RotationDocument
from infra.constructs.lock import LockTable
from infra.constructs.schedule import RotationWindow
from infra.constructs.secrets import UserSecrets
from infra.constructs.server_groups import ServerGroupRoles
from infra.constructs.steps import SERVICE_NAME, RotationSteps
from infra.constructs.workflows import RotationWorkflows

# Powertools for AWS Lambda publishes, per region, the layer ARN of each release under this public SSM path.
POWERTOOLS_PARAMETER = "/aws/service/powertools/python/x86_64/python3.12/{version}"


class KeyRotationStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: InfraConfig,
        asset_dir: Path,
        document_content: Mapping[str, Any],
        powertools_version: str,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = config.settings
        powertools = CfnParameter(
            self,
            "PowertoolsLayerArn",
            type="AWS::SSM::Parameter::Value<String>",
            default=POWERTOOLS_PARAMETER.format(version=powertools_version),
            description="Public SSM parameter holding the Powertools for AWS Lambda (Python) v3 layer ARN",
        )
        alerts = Alerts(self, "Alerts", email=settings.alerts.email)
        secrets = UserSecrets(self, "Secrets")
        lock = LockTable(self, "Lock")
        document = RotationDocument(self, "Document", content=document_content)
        steps = RotationSteps(
            self,
            "Steps",
            settings=settings,
            asset_dir=asset_dir,
            powertools_layer_arn=powertools.value_as_string,
            secrets_key=secrets.key,
            lock_table=lock.table,
            document_name=document.name,
            topic=alerts.topic,
            topic_key=alerts.key,
        )
        workflows = RotationWorkflows(self, "Workflows", settings=settings, functions=steps.functions)
        steps.allow_lock_owner_checks(workflows.rotation)
        groups = ServerGroupRoles(self, "ServerGroups", settings=settings)
        secrets.restrict_decryption([*groups.roles.values(), *steps.secret_readers()])
        RotationWindow(self, "Window", schedule=settings.schedule, state_machine=workflows.scheduled)
        alerts.alert_on_failed_executions([workflows.rotation, workflows.scheduled])
        alerts.alarm_on_errors(steps.functions, service=SERVICE_NAME)
        self.steps = steps
        self.workflows = workflows
        self.document = document
