"""Thin Lambda handlers, one module per Step Functions state: parse the event, call the domain, return ids."""

# Each module here (but the `_` ones) is one step's Lambda. Which machine runs it, its domain function and
# its permissions: the CDK app's step registry, infra/constructs/steps.py `STEPS` (tests check the two agree).

# The CloudWatch metrics every step emits (Powertools EMF; dimensions: service, step). The CDK app's error
# alarms count the Lambda errors that are not EXPECTED_ERROR_METRIC (infra/constructs/alerts.py).
METRICS_NAMESPACE = "KeyRotation"
EXPECTED_ERROR_METRIC = "ExpectedError"
# The scheduled run's watchdog (select_due's last page; alarms in infra/constructs/alerts.py): one
# ScheduledRun per finished run, and the users whose key is overdue by more than schedule.overdue_alarm_days.
SCHEDULED_RUN_METRIC = "ScheduledRun"
OVERDUE_USERS_METRIC = "OverdueUsers"
