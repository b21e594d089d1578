"""Reproduce the IAM or CloudTrail write an event records, on the local account.

A replayed event says "someone attached AdministratorAccess to the group"; for the
guardrail's remediation to have something real to undo, the local account must be in the
state that call left behind. The call is rebuilt from `eventName` + `requestParameters`
through botocore's own model of the API (CloudTrail records the parameters in camelCase,
the API takes PascalCase; policy documents arrive as JSON strings, sometimes URL-encoded), so
no per-call mapping can drift from the real API.

A recorded call that succeeded proves that what it names existed: the group, user or role it
acts on, the customer-managed policy it attaches, the trail it stops (and, for a detach or a
removal, the attachment or membership). When the fresh local account lacks one, replay
creates it first and says so (`created: group developers`), then makes the call: an owner's
own CloudTrail event reproduces on an account that never had their names.
"""

from __future__ import annotations

import json
import urllib.parse
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
    created: tuple[str, ...] = ()  # what replay created first because the call proves it existed

    def to_json(self) -> dict[str, Any]:
        return {"call": self.call, "status": self.status, "detail": self.detail, "created": list(self.created)}

    @property
    def line(self) -> str:
        made = f"created: {', '.join(self.created)}; " if self.created else ""
        if self.status == APPLIED:
            return f"{made}applied: {self.call}" + (f" ({self.detail})" if self.detail else "")
        if self.created:
            return f"{made}could not apply {self.call}: {self.detail}"
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
    created: list[str] = []
    try:
        params = api_params(operation_model.input_shape, detail.get("requestParameters") or {})
        _fill_missing(operation_model.input_shape, params, detail)
        identity = detail.get("userIdentity")
        if service == "iam" and "UserName" in operation_model.input_shape.members and "UserName" not in params \
                and isinstance(identity, Mapping) and identity.get("type") == "Root":
            return Applied(call, SKIPPED, "the call acts on the root user's own credentials, "
                                          "which the local account cannot reproduce")
        _decode_documents(operation_model.input_shape, params)
        if service == "iam":
            _real_names(client, params)
            created += _make_what_it_names(client, operation, params, account_id)
        elif operation != "CreateTrail" and not _trail_exists(client, params):
            created += _make_trail(client, _trail_name(params), account_id)
        getattr(client, xform_name(operation))(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        return Applied(call, FAILED, f"{error.get('Code', 'ClientError')}: {error.get('Message', '')}".strip(),
                       tuple(created))
    except ParamValidationError as exc:
        return Applied(call, FAILED, "requestParameters do not make a valid call: " + " ".join(str(exc).split()),
                       tuple(created))
    except NotImplementedError:
        return Applied(call, FAILED, "the local account (moto) does not implement this call", tuple(created))
    except (ValueError, TypeError) as exc:
        return Applied(call, FAILED, f"requestParameters do not fit the API: {exc}", tuple(created))
    return Applied(call, APPLIED, created=tuple(created))


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


# --- what a successful call proves existed ----------------------------------------------------------

# A document for what replay must create but the event does not describe: it grants nothing.
PLACEHOLDER_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Sid": "CreatedByReplay", "Effect": "Deny", "Action": "iam:PassRole", "Resource": "*"}]})
TRUST_THIS_ACCOUNT = '{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": ' \
                     '{{"AWS": "arn:aws:iam::{account}:root"}}, "Action": "sts:AssumeRole"}}]}}'


def _decode_documents(shape: Shape, params: dict[str, Any]) -> None:
    """Policy documents as IAM stores them: CloudTrail may record a URL-encoded JSON string."""
    for name in list(params):
        value = params[name]
        if name.endswith("PolicyDocument") and isinstance(value, str) and value.lstrip().startswith("%7B"):
            params[name] = urllib.parse.unquote(value.strip())


def _missing(call: Any, *errors: str) -> bool:
    """True when the read raises NoSuchEntity (the thing does not exist)."""
    try:
        call()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchEntity", *errors):
            return True
        raise
    return False


def _make_what_it_names(iam: Any, operation: str, params: dict[str, Any], account_id: str) -> list[str]:
    """Create the group, user, role and customer policy the call names, when missing; and, for a
    detach, inline-policy deletion or removal from a group, the attachment it removed."""
    made: list[str] = []
    group, user, role = params.get("GroupName"), params.get("UserName"), params.get("RoleName")
    if isinstance(group, str) and operation != "CreateGroup" and _missing(lambda: iam.get_group(GroupName=group)):
        iam.create_group(GroupName=group)
        made.append(f"group {group}")
    if isinstance(user, str) and operation != "CreateUser" and _missing(lambda: iam.get_user(UserName=user)):
        iam.create_user(UserName=user)
        made.append(f"user {user}")
    if isinstance(role, str) and operation not in ("CreateRole", "CreateServiceLinkedRole") \
            and _missing(lambda: iam.get_role(RoleName=role)):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=TRUST_THIS_ACCOUNT.format(account=account_id))
        made.append(f"role {role}")
    policy = params.get("PolicyArn")
    prefix = f"arn:aws:iam::{account_id}:policy/"
    if isinstance(policy, str) and policy.startswith(prefix) and operation != "CreatePolicy" \
            and _missing(lambda: iam.get_policy(PolicyArn=policy)):
        path, _, name = policy[len(prefix):].rpartition("/")
        iam.create_policy(PolicyName=name, Path=f"/{path}/" if path else "/", PolicyDocument=PLACEHOLDER_POLICY)
        made.append(f"policy {name} (its document is not in the event: a placeholder that grants nothing)")
    made += _make_what_it_removes(iam, operation, params)
    return made


