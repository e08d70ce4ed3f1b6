"""Thin Lambda handlers, one module per Step Functions state: parse the event, call the domain, return ids."""

# Every step, in the rotation's order (select_due belongs to the scheduled machine, audit and audit_report to
# the audit). The CDK app's step registry (infra/constructs/steps.py STEPS: handler, domain function,
# permissions) lists the same steps in this order; tests check both lists and the modules here agree.
STEPS = (
    "prepare",
    "create_key",
    "verify_key",
    "promote",
    "distribute",
    "check_distribution",
    "check_usage",
    "deactivate",
    "delete",
    "rollback",
    "notify",
    "select_due",
    "audit",
    "audit_report",
)

# The CloudWatch metrics every step emits (Powertools EMF; dimensions: service, step). The CDK app's error
# alarms count the Lambda errors that are not EXPECTED_ERROR_METRIC (infra/constructs/alerts.py).
METRICS_NAMESPACE = "KeyRotation"
EXPECTED_ERROR_METRIC = "ExpectedError"
# The scheduled run's watchdog (select_due's last page; alarms in infra/constructs/alerts.py): one
# ScheduledRun per finished run, and the users whose key is overdue by more than schedule.overdue_alarm_days.
SCHEDULED_RUN_METRIC = "ScheduledRun"
OVERDUE_USERS_METRIC = "OverdueUsers"
