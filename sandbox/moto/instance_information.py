"""DescribeInstanceInformation, which moto 5.2.5 lacks: the attached fleet's servers (sandbox.moto.ssm),
with AWS's filters, tag filters and paging."""

from __future__ import annotations

from typing import Any

from sandbox.moto.ssm import fleet_of, json_body, page, ssm_error

_INFO_FILTER_KEYS = {"InstanceIds", "PingStatus", "PlatformTypes", "ResourceType", "AgentVersion",
                     "IamRole", "ActivationIds", "AssociationStatus"}
_INFO_FIELD = {"InstanceIds": "InstanceId", "PingStatus": "PingStatus", "PlatformTypes": "PlatformType",
               "ResourceType": "ResourceType", "AgentVersion": "AgentVersion", "IamRole": "IamRole",
               "ActivationIds": "ActivationId", "AssociationStatus": "AssociationStatus"}


def backend_describe_instance_information(
    self: Any,
    filters: list[dict[str, Any]] | None,
    max_results: int | None,
    next_token: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    fleet = fleet_of(self)
    infos = fleet.instance_information() if fleet else []
    selected = []
    for info in infos:
        ok = True
        for f in filters or []:
            key, values = f["Key"], f["Values"]
            if key.startswith("tag:"):
                ok = info.get("Tags", {}).get(key[4:]) in values
            elif key == "tag-key":
                ok = any(v in info.get("Tags", {}) for v in values)
            elif key in _INFO_FILTER_KEYS:
                ok = str(info.get(_INFO_FIELD[key])) in values
            else:
                raise ssm_error("InvalidInstanceInformationFilterValue", f"Unsupported filter key {key}.")
            if not ok:
                break
        if ok:
            selected.append({k: v for k, v in info.items() if k != "Tags"})
    limit = max_results or 50
    if not 5 <= limit <= 50:
        raise ssm_error("ValidationException", "MaxResults must be between 5 and 50.")
    return page(selected, next_token, limit)



def response_describe_instance_information(self: Any) -> Any:
    filters = list(self._get_param("Filters") or [])
    for f in self._get_param("InstanceInformationFilterList") or []:
        filters.append({"Key": f["key"], "Values": f["valueSet"]})
    infos, token = self.ssm_backend.describe_instance_information(
        filters=filters, max_results=self._get_param("MaxResults"), next_token=self._get_param("NextToken")
    )
    result: dict[str, Any] = {"InstanceInformationList": infos}
    if token:
        result["NextToken"] = token
    return json_body(result)
