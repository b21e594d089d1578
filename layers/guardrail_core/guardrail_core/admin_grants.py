"""Admin rights granted around the role: users, groups and roles that hold them, confirmed, reported, removed.

The grant half of the admin-drift detector (`admin_drift` holds the baseline half and the words
both use; `admin_principals.judge` dispatches). A grant is a policy on a principal outside the
baseline that `policy.analyze` finds admin or escalation; it is confirmed from the account,
alerted (HIGH; MEDIUM for an escalation that needs a role passed to a service), and removed only
with DetachOtherAdminGrants=true, never from an exempt principal, and only while the MFA path to
admin works (`mfa_path_gap`, the lockout guard).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core import grants as held_rights
from guardrail_core import iam_baseline, lockout, policy
from guardrail_core.admin_drift import (
    Kind,
    Touch,
    _same,
    _truthy,
    by_hand,
    compromise_step,
    event_document,
    may_write,
    outcome,
    policy_name,
    undo_warning,
    what_was_done,
)
from guardrail_core.alerts import cloudtrail_link, iam_console_link
from guardrail_core.aws import client, is_not_found
from guardrail_core.baseline import Change, load_document
from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent
from guardrail_core.findings import Action, Actor, Finding, Severity, Status
from guardrail_core.runtime import logger
from guardrail_core.triage import Triage, Verdict

_USER_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):user/(?:.*/)?([^/]+)$", re.IGNORECASE)


def user_exempt(settings: Settings, name: str) -> bool:
    """A break-glass user? Events name users without their path, so match exempt user ARNs by name."""
    for exempt in settings.exempt_principals:
        match = _USER_ARN.match(exempt)
        if match and match.group(1) == settings.account_id and match.group(2) == name.lower():
            return True
    return False


@dataclass(frozen=True)
class Grant:
    """Admin or escalation rights held by a user, group or role outside the baseline, confirmed from the account."""

    kind: Kind  # USER_GRANT, GROUP_GRANT or ROLE_GRANT
    name: str
    policy_arn: str = ""  # managed
    policy_name: str = ""  # inline
    document: str = ""  # inline document as read back (for the undo command)
    verdict: policy.PolicyVerdict = field(default_factory=lambda: policy.PolicyVerdict(policy.ADMIN))
    who: str = ""  # roles: who can assume it without MFA

    @property
    def holder(self) -> str:
        """'user bob', 'group ops', 'role ops-automation (which user bob can assume without MFA)'."""
        if self.kind is Kind.ROLE_GRANT:
            return f"role {self.name} (which {self.who} can assume without MFA)"
        return f"{self.kind.value} {self.name}"

    @property
    def label(self) -> str:
        return policy_name(self.policy_arn) if self.policy_arn else f"inline policy {self.policy_name}"

    def removal(self, settings: Settings) -> Change:
        noun = self.kind.value  # "user" / "group" / "role"
        target = settings.iam_arn(noun, self.name)
        name_key = {"user": "UserName", "group": "GroupName", "role": "RoleName"}[noun]
        if self.policy_arn:
            return Change(
                f"Detach {self.label} from {noun} {self.name}", target, f"detach_{noun}_policy",
                {name_key: self.name, "PolicyArn": self.policy_arn},
                undo=f"aws iam attach-{noun}-policy --{noun}-name {self.name} --policy-arn {self.policy_arn}",
                removes_admin_path=True,
            )
        document = self.document if len(self.document) <= 1000 else "file://policy.json"
        return Change(
            f"Delete {self.label} from {noun} {self.name}", target, f"delete_{noun}_policy",
            {name_key: self.name, "PolicyName": self.policy_name},
            undo=f"aws iam put-{noun}-policy --{noun}-name {self.name} --policy-name {self.policy_name} "
                 f"--policy-document {shlex.quote(document)}",
            removes_admin_path=True,
        )


def remove_grants(iam: Any, settings: Settings, verdict: Triage, grants: list[Grant]) -> list[Action]:
    """Detach/delete each grant when DetachOtherAdminGrants allows it; exempt users keep theirs.

    A grant may be someone's only way to admin: it is removed only while the MFA path to admin
    (group -> assume policy -> MFA role with AdministratorAccess, a member with an MFA device) is intact.
    """
    allowed, why_not = may_write(settings, verdict)
    if allowed and not settings.detach_other_admin:
        allowed, why_not = False, ("DetachOtherAdminGrants is false: reported only. Set it to true to have the "
                                   "guardrail remove such grants")
    actions: list[Action] = []
    gap: str | None = None  # read once, only when a removal is about to happen
    for grant in grants:
        change = grant.removal(settings)
        if (grant.kind is Kind.USER_GRANT and user_exempt(settings, grant.name)) or (
                grant.kind is Kind.ROLE_GRANT and settings.is_exempt(change.target)):
            actions.append(Action(change.name, change.target, Status.SKIPPED,
                                  detail=f"{grant.kind.value} {grant.name} is an exempt (break-glass) principal: "
                                         "it keeps its rights"))
            continue
        if allowed and grant.kind is Kind.GROUP_GRANT:
            exempt = exempt_in_group(iam, settings, grant.name)
            if exempt:
                actions.append(Action(change.name, change.target, Status.SKIPPED,
                                      detail=f"exempt member {exempt} of group {grant.name} (break-glass): "
                                             "the group keeps its rights"))
                continue
        if allowed:
            if gap is None:
                gap = mfa_path_gap(iam, settings)
            if gap:
                actions.append(Action(change.name, change.target, Status.SKIPPED,
                                      detail=f"held back to avoid a lockout: {gap}; this grant may be the only "
                                             "way to admin"))
                continue
        actions += iam_baseline.apply(iam, [change], allowed=allowed, not_allowed_reason=why_not)
    return actions


def exempt_in_group(iam: Any, settings: Settings, group: str) -> str:
    """'user x' / 'group x' when the group or one of its members is exempt; '' otherwise (or group gone)."""
    try:
        for page in iam.get_paginator("get_group").paginate(GroupName=group):
            arn = str(page.get("Group", {}).get("Arn", ""))
            if settings.is_exempt(arn, settings.iam_arn("group", group)):
                return f"group {group}"
            for user in page.get("Users", []):
                name = str(user.get("UserName", ""))
                if settings.is_exempt(str(user.get("Arn", ""))) or user_exempt(settings, name):
                    return f"user {name}"
    except ClientError as exc:
        if is_not_found(exc):
            return ""
        raise
    return ""


def mfa_path_gap(iam: Any, settings: Settings) -> str:
    """What breaks the MFA path to admin now ('' when intact): the lockout guard's verdict on facts read
    concurrently and bounded (`lockout.read_facts`, `lockout.admin_path`)."""
    verdict = lockout.admin_path(lockout.read_facts(iam, settings), settings)
    return "" if verdict.ok else verdict.reason


def grant_finding(event: CloudTrailEvent, settings: Settings, verdict: Triage, headline: str, because: str,
                  grants: list[Grant], actions: list[Action], extra: list[Action] | None = None,
                  also_held_by: list[str] | None = None) -> Finding:
    """`actions` pair with `grants`; `extra`: the admin group's baseline actions, when it holds the policy too."""
    who = Actor.from_event(event)
    where = f" from {event.source_ip}" if event.source_ip else ""
    held = [g.holder for g in grants] + (also_held_by or [])
    admin = any(g.verdict.kind == policy.ADMIN for g in grants) or not grants
    rights = "admin rights" if admin else "a way to take admin rights (privilege escalation)"
    what = (f"{who.sentence} made this change: {headline} "
            f"({event.event_name}, {event.event_time or 'time unknown'}{where}). {because} "
            f"So {', '.join(held)} hold{'s' if len(held) == 1 else ''} {rights} without the MFA-protected role "
            f"{settings.admin_role}: the baseline allows admin rights only through that role, with MFA.")
    conditions = sorted({g.verdict.condition for g in grants if g.verdict.condition})
    if conditions:
        what += (" The granting statement has a condition, which may narrow when it applies: "
                 + "; ".join(conditions) + ".")
    if verdict.verdict is Verdict.NOTIFY_ONLY:
        what += f" {who.name} is an exempt (break-glass) principal: the change is reported, never undone."
    removals = [g.removal(settings) for g in grants]
    not_done = [c for c, a in zip(removals, actions, strict=True) if a.status is not Status.SUCCEEDED]
    steps = []
    if any("lockout" in a.detail for a in actions):
        steps.append(f"First repair the MFA path to admin (a member of group {settings.admin_group} with an MFA "
                     f"device; the group holding {settings.assume_policy}; role {settings.admin_role} with an MFA "
                     "trust and AdministratorAccess: invoke the setup function), so removing the grant locks "
                     "nobody out.")
    if not_done:
        steps.append("If the grant was not intended, remove it by hand: " + "; ".join(by_hand(not_done)))
    steps.append(f"If someone needs admin rights, add them to group {settings.admin_group}, enrol an MFA device "
                 f"for them, and have them switch to role {settings.admin_role}.")
    steps.append(compromise_step(event, settings))
    keep = ("To keep such a grant on purpose: list the principal in ExemptPrincipalArns (break-glass "
            "principals keep their admin rights and are never acted on)")
    if settings.detach_other_admin and settings.remediation_enabled:
        keep += "; or set DetachOtherAdminGrants=false (grants are then reported, never removed)"
    steps.append(keep + ".")
    links = [cloudtrail_link(event.aws_region or event.region, event.event_id)] if event.event_id else []
    links += [iam_console_link(f"{g.kind.value}s", g.name) for g in grants]
    all_actions = actions + (extra or [])
    severity = Severity.HIGH if admin or any(g.verdict.direct for g in grants) else Severity.MEDIUM
    return Finding.for_event(
        event, id="admin-granted-outside-role" if admin else "escalation-granted-outside-role", severity=severity,
        outcome=outcome(all_actions), summary=headline,
        what_happened=what, actions=all_actions, next_steps=steps, links=links, undo_warning=undo_warning(settings),
        mode=f"{settings.mode}; exempt principal: report only" if verdict.verdict is Verdict.NOTIFY_ONLY else "",
    )


