"""Every path to standing admin: roles people can assume, group membership, the admin group's name.

The admin-drift function's entry point. `judge` first asks `classify_principal` whether the
event is one of the paths below; anything else is classified by `admin_drift.classify` (the
baseline's own objects, converged by `admin_drift`; grants on users and groups, judged by
`admin_grants`):

- a role other than the admin role gets a policy (`AttachRolePolicy`, `PutRolePolicy`) or a new
  trust policy (`UpdateAssumeRolePolicy`): when people can assume it without MFA
  (`grants.human_trust`) and it holds admin or escalation rights (`policy.analyze`), HIGH (or
  MEDIUM for an escalation that needs a role passed to a service); with DetachOtherAdminGrants
  the granting policy is removed from the role, never the role itself. `CreateRole` is not
  judged: a new role holds no policy until one of those calls gives it one;
- `AddUserToGroup` into a group (not the admin group) that holds admin or escalation rights:
  the user now holds them; the group's grant is removed like any other group grant;
- `UpdateGroup` renaming the admin group away: HIGH, with the commands to rename it back (the
  guardrail does not rename groups itself: that needs `iam:UpdateGroup` on every group name);
  renaming another group onto the admin group's name is converged as the admin group
  (`admin_drift`, through `PARTS["UpdateGroup"]`).
"""

from __future__ import annotations

from guardrail_core import grants as held_rights
from guardrail_core.admin_drift import (
    HELD_BACK_EVENTS,
    IAM_SOURCE,
    Kind,
    Touch,
    _same,
    attempt_is_relevant,
    classify,
    compromise_step,
    converge_touched,
    finish_held_back,
    what_was_done,
)
from guardrail_core.admin_grants import (
    Grant,
    attached_arn,
    grant_finding,
    human_roles,
    judge_grant,
    judge_policy_version,
    remove_grants,
)
from guardrail_core.alerts import cloudtrail_link, iam_console_link
from guardrail_core.aws import client
from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent
from guardrail_core.findings import Actor, Finding, Severity, who
from guardrail_core.runtime import attempt_finding, logger
from guardrail_core.triage import Triage, Verdict

ROLE_GRANT_EVENTS = frozenset({"AttachRolePolicy", "PutRolePolicy", "UpdateAssumeRolePolicy"})


def classify_principal(event: CloudTrailEvent, settings: Settings) -> Touch | None:
    """The paths judged here; None for every other event (admin_drift classifies those)."""
    if event.event_source != IAM_SOURCE:
        return None
    name = event.event_name
    if name in ROLE_GRANT_EVENTS:
        role = event.param("roleName").strip()
        if not role or _same(role, settings.admin_role):
            return None
        if name == "AttachRolePolicy" and not event.param("policyArn").strip():
            return Touch(Kind.NONE, reason="AttachRolePolicy without a policyArn")
        if name == "PutRolePolicy" and not event.param("policyName").strip():
            return Touch(Kind.NONE, reason="PutRolePolicy without a policyName")
        return Touch(Kind.ROLE_GRANT, role, event.param("policyArn").strip(), event.param("policyName").strip())
    if name == "AddUserToGroup":
        group, user = event.param("groupName").strip(), event.param("userName").strip()
        if not group or not user:
            return Touch(Kind.NONE, reason="AddUserToGroup without a groupName or userName")
        if _same(group, settings.admin_group):
            return Touch(Kind.NONE, reason=f"user {user} added to {group}: the baseline's way to admin, through "
                                           f"role {settings.admin_role} with MFA (the MFA detector judges the user)")
        return Touch(Kind.MEMBERSHIP, group, member=user)
    if name == "UpdateGroup":
        old, new = event.param("groupName").strip(), event.param("newGroupName").strip()
        if not new or _same(old, new):
            return Touch(Kind.NONE, reason=f"UpdateGroup of {old or '(none named)'} keeps its name")
        if _same(new, settings.admin_group):
            return Touch(Kind.GROUP, new)  # another group now answers to the admin group's name: converge it
        if _same(old, settings.admin_group):
            return Touch(Kind.GROUP_RENAME, old, member=new)
        return Touch(Kind.NONE, reason=f"group {old} renamed to {new}: neither is the admin group")
    return None


