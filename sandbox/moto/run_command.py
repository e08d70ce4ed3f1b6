"""Run Command as the SSM Agent and API run it, which moto 5.2.5 only records: SendCommand dispatches to
the attached fleet (sandbox.moto.ssm), invocations move through AWS's statuses and delivery timeout, and
ListCommandInvocations (which moto lacks) answers with plugin output cut as the agent cuts it.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from typing import Any

import yaml

from sandbox.moto.ssm import ManagedInstances, PluginResult, RunRequest, fleet_of, json_body, page, ssm_error

# AWS limits reproduced by the emulated Run Command.
STDOUT_LIMIT = 24_000  # GetCommandInvocation StandardOutputContent
PLUGIN_OUTPUT_LIMIT = 2_500  # ListCommandInvocations CommandPlugins[].Output
MAX_INSTANCE_IDS = 50

_TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled"}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def parse_document(content: str, document_format: str) -> dict[str, Any]:
    parsed = json.loads(content) if document_format == "JSON" else yaml.safe_load(content)
    if not isinstance(parsed, dict):
        raise ssm_error("InvalidDocumentContent", "The document content is not an object.")
    return parsed


def _resolve_parameters(document: dict[str, Any], given: dict[str, list[str]]) -> dict[str, list[str]]:
    """Validate SendCommand parameters against the document like the API does; fill defaults."""
    import re

    declared: dict[str, Any] = document.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ssm_error("InvalidParameters", f"Parameters {unknown} are not defined in the document.")
    resolved: dict[str, list[str]] = {}
    for name, spec in declared.items():
        if name in given:
            values = given[name]
        elif "default" in spec:
            default = spec["default"]
            values = default if isinstance(default, list) else [str(default)]
        else:
            raise ssm_error("InvalidParameters", f"Parameter {name} is required.")
        pattern = spec.get("allowedPattern")
        for value in values:
            if pattern is not None and not re.fullmatch(pattern, value):
                raise ssm_error("InvalidParameters", f"Parameter {name} does not match its allowedPattern.")
            if "allowedValues" in spec and value not in spec["allowedValues"]:
                raise ssm_error("InvalidParameters", f"Parameter {name} is not an allowed value.")
        resolved[name] = values
    return resolved


def _resolve_targets(
    fleet: ManagedInstances, instance_ids: list[str], targets: list[dict[str, Any]]
) -> list[str]:
    infos = fleet.instance_information()
    known = {info["InstanceId"]: info for info in infos}
    ids = list(instance_ids or [])
    for target in targets or []:
        key, values = target["Key"], target["Values"]
        if key == "InstanceIds":
            ids.extend(values)
        elif key.startswith("tag:"):
            tag = key[4:]
            ids.extend(i for i, info in known.items() if info.get("Tags", {}).get(tag) in values)
        else:
            raise ssm_error("InvalidTarget", f"Target key {key} is not supported by the sandbox.")
    if len(instance_ids or []) > MAX_INSTANCE_IDS:
        raise ssm_error("ValidationException", f"InstanceIds: at most {MAX_INSTANCE_IDS} per call.")
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ssm_error("InvalidInstanceId", f"Instances {unknown} not in a valid state for account.")
    if not ids:
        raise ssm_error("InvalidParameters", "No instance ids or targets resolved.")
    return list(dict.fromkeys(ids))


def _command_lock(command: Any) -> threading.Lock:
    lock: threading.Lock = command.__dict__.setdefault("_sandbox_lock", threading.Lock())
    return lock


def _elapsed(start: datetime.datetime, end: datetime.datetime) -> str:
    return f"PT{(end - start).total_seconds():.3f}S"


def _finish(command: Any, instance_id: str, plugins: list[PluginResult]) -> None:
    with _command_lock(command):
        invocation = next(i for i in command.invocations if i["InstanceId"] == instance_id)
        if invocation["Status"] in _TERMINAL:
            return
        status = "Success"
        for plugin in plugins:
            if plugin.status != "Success":
                status = plugin.status
                break
        first = plugins[0] if plugins else None
        start = first.started if first else _now()
        end = plugins[-1].finished if plugins else _now()
        stdout = "".join(p.stdout for p in plugins)
        stderr = "".join(p.stderr for p in plugins)
        invocation.update(
            {
                "Status": status,
                "StatusDetails": "Execution Timed Out" if status == "TimedOut" else status,
                "ResponseCode": plugins[-1].response_code if plugins else -1,
                "ExecutionStartDateTime": start.isoformat(),
                "ExecutionEndDateTime": end.isoformat(),
                "ExecutionElapsedTime": _elapsed(start, end),
                "StandardOutputContent": stdout[:STDOUT_LIMIT],
                "StandardErrorContent": stderr[:8_000],
                "_plugins": plugins,
            }
        )
        _refresh_locked(command)


def _expire(command: Any) -> None:
    """Delivery timeout: undelivered invocations end as AWS ends them once TimeoutSeconds has passed."""
    with _command_lock(command):
        if "_sandbox_document" not in command.__dict__:
            return
        if _now() >= command.requested_date_time.replace(tzinfo=datetime.UTC) + datetime.timedelta(
            seconds=command.timeout_seconds
        ):
            for invocation in command.invocations:
                if invocation["Status"] in ("Pending", "InProgress") and not invocation.get("_delivered"):
                    invocation.update({"Status": "TimedOut", "StatusDetails": "Delivery Timed Out",
                                       "ResponseCode": -1})
        _refresh_locked(command)


def _refresh_locked(command: Any) -> None:
    statuses = [i["Status"] for i in command.invocations]
    details = [i["StatusDetails"] for i in command.invocations]
    command.completed_count = sum(s in _TERMINAL for s in statuses)
    command.error_count = sum(s == "Failed" or (s == "TimedOut" and d != "Delivery Timed Out")
                              for s, d in zip(statuses, details, strict=True))
    command.delivery_timed_out_count = sum(d == "Delivery Timed Out" for d in details)
    if command.completed_count < len(statuses):
        command.status, command.status_details = "InProgress", "InProgress"
    elif command.error_count:
        command.status, command.status_details = "Failed", "Failed"
    elif command.delivery_timed_out_count:
        command.status, command.status_details = "TimedOut", "Delivery Timed Out"
    else:
        command.status, command.status_details = "Success", "Success"


def wrap_send_command(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_command(self: Any, **kwargs: Any) -> Any:
        fleet = fleet_of(self)
        if fleet is None:
            return original(self, **kwargs)
        name = kwargs["document_name"]
        if name not in self._documents:
            raise ssm_error("InvalidDocument", f"Document {name} does not exist.")
        stored = self._documents[name].get_default_version()
        document = parse_document(stored.content, stored.document_format)
        parameters = _resolve_parameters(document, kwargs.get("parameters") or {})
        targets = kwargs.get("targets") or []
        ids = _resolve_targets(fleet, kwargs.get("instance_ids") or [], targets)
        command = original(self, **{**kwargs, "instance_ids": ids, "targets": []})
        command.targets = targets
        command.__dict__["_sandbox_document"] = name
        command.delivery_timed_out_count = 0
        with _command_lock(command):
            for invocation in command.invocations:
                invocation.update({"Status": "Pending", "StatusDetails": "Pending", "ResponseCode": -1,
                                   "ExecutionStartDateTime": "", "ExecutionEndDateTime": "",
                                   "ExecutionElapsedTime": "", "PluginName": _linux_steps(document)[0]})
            _refresh_locked(command)
        for instance_id in ids:
            request = RunRequest(command.command_id, instance_id, name, document, parameters)

            def done(plugins: list[PluginResult], instance_id: str = instance_id) -> None:
                _finish(command, instance_id, plugins)

            delivered = fleet.dispatch(request, done)
            with _command_lock(command):
                invocation = next(i for i in command.invocations if i["InstanceId"] == instance_id)
                if delivered:
                    invocation["_delivered"] = True
                if invocation["Status"] == "Pending":
                    invocation.update({"Status": "InProgress", "StatusDetails": "InProgress"})
        return command

    return send_command


def _linux_steps(document: dict[str, Any]) -> list[str]:
    names = [s["name"] for s in linux_shell_steps(document)]
    return names or ["aws:runShellScript"]


def linux_shell_steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The steps a Linux SSM Agent runs: aws:runShellScript whose precondition (if any) is Linux."""
    steps = []
    for step in document.get("mainSteps", []):
        if step.get("action") != "aws:runShellScript":
            continue
        condition = (step.get("precondition") or {}).get("StringEquals")
        if condition and condition != ["platformType", "Linux"]:
            continue
        steps.append(step)
    return steps


