"""The inventory: every principal outside the baseline that holds admin or escalation rights.

Taken by the setup function (every deploy: its email lists them) and by the daily sweep (its
digest lists them, so a standing grant is reported once a day, not once per event). Reads the
whole account in one paginated call, `GetAccountAuthorizationDetails` (users with their groups
and inline policies, groups, roles with their trust policies, and the documents of every
customer-managed policy: IAM API Reference), and judges each document with
`policy.analyze` (AWS-managed policies by name, `policy.AWS_MANAGED_GRANTS`).

Listed: users who hold a granting policy; groups that hold one and have members (with the
members); roles that people can assume without MFA (`grants.human_trust`) holding one. Not
listed: the baseline's own group, role and policy; service-linked roles, the guardrail's own
roles, and roles only AWS services or MFA principals can assume. Exempt (break-glass)
principals are listed and marked: they are reported, never acted on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guardrail_core import grants as held_rights
from guardrail_core import policy
from guardrail_core.aws import error_code
from guardrail_core.config import Settings
from guardrail_core.findings import Finding, Severity
from guardrail_core.policy import PolicyVerdict
from guardrail_core.runtime import logger

# The one IAM read the inventory makes (granted to the setup and sweep roles; "*" only, per IAM).
INVENTORY_ACTIONS = frozenset({"iam:GetAccountAuthorizationDetails"})
MAX_LINES = 50  # in an email; the log has every line


@dataclass(frozen=True)
class Holding:
    """One principal holding admin or escalation rights outside the baseline."""

    kind: str  # "user" | "group" | "role"
    name: str
    policy: str  # "AdministratorAccess", "inline policy x"
    verdict: PolicyVerdict
    detail: str = ""  # group: its members; role: who can assume it without MFA
    exempt: bool = False

    def line(self) -> str:
        rights = "admin" if self.verdict.kind == policy.ADMIN else "escalation"
        text = f"{self.kind} {self.name}: {rights} through {self.policy}"
        if self.detail:
            text += f" ({self.detail})"
        if self.verdict.condition:
            text += f"; condition {self.verdict.condition}"
        if self.exempt:
            text += "; exempt principal (reported, never acted on)"
        return text


def _policy_docs(details: Mapping[str, Any]) -> dict[str, Any]:
    """Customer-managed policy ARN (lower case) -> its default version's document."""
    out: dict[str, Any] = {}
    for pol in details.get("Policies", []):
        for version in pol.get("PolicyVersionList", []):
            if version.get("IsDefaultVersion"):
                out[str(pol.get("Arn", "")).lower()] = version.get("Document")
    return out


def _judge_all(attached: Iterable[Mapping[str, Any]], inline: Iterable[Mapping[str, Any]],
               docs: Mapping[str, Any], cache: dict[str, PolicyVerdict]) -> list[tuple[str, PolicyVerdict]]:
    out: list[tuple[str, PolicyVerdict]] = []
    for ref in attached:
        arn = str(ref.get("PolicyArn", ""))
        if arn.lower() not in cache:
            cache[arn.lower()] = (policy.managed_policy_verdict(arn) if held_rights.is_aws_managed(arn)
                                  else policy.analyze(docs.get(arn.lower())))
        out.append((str(ref.get("PolicyName", "")) or arn.rsplit("/", 1)[-1], cache[arn.lower()]))
    for pol in inline:
        out.append((f"inline policy {pol.get('PolicyName', '')}", policy.analyze(pol.get("PolicyDocument"))))
    return [(name, v) for name, v in out if v.grants]


def read_details(iam: Any) -> dict[str, list[Any]]:
    """Every page of GetAccountAuthorizationDetails for users, groups, roles and customer policies, merged."""
    merged: dict[str, list[Any]] = {"UserDetailList": [], "GroupDetailList": [], "RoleDetailList": [], "Policies": []}
    pages = iam.get_paginator("get_account_authorization_details").paginate(
        Filter=["User", "Group", "Role", "LocalManagedPolicy"])
    for page in pages:
        for key, items in merged.items():
            items += page.get(key, [])
    return merged


