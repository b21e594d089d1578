"""Identity-based policy evaluation as IAM does it, for tests: which calls a role may make.

moto authorizes calls only loosely (its IAM enforcement matches resources only for roles, and
reads the resource as "*" otherwise), so the tests evaluate the template's own policies here,
against the ARN IAM authorizes each recorded call on:

- the resource is the ARN of the entity the call acts on, as the account stores it: with its
  path and the case of its name (IAM names are case-insensitive for lookups, but policy
  matching is case-sensitive; Service Authorization Reference, "Actions, resources, and
  condition keys for AWS Identity and Access Management": `group/${GroupNameWithPath}`,
  `role/${RoleNameWithPath}`, `policy/${PolicyNameWithPath}`, `user/${UserNameWithPath}`);
- evaluation logic (IAM User Guide, "Policy evaluation logic", identity-based policies only):
  an explicit Deny wins, otherwise an Allow is needed, otherwise the call is denied;
- `Action` matches case-insensitively, `Resource` case-sensitively, segment by segment
  (IAM User Guide, "IAM JSON policy elements: Resource"), with `*` and `?` wildcards;
- the condition operators the template uses (`ArnEquals`, `ArnLike`, `StringEquals`,
  `StringLike`, `Bool`, with `...IfExists`); any other raises, so a test cannot pass by
  ignoring one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any


class Decision(StrEnum):
    ALLOWED = "allowed"
    EXPLICIT_DENY = "explicitly denied"
    IMPLICIT_DENY = "not allowed by any statement"


@dataclass(frozen=True)
class Request:
    """One authorization request: an action on a resource ARN, with its condition keys."""

    action: str  # "iam:AttachGroupPolicy"
    resource: str  # the ARN IAM authorizes, or "*" for actions without a resource type
    context: Mapping[str, str] = field(default_factory=dict)  # e.g. {"iam:PolicyARN": "arn:..."}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def matches_action(pattern: str, action: str) -> bool:
    return bool(_glob(pattern, True).fullmatch(action))


def matches_arn(pattern: str, arn: str) -> bool:
    """ARN matching: the first five segments and the resource part each matched on their own."""
    if pattern == "*":
        return True
    wanted, actual = pattern.split(":", 5), arn.split(":", 5)
    if len(wanted) != 6 or len(actual) != 6:
        return bool(_glob(pattern, False).fullmatch(arn))
    return all(_glob(w, False).fullmatch(a) for w, a in zip(wanted, actual, strict=True))


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, have: want == have,
    "StringLike": lambda want, have: bool(_glob(want, False).fullmatch(have)),
    "ArnEquals": lambda want, have: matches_arn(want, have) and "*" not in want and "?" not in want,
    "ArnLike": matches_arn,
    "Bool": lambda want, have: want.lower() == have.lower(),
}
# Negated operators hold when the key is absent (IAM User Guide, "IAM JSON policy elements:
# Condition operators": a negated operator matches a request without the key).
_NEGATED: dict[str, Callable[[str, str], bool]] = {
    "StringNotEquals": lambda want, have: want != have,
    "StringNotLike": lambda want, have: not _glob(want, False).fullmatch(have),
    "ArnNotEquals": lambda want, have: not matches_arn(want, have),
    "ArnNotLike": lambda want, have: not matches_arn(want, have),
}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        name = operator[: -len("IfExists")] if operator.endswith("IfExists") else operator
        if name == "Null":  # "true": the key is absent; "false": it is present
            for key, wanted in tests.items():
                present = any(k.lower() == key.lower() for k in context)
                if not any(str(w).lower() == ("false" if present else "true") for w in _as_list(wanted)):
                    return False
            continue
        if name in _NEGATED:
            for key, wanted in tests.items():
                have = next((v for k, v in context.items() if k.lower() == key.lower()), None)
                if have is not None and not all(_NEGATED[name](str(w), have) for w in _as_list(wanted)):
                    return False
            continue
        if name not in _OPERATORS:
            raise NotImplementedError(f"condition operator {operator} is not evaluated here")
        for key, wanted in tests.items():
            have = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if have is None:
                if operator.endswith("IfExists"):
                    continue
                return False
            if not any(_OPERATORS[name](str(w), have) for w in _as_list(wanted)):
                return False
    return True


def _applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "Action" in statement:
        if not any(matches_action(str(a), request.action) for a in _as_list(statement["Action"])):
            return False
    elif any(matches_action(str(a), request.action) for a in _as_list(statement.get("NotAction", []))):
        return False
    if "Resource" in statement:
        if not any(matches_arn(str(r), request.resource) for r in _as_list(statement["Resource"])):
            return False
    elif any(matches_arn(str(r), request.resource) for r in _as_list(statement.get("NotResource", []))):
        return False
    return _condition_holds(statement.get("Condition") or {}, request.context)


def evaluate(statements: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """The decision IAM's identity-based evaluation reaches for `request` under `statements`."""
    allowed = False
    for statement in statements:
        if not _applies(statement, request):
            continue
        if str(statement.get("Effect")) == "Deny":
            return Decision.EXPLICIT_DENY
        allowed = allowed or str(statement.get("Effect")) == "Allow"
    return Decision.ALLOWED if allowed else Decision.IMPLICIT_DENY