def judge(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """The admin-drift detector's decision for one (triaged) CloudTrail event."""
    if event.event_name in HELD_BACK_EVENTS and event.event_source == IAM_SOURCE:
        return finish_held_back(event, settings, verdict)
    touch = classify_principal(event, settings)
    if touch is None:
        touch = classify(event, settings)
        if verdict.verdict is Verdict.ACT and event.identity.is_root and touch.kind is Kind.ROLE:
            # Root is the recovery path: its changes to the admin role are alerted, never undone.
            verdict = Triage(Verdict.NOTIFY_ONLY, "made by root, the account's recovery path: alerted, never undone")
    if touch.kind is Kind.NONE:
        logger.info("event not judged", extra={"reason": touch.reason})
        return []
    if verdict.verdict is Verdict.ATTEMPT:
        if touch.kind is Kind.GROUP_RENAME or attempt_is_relevant(event, touch, settings):
            return [attempt_finding(event, what_was_done(event, touch))]
        logger.info("event not judged", extra={"reason": f"{verdict.reason}; and it did not concern admin rights"})
        return []
    if touch.kind in (Kind.GROUP, Kind.ROLE, Kind.POLICY):
        return converge_touched(event, settings, verdict, touch)
    if touch.kind is Kind.POLICY_VERSION:
        return judge_policy_version(event, settings, verdict, touch)
    if touch.kind in (Kind.USER_GRANT, Kind.GROUP_GRANT):
        return judge_grant(event, settings, verdict, touch)
    if touch.kind is Kind.ROLE_GRANT:
        return judge_role(event, settings, verdict, touch)
    if touch.kind is Kind.MEMBERSHIP:
        return judge_membership(event, settings, verdict, touch)
    return [renamed_away(event, settings, verdict, touch)]


# --- roles people can assume ---------------------------------------------------------------


def judge_role(event: CloudTrailEvent, settings: Settings, verdict: Triage, touch: Touch) -> list[Finding]:
    """A role's policies or trust changed: can people assume it without MFA, and does it give admin?"""
    iam = client("iam")
    done = what_was_done(event, touch)
    people = human_roles(iam, settings, [touch.name])  # GetRole; logs why when nobody can
    if not people:
        return []
    _, who = people[0]
    if event.event_name == "AttachRolePolicy":
        judged = held_rights.managed_verdict(iam, touch.policy_arn)
        arn = attached_arn(iam, Kind.ROLE_GRANT, touch.name, touch.policy_arn) if judged and \
            judged.grants else None
        held = [held_rights.Held(judged, policy_arn=arn)] if judged and arn else []
    elif event.event_name == "PutRolePolicy":
        one = held_rights.inline_held(iam, "role", touch.name, touch.policy_name)
        held = [one] if one else []
    else:  # a new trust: everything the role holds now matters
        held = held_rights.held_by(iam, "role", touch.name) or []
    found = held_rights.granting(held)
    if not found:
        logger.info("no admin grant", extra={"reason": f"{done}: role {touch.name} holds no admin or escalation "
                                                       "rights (decided from the account)"})
        return []
    grants = [Grant(Kind.ROLE_GRANT, touch.name, policy_arn=h.policy_arn, policy_name=h.policy_name,
                    document=h.document, verdict=h.verdict, who=who) for h in found]
    because = " ".join(f"{h.label}: {h.verdict.describe()}." for h in found)
    actions = remove_grants(iam, settings, verdict, grants)
    return [grant_finding(event, settings, verdict, done, because, grants, actions)]


# --- group membership ---------------------------------------------------------------------


def judge_membership(event: CloudTrailEvent, settings: Settings, verdict: Triage, touch: Touch) -> list[Finding]:
    """A user added to a group: does the group hold admin or escalation rights?"""
    iam = client("iam")
    done = what_was_done(event, touch)
    held = held_rights.held_by(iam, "group", touch.name)
    found = held_rights.granting(held or [])
    if not found:
        logger.info("no admin grant", extra={"reason": f"{done}: group {touch.name} "
                                             + ("no longer exists" if held is None else
                                                "holds no admin or escalation rights")})
        return []
    grants = [Grant(Kind.GROUP_GRANT, touch.name, policy_arn=h.policy_arn, policy_name=h.policy_name,
                    document=h.document, verdict=h.verdict) for h in found]
    because = (f"Group {touch.name} holds " + "; ".join(f"{h.label} ({h.verdict.describe()})" for h in found)
               + f", so user {touch.member} now has those rights, without MFA.")
    actions = remove_grants(iam, settings, verdict, grants)
    return [grant_finding(event, settings, verdict, done, because, grants, actions)]


# --- the admin group renamed away --------------------------------------------------------------


def renamed_away(event: CloudTrailEvent, settings: Settings, verdict: Triage, touch: Touch) -> Finding:
    """HIGH: the group the baseline protects no longer answers to its name."""
    new = touch.member
    where = f" from {event.source_ip}" if event.source_ip else ""
    what = (f"{who(event)} renamed group {touch.name} to {new} "
            f"({event.event_name}, {event.event_time or 'time unknown'}{where}). The guardrail protects the group "
            f"named {settings.admin_group}: under its new name, policies attached to it are judged as any other "
            f"group's (reported, and removed only with DetachOtherAdminGrants=true), and a new group may be created "
            f"under the old name. Renaming a group back and forth is a way to give the admin group rights "
            f"while it is not watched; when a group takes the name {settings.admin_group} again, the guardrail "
            "converges it (removes everything but the assume policy).")
    if verdict.verdict is Verdict.NOTIFY_ONLY:
        what += f" {Actor.from_event(event).name} is an exempt (break-glass) principal: the change is reported."
    steps = [
        f"If the rename was not intended, rename it back: aws iam update-group --group-name {new} "
        f"--new-group-name {settings.admin_group}",
        f"If you want the admin group to have another name, set the stack parameter AdminGroupName={new} and run "
        "sam deploy, so the guardrail protects the group under its new name.",
        compromise_step(event, settings),
    ]
    links = [cloudtrail_link(event.aws_region or event.region, event.event_id)] if event.event_id else []
    links.append(iam_console_link("groups", new))
    return Finding.for_event(
        event, id="admin-group-renamed", severity=Severity.HIGH,
        outcome="Reported", summary=f"admin group {touch.name} renamed to {new}",
        what_happened=what, next_steps=steps, links=links,
        mode=f"{settings.mode}; renaming a group back is left to you",
    )
