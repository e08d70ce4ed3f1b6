"""Where operators hear about rotations: an encrypted SNS topic, failed-execution events and Lambda alarms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from handlers import EXPECTED_ERROR_METRIC, METRICS_NAMESPACE, OVERDUE_USERS_METRIC, SCHEDULED_RUN_METRIC

# Execution statuses that need a human; SUCCEEDED runs report through the `notify` step.
ALERT_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")


class Alerts(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, email: str | None) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the key-rotation alert topic",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # EventBridge and CloudWatch alarms publish to an encrypted topic only if the key lets them.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlertPublishersOfThisAccount",
                principals=[
                    iam.ServicePrincipal("events.amazonaws.com"),
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            display_name="IAM key rotation",
            master_key=self.key,
            enforce_ssl=True,
        )
        # enforce_ssl and the EventBridge target make CDK write an AWS::SNS::TopicPolicy, which replaces the
        # topic's default policy: CloudWatch alarm actions (published as cloudwatch.amazonaws.com) need their
        # own allow, for this account's alarms only. EventBridge's statement is CDK's (SnsTopic target).
        alarms_of_this_account = f"{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:cloudwatch:{alarms_of_this_account}"},
                },
            )
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def subscribe_owners(self, owners: Sequence[str]) -> None:
        """One subscription per key owner, filtered on the `owner` message attribute: an owner gets the
        notices and results of its users only (notify and select_due tag them); e-mail or an https webhook."""
        for owner in sorted(set(owners)):
            policy = {"owner": sns.SubscriptionFilter.string_filter(allowlist=[owner])}
            subscription: sns.ITopicSubscription
            if owner.startswith("https://"):
                subscription = subscriptions.UrlSubscription(owner, filter_policy=policy)
            else:
                subscription = subscriptions.EmailSubscription(owner, filter_policy=policy)
            self.topic.add_subscription(subscription)

    def alert_on_failed_executions(self, machines: Sequence[sfn.IStateMachine]) -> events.Rule:
        rule = events.Rule(
            self,
            "FailedExecutions",
            description="Failed, timed-out or aborted key-rotation executions",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": list(ALERT_STATUSES),
                    "stateMachineArn": [machine.state_machine_arn for machine in machines],
                },
            ),
        )
        # Only identifiers reach the topic (the event's input/output fields are left out on purpose).
        rule.add_target(
            targets.SnsTopic(
                self.topic,
                message=events.RuleTargetInput.from_object(
                    {
                        "summary": "An IAM key-rotation execution needs attention",
                        "status": events.EventField.from_path("$.detail.status"),
                        "execution": events.EventField.from_path("$.detail.executionArn"),
                        "state_machine": events.EventField.from_path("$.detail.stateMachineArn"),
                        "region": events.EventField.region,
                    }
                ),
            )
        )
        return rule

    def alarm_on_errors(
        self, functions: Mapping[str, lambda_.IFunction], *, service: str
    ) -> list[cloudwatch.Alarm]:
        """One alarm per step on its *unexpected* errors: Lambda errors minus the typed domain errors the step
        reported itself (`ExpectedError`, handlers/_common.py). Domain errors (a server that did not confirm,
        IAM still propagating a new key, a rotation already running) are how a step tells the state machine
        what happened; a failed rotation alerts through the failed-execution rule. What is left — an
        exception of no known kind, a timeout, running out of memory, an import error — alarms at once."""
        alarms = []
        action = cloudwatch_actions.SnsAction(self.topic)
        period = Duration.minutes(5)
        for step, function in functions.items():
            expected = cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=EXPECTED_ERROR_METRIC,
                dimensions_map={"service": service, "step": step},
                statistic="Sum",
                period=period,
            )
            unexpected = cloudwatch.MathExpression(
                expression="FILL(errors, 0) - FILL(expected, 0)",
                using_metrics={"errors": function.metric_errors(period=period, statistic="Sum"),
                               "expected": expected},
                label=f"{step}: unexpected errors",
                period=period,
            )
            alarm = cloudwatch.Alarm(
                self,
                f"Errors-{step}",
                alarm_description=f"The {step} step of the IAM key rotation failed unexpectedly",
                metric=unexpected,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(action)
            alarms.append(alarm)
        return alarms

    def alarm_on_missed_rotations(self, *, service: str, overdue_days: int) -> list[cloudwatch.Alarm]:
        """The scheduled run's watchdog (select_due's last page publishes both metrics once per run):
        - `Overdue`: a run found users whose key is overdue by more than `overdue_days` (it fell behind, or
          their rotations keep failing);
        - `Stalled`: no scheduled run finished on any of 7 days in a row (the window stopped, the machine
          fails before its end, or the schedule is less often than weekly)."""
        day = Duration.days(1)
        dimensions = {"service": service, "step": "select_due"}
        overdue = cloudwatch.Alarm(
            self,
            "Overdue",
            alarm_description=(f"A scheduled key-rotation run found users whose key is more than "
                               f"{overdue_days} days overdue (see the run's output: users.overdue)"),
            metric=cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=OVERDUE_USERS_METRIC,
                                     dimensions_map=dimensions, statistic="Maximum", period=day),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        stalled = cloudwatch.Alarm(
            self,
            "Stalled",
            alarm_description="No scheduled key-rotation run has finished for 7 days",
            metric=cloudwatch.Metric(namespace=METRICS_NAMESPACE, metric_name=SCHEDULED_RUN_METRIC,
                                     dimensions_map=dimensions, statistic="Sum", period=day),
            threshold=1,
            evaluation_periods=7,
            datapoints_to_alarm=7,
            comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        for alarm in (overdue, stalled):
            alarm.add_alarm_action(action)
        return [overdue, stalled]
