"""The rest of the stack as an operator relies on it: window, document, Lambdas, lock, alerts, outputs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from infra_synth import ROOT, Synth, render

from app import powertools_version
from infra.constructs.steps import STEPS
from ssm_documents.render import render_document

# Secret material as it would appear in a template: an access key id or the names of the secret's fields.
SECRET_MATERIAL = re.compile(r"(AKIA|ASIA)[A-Z0-9]{16}|aws_secret_access_key|SecretAccessKey", re.IGNORECASE)


def _one(synth: Synth, kind: str) -> dict:
    (resource,) = synth.of_type(kind).values()
    return resource["Properties"]


def test_template_passes_cfn_lint(synth: Synth) -> None:
    template = synth.outdir / "IamKeyRotation.template.json"
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), "--format", "json", str(template)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    findings = json.loads(result.stdout)
    errors = [f"{f['Rule']['Id']} {f['Message']}" for f in findings if f["Level"] == "Error"]
    assert errors == []
    assert result.returncode & 2 == 0, result.stderr  # cfn-lint's exit code bit for errors


def test_maintenance_window_follows_the_schedule_settings(synth: Synth) -> None:
    schedule = synth.config.settings.schedule
    window = _one(synth, "AWS::SSM::MaintenanceWindow")
    assert (
        (window["Schedule"], window["ScheduleTimezone"], window["Duration"], window["Cutoff"])
        == ("cron(30 2 ? * SAT *)", "Europe/Berlin", 5, 2)
        == (schedule.expression, schedule.timezone, schedule.duration_hours, schedule.cutoff_hours)
    )
    assert window["AllowUnassociatedTargets"] is True


def test_window_task_starts_the_scheduled_machine_without_a_fixed_execution_name(synth: Synth) -> None:
    task = _one(synth, "AWS::SSM::MaintenanceWindowTask")
    (scheduled,) = [
        lid
        for lid in synth.of_type("AWS::StepFunctions::StateMachine")
        if lid.startswith("WorkflowsScheduled")
    ]
    assert task["TaskType"] == "STEP_FUNCTIONS"
    assert task["TaskArn"] == {"Ref": scheduled}
    parameters = task["TaskInvocationParameters"]["MaintenanceWindowStepFunctionsParameters"]
    assert "Name" not in parameters
    assert json.loads(parameters["Input"])["trigger"] == "maintenance-window"
    # The window's own role may start that machine and follow its executions, nothing else.
    role = render(task["ServiceRoleArn"]).removeprefix("${").removesuffix(".Arn}")
    statements = [
        s
        for p in synth.of_type("AWS::IAM::Policy").values()
        if {"Ref": role} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = {
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"states:StartExecution", "states:DescribeExecution", "states:StopExecution"}
    start = [s for s in statements if s["Action"] == "states:StartExecution"]
    assert [render(s["Resource"]) for s in start] == ["${Ref:" + scheduled + "}"]


def test_document_is_the_rendered_command_document(synth: Synth) -> None:
    document = _one(synth, "AWS::SSM::Document")
    assert document["DocumentType"] == "Command"
    assert document["Content"] == render_document()


def test_lambdas_run_their_step_with_the_contract_environment(synth: Synth) -> None:
    functions = synth.of_type("AWS::Lambda::Function").values()
    assert sorted(f["Properties"]["Handler"] for f in functions) == sorted(
        f"handlers.{s}.handler" for s in STEPS
    )
    (table,) = synth.of_type("AWS::DynamoDB::Table")
    (document,) = synth.of_type("AWS::SSM::Document")
    (topic,) = synth.of_type("AWS::SNS::Topic")
    (secrets_key,) = [lid for lid in synth.of_type("AWS::KMS::Key") if lid.startswith("SecretsKey")]
    (rotation,) = [lid for lid in synth.of_type("AWS::StepFunctions::StateMachine")
                   if lid.startswith("WorkflowsRotation")]
    for function in functions:
        properties = function["Properties"]
        assert properties["Runtime"] == "python3.12"
        assert properties["TracingConfig"] == {"Mode": "Active"}
        # (the scheduled run's step starts rotations: it alone is told the rotation machine; the audit's
        # steps alone are told the reports bucket)
        handler = properties["Handler"]
        extra: dict[str, Any] = {"ROTATION_MACHINE_ARN": {"Ref": rotation}} if "select_due" in handler else {}
        if handler in ("handlers.audit.handler", "handlers.audit_report.handler"):
            (bucket,) = synth.of_type("AWS::S3::Bucket")
            extra = {"REPORTS_BUCKET": {"Ref": bucket}}
        assert properties["Environment"]["Variables"] == {
            **extra,
            "SETTINGS_PATH": "settings.json",
            "LOCK_TABLE": {"Ref": table},
            "DOCUMENT_NAME": {"Ref": document},
            "TOPIC_ARN": {"Ref": topic},
            "SECRETS_KEY_ARN": {"Fn::GetAtt": [secrets_key, "Arn"]},
            "POWERTOOLS_SERVICE_NAME": "keyrotation",
        }
        assert properties["Layers"] == [POWERTOOLS_REFERENCE.format(version=powertools_version())]


POWERTOOLS_REFERENCE = "{{{{resolve:ssm:/aws/service/powertools/python/x86_64/python3.12/{version}}}}}"


def test_powertools_layer_is_the_release_pinned_for_the_lambdas(synth: Synth) -> None:
    # GIVEN the pin the tests and the sandbox run with THEN every function's layer is that release's, resolved
    # by CloudFormation at each deploy, and no template parameter holds it (cdk deploy keeps old values)
    assert powertools_version() in (ROOT / "requirements" / "lambda.txt").read_text(encoding="utf-8")
    layers = {json.dumps(f["Properties"]["Layers"]) for f in synth.of_type("AWS::Lambda::Function").values()}
    assert layers == {json.dumps([POWERTOOLS_REFERENCE.format(version=powertools_version())])}
    assert set(synth.template.get("Parameters", {})) <= {"BootstrapVersion"}


@pytest.mark.slow
def test_a_new_powertools_pin_changes_the_template_so_an_existing_stack_upgrades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra_synth import SETTINGS, cdk_context

    import app as cdk_app

    def layers(outdir: Path, **context: str) -> set[str]:
        cdk_app.build_app(SETTINGS, context={**cdk_context(), **context}, outdir=str(outdir), checks=False,
                          builtin_validation=False).synth()
        template = json.loads((outdir / f"{cdk_app.STACK_ID}.template.json").read_text(encoding="utf-8"))
        return {layer for resource in template["Resources"].values()
                if resource["Type"] == "AWS::Lambda::Function" for layer in resource["Properties"]["Layers"]}

    # GIVEN requirements/lambda.txt pins a newer Powertools WHEN the app synthesizes
    monkeypatch.setattr(cdk_app, "powertools_version", lambda: "3.99.0")
    # THEN the functions' layer text changes with it (a change set CloudFormation applies on update)
    assert layers(tmp_path / "newer") == {POWERTOOLS_REFERENCE.format(version="3.99.0")}
    # AND an operator's own parameter (a partition without Powertools' public one) replaces the public path
    assert layers(tmp_path / "own", powertools_layer_parameter="/platform/powertools-layer-arn") == {
        "{{resolve:ssm:/platform/powertools-layer-arn}}"}
    # AND a value that is no parameter name is refused, naming the context key
    with pytest.raises(ValueError, match="powertools_layer_parameter: 'arn:aws:lambda:x' is not an SSM"):
        layers(tmp_path / "bad", powertools_layer_parameter="arn:aws:lambda:x")


def test_lambda_asset_is_the_lambdas_tree_with_the_validated_settings(synth: Synth) -> None:
    (function,) = [
        f
        for f in synth.of_type("AWS::Lambda::Function").values()
        if f["Properties"]["Handler"] == "handlers.prepare.handler"
    ]
    assert function["Properties"]["Code"]["S3Key"].endswith(".zip")
    asset = synth.outdir / ("asset." + function["Properties"]["Code"]["S3Key"].removesuffix(".zip"))
    settings = json.loads((asset / "settings.json").read_text(encoding="utf-8"))
    assert settings == synth.config.settings.to_dict()
    assert (asset / "rotation" / "settings.py").is_file() and (asset / "handlers").is_dir()
    assert not list(asset.rglob("__pycache__"))


def test_lock_table_is_keyed_by_user_on_demand_encrypted_and_recoverable(synth: Synth) -> None:
    table = _one(synth, "AWS::DynamoDB::Table")
    assert table["KeySchema"] == [{"AttributeName": "user", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "user", "AttributeType": "S"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_the_secrets_key_rotates_and_outlives_the_stack(synth: Synth) -> None:
    keys = synth.of_type("AWS::KMS::Key")
    assert keys and all(k["Properties"]["EnableKeyRotation"] is True for k in keys.values())
    (secrets_key,) = [k for lid, k in keys.items() if lid.startswith("SecretsKey")]
    # the secrets the engine creates outlive a `cdk destroy`; so must the key that encrypts them
    assert secrets_key["DeletionPolicy"] == "Retain" and secrets_key["UpdateReplacePolicy"] == "Retain"


@pytest.mark.parametrize("section", ["Outputs", "Parameters"])
def test_no_output_or_parameter_carries_secret_material(synth: Synth, section: str) -> None:
    for name, entry in synth.template.get(section, {}).items():
        text = json.dumps(entry)
        assert not SECRET_MATERIAL.search(text), name
        # Nothing refers to a secret (its ARN, name or value) either.
        assert "secretsmanager" not in text and "keyrotation/" not in text, name


def test_lambda_environments_carry_no_secret_material(synth: Synth) -> None:
    for function in synth.of_type("AWS::Lambda::Function").values():
        text = json.dumps(function["Properties"]["Environment"])
        assert not SECRET_MATERIAL.search(text) and "resolve:secretsmanager" not in text


def test_alert_topic_is_encrypted_and_refuses_plain_http(synth: Synth) -> None:
    topic = _one(synth, "AWS::SNS::Topic")
    assert "KmsMasterKeyId" in topic
    policy = _one(synth, "AWS::SNS::TopicPolicy")["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy
    )
    (subscription,) = [s["Properties"] for s in synth.of_type("AWS::SNS::Subscription").values()
                       if "FilterPolicy" not in s["Properties"]]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")


def test_failed_timed_out_or_aborted_executions_of_both_machines_alert(synth: Synth) -> None:
    rule = _one(synth, "AWS::Events::Rule")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.states"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    assert sorted(m["Ref"] for m in pattern["detail"]["stateMachineArn"]) == sorted(
        synth.of_type("AWS::StepFunctions::StateMachine")
    )
    (target,) = rule["Targets"]
    (topic,) = synth.of_type("AWS::SNS::Topic")
    assert target["Arn"] == {"Ref": topic}
    # Only identifiers are forwarded, never the execution's input or output.
    forwarded = json.dumps(target["InputTransformer"]["InputPathsMap"])
    assert "$.detail.input" not in forwarded and "$.detail.output" not in forwarded


def test_every_step_alarms_on_its_unexpected_errors_only(synth: Synth) -> None:
    from handlers import EXPECTED_ERROR_METRIC, METRICS_NAMESPACE

    (topic,) = synth.of_type("AWS::SNS::Topic")
    alarms = [a for lid, a in synth.of_type("AWS::CloudWatch::Alarm").items() if "Errors" in lid]
    functions = set(synth.of_type("AWS::Lambda::Function"))
    watched: dict[str, str] = {}
    for alarm in alarms:
        properties = alarm["Properties"]
        assert properties["AlarmActions"] == [{"Ref": topic}] and properties["Threshold"] == 1
        queries = {q["Id"]: q for q in properties["Metrics"]}
        # THEN each alarm is Lambda errors minus the domain errors the step reported itself
        assert queries["expr_1"]["Expression"] == "FILL(errors, 0) - FILL(expected, 0)"
        assert queries["expr_1"].get("ReturnData", True) is True
        errors = queries["errors"]["MetricStat"]["Metric"]
        expected = queries["expected"]["MetricStat"]["Metric"]
        assert errors["MetricName"] == "Errors" and errors["Namespace"] == "AWS/Lambda"
        assert (expected["Namespace"], expected["MetricName"]) == (METRICS_NAMESPACE, EXPECTED_ERROR_METRIC)
        dimensions = {d["Name"]: d["Value"] for d in expected["Dimensions"]}
        # (the dimensions Powertools writes: its service name and the handler's step)
        assert dimensions["service"] == "keyrotation" and set(dimensions) == {"service", "step"}
        watched[dimensions["step"]] = errors["Dimensions"][0]["Value"]["Ref"]
    assert set(watched) == set(STEPS) and set(watched.values()) == functions


def test_state_machines_log_to_vended_log_groups_of_their_own_stack(synth: Synth) -> None:
    # GIVEN the two machines WHEN they log THEN to a group under /aws/vendedlogs/states/ (Step Functions then
    # needs no entry in the account's size-limited CloudWatch Logs resource policy), one per machine and stack
    names = []
    for machine in synth.of_type("AWS::StepFunctions::StateMachine").values():
        (destination,) = machine["Properties"]["LoggingConfiguration"]["Destinations"]
        group = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        name = synth.resources[group]["Properties"]["LogGroupName"]
        assert name.startswith("/aws/vendedlogs/states/IamKeyRotation-") and len(name) <= 512, name
        names.append(name)
    assert sorted(names) == ["/aws/vendedlogs/states/IamKeyRotation-audit",
                             "/aws/vendedlogs/states/IamKeyRotation-rotation",
                             "/aws/vendedlogs/states/IamKeyRotation-scheduled"]
    # AND a second stack in the account (`-c stack_name=…`) gets groups of its own
    from infra.constructs.workflows import vended_log_group_name

    assert vended_log_group_name("IamKeyRotation-b", "rotation") not in names


def test_the_watchdog_alarms_when_users_fall_overdue_or_no_scheduled_run_finishes_for_a_week(
    synth: Synth,
) -> None:
    from handlers import OVERDUE_USERS_METRIC, SCHEDULED_RUN_METRIC

    (topic,) = synth.of_type("AWS::SNS::Topic")
    alarms = {lid: a["Properties"] for lid, a in synth.of_type("AWS::CloudWatch::Alarm").items()
              if lid.startswith(("AlertsOverdue", "AlertsStalled"))}
    (overdue,) = [a for lid, a in alarms.items() if lid.startswith("AlertsOverdue")]
    (stalled,) = [a for lid, a in alarms.items() if lid.startswith("AlertsStalled")]
    # GIVEN select_due's last page publishes OverdueUsers and ScheduledRun (service, step dimensions)
    for alarm, metric in ((overdue, OVERDUE_USERS_METRIC), (stalled, SCHEDULED_RUN_METRIC)):
        assert alarm["MetricName"] == metric and alarm["Namespace"] == "KeyRotation"
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {"service": "keyrotation",
                                                                        "step": "select_due"}
        assert alarm["AlarmActions"] == [{"Ref": topic}] and alarm["Period"] == 86_400
    # THEN one run finding a user overdue beyond overdue_alarm_days alarms the same day
    assert (overdue["Statistic"], overdue["Threshold"], overdue["EvaluationPeriods"]) == ("Maximum", 1, 1)
    assert overdue["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert overdue["TreatMissingData"] == "notBreaching"
    assert str(synth.config.settings.schedule.overdue_alarm_days) in overdue["AlarmDescription"]
    # AND seven days in a row without a finished run alarm (missing data counts), CloudWatch's 7-day maximum
    assert (stalled["Statistic"], stalled["Threshold"], stalled["ComparisonOperator"]) == (
        "Sum", 1, "LessThanThreshold")
    assert (stalled["EvaluationPeriods"], stalled["DatapointsToAlarm"], stalled["TreatMissingData"]) == (
        7, 7, "breaching")
    assert stalled["Period"] * stalled["EvaluationPeriods"] <= 7 * 86_400


def test_each_owner_gets_a_subscription_filtered_to_its_users_and_operators_get_everything(
    synth: Synth,
) -> None:
    (topic,) = synth.of_type("AWS::SNS::Topic")
    subscriptions = {s["Endpoint"]: s for s in synth.of_type("AWS::SNS::Subscription").values()
                     for s in [s["Properties"]]}
    assert all(s["TopicArn"] == {"Ref": topic} for s in subscriptions.values())
    # GIVEN the settings' owners (an e-mail address and a chat webhook) THEN one filtered subscription each
    web = subscriptions["web-team@example.com"]
    hook = subscriptions["https://chat.example.com/hooks/reports"]
    assert (web["Protocol"], hook["Protocol"]) == ("email", "https")
    assert web["FilterPolicy"] == {"owner": ["web-team@example.com"]}
    assert hook["FilterPolicy"] == {"owner": ["https://chat.example.com/hooks/reports"]}
    # AND the operators' address has no filter: it gets every notice, result and alert
    assert "FilterPolicy" not in subscriptions["ops@example.com"]


def test_steps_that_wait_on_purpose_have_the_time_to(synth: Synth) -> None:
    from handlers.audit import WAIT_SECONDS
    from rotation.due import PAGE_SECONDS

    timeouts = {f["Properties"]["Handler"].split(".")[1]: f["Properties"]["Timeout"]
                for f in synth.of_type("AWS::Lambda::Function").values()}
    # GIVEN production waits (the sandbox's are seconds) THEN each call fits its Lambda with a margin
    assert timeouts["select_due"] >= PAGE_SECONDS + 60
    assert timeouts["audit"] >= WAIT_SECONDS + 120  # its IAM reads and SendCommand come on top
    assert timeouts["audit_report"] >= 40 + 120
    assert all(t == 120 for s, t in timeouts.items() if s not in ("select_due", "audit", "audit_report"))
