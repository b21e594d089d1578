"""Who holds admin rights, and through which policy: a principal's policies read and judged.

Shared by the admin-drift detector (one principal, on the event that changed it) and the
inventory (every principal, at setup and in the daily sweep). Documents are judged by
`guardrail_core.policy.analyze`; AWS-managed policies by name from `policy.AWS_MANAGED_GRANTS`
(their documents cannot be changed by the account, and reading them costs two calls each).

A role is a path to admin for people only when its trust policy lets people in without MFA
(`human_trust`): principals of this account, another account, `*`, or a federated/SAML
provider, in an Allow statement without an MFA condition. Roles trusted only by AWS services
are not such a path (their rights are used by the service, not by a person signing in).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from guardrail_core import policy
from guardrail_core.aws import is_not_found
from guardrail_core.baseline import load_document
from guardrail_core.config import Settings
from guardrail_core.policy import PolicyVerdict

PrincipalKind = Literal["user", "group", "role"]

# IAM reads this module may make (for the least-privilege tests of the roles that use it).
PRINCIPAL_READ_ACTIONS = frozenset({
    "iam:ListAttachedUserPolicies", "iam:ListUserPolicies", "iam:GetUserPolicy",
    "iam:ListAttachedGroupPolicies", "iam:ListGroupPolicies", "iam:GetGroupPolicy",
    "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:GetRole",
    "iam:GetPolicy", "iam:GetPolicyVersion",
})


@dataclass(frozen=True)
class Held:
    """One policy a principal holds, and what the analyzer says of it."""

    verdict: PolicyVerdict
    policy_arn: str = ""  # managed
    policy_name: str = ""  # inline
    document: str = ""  # inline document as read (JSON), for the undo command

    @property
    def label(self) -> str:
        return self.policy_arn.rsplit("/", 1)[-1] if self.policy_arn else f"inline policy {self.policy_name}"


def is_aws_managed(arn: str) -> bool:
    return ":iam::aws:policy/" in arn.lower()


def read_default_document(iam: Any, arn: str) -> tuple[dict[str, Any], int] | None:
    """(default version's document, attachment count) of a managed policy; None when it is gone.
    Two IAM calls: GetPolicy, then GetPolicyVersion of its DefaultVersionId."""
    try:
        meta = iam.get_policy(PolicyArn=arn)["Policy"]
        version = iam.get_policy_version(PolicyArn=arn, VersionId=meta["DefaultVersionId"])["PolicyVersion"]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return load_document(version.get("Document")), int(meta.get("AttachmentCount", 0))


def managed_verdict(iam: Any, arn: str, cache: dict[str, PolicyVerdict] | None = None) -> PolicyVerdict | None:
    """The verdict of a managed policy's default version (None when the policy is gone).

    AWS-managed: from the list, no call. Customer-managed: GetPolicy + GetPolicyVersion, once per
    ARN when a `cache` is passed.
    """
    if cache is not None and arn.lower() in cache:
        return cache[arn.lower()]
    if is_aws_managed(arn):
        verdict = policy.managed_policy_verdict(arn)
    else:
        read = read_default_document(iam, arn)
        if read is None:
            return None
        verdict = policy.analyze(read[0])
    if cache is not None:
        cache[arn.lower()] = verdict
    return verdict


_CALLS = {
    "user": ("list_attached_user_policies", "list_user_policies", "get_user_policy", "UserName"),
    "group": ("list_attached_group_policies", "list_group_policies", "get_group_policy", "GroupName"),
    "role": ("list_attached_role_policies", "list_role_policies", "get_role_policy", "RoleName"),
}


def inline_held(iam: Any, kind: PrincipalKind, name: str, inline: str) -> Held | None:
    """One inline policy as the account holds it now, judged (None when it is gone)."""
    _, _, get, key = _CALLS[kind]
    try:
        response = getattr(iam, get)(**{key: name, "PolicyName": inline})
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    raw = response.get("PolicyDocument")
    document = raw if isinstance(raw, str) else json.dumps(raw)
    return Held(policy.analyze(raw), policy_name=inline, document=document)


def held_by(iam: Any, kind: PrincipalKind, name: str,
            cache: dict[str, PolicyVerdict] | None = None) -> list[Held] | None:
    """Every policy the principal holds, judged; None when the principal is gone.

    Calls: one list of each kind (a principal holds at most 20 managed policies: one page;
    inline policies are paginated), one read per inline policy, two per customer-managed policy
    not in `cache`.
    """
    attached_call, inline_call, _, key = _CALLS[kind]
    try:
        attached = getattr(iam, attached_call)(**{key: name}).get("AttachedPolicies", [])
        names: list[str] = []
        for page in iam.get_paginator(inline_call).paginate(**{key: name}):
            names += [str(n) for n in page.get("PolicyNames", [])]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    out: list[Held] = []
    for ref in attached:
        verdict = managed_verdict(iam, str(ref["PolicyArn"]), cache)
        if verdict is not None:
            out.append(Held(verdict, policy_arn=str(ref["PolicyArn"])))
    for inline in names:
        held = inline_held(iam, kind, name, inline)
        if held is not None:
            out.append(held)
    return out


def granting(held: Iterable[Held]) -> list[Held]:
    """The policies that give admin or escalation rights, admin first."""
    order = {policy.ADMIN: 0, policy.ESCALATION: 1}
    return sorted((h for h in held if h.verdict.grants), key=lambda h: order[h.verdict.kind])


# --- roles: can people assume it without MFA? -----------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _lower(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k).lower(): _lower(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower(v) for v in value]
    return str(value).lower() if isinstance(value, str) else value


def _requires_mfa(condition: Any) -> bool:
    """An MFA condition as AWS documents it: Bool aws:MultiFactorAuthPresent true (not ...IfExists,
    which long-term keys pass); for web-identity federation, an `amr` claim that must contain mfa."""
    cond = _lower(condition) if isinstance(condition, Mapping) else {}
    if _as_list((cond.get("bool") or {}).get("aws:multifactorauthpresent")) == ["true"]:
        return True
    for op in ("stringequals", "forallvalues:stringequals", "foranyvalue:stringequals", "stringlike",
               "forallvalues:stringlike", "foranyvalue:stringlike"):
        for key, value in (cond.get(op) or {}).items():
            if str(key).endswith(":amr") and "mfa" in _as_list(value):
                return True
    return False


_ASSUME = ("sts:assumerole", "sts:assumerolewithsaml", "sts:assumerolewithwebidentity")


def _assumes(stmt: Mapping[str, Any]) -> bool:
    if "NotAction" in stmt:
        return True  # everything but a few: conservative
    return any(policy.action_matches(str(a), act) for a in _as_list(stmt.get("Action")) if isinstance(a, str)
               for act in _ASSUME)


def human_trust(trust: Any, settings: Settings) -> list[str]:
    """Who (not an AWS service) the trust policy lets assume the role without MFA, in words; [] if nobody.

    Conservative like the analyzer: any Allow statement for a non-service principal without an
    MFA condition counts, whatever its other conditions (they are quoted by the caller's log).
    """
    try:
        doc = policy.load(trust)
    except policy.DocumentError:
        return []
    who: list[str] = []
    for stmt in policy.statements(doc):
        if policy.effect(stmt) != "allow" or not _assumes(stmt) or _requires_mfa(stmt.get("Condition")):
            continue
        principal = stmt.get("Principal")
        if principal == "*" or "NotPrincipal" in stmt:
            who.append("anyone (Principal *)")
            continue
        if not isinstance(principal, Mapping):
            continue
        for key, values in principal.items():
            for value in _as_list(values):
                who += _principal_words(str(key), str(value), settings)
    return list(dict.fromkeys(who))


def _principal_words(key: str, value: str, settings: Settings) -> list[str]:
    key = key.lower()
    if key == "service":
        return []
    if key == "federated":
        return [f"federated provider {value.rsplit('/', 1)[-1] or value}"]
    if key == "aws":
        if value == "*":
            return ["anyone (Principal *)"]
        account = value if value.isdigit() else (value.split(":")[4] if value.count(":") >= 5 else "")
        if account == settings.account_id:
            if value.isdigit() or value.endswith(":root"):
                return [f"any user or role of this account ({account}) allowed to assume it"]
            kind, _, rest = value.split(":", 5)[5].partition("/")
            return [f"{kind} {rest.rsplit('/', 1)[-1]}"]
        return [f"account {account or value}"]
    return [f"{key} principal {value}"]


def service_only(trust: Any) -> list[str]:
    """The AWS services a trust policy names (for the log when no person can assume the role)."""
    try:
        doc = policy.load(trust)
    except policy.DocumentError:
        return []
    out: list[str] = []
    for stmt in policy.statements(doc):
        principal = stmt.get("Principal")
        if isinstance(principal, Mapping):
            out += [str(v) for k, vs in principal.items() if str(k).lower() == "service" for v in _as_list(vs)]
    return out
