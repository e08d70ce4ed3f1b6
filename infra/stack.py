"""The stack: composes the units of `infra.constructs` and passes grants between them; nothing else."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import CfnDynamicReference, CfnDynamicReferenceService, Stack
from constructs import Construct

from infra.config import InfraConfig
from infra.constructs.alerts import Alerts
from infra.constructs.document import RotationDocument
from infra.constructs.lock import LockTable
from infra.constructs.reports import AuditReports
from infra.constructs.schedule import RotationWindow
from infra.constructs.secrets import UserSecrets
from infra.constructs.server_groups import ServerGroupRoles
from infra.constructs.steps import SERVICE_NAME, RotationSteps
from infra.constructs.workflows import RotationWorkflows

# Powertools for AWS Lambda publishes, per region, the layer ARN of each release under this public SSM path.
POWERTOOLS_PARAMETER = "/aws/service/powertools/python/x86_64/python3.12/{version}"
# An SSM parameter name, as the `powertools_layer_parameter` context key may give one (partitions or regions
# without Powertools' public parameter keep their own copy of the layer).
SSM_PARAMETER_NAME = re.compile(r"^/[A-Za-z0-9_.\-/]{1,1010}$")


def powertools_layer(version: str, parameter: str | None = None) -> str:
    """The layer ARN as CloudFormation resolves it at each deploy: an `ssm` dynamic reference to the pinned
    release's parameter. Not a CfnParameter: `cdk deploy` keeps a parameter's previous value, so a new pin
    would never reach a stack deployed before it; the reference's name changes with the pin, so the template
    changes and CloudFormation updates every function's layer."""
    name = parameter or POWERTOOLS_PARAMETER.format(version=version)
    if not SSM_PARAMETER_NAME.match(name):
        raise ValueError(f"powertools_layer_parameter: {name!r} is not an SSM parameter name (/path/name)")
    return CfnDynamicReference(CfnDynamicReferenceService.SSM, name).to_string()


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
        powertools_parameter: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = config.settings
        alerts = Alerts(self, "Alerts", email=settings.alerts.email)
        alerts.subscribe_owners([user.owner for user in settings.users if user.owner])
        secrets = UserSecrets(self, "Secrets")
        lock = LockTable(self, "Lock")
        reports = AuditReports(self, "Reports")
        document = RotationDocument(self, "Document", content=document_content)
        steps = RotationSteps(
            self,
            "Steps",
            settings=settings,
            asset_dir=asset_dir,
            powertools_layer_arn=powertools_layer(powertools_version, powertools_parameter),
            secrets_key=secrets.key,
            lock_table=lock.table,
            document_name=document.name,
            topic=alerts.topic,
            topic_key=alerts.key,
            reports=reports,
        )
        workflows = RotationWorkflows(self, "Workflows", settings=settings, functions=steps.functions)
        steps.allow_lock_owner_checks(workflows.rotation)
        groups = ServerGroupRoles(self, "ServerGroups", settings=settings)
        secrets.restrict_decryption([*groups.roles.values(), *steps.secret_readers()])
        RotationWindow(self, "Window", schedule=settings.schedule, state_machine=workflows.scheduled)
        alerts.alert_on_failed_executions([workflows.rotation, workflows.scheduled, workflows.audit])
        alerts.alarm_on_errors(steps.functions, service=SERVICE_NAME)
        alerts.alarm_on_missed_rotations(service=SERVICE_NAME,
                                         overdue_days=settings.schedule.overdue_alarm_days)
        self.steps = steps
        self.workflows = workflows
        self.document = document
