"""The three state machines: the per-user rotation (docs/design.md §2), the scheduled run over due users and
the audit. Their mode Choices come from lambdas/rotation/flow.py, their steps from steps.py `STEPS`.

State names are the step names wherever a state runs a step, so the console reads like the design.
Conventions (rotation machine): the first state, `start`, shapes the state as
`{"input": <execution input>, "execution_id": $$.Execution.Id}` — exactly what `prepare` takes; every step
gets the whole state; every step's result (the `rotation` object) goes to `$.rotation`; a caught error goes
to `$.error` (`{"Error": <class name>, "Cause": …}`), which `rollback` and `notify` read next to `input`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct
from rotation.flow import FORKS, RESUME, RESUME_TARGETS, STANDARD_MODE
from rotation.settings import Settings

from infra.constructs.steps import STEPS
from infra.nag import acknowledge, resource_finding

# Step Functions' vended-logs prefix (docs/deploy.md, "What the emulator does not check").
VENDED_LOGS_PREFIX = "/aws/vendedlogs/states/"


def vended_log_group_name(stack_name: str, machine: str) -> str:
    """One group per machine and stack (a second stack per account gets its own), under the vended prefix."""
    return f"{VENDED_LOGS_PREFIX}{stack_name}-{machine}"


# Lambda's own transient failures (throttling, service errors): retried on every task.
TRANSIENT_LAMBDA_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# IAM propagation of a new key takes 10-20 s, with no published bound: retry verify_key about two minutes.
VERIFY_BUDGET_SECONDS = 120
VERIFY_BACKOFF = 2.0



def verify_attempts(interval_seconds: int, budget_seconds: int = VERIFY_BUDGET_SECONDS) -> int:
    """Retries of verify_key, doubling from `interval_seconds`, until their waits add up to the budget."""
    attempts, waited, delay = 0, 0.0, float(interval_seconds)
    while waited < budget_seconds:
        attempts += 1
        waited += delay
        delay *= VERIFY_BACKOFF
    return attempts


class RotationWorkflows(Construct):
    """`rotation`: one user's rotation; `scheduled`: select due users and rotate each (bounded Map)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        functions: Mapping[str, lambda_.IFunction],
    ) -> None:
        super().__init__(scope, construct_id)
        self._functions = functions
        self._invoked: set[str] = set()
        self.rotation = self._machine(
            "Rotation", "rotation",
            self._rotation_definition(settings.defaults.waits.verify_interval_seconds),
            "Rotate one IAM user's access key across its servers (docs/design.md section 2)")
        self.scheduled = self._machine(
            "Scheduled", "scheduled", self._scheduled_definition(),
            "Rotate every user whose active key is older than its maximum age")
        self.audit = self._machine(
            "Audit", "audit", self._audit_definition(),
            "Read-only audit: every managed user's keys and which key each of its servers holds")
        self._acknowledge_generated_grants()

    def _acknowledge_generated_grants(self) -> None:
        """CDK writes the machines' policies; each wildcard in them is acknowledged here, one by one."""
        stack = Stack.of(self)
        for machine in (self.rotation, self.scheduled, self.audit):
            acknowledge(
                machine.role,
                "AwsSolutions-IAM5[Resource::*]",
                "Added by CDK for X-Ray tracing and log delivery (xray:*, logs:*LogDelivery*, "
                "logs:DescribeLogGroups...), which support no resource-level permissions.",
            )
        machines = {"rotation": self.rotation, "scheduled": self.scheduled, "audit": self.audit}
        for step, function in self._functions.items():
            machine = machines[STEPS[step].machine]
            if step in self._invoked:
                acknowledge(
                    machine.role,
                    resource_finding(stack, f"{function.function_arn}:*"),
                    f"CDK grants invoking the {step} step function and its versions; nothing else.",
                )

    def _machine(self, construct_id: str, name: str, definition: sfn.IChainable,
                 comment: str) -> sfn.StateMachine:
        """A Standard machine with X-Ray and its vended-logs group (`<stack>-<name>`)."""
        return sfn.StateMachine(
            self,
            construct_id,
            comment=comment,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            logs=self._logs(f"{construct_id}Logs", name),
            tracing_enabled=True,
        )

    def _logs(self, construct_id: str, machine: str) -> sfn.LogOptions:
        """Every event, but never state data: input/output stay in the execution history only.

        The group is named under `/aws/vendedlogs/states/`: Step Functions then delivers to it without adding
        it to the account's CloudWatch Logs resource policy, whose 5,120-character limit otherwise makes
        CreateStateMachine fail with InvalidLoggingConfiguration once an account has enough such groups.
        """
        group = logs.LogGroup(self, construct_id, retention=logs.RetentionDays.ONE_YEAR,
                              log_group_name=vended_log_group_name(Stack.of(self).stack_name, machine),
                              removal_policy=RemovalPolicy.DESTROY)
        return sfn.LogOptions(destination=group, level=sfn.LogLevel.ALL, include_execution_data=False)

    def _step(self, step: str, *, result_path: str = "$.rotation",
              payload: sfn.TaskInput | None = None) -> tasks.LambdaInvoke:
        """A Task running `step`'s Lambda on the whole state (or `payload`), its result at `result_path`."""
        self._invoked.add(step)
        task = tasks.LambdaInvoke(
            self,
            step,
            state_name=step,
            lambda_function=self._functions[step],
            payload=payload,
            payload_response_only=True,
            retry_on_service_exceptions=False,
            result_path=result_path,
        )
        task.add_retry(errors=list(TRANSIENT_LAMBDA_ERRORS), interval=Duration.seconds(2), max_attempts=6,
                       backoff_rate=2, jitter_strategy=sfn.JitterType.FULL)
        return task

    def _rotation_definition(self, verify_interval_seconds: int) -> sfn.IChainable:
        failed = sfn.Fail(self, "failed", state_name="failed",
                          comment="The rotation failed; see notify's report")
        succeeded = sfn.Succeed(self, "succeeded", state_name="succeeded")
        notify = self._step("notify")
        outcome = (
            sfn.Choice(self, "outcome", state_name="outcome")
            .when(sfn.Condition.is_present("$.error"), failed)
            .otherwise(succeeded)
        )
        notify.next(outcome)
        notify.add_catch(failed, errors=["States.ALL"], result_path="$.notify_error")

        rollback = self._step("rollback")
        rollback.next(notify)
        # A rollback that fails still reports; `$.error` keeps the original failure.
        rollback.add_catch(notify, errors=["States.ALL"], result_path="$.rollback_error")

        start = sfn.Pass(
            self,
            "start",
            state_name="start",
            parameters={"input": sfn.JsonPath.entire_payload, "execution_id": sfn.JsonPath.execution_id},
        )
        prepare = self._step("prepare")
        create_key = self._step("create_key")
        verify_key = self._step("verify_key")
        verify_key.add_retry(
            errors=["NewKeyNotYetValid"],
            interval=Duration.seconds(verify_interval_seconds),
            max_attempts=verify_attempts(verify_interval_seconds),
            backoff_rate=VERIFY_BACKOFF,
        )
        promote = self._step("promote")
        distribute = self._step("distribute")
        check_distribution = self._step("check_distribution")
        check_usage = self._step("check_usage")
        deactivate = self._step("deactivate")
        delete = self._step("delete")

        wait_poll = sfn.Wait(self, "wait_poll", state_name="wait_poll",
                             time=sfn.WaitTime.seconds_path("$.rotation.waits.poll_seconds"))
        wait_observe = sfn.Wait(self, "wait_observe", state_name="wait_observe",
                                time=sfn.WaitTime.seconds_path("$.rotation.waits.observe_seconds"))
        wait_grace = sfn.Wait(self, "wait_grace", state_name="wait_grace",
                              time=sfn.WaitTime.seconds_path("$.rotation.waits.grace_seconds"))

        # The poll loop is bounded twice: check_distribution raises TargetsUnconfirmed after max_polls, and
        # this machine stops polling on its own count too, so a misbehaving step cannot poll for a year.
        poll_limit_reached = sfn.Pass(
            self,
            "poll_limit_reached",
            state_name="poll_limit_reached",
            parameters={
                "Error": "TargetsUnconfirmed",
                "Cause": "Servers did not confirm the new key within max_polls polls",
            },
            result_path="$.error",
        ).next(rollback)
        # A Choice cannot Catch: a missing or mistyped field it reads would end the execution without a
        # rollback. Every Choice therefore checks the fields it relies on first (rules are evaluated in order)
        # and sends a state that breaks the contract with the steps down the failure path.
        unexpected_state = sfn.Pass(
            self,
            "unexpected_state",
            state_name="unexpected_state",
            parameters={
                "Error": "UnexpectedState",
                "Cause": "A step returned a rotation without a field this state machine branches on",
            },
            result_path="$.error",
        ).next(rollback)

        def missing(path: str) -> sfn.Condition:
            return sfn.Condition.not_(sfn.Condition.is_present(path))

        # The states the modes' forks lead to (rotation/flow.py FORKS), and the resume Choice's targets.
        states_by_name: dict[str, sfn.IChainable] = {
            "create_key": create_key,
            "verify_key": verify_key,
            "promote": promote,
            "distribute": distribute,
            "wait_observe": wait_observe,
            "deactivate": deactivate,
            "wait_grace": wait_grace,
            "delete": delete,
            "notify": notify,
        }

        def fork(name: str) -> sfn.Choice:
            """The Choice `name` of FORKS: the mode (and action) fields checked first, then each mode that
            parts from standard's way, then the actions; standard's way is the `otherwise`."""
            table = FORKS[name]
            choice = sfn.Choice(self, name, state_name=name)
            choice.when(missing("$.rotation.mode"), unexpected_state)
            if table.by_action:
                choice.when(missing("$.rotation.action"), unexpected_state)
            default = table.next[STANDARD_MODE]
            for mode, state_name in table.next.items():
                if state_name != default:
                    choice.when(sfn.Condition.string_equals("$.rotation.mode", mode),
                                states_by_name[state_name])
            for action, state_name in table.by_action.items():
                choice.when(sfn.Condition.string_equals("$.rotation.action", action),
                            states_by_name[state_name])
            if default != RESUME:
                return choice.otherwise(states_by_name[default])
            # The rotation resumes where prepare found the work done (rotation/flow.py RESUME_TARGETS).
            choice.when(missing("$.rotation.resume_from"), unexpected_state)
            for resume_from, state_name in RESUME_TARGETS.items():
                choice.when(sfn.Condition.string_equals("$.rotation.resume_from", resume_from),
                            states_by_name[state_name])
            return choice.otherwise(unexpected_state)

        after_promote = fork("after_promote")
        after_deactivate = fork("after_deactivate")
        after_distribution = fork("after_distribution")
        # One Choice per poll (3 transitions a poll with wait_poll and check_distribution): done → go on;
        # otherwise poll again while the budget lasts. Rules are evaluated in order, so every comparison
        # comes after the checks of the fields it reads.
        polls, max_polls = "$.rotation.polls", "$.rotation.waits.max_polls"
        done = "$.rotation.distribution.done"
        distribution_done = (
            sfn.Choice(self, "distribution_done", state_name="distribution_done")
            .when(sfn.Condition.and_(sfn.Condition.is_present(done), sfn.Condition.is_boolean(done),
                                     sfn.Condition.boolean_equals(done, True)), after_distribution)
            .when(missing(polls), poll_limit_reached)
            .when(missing(max_polls), poll_limit_reached)
            .when(sfn.Condition.not_(sfn.Condition.is_numeric(polls)), poll_limit_reached)
            .when(sfn.Condition.not_(sfn.Condition.is_numeric(max_polls)), poll_limit_reached)
            .when(sfn.Condition.number_less_than_json_path(polls, max_polls), wait_poll)
            .otherwise(poll_limit_reached)
        )

        route = fork("route")

        start.next(prepare)
        prepare.next(route)
        create_key.next(verify_key)
        verify_key.next(promote)
        promote.next(after_promote)
        distribute.next(wait_poll)
        wait_poll.next(check_distribution)
        check_distribution.next(distribution_done)
        wait_observe.next(check_usage)
        check_usage.next(deactivate)
        deactivate.next(after_deactivate)
        wait_grace.next(distribute)
        delete.next(notify)

        for task in (prepare, create_key, verify_key, promote, distribute, check_distribution, check_usage,
                     deactivate, delete):
            task.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
        return start

    def _audit_definition(self) -> sfn.IChainable:
        """audit, page after page (20 users a call, servers asked with the document's read-only `audit`
        action), then audit_report (the report into the reports bucket, a summary onto the topic)."""
        failed = sfn.Fail(self, "audit_failed", state_name="audit_failed", comment="The audit failed")
        begin = sfn.Pass(self, "audit_begin", state_name="begin",
                         result=sfn.Result.from_object({"cursor": 0, "done": False}), result_path="$.page")
        audit = self._step("audit", result_path="$.page", payload=sfn.TaskInput.from_object({
            "input": sfn.JsonPath.object_at("$$.Execution.Input"),
            "run": sfn.JsonPath.string_at("$$.Execution.Name"),
            "cursor": sfn.JsonPath.number_at("$.page.cursor"),
        }))
        audit.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        report = self._step("audit_report", result_path="$.report", payload=sfn.TaskInput.from_object({
            "run": sfn.JsonPath.string_at("$$.Execution.Name"),
            "started_at": sfn.JsonPath.string_at("$$.Execution.StartTime"),
        }))
        report.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        done = sfn.Succeed(self, "audit_done", state_name="done", output_path="$.report")
        more = sfn.Choice(self, "more_audit", state_name="more_users")
        more.when(sfn.Condition.boolean_equals("$.page.done", True), report.next(done))
        more.otherwise(audit)
        return begin.next(audit).next(more)

    def _scheduled_definition(self) -> sfn.IChainable:
        """select_due, called page after page until the last: each call checks the next users of the
        settings and starts the due ones' rotations itself (StartExecution, paced at
        schedule.starts_per_minute) without waiting for them, so a user's day-long grace period holds up
        nobody, the history grows by a few events per page and the state stays the same size."""
        failed = sfn.Fail(self, "scheduled_failed", state_name="failed",
                          comment="Selecting or starting the due rotations failed")
        first_page = {"cursor": 0, "totals": {"checked": 0}, "done": False}
        begin = sfn.Pass(self, "begin", state_name="begin", result=sfn.Result.from_object(first_page),
                         result_path="$.selection")
        select_due = self._step("select_due", result_path="$.selection", payload=sfn.TaskInput.from_object({
            "cursor": sfn.JsonPath.number_at("$.selection.cursor"),
            "totals": sfn.JsonPath.object_at("$.selection.totals"),
            "started_at": sfn.JsonPath.string_at("$$.Execution.StartTime"),
        }))
        select_due.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        done = sfn.Succeed(self, "scheduled_done", state_name="done", output_path="$.selection.totals")
        more = sfn.Choice(self, "more_users", state_name="more_users")
        more.when(sfn.Condition.boolean_equals("$.selection.done", True), done)
        more.otherwise(select_due)
        return begin.next(select_due).next(more)