# adapters: one IAM call each


def attached_arn(iam: Any, kind: Kind, name: str, arn: str) -> str | None:
    """The policy's ARN as attached to the user/group/role now, or None when it is no longer attached."""
    try:
        if kind is Kind.USER_GRANT:
            response = iam.list_attached_user_policies(UserName=name)
        elif kind is Kind.ROLE_GRANT:
            response = iam.list_attached_role_policies(RoleName=name)
        else:
            response = iam.list_attached_group_policies(GroupName=name)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    # At most 20 managed policies per user or group: one page.
    return next((str(p["PolicyArn"]) for p in response.get("AttachedPolicies", []) if _same(p["PolicyArn"], arn)),
                None)


def policy_holders(iam: Any, arn: str) -> tuple[list[str], list[str], list[str]]:
    """(users, groups, roles) the managed policy is attached to."""
    users: list[str] = []
    groups: list[str] = []
    roles: list[str] = []
    for page in iam.get_paginator("list_entities_for_policy").paginate(PolicyArn=arn):
        users += [u["UserName"] for u in page.get("PolicyUsers", [])]
        groups += [g["GroupName"] for g in page.get("PolicyGroups", [])]
        roles += [r["RoleName"] for r in page.get("PolicyRoles", [])]
    return users, groups, roles