def holdings(details: Mapping[str, Any], settings: Settings) -> list[Holding]:
    """The pure decision: who outside the baseline holds admin or escalation rights, from the account's details."""
    docs = _policy_docs(details)
    cache: dict[str, PolicyVerdict] = {}
    out: list[Holding] = []
    members: dict[str, list[str]] = {}
    for user in details.get("UserDetailList", []):
        name = str(user.get("UserName", ""))
        for group in user.get("GroupList", []):
            members.setdefault(str(group).lower(), []).append(name)
        for label, verdict in _judge_all(user.get("AttachedManagedPolicies", []), user.get("UserPolicyList", []),
                                         docs, cache):
            out.append(Holding("user", name, label, verdict, exempt=settings.is_exempt(str(user.get("Arn", "")))))
    for group in details.get("GroupDetailList", []):
        name = str(group.get("GroupName", ""))
        if name.lower() == settings.admin_group.lower():
            continue  # the baseline's group: converged by setup and the detector, not inventoried
        who = members.get(name.lower(), [])
        found = _judge_all(group.get("AttachedManagedPolicies", []), group.get("GroupPolicyList", []), docs, cache)
        if found and not who:
            logger.info("group grant without members", extra={"group": name, "policies": [n for n, _ in found]})
            continue
        for label, verdict in found:
            out.append(Holding("group", name, label, verdict, detail="members: " + ", ".join(sorted(who)),
                               exempt=settings.is_exempt(str(group.get("Arn", "")))))
    for role in details.get("RoleDetailList", []):
        name, path, arn = str(role.get("RoleName", "")), str(role.get("Path", "/")), str(role.get("Arn", ""))
        if name.lower() == settings.admin_role.lower() or path.startswith(("/aws-service-role/",
                                                                         "/account-guardrail/")) \
                or settings.is_guardrail(arn):
            continue
        who = held_rights.human_trust(role.get("AssumeRolePolicyDocument"), settings)
        if not who:
            continue
        for label, verdict in _judge_all(role.get("AttachedManagedPolicies", []), role.get("RolePolicyList", []),
                                         docs, cache):
            out.append(Holding("role", name, label, verdict, detail=f"{', '.join(who)} can assume it without MFA",
                               exempt=settings.is_exempt(arn)))
    return out


def take(iam: Any, settings: Settings) -> tuple[list[Holding], str]:
    """(holdings, '') or ([], why it could not be taken): it informs, it never fails its caller."""
    try:
        found = holdings(read_details(iam), settings)
    except Exception as exc:
        why = f"could not list who holds admin rights ({error_code(exc) or type(exc).__name__})"
        logger.warning("inventory not taken", extra={"reason": why})
        return [], why
    logger.info("inventory", extra={"holdings": [h.line() for h in found]})
    return found, ""


def lines(found: list[Holding], why_not: str = "") -> list[str]:
    """Email lines: one per holding (capped; the log has all), or why the inventory could not be taken."""
    if why_not:
        return [why_not]
    shown = [f"admin rights outside the baseline - {h.line()}" for h in found[:MAX_LINES]]
    if len(found) > MAX_LINES:
        shown.append(f"... and {len(found) - MAX_LINES} more (the function's log lists every one)")
    return shown


def steps(any_found: bool, settings: Settings) -> list[str]:
    """What to do about listed holdings ([] when there are none)."""
    if not any_found:
        return []
    return [f"Each principal listed under 'admin rights outside the baseline' can act as an administrator (or make "
            f"itself one) without the MFA-protected role {settings.admin_role}. If a person needs admin rights, add "
            f"them to group {settings.admin_group} with an MFA device and remove the listed policy; keep a listed "
            "principal on purpose by adding it to ExemptPrincipalArns; DetachOtherAdminGrants=true lets the guardrail "
            "remove such grants when they change."]


def with_grants(finding: Finding | None, found: list[Holding], why_not: str, settings: Settings,
                now: datetime) -> Finding | None:
    """The sweep's digest with the inventory added (a digest of its own when the sweep had nothing to say)."""
    extra = lines(found, why_not)
    if not extra:
        return finding
    severity = Severity.HIGH if found and any(not h.exempt for h in found) else Severity.MEDIUM
    if finding is None:
        return Finding(
            id="admin-inventory", severity=severity,
            summary=f"Daily check: {len(found)} admin grant{'s' if len(found) != 1 else ''} outside the baseline"
            if found else "Daily check: admin grants could not be listed",
            account_id=settings.account_id, region=settings.region, event_time=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            what_happened="The daily sweep listed every user, group and role that holds admin or escalation "
                          "rights outside the baseline (one report a day for a standing grant).",
            items=extra, next_steps=steps(bool(found), settings),
        )
    finding.items = [*finding.items, *extra]
    finding.next_steps = [*finding.next_steps, *steps(bool(found), settings)]
    if found and severity.rank > finding.severity.rank:
        finding.severity = severity
    if found:
        finding.summary += f"; {len(found)} admin grant{'s' if len(found) != 1 else ''} outside the baseline"
    return finding