def _make_what_it_removes(iam: Any, operation: str, params: dict[str, Any]) -> list[str]:
    policy, group, user, role = (params.get(k) for k in ("PolicyArn", "GroupName", "UserName", "RoleName"))
    name = params.get("PolicyName")
    short = str(policy).rsplit("/", 1)[-1]
    if operation == "DetachGroupPolicy" and not _attached(iam.list_attached_group_policies, "GroupName", group, policy):
        iam.attach_group_policy(GroupName=group, PolicyArn=policy)
        return [f"attachment of {short} to group {group}"]
    if operation == "DetachUserPolicy" and not _attached(iam.list_attached_user_policies, "UserName", user, policy):
        iam.attach_user_policy(UserName=user, PolicyArn=policy)
        return [f"attachment of {short} to user {user}"]
    if operation == "DetachRolePolicy" and not _attached(iam.list_attached_role_policies, "RoleName", role, policy):
        iam.attach_role_policy(RoleName=role, PolicyArn=policy)
        return [f"attachment of {short} to role {role}"]
    inline = {"DeleteGroupPolicy": ("GroupName", group, iam.get_group_policy, iam.put_group_policy, "group"),
              "DeleteUserPolicy": ("UserName", user, iam.get_user_policy, iam.put_user_policy, "user"),
              "DeleteRolePolicy": ("RoleName", role, iam.get_role_policy, iam.put_role_policy, "role")}
    if operation in inline and isinstance(name, str):
        key, owner, get, put, kind = inline[operation]
        if _missing(lambda: get(**{key: owner, "PolicyName": name})):
            put(**{key: owner, "PolicyName": name, "PolicyDocument": PLACEHOLDER_POLICY})
            return [f"inline policy {name} of {kind} {owner}"]
    if operation == "RemoveUserFromGroup" and isinstance(group, str) and isinstance(user, str):
        members = {u["UserName"] for u in iam.get_group(GroupName=group).get("Users", [])}
        if user not in members:
            iam.add_user_to_group(GroupName=group, UserName=user)
            return [f"membership of {user} in group {group}"]
    return []


def _attached(lister: Any, key: str, owner: Any, policy: Any) -> bool:
    if not isinstance(owner, str) or not isinstance(policy, str):
        return True  # nothing to make: the call itself will say what is wrong
    pages = lister(**{key: owner}).get("AttachedPolicies", [])
    return any(p.get("PolicyArn") == policy for p in pages)


def _make_trail(cloudtrail: Any, name: str, account_id: str) -> list[str]:
    """A stopped, deleted or changed trail existed: create it (multi-region, logging) in the local account."""
    if not name:
        return []
    short = name.rsplit("/", 1)[-1]
    if name.startswith("arn:") and f":{account_id}:" not in name:
        return []  # another account's trail: the call will say so
    bucket = f"aws-cloudtrail-logs-{account_id}-replay"
    s3 = boto3.client("s3", region_name=cloudtrail.meta.region_name)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        s3.create_bucket(Bucket=bucket) if cloudtrail.meta.region_name == "us-east-1" else s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": cloudtrail.meta.region_name})
    cloudtrail.create_trail(Name=short, S3BucketName=bucket, IsMultiRegionTrail=True, IncludeGlobalServiceEvents=True)
    cloudtrail.start_logging(Name=short)
    return [f"trail {short}"]