def managed_because(arn: str, verdict: policy.PolicyVerdict) -> str:
    name = policy_name(arn)
    if held_rights.is_aws_managed(arn):
        return (f"{name} allows every action on every resource." if verdict.kind == policy.ADMIN
                else f"{name} (AWS-managed) {verdict.describe()}.")
    return f"The default version of {name} says: {verdict.describe()}."


def judge_grant(event: CloudTrailEvent, settings: Settings, verdict: Triage, touch: Touch) -> list[Finding]:
    """A policy attached to / put on a user or another group: admin or escalation rights around the role?"""
    iam = client("iam")
    done = what_was_done(event, touch)
    if touch.policy_arn:
        judged = held_rights.managed_verdict(iam, touch.policy_arn)
        if judged is None or not judged.grants:
            logger.info("no admin grant", extra={"reason": f"{done}: the policy no longer exists" if judged is None
                                                 else f"{done}: {judged.describe()}"})
            return []
        arn = attached_arn(iam, touch.kind, touch.name, touch.policy_arn)
        if arn is None:
            logger.info("no admin grant", extra={"reason": f"{done}: no longer attached (decided from the account)"})
            return []
        because = managed_because(arn, judged)
        grant = Grant(touch.kind, touch.name, policy_arn=arn, verdict=judged)
    else:
        in_event = event_document(event)
        if in_event and not policy.analyze(in_event).grants:
            logger.info("no admin grant", extra={"reason": f"{done}: {policy.analyze(in_event).describe()}"})
            return []
        noun: held_rights.PrincipalKind = "user" if touch.kind is Kind.USER_GRANT else "group"
        held = held_rights.inline_held(iam, noun, touch.name, touch.policy_name)
        if held is None or not held.verdict.grants:
            logger.info("no admin grant", extra={"reason": f"{done}: the account's copy "
                                                 + ("is gone" if held is None else held.verdict.describe())})
            return []
        judged = held.verdict
        because = f"Inline policy {touch.policy_name}, as the account holds it now: {judged.describe()}."
        grant = Grant(touch.kind, touch.name, policy_name=touch.policy_name, document=held.document, verdict=judged)
    actions = remove_grants(iam, settings, verdict, [grant])
    return [grant_finding(event, settings, verdict, done, because, [grant], actions)]