def _public(invocation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in invocation.items() if not k.startswith("_")}


def wrap_refreshing(original: Callable[..., Any]) -> Callable[..., Any]:
    def list_commands(self: Any, *args: Any, **kwargs: Any) -> Any:
        commands = original(self, *args, **kwargs)
        for command in commands:
            _expire(command)
        return commands

    return list_commands


def wrap_get_invocation(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_invocation(self: Any, instance_id: str, plugin_name: str | None) -> dict[str, Any]:
        if "_sandbox_document" not in self.__dict__:
            return dict(original(self, instance_id, plugin_name))
        _expire(self)
        with _command_lock(self):
            invocation = original(self, instance_id, None)
            plugins: list[PluginResult] = invocation.get("_plugins") or []
            if plugin_name is not None:
                plugin = next((p for p in plugins if p.name == plugin_name), None)
                if plugin is None and plugin_name != invocation["PluginName"]:
                    raise ssm_error("InvocationDoesNotExist", "Invocation does not exist.")
            return _public(invocation)

    return get_invocation


def wrap_response_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def response_object(self: Any) -> dict[str, Any]:
        response: dict[str, Any] = original(self)
        if "_sandbox_document" in self.__dict__:
            response["DeliveryTimedOutCount"] = self.delivery_timed_out_count
        return response

    return response_object


def _invocation_entry(command: Any, invocation: dict[str, Any], details: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "CommandId": command.command_id,
        "InstanceId": invocation["InstanceId"],
        "InstanceName": "",
        "Comment": command.comment,
        "DocumentName": command.document_name,
        "DocumentVersion": "$DEFAULT",
        "RequestedDateTime": command.requested_date_time,
        "Status": invocation["Status"],
        "StatusDetails": invocation["StatusDetails"],
        "StandardOutputUrl": "",
        "StandardErrorUrl": "",
        "ServiceRole": command.service_role_arn,
        "CommandPlugins": [],
    }
    if details:
        plugins: list[PluginResult] = invocation.get("_plugins") or []
        if plugins:
            entry["CommandPlugins"] = [
                {
                    "Name": p.name,
                    "Status": p.status,
                    "StatusDetails": "Execution Timed Out" if p.status == "TimedOut" else p.status,
                    "ResponseCode": p.response_code,
                    "ResponseStartDateTime": p.started,
                    "ResponseFinishDateTime": p.finished,
                    "Output": _plugin_output(p.stdout, p.stderr),
                    "StandardOutputUrl": "",
                    "StandardErrorUrl": "",
                    "OutputS3Region": command.backend_region,
                }
                for p in plugins
            ]
        else:
            entry["CommandPlugins"] = [
                {"Name": invocation["PluginName"], "Status": invocation["Status"],
                 "StatusDetails": invocation["StatusDetails"], "ResponseCode": -1, "Output": ""}
            ]
    return entry


def _plugin_output(stdout: str, stderr: str) -> str:
    """What the SSM Agent reports as a plugin's Output: stdout and stderr sharing PLUGIN_OUTPUT_LIMIT.

    As the agent's TruncateOutput does (aws/amazon-ssm-agent, agent/framework/processor/executer/iohandler/
    iohandler.go): when both are longer than half the space, each keeps only its first ~1,200 characters;
    a short one is kept whole and the other fills the rest. A long stderr cuts a long stdout, not a short one.
    """
    title = "\n----------ERROR-------\n" if stderr else ""
    cut_out, cut_err = "\n---Output truncated---", "\n---Error truncated----"
    space = PLUGIN_OUTPUT_LIMIT - len(title)
    if len(stdout) + len(stderr) < space:
        return f"{stdout}{title}{stderr}"
    if len(stdout) > space // 2 and len(stderr) > space // 2:
        half = (space - len(cut_err) - len(cut_out)) // 2
        return f"{stdout[:half]}{cut_out}{title}{stderr[:half]}{cut_err}"
    if len(stdout) < space // 2:
        return f"{stdout}{title}{stderr[: space - len(cut_err) - len(stdout)]}{cut_err}"
    return f"{stdout[: max(0, space - len(cut_out) - len(stderr))]}{cut_out}{title}{stderr}"


def backend_list_command_invocations(
    self: Any,
    command_id: str | None,
    instance_id: str | None,
    max_results: int | None,
    next_token: str | None,
    details: bool,
    filters: list[dict[str, str]] | None,
) -> tuple[list[dict[str, Any]], str | None]:
    commands = [self.get_command_by_id(command_id)] if command_id else list(self._commands)
    entries = []
    for command in commands:
        _expire(command)
        with _command_lock(command):
            for invocation in command.invocations:
                if instance_id and invocation["InstanceId"] != instance_id:
                    continue
                entry = _invocation_entry(command, invocation, details)
                if _matches_command_filters(entry, filters or []):
                    entries.append(entry)
    limit = max_results or 50
    if not 1 <= limit <= 50:
        raise ssm_error("ValidationException", "MaxResults must be between 1 and 50.")
    return page(entries, next_token, limit)


def _matches_command_filters(entry: dict[str, Any], filters: list[dict[str, str]]) -> bool:
    for f in filters:
        key, value = f["key"], f["value"]
        if key == "Status" and entry["Status"] != value:
            return False
        if key == "DocumentName" and entry["DocumentName"] != value:
            return False
        if key not in ("Status", "DocumentName"):
            raise ssm_error("InvalidFilterKey", f"Filter key {key} is not supported by the sandbox.")
    return True



def response_list_command_invocations(self: Any) -> Any:
    invocations, token = self.ssm_backend.list_command_invocations(
        command_id=self._get_param("CommandId"),
        instance_id=self._get_param("InstanceId"),
        max_results=self._get_param("MaxResults"),
        next_token=self._get_param("NextToken"),
        details=bool(self._get_param("Details", False)),
        filters=self._get_param("Filters"),
    )
    result: dict[str, Any] = {"CommandInvocations": invocations}
    if token:
        result["NextToken"] = token
    return json_body(result)

