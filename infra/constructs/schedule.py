"""The SSM maintenance window that starts the scheduled machine."""

from __future__ import annotations

import json

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from rotation.settings import Schedule

from infra.arns import executions_arn
from infra.nag import acknowledge, resource_finding

# What the scheduled machine receives; the window fills in its pseudo parameter. No execution name is set:
# Step Functions names must be unique for 90 days, so Step Functions generates one per window run.
WINDOW_INPUT = {"trigger": "maintenance-window", "window_execution_id": "{{WINDOW_EXECUTION_ID}}"}


class RotationWindow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedule: Schedule,
        state_machine: sfn.StateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.window = ssm.CfnMaintenanceWindow(
            self,
            "Window",
            name=f"{Aws.STACK_NAME}-key-rotation",
            description="Starts the scheduled IAM access-key rotation",
            schedule=schedule.expression,
            schedule_timezone=schedule.timezone,
            duration=schedule.duration_hours,
            cutoff=schedule.cutoff_hours,
            # The task starts a state machine; it has no instance targets.
            allow_unassociated_targets=True,
        )
        self.role = iam.Role(
            self,
            "Role",
            description="Lets the key-rotation maintenance window start the scheduled machine",
            assumed_by=iam.ServicePrincipal(
                "ssm.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            ),
        )
        executions = executions_arn(state_machine)
        policy = iam.Policy(
            self,
            "Policy",
            roles=[self.role],
            statements=[
                iam.PolicyStatement(actions=["states:StartExecution"],
                                    resources=[state_machine.state_machine_arn]),
                iam.PolicyStatement(actions=["states:DescribeExecution", "states:StopExecution"],
                                    resources=[executions]),
            ],
        )
        self.executions_arn = executions
        acknowledge(
            policy,
            resource_finding(stack, executions),
            "The window follows the executions it starts; their names are generated, so only the "
            "scheduled machine's execution ARNs can be named.",
        )
        self.task = ssm.CfnMaintenanceWindowTask(
            self,
            "Task",
            window_id=self.window.ref,
            name="start-scheduled-rotation",
            description="Start the scheduled IAM key rotation",
            task_type="STEP_FUNCTIONS",
            task_arn=state_machine.state_machine_arn,
            service_role_arn=self.role.role_arn,
            priority=1,
            task_invocation_parameters=ssm.CfnMaintenanceWindowTask.TaskInvocationParametersProperty(
                maintenance_window_step_functions_parameters=ssm.CfnMaintenanceWindowTask.MaintenanceWindowStepFunctionsParametersProperty(
                    input=json.dumps(WINDOW_INPUT, sort_keys=True),
                )
            ),
        )
