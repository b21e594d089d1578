"""A small evaluator of identity-based IAM policies, with IAM's semantics, for tests.

moto does not evaluate policies (its optional enforcement ignores Resource and most
Condition operators), so tests that must know "would IAM allow this call?" use this instead.
It follows the IAM User Guide's "Policy evaluation logic" for one account and identity-based
policies only: an explicit Deny wins; otherwise an Allow is needed; otherwise implicit deny.

What it implements, as the IAM User Guide describes it ("IAM JSON policy elements"):
- Action / NotAction: wildcards `*` and `?`, case-insensitive;
- Resource / NotResource: wildcards, case-SENSITIVE (ARNs with paths), policy variables
  such as `${aws:username}` substituted from the request context;
- Condition: every operator key must hold (AND), any of its values (OR); keys are
  case-insensitive. Operators: String(Not)Equals(IgnoreCase), String(Not)Like, Arn(Not)Equals,
  Arn(Not)Like, Bool, Null, each with `...IfExists`. A key missing from the request makes a
  positive operator false and a negated one true ("IfExists" makes either true); `Null` tests
  the key's absence. Anything else (ForAnyValue, Numeric, Date, IpAddress) raises: a test must
  not pass on an operator this evaluator does not understand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Decision(StrEnum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit-deny"
    IMPLICIT_DENY = "implicit-deny"


@dataclass(frozen=True)
class Request:
    action: str  # "iam:AttachGroupPolicy"
    resource: str  # the ARN the action acts on
    context: Mapping[str, str] = field(default_factory=dict)  # condition keys -> value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _wildcard(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("^" + "".join(parts) + "$", (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def _substitute(pattern: str, context: Mapping[str, str]) -> str:
    lowered = {k.lower(): v for k, v in context.items()}

    def value(match: re.Match[str]) -> str:
        key = match.group(1).lower()
        if key not in lowered:
            raise KeyError(f"policy variable ${{{match.group(1)}}} is not in the request context")
        return lowered[key]

    return re.sub(r"\$\{([^}*?$]+)\}", value, pattern)


def _action_matches(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_wildcard(str(a), ignore_case=True).match(action) for a in _as_list(statement["NotAction"]))
    return any(_wildcard(str(a), ignore_case=True).match(action) for a in _as_list(statement.get("Action")))


def _resource_matches(statement: Mapping[str, Any], request: Request) -> bool:
    def hit(patterns: Any) -> bool:
        return any(_wildcard(_substitute(str(p), request.context), ignore_case=False).match(request.resource)
                   for p in _as_list(patterns))

    if "NotResource" in statement:
        return not hit(statement["NotResource"])
    return hit(statement.get("Resource"))


_NEGATED = frozenset({"stringnotequals", "stringnotequalsignorecase", "stringnotlike", "arnnotequals", "arnnotlike"})


def _one(operator: str, actual: str, expected: str) -> bool:
    if operator in ("stringequals", "stringnotequals"):
        return actual == expected
    if operator in ("stringequalsignorecase", "stringnotequalsignorecase"):
        return actual.lower() == expected.lower()
    if operator in ("stringlike", "stringnotlike"):
        return bool(_wildcard(expected, ignore_case=False).match(actual))
    if operator in ("arnequals", "arnlike", "arnnotequals", "arnnotlike"):
        # ARN operators compare each of the six colon-separated parts, wildcards allowed (IAM User Guide).
        a, e = actual.split(":", 5), expected.split(":", 5)
        return len(a) == len(e) == 6 and all(
            _wildcard(x, ignore_case=False).match(y) for x, y in zip(e, a, strict=True))
    if operator == "bool":
        return actual.lower() == expected.lower()
    raise NotImplementedError(f"condition operator {operator!r} is not evaluated here")


def _condition_holds(conditions: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    lowered = {k.lower(): v for k, v in context.items()}
    for raw_operator, keys in conditions.items():
        operator = raw_operator.lower()
        if_exists = operator.endswith("ifexists")
        operator = operator.removesuffix("ifexists")
        if operator.startswith(("forallvalues:", "foranyvalue:")):
            raise NotImplementedError(f"set operator {raw_operator!r} is not evaluated here")
        for key, values in keys.items():
            actual = lowered.get(key.lower())
            expected = [str(v) for v in _as_list(values)]
            if operator == "null":
                if not any((actual is None) == (v.lower() == "true") for v in expected):
                    return False
                continue
            if actual is None:
                if if_exists or operator in _NEGATED:
                    continue
                return False
            matched = any(_one(operator, actual, e) for e in expected)
            if matched == (operator in _NEGATED):  # negated: no expected value may match
                return False
    return True


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    return (_action_matches(statement, request.action) and _resource_matches(statement, request)
            and _condition_holds(statement.get("Condition") or {}, request.context))


def statements_of(documents: Iterable[Any]) -> list[Mapping[str, Any]]:
    """Statements of policy documents given as dicts, JSON strings, or bare statement lists."""
    out: list[Mapping[str, Any]] = []
    for doc in documents:
        if isinstance(doc, str):
            doc = json.loads(doc)
        if isinstance(doc, Mapping):
            out += [s for s in _as_list(doc.get("Statement")) if isinstance(s, Mapping)]
        else:
            out += [s for s in _as_list(doc) if isinstance(s, Mapping)]
    return out


def evaluate(documents: Iterable[Any], request: Request) -> Decision:
    """IAM's decision for `request` under the given identity-based policy documents."""
    statements = statements_of(documents)
    applying = [s for s in statements if statement_applies(s, request)]
    if any(str(s.get("Effect", "")).lower() == "deny" for s in applying):
        return Decision.EXPLICIT_DENY
    if any(str(s.get("Effect", "")).lower() == "allow" for s in applying):
        return Decision.ALLOW
    return Decision.IMPLICIT_DENY


def user_policies(iam: Any, user: str) -> list[Any]:
    """Every identity-based policy document that applies to an IAM user, read from the account
    (its own inline and managed policies, and those of each of its groups)."""
    docs: list[Any] = []

    def managed(attached: list[Mapping[str, Any]]) -> None:
        for ref in attached:
            policy = iam.get_policy(PolicyArn=ref["PolicyArn"])["Policy"]
            version = iam.get_policy_version(PolicyArn=ref["PolicyArn"], VersionId=policy["DefaultVersionId"])
            docs.append(version["PolicyVersion"]["Document"])

    for name in iam.list_user_policies(UserName=user)["PolicyNames"]:
        docs.append(iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"])
    managed(iam.list_attached_user_policies(UserName=user)["AttachedPolicies"])
    for group in iam.list_groups_for_user(UserName=user)["Groups"]:
        name = group["GroupName"]
        for policy in iam.list_group_policies(GroupName=name)["PolicyNames"]:
            docs.append(iam.get_group_policy(GroupName=name, PolicyName=policy)["PolicyDocument"])
        managed(iam.list_attached_group_policies(GroupName=name)["AttachedPolicies"])
    return docs
