"""Reproduce the IAM or CloudTrail write an event records, on the local account.

A replayed event says "someone attached AdministratorAccess to the group"; for the
guardrail's remediation to have something real to undo, the local account must be in the
state that call left behind. The call is rebuilt from `eventName` + `requestParameters`
through botocore's own model of the API (CloudTrail records the parameters in camelCase,
the API takes PascalCase; policy documents arrive as JSON strings), so no per-call mapping
can drift from the real API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore import xform_name
from botocore.exceptions import ClientError, ParamValidationError
from botocore.model import OperationNotFoundError, Shape

from guardrail_cli.local import ACCOUNT_ID, REGION

API_CALL = "AWS API Call via CloudTrail"
SERVICES = {"iam.amazonaws.com": "iam", "cloudtrail.amazonaws.com": "cloudtrail"}
READ_PREFIXES = ("Get", "List", "Describe", "Lookup", "Generate", "Simulate")
# Values CloudTrail never records (secrets); any valid value reproduces the call.
FILLERS = {
    "Password": "Replayed-locally-1!",
    "AuthenticationCode1": "123456",
    "AuthenticationCode2": "654321",
}
HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
# IAM names are case-insensitive; the local account (moto) is not: use the real spelling.
NAME_LOOKUPS = {
    "GroupName": ("list_groups", "Groups"),
    "RoleName": ("list_roles", "Roles"),
    "UserName": ("list_users", "Users"),
}

APPLIED, FAILED, SKIPPED = "applied", "failed", "skipped"


@dataclass(frozen=True)
class Applied:
    """What replay did to the local account before routing the event."""

    call: str  # "iam:AttachGroupPolicy"
    status: str  # applied | failed | skipped
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"call": self.call, "status": self.status, "detail": self.detail}

    @property
    def line(self) -> str:
        if self.status == APPLIED:
            return f"applied: {self.call}" + (f" ({self.detail})" if self.detail else "")
        if self.status == FAILED:
            return f"could not apply {self.call}: {self.detail}"
        return f"not applied: {self.call}: {self.detail}"


def recorded_write(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(service prefix, operation) when the event records a write call, else None."""
    detail = event.get("detail")
    if event.get("detail-type") != API_CALL or not isinstance(detail, Mapping):
        return None
    name, source = detail.get("eventName"), detail.get("eventSource")
    if not isinstance(name, str) or not isinstance(source, str) or not name:
        return None
    if str(detail.get("readOnly")).lower() == "true" or name.startswith(READ_PREFIXES):
        return None
    return SERVICES.get(source, source.split(".")[0]), name