def judge_policy_version(event: CloudTrailEvent, settings: Settings, verdict: Triage, touch: Touch) -> list[Finding]:
    """Another customer-managed policy's default document changed: does it now give people admin rights?"""
    name = policy_name(touch.policy_arn)
    if event.event_name == "CreatePolicyVersion" and not _truthy(event.request.get("setAsDefault")):
        logger.info("no admin grant",
                    extra={"reason": f"new version of {name} not set as default: nothing in effect changed"})
        return []
    iam = client("iam")
    read = held_rights.read_default_document(iam, touch.policy_arn)
    judged = policy.analyze(read[0]) if read else None
    if read is None or read[1] == 0 or judged is None or not judged.grants:
        why = ("the policy no longer exists" if read is None else "it is attached to nothing" if read[1] == 0
               else judged.describe() if judged else "")
        logger.info("no admin grant", extra={"reason": f"{what_was_done(event, touch)}: {why}"})
        return []
    users, groups, roles = policy_holders(iam, touch.policy_arn)
    admin_groups = [g for g in groups if _same(g, settings.admin_group)]
    grants = [Grant(Kind.USER_GRANT, u, policy_arn=touch.policy_arn, verdict=judged) for u in users]
    grants += [Grant(Kind.GROUP_GRANT, g, policy_arn=touch.policy_arn, verdict=judged)
               for g in groups if g not in admin_groups]
    grants += [Grant(Kind.ROLE_GRANT, r, policy_arn=touch.policy_arn, verdict=judged, who=who)
               for r, who in human_roles(iam, settings, roles)]
    if not grants and not admin_groups:
        logger.info("no admin grant", extra={"reason": f"{name} gives admin or escalation rights but no person "
                                                       "holds it (only roles trusted by AWS services or with MFA)"})
        return []
    actions = remove_grants(iam, settings, verdict, grants)
    extra: list[Action] = []
    for group in admin_groups:  # the admin group holds it: baseline drift, converged with the lockout guard
        facts = lockout.read_facts(iam, settings, group_name=group)  # the group's parts and the guard's, at once
        observed = iam_baseline.observed_from(iam, settings, facts)
        allowed, why_not = may_write(settings, verdict)
        extra += iam_baseline.apply(iam, iam_baseline.converge_plan(iam, settings, observed, facts=facts),
                                    allowed=allowed, not_allowed_reason=why_not)
    because = f"Its default version now says: {judged.describe()}; and people hold it."
    return [grant_finding(event, settings, verdict, what_was_done(event, touch), because, grants, actions,
                          extra, also_held_by=[f"group {g}" for g in admin_groups])]


def human_roles(iam: Any, settings: Settings, roles: list[str]) -> list[tuple[str, str]]:
    """(role, who can assume it without MFA) for the roles people can assume; the rest logged."""
    out: list[tuple[str, str]] = []
    for name in roles:
        if _same(name, settings.admin_role):
            continue
        role = read_role_facts(iam, name)
        if role is None:
            continue
        skip = own_or_service_linked(role, settings)
        who = held_rights.human_trust(role["AssumeRolePolicyDocument"], settings) if not skip else []
        if not who:
            logger.info("role not a path for people", extra={
                "reason": skip or f"role {name} is trusted only by "
                f"{', '.join(held_rights.service_only(role['AssumeRolePolicyDocument'])) or 'principals with MFA'}"})
            continue
        out.append((name, ", ".join(who)))
    return out


def read_role_facts(iam: Any, name: str) -> dict[str, Any] | None:
    """GetRole's Role (trust document decoded), or None when the role is gone."""
    try:
        role = dict(iam.get_role(RoleName=name)["Role"])
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    role["AssumeRolePolicyDocument"] = load_document(role.get("AssumeRolePolicyDocument"))
    return role


def own_or_service_linked(role: Mapping[str, Any], settings: Settings) -> str:
    """Why the guardrail never judges this role ('' when it does)."""
    path, arn, name = str(role.get("Path", "/")), str(role.get("Arn", "")), str(role.get("RoleName", ""))
    if path.startswith("/aws-service-role/"):
        return f"role {name} is a service-linked role (AWS manages it; only its service assumes it)"
    if settings.is_guardrail(arn) or path.startswith("/account-guardrail/"):
        return f"role {name} is one of the guardrail's own roles"
    return ""