# --- the resource and condition keys of a recorded call, as IAM authorizes it ------------------

# Actions authorized on "*" (no resource type in the Service Authorization Reference).
NO_RESOURCE = frozenset({
    "iam:ListGroups", "iam:ListRoles", "iam:ListUsers", "iam:ListPolicies", "iam:ListAccountAliases",
    "iam:GenerateCredentialReport", "iam:GetCredentialReport", "iam:GetAccountSummary",
    "iam:GetAccountPasswordPolicy", "iam:ListVirtualMFADevices", "cloudtrail:DescribeTrails",
    "cloudtrail:ListTrails", "cloudtrail:LookupEvents", "iam:GetAccountAuthorizationDetails",
    "sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes",
})
# Which request parameter names the resource, for each IAM resource type (first match wins).
_IAM_NAMED = (("GroupName", "group"), ("RoleName", "role"), ("UserName", "user"))


def _iam_entity_arn(account: str, kind: str, name: str, path: str) -> str:
    """The stored ARN of the user/group/role `name` (found ignoring case, as IAM looks names up),
    or the ARN a new one would get (`path` from the request, "/" by default)."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["aws"]
    store: Iterable[Any] = {"group": backend.groups.values(), "role": backend.roles.values(),
                            "user": backend.users.values()}[kind]
    for entity in store:
        if str(entity.name).lower() == name.lower():
            return str(entity.arn)
    return f"arn:aws:iam::{account}:{kind}{path or '/'}{name}"


def _policy_arn(account: str, arn: str) -> str:
    """A managed policy is named by its ARN: IAM authorizes on the ARN of the policy it finds."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["aws"]
    for stored in backend.managed_policies:
        if stored.lower() == arn.lower():
            return str(stored)
    return arn


def request_for(service: str, operation: str, params: Mapping[str, Any], account: str, region: str) -> Request:
    """The authorization request IAM makes for one recorded call in the local (moto) account."""
    action = f"{service}:{operation}"
    if action in NO_RESOURCE:
        return Request(action, "*")
    if service == "iam":
        context = {"iam:PolicyARN": str(params["PolicyArn"])} if "PolicyArn" in params else {}
        for key, kind in _IAM_NAMED:
            if key in params:
                path = str(params.get("Path", "/")) if operation.startswith("Create") else "/"
                return Request(action, _iam_entity_arn(account, kind, str(params[key]), path), context)
        if "PolicyArn" in params:
            return Request(action, _policy_arn(account, str(params["PolicyArn"])))
        if operation == "CreatePolicy":
            return Request(action, f"arn:aws:iam::{account}:policy{params.get('Path', '/')}{params['PolicyName']}")
    if service == "sns" and "TopicArn" in params:
        return Request(action, str(params["TopicArn"]))
    if service == "dynamodb" and "TableName" in params:
        return Request(action, f"arn:aws:dynamodb:{region}:{account}:table/{params['TableName']}")
    if service == "cloudtrail":
        name = str(params.get("Name") or params.get("TrailName") or "")
        if name.startswith("arn:"):
            return Request(action, name)
        if name:
            return Request(action, f"arn:aws:cloudtrail:{region}:{account}:trail/{name}")
    raise NotImplementedError(f"no rule for the resource of {action} {sorted(params)}")