def apply_recorded_call(event: Mapping[str, Any], account_id: str = ACCOUNT_ID) -> Applied | None:
    """Make the recorded write on the local account; None when the event records no write."""
    found = recorded_write(event)
    if found is None:
        return None
    service, operation = found
    call = f"{service}:{operation}"
    detail: Mapping[str, Any] = event["detail"]
    if service not in SERVICES.values():
        return Applied(call, SKIPPED, "replay reproduces IAM and CloudTrail calls only")
    if detail.get("errorCode"):
        return Applied(call, SKIPPED, f"the recorded call failed ({detail['errorCode']}), so it changed nothing")
    recorded_in = str(detail.get("recipientAccountId") or event.get("account") or "")
    if recorded_in and recorded_in != account_id:
        return Applied(call, SKIPPED, f"recorded in account {recorded_in}; the local account is {account_id}")
    region = REGION if service == "iam" else str(detail.get("awsRegion") or event.get("region") or REGION)
    try:
        client = boto3.client(service, region_name=region)  # type: ignore[call-overload]
        operation_model = client.meta.service_model.operation_model(operation)
    except OperationNotFoundError:
        return Applied(call, SKIPPED, f"{operation} is not a {service} API operation")
    except Exception as exc:  # e.g. an invented region name
        return Applied(call, FAILED, f"{type(exc).__name__}: {exc}")
    try:
        params = api_params(operation_model.input_shape, detail.get("requestParameters") or {})
        _fill_missing(operation_model.input_shape, params, detail)
        identity = detail.get("userIdentity")
        if service == "iam" and "UserName" in operation_model.input_shape.members and "UserName" not in params \
                and isinstance(identity, Mapping) and identity.get("type") == "Root":
            return Applied(call, SKIPPED, "the call acts on the root user's own credentials, "
                                          "which the local account cannot reproduce")
        if service == "iam":
            _real_names(client, params)
        elif operation != "CreateTrail" and not _trail_exists(client, params):
            return Applied(call, FAILED, f"TrailNotFoundException: no trail {_trail_name(params)} in the local account")
        getattr(client, xform_name(operation))(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return Applied(call, FAILED, f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".strip())
    except ParamValidationError as exc:
        return Applied(call, FAILED, "requestParameters do not make a valid call: " + " ".join(str(exc).split()))
    except NotImplementedError:
        return Applied(call, FAILED, "the local account (moto) does not implement this call")
    except (ValueError, TypeError) as exc:
        return Applied(call, FAILED, f"requestParameters do not fit the API: {exc}")
    return Applied(call, APPLIED)


def api_params(shape: Shape | None, value: Any) -> Any:
    """CloudTrail's requestParameters -> the API's parameters, guided by the API's input shape."""
    if shape is None:
        return {}
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object for {shape.name}, got {type(value).__name__}")
        members = {name.lower(): (name, member) for name, member in shape.members.items()}  # type: ignore[attr-defined]
        out = {}
        for key, item in value.items():
            found = members.get(str(key).lower())
            if found is not None and item is not None:  # CloudTrail adds fields the API does not take
                out[found[0]] = api_params(found[1], item)
        return out
    if kind == "list":
        items = value if isinstance(value, list) else [value]
        return [api_params(shape.member, item) for item in items]  # type: ignore[attr-defined]
    if kind == "map":
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object for {shape.name}")
        return {str(k): api_params(shape.value, v) for k, v in value.items()}  # type: ignore[attr-defined]
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "string" and isinstance(value, (dict, list)):
        return json.dumps(value)  # a policy document recorded as an object
    if kind == "string":
        return str(value)
    return value


def _fill_missing(shape: Shape, params: dict[str, Any], detail: Mapping[str, Any]) -> None:
    """Secrets CloudTrail leaves out, and the caller's own user name where the API defaults to it."""
    members = shape.members  # type: ignore[attr-defined]
    for name in shape.required_members:  # type: ignore[attr-defined]
        if (name not in params or params[name] == HIDDEN) and name in FILLERS:
            params[name] = FILLERS[name]
    identity = detail.get("userIdentity")
    if "UserName" in members and "UserName" not in params and isinstance(identity, Mapping) \
            and identity.get("type") == "IAMUser" and isinstance(identity.get("userName"), str):
        params["UserName"] = identity["userName"]


def _real_names(iam: Any, params: dict[str, Any]) -> None:
    for key, (lister, items_key) in NAME_LOOKUPS.items():
        wanted = params.get(key)
        if not isinstance(wanted, str):
            continue
        for page in iam.get_paginator(lister).paginate():
            for item in page.get(items_key, []):
                if str(item.get(key, "")).lower() == wanted.lower():
                    params[key] = item[key]


def _trail_name(params: Mapping[str, Any]) -> str:
    return str(params.get("Name") or params.get("TrailName") or "")


def _trail_exists(cloudtrail: Any, params: Mapping[str, Any]) -> bool:
    """The local account (moto) accepts some calls on a trail that does not exist; AWS does not."""
    name = _trail_name(params)
    if not name:
        return True
    trails = cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", [])
    return any(name in (t.get("Name"), t.get("TrailARN")) for t in trails)
