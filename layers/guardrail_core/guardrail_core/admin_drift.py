"""Admin-access drift: admin rights granted outside the MFA-protected role, found and undone.

`judge` is the detector's decision for one CloudTrail event (runtime.make_handler runs it):

- an event on the baseline's own resources (the admin group, the admin role, the assume
  policy) names what was touched; that part is re-read from the account and converged with
  the setup function's own code (`iam_baseline.read` -> `converge_plan` -> `apply`), so the
  baseline has one definition;
- admin rights granted around the role (AdministratorAccess, or a policy allowing `*` on `*`,
  attached to or put inline on another user or group; a customer-managed policy whose new
  default version does so) are confirmed from the account, alerted HIGH, and detached only
  when DetachOtherAdminGrants is on; break-glass (exempt) users keep theirs.

Decisions are pure functions below; the few IAM reads are small adapters, one call each.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core import grants as held_rights
from guardrail_core import iam_baseline, policy
from guardrail_core.alerts import cloudtrail_link, iam_console_link
from guardrail_core.aws import client, is_not_found
from guardrail_core.baseline import Change, Observed, load_document, trust_requires_mfa
from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent, Identity
from guardrail_core.findings import Action, Finding, Severity, Status
from guardrail_core.iam_baseline import GROUP_INLINE, GROUP_MANAGED, POLICY, ROLE, ROLE_POLICIES
from guardrail_core.runtime import attempt_finding, logger
from guardrail_core.triage import Triage, Verdict

IAM_SOURCE = "iam.amazonaws.com"

# Every IAM action this module may call (with iam_baseline's), for the least-privilege test.
READ_ACTIONS = iam_baseline.READ_ACTIONS | held_rights.PRINCIPAL_READ_ACTIONS | frozenset({
    "iam:ListAttachedUserPolicies", "iam:GetUserPolicy", "iam:GetGroupPolicy", "iam:ListEntitiesForPolicy",
})
WRITE_ACTIONS = iam_baseline.WRITE_ACTIONS
# Only with DetachOtherAdminGrants: admin rights removed from users, groups and roles other than the
# baseline's (never from the guardrail's own roles: the template denies those).
DETACH_OTHER_ACTIONS = frozenset({
    "iam:DetachUserPolicy", "iam:DeleteUserPolicy", "iam:DetachGroupPolicy", "iam:DeleteGroupPolicy",
    "iam:DetachRolePolicy", "iam:DeleteRolePolicy",
})

GROUP_EVENTS = frozenset({"AttachGroupPolicy", "DetachGroupPolicy", "PutGroupPolicy", "DeleteGroupPolicy"})
ROLE_EVENTS = frozenset({"UpdateAssumeRolePolicy", "UpdateRole", "AttachRolePolicy", "DetachRolePolicy",
                         "PutRolePolicy", "DeleteRolePolicy", "DeleteRole"})
POLICY_EVENTS = frozenset({"CreatePolicyVersion", "SetDefaultPolicyVersion", "DeletePolicy"})
GRANT_EVENTS = frozenset({"AttachUserPolicy", "PutUserPolicy", "AttachGroupPolicy", "PutGroupPolicy"})

# Which baseline parts an event can have changed: read those, nothing more.
PARTS: dict[str, frozenset[str]] = {
    "AttachGroupPolicy": frozenset({GROUP_MANAGED}),
    "DetachGroupPolicy": frozenset({GROUP_MANAGED}),
    "PutGroupPolicy": frozenset({GROUP_INLINE}),
    "DeleteGroupPolicy": frozenset({GROUP_INLINE}),
    "UpdateAssumeRolePolicy": frozenset({ROLE}),
    "UpdateRole": frozenset({ROLE}),
    "AttachRolePolicy": frozenset({ROLE, ROLE_POLICIES}),
    "DetachRolePolicy": frozenset({ROLE, ROLE_POLICIES}),
    "PutRolePolicy": frozenset({ROLE, ROLE_POLICIES}),
    "DeleteRolePolicy": frozenset({ROLE, ROLE_POLICIES}),
    "DeleteRole": frozenset({ROLE, ROLE_POLICIES}),
    "CreatePolicyVersion": frozenset({POLICY}),
    "SetDefaultPolicyVersion": frozenset({POLICY}),
    # A deleted policy was detached from the group first: re-create it and attach it again.
    "DeletePolicy": frozenset({POLICY, GROUP_MANAGED}),
    # Another group renamed onto the admin group's name: everything it holds is judged.
    "UpdateGroup": frozenset({GROUP_MANAGED, GROUP_INLINE}),
}

# Planned changes that close a door opened without MFA; the rest repair the MFA path itself.
HIGH_CALLS = frozenset({"detach_group_policy", "delete_group_policy", "update_assume_role_policy",
                        "create_policy_version"})
FINDING_IDS = {
    "detach_group_policy": "admin-group-rights-granted",
    "delete_group_policy": "admin-group-rights-granted",
    "update_assume_role_policy": "admin-role-trust-weakened",
    "create_policy_version": "assume-policy-rewritten",
    "update_role": "admin-role-session-length",
}
PERMANENT_STEP = (
    "To make a change like this permanent on purpose instead of fighting the guardrail: change the "
    "baseline itself through the stack parameters (AdminGroupName, AdminRoleName, AssumeRolePolicyName, "
    "AdminSessionSeconds) and run sam deploy; or add the principal that makes such changes to "
    "ExemptPrincipalArns (its changes are reported, never undone); or set AdminDriftMode=notify "
    "(every change is reported, none undone)."
)


class Kind(StrEnum):
    GROUP = "admin group"  # the baseline's group
    ROLE = "admin role"  # the baseline's MFA role
    POLICY = "assume policy"  # the baseline's customer-managed policy
    USER_GRANT = "user"  # a policy attached to / put on any user
    GROUP_GRANT = "group"  # ... on any group other than the admin group
    ROLE_GRANT = "role"  # ... on a role other than the admin role that people can assume without MFA
    MEMBERSHIP = "membership"  # a user added to a group other than the admin group
    GROUP_RENAME = "group rename"  # the admin group renamed away
    POLICY_VERSION = "policy"  # another customer-managed policy's default document changed
    NONE = "none"


@dataclass(frozen=True)
class Touch:
    """What an event touched, from its request parameters alone."""

    kind: Kind
    name: str = ""  # group, role or user name as the caller wrote it
    policy_arn: str = ""  # managed policy attached, detached or versioned
    policy_name: str = ""  # inline policy name
    reason: str = ""  # why the event touches nothing this detector judges
    member: str = ""  # AddUserToGroup: the user added; UpdateGroup: the group's new name

    @property
    def resource(self) -> str:
        if self.kind in (Kind.GROUP, Kind.GROUP_GRANT, Kind.MEMBERSHIP, Kind.GROUP_RENAME):
            return f"group {self.name}"
        if self.kind in (Kind.ROLE, Kind.ROLE_GRANT):
            return f"role {self.name}"
        if self.kind is Kind.USER_GRANT:
            return f"user {self.name}"
        return f"policy {policy_name(self.policy_arn)}"


# --- pure decisions ---------------------------------------------------------------------


def policy_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1] if arn else ""


def is_aws_managed(arn: str, settings: Settings) -> bool:
    return arn.lower().startswith(f"arn:{settings.partition}:iam::aws:policy/")


def is_administrator_access(arn: str, settings: Settings) -> bool:
    return arn.lower() == f"arn:{settings.partition}:iam::aws:policy/administratoraccess"


def _same(a: str, b: str) -> bool:
    """IAM names and ARNs are case-insensitive."""
    return bool(a) and a.lower() == b.lower()


def classify(event: CloudTrailEvent, settings: Settings) -> Touch:
    """Which resource the event touched, and whether this detector judges it."""
    name = event.event_name
    if event.event_source != IAM_SOURCE:
        return Touch(Kind.NONE, reason=f"event source {event.event_source!r} is not IAM")
    if name in GROUP_EVENTS or name in ("AttachUserPolicy", "PutUserPolicy"):
        user = name.endswith("UserPolicy")
        target = event.param("userName" if user else "groupName").strip()
        arn, inline = event.param("policyArn").strip(), event.param("policyName").strip()
        if not target:
            return Touch(Kind.NONE, reason=f"{name} without a {'userName' if user else 'groupName'}")
        if name.startswith("Attach") or name.startswith("Detach"):
            if not arn:
                return Touch(Kind.NONE, reason=f"{name} without a policyArn")
        elif not inline:
            return Touch(Kind.NONE, reason=f"{name} without a policyName")
        if not user and _same(target, settings.admin_group):
            return Touch(Kind.GROUP, target, arn, inline)
        if name not in GRANT_EVENTS:
            return Touch(Kind.NONE, reason=f"{name} on group {target}: removing rights grants no admin")
        return Touch(Kind.USER_GRANT if user else Kind.GROUP_GRANT, target, arn, inline)
    if name in ROLE_EVENTS:
        role = event.param("roleName").strip()
        if not _same(role, settings.admin_role):
            return Touch(Kind.NONE, reason=f"{name} on role {role or '(none named)'}, not {settings.admin_role}")
        return Touch(Kind.ROLE, role, event.param("policyArn").strip(), event.param("policyName").strip())
    if name in POLICY_EVENTS:
        arn = event.param("policyArn").strip()
        if not arn:
            return Touch(Kind.NONE, reason=f"{name} without a policyArn")
        if _same(arn, settings.assume_policy_arn):
            return Touch(Kind.POLICY, policy_arn=arn)
        if name == "DeletePolicy":
            return Touch(Kind.NONE, reason=f"policy {policy_name(arn)} deleted: deleting grants no admin")
        return Touch(Kind.POLICY_VERSION, policy_arn=arn)
    return Touch(Kind.NONE, reason=f"{name} cannot change who holds admin rights")


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def event_document(event: CloudTrailEvent) -> dict[str, Any]:
    """The policy document in the request ({} when absent or not JSON)."""
    value = event.request.get("policyDocument") if isinstance(event.request, Mapping) else None
    return load_document(value)


def attempt_is_relevant(event: CloudTrailEvent, touch: Touch, settings: Settings) -> bool:
    """Is a refused call worth a LOW note? Judged from the event alone: a refused call reads nothing."""
    if touch.kind in (Kind.GROUP, Kind.ROLE, Kind.POLICY):
        return True
    if touch.kind in (Kind.USER_GRANT, Kind.GROUP_GRANT, Kind.ROLE_GRANT):
        if touch.policy_arn:
            return policy.managed_verdict(touch.policy_arn) is not None
        return policy.analyze(event_document(event)).grants
    return False


def short_actor(ident: Identity) -> str:
    """'user phoebe', 'role admin-mfa (phoebe)', 'root': short enough for a subject line."""
    if ident.is_root:
        return "root"
    match = re.match(r"^arn:[^:]*:(?:iam|sts)::\d*:(.+)$", ident.arn)
    if not match:
        return ident.display
    kind, _, rest = match.group(1).partition("/")
    if kind == "assumed-role" and "/" in rest:
        role, _, session = rest.partition("/")
        return f"role {role} ({session})"
    return f"{kind} {rest.rsplit('/', 1)[-1]}" if rest else kind


def what_was_done(event: CloudTrailEvent, touch: Touch) -> str:
    """The change the event records, in a few words ('AdministratorAccess attached to group x')."""
    n, where = event.event_name, touch.resource
    policy, inline = policy_name(touch.policy_arn), touch.policy_name
    if policy.lower() != "administratoraccess":
        policy = f"policy {policy}"
    session = event.request.get("maxSessionDuration") if isinstance(event.request, Mapping) else None
    phrases = {
        "AttachGroupPolicy": f"{policy} attached to {where}",
        "AttachUserPolicy": f"{policy} attached to {where}",
        "AttachRolePolicy": f"{policy} attached to {where}",
        "DetachGroupPolicy": f"{policy} detached from {where}",
        "DetachRolePolicy": f"{policy} detached from {where}",
        "PutGroupPolicy": f"inline policy {inline} put on {where}",
        "PutUserPolicy": f"inline policy {inline} put on {where}",
        "PutRolePolicy": f"inline policy {inline} put on {where}",
        "DeleteGroupPolicy": f"inline policy {inline} deleted from {where}",
        "DeleteRolePolicy": f"inline policy {inline} deleted from {where}",
        "UpdateAssumeRolePolicy": f"trust policy of {where} replaced",
        "UpdateRole": f"maximum session of {where} set to {session} s" if session is not None
                      else f"{where} updated",
        "DeleteRole": f"{where} deleted",
        "CreatePolicyVersion": f"new version of {where}",
        "SetDefaultPolicyVersion": f"default version of {where} changed",
        "DeletePolicy": f"{where} deleted",
        "AddUserToGroup": f"user {touch.member} added to {where}",
        "UpdateGroup": f"group {event.param('groupName')} renamed to {event.param('newGroupName')}",
    }
    return phrases.get(n, f"{n} on {where}")


def lockout_ruled_out(
    event: CloudTrailEvent, changes: list[Change], settings: Settings, has_mfa_device: Callable[[str], bool],
) -> str:
    """Why undoing exactly what this event added cannot lock everyone out of admin ('' if unsure).

    Holds only when every planned removal is the very policy this event put on the group (the
    group keeps, or first regains, the assume policy), and the caller, who just had the rights to
    change the group, keeps a way to admin afterwards:
    - a session of a role other than the admin role, opened without MFA: its rights come from
      the role, not from a group, and removing someone's MFA device cannot take them away;
    - an IAM user who has an MFA device now (`has_mfa_device`: read at judging time, not taken
      from the event, which may be minutes or hours old): if their rights came from this group
      they are a member with an MFA device, whom the group's assume policy takes to the role;
      if they came from elsewhere, the removal does not touch them.
    Anything else (root, federation, sessions that needed MFA such as the admin role's, a user
    without an MFA device) takes the guard's full reads: does any member have an MFA device now.
    """
    removals = [c for c in changes if c.removes_admin_path]
    added = _added_by(event)
    if not removals or added is None or any(_removed(c) != added for c in removals):
        return ""
    ident, actor = event.identity, short_actor(event.identity)
    issuer = ident.session_issuer_arn
    if ident.type == "AssumedRole" and ident.session_issuer_type == "Role" and issuer \
            and not _same(issuer, settings.admin_role_arn) and not ident.mfa_authenticated:
        return (f"{actor} acts through role {issuer}, whose rights come neither from the group nor from "
                f"an MFA device: the caller keeps a way to admin")
    if ident.type == "IAMUser" and ident.user_name and has_mfa_device(ident.user_name):
        return (f"{actor} has an MFA device now: as a member they reach the role through the group's "
                f"assume policy; otherwise the removal does not touch their rights")
    return ""


def _added_by(event: CloudTrailEvent) -> tuple[str, str] | None:
    if event.event_name == "AttachGroupPolicy" and event.param("policyArn"):
        return "detach_group_policy", event.param("policyArn").lower()
    if event.event_name == "PutGroupPolicy" and event.param("policyName"):
        return "delete_group_policy", event.param("policyName").lower()
    return None


def _removed(change: Change) -> tuple[str, str]:
    key = "PolicyArn" if change.call == "detach_group_policy" else "PolicyName"
    return change.call, str(change.params.get(key, "")).lower()


def may_write(settings: Settings, verdict: Triage) -> tuple[bool, str]:
    """Whether this event's remediation may write, and otherwise why not (shown in the email)."""
    if verdict.verdict is Verdict.NOTIFY_ONLY:
        return False, f"{verdict.reason}; the guardrail would make this change"
    if settings.kill_switch:
        return False, "kill switch on (KillSwitch=on): the guardrail would make this change"
    if not settings.remediation_enabled:
        return False, "notify mode (AdminDriftMode=notify): the guardrail would make this change"
    return True, ""


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower().replace("_", "-")


def cli_command(call: str, params: Mapping[str, Any]) -> str:
    """The AWS CLI command for a boto3 IAM call, for the owner to run by hand."""
    parts = ["aws", "iam", _kebab(call)]
    for key, value in params.items():
        flag = "--" + _kebab(key)
        if value is True:
            parts.append(flag)
        elif value is not False:
            parts += [flag, shlex.quote(str(value))]
    return " ".join(parts)


def by_hand(changes: list[Change]) -> list[str]:
    out = []
    for change in changes:
        out += [cli_command(call, params) for call, params in change.cleanup]
        out.append(cli_command(change.call, change.params))
    return out


def outcome(actions: list[Action]) -> str:
    """What the guardrail did, in a few words: the start of the subject line."""
    statuses = {a.status for a in actions}
    if statuses == {Status.SUCCEEDED}:
        return "Undone"
    if Status.FAILED in statuses:
        return "Undo FAILED"
    if Status.SUCCEEDED in statuses:
        return "Partly undone"
    details = " ".join(a.detail for a in actions)
    for marker, words in (("lockout", "Held back (lockout guard)"), ("exempt", "Not undone (exempt principal)"),
                          ("kill switch", "Not undone (kill switch)"), ("DetachOtherAdminGrants", "Reported")):
        if marker in details:
            return words
    return "Not undone (notify mode)"


# --- the baseline's own resources: converge the part the event touched ------------------


def drift_line(change: Change, observed: Observed, settings: Settings,
               verdict: policy.PolicyVerdict | None = None) -> str:
    """What the account shows that the change fixes, in owner's words (`verdict`: of the policy removed)."""
    params, call = change.params, change.call
    if verdict is not None and not verdict.grants and call in ("detach_group_policy", "delete_group_policy"):
        label = policy_name(str(params.get("PolicyArn", ""))) or f"inline policy {params.get('PolicyName')}"
        meaning = ("it only denies: it gives nobody any right, but the baseline's group holds nothing but the "
                   "assume policy (a Deny there can also stop members from reaching the admin role)"
                   if verdict.kind == policy.DENY_ONLY else
                   f"{verdict.describe()}; the baseline's group holds nothing but the assume policy")
        return f"Group {params.get('GroupName', settings.admin_group)} holds {label}: {meaning}."
    group, role, assume = params.get("GroupName", settings.admin_group), settings.admin_role, settings.assume_policy
    if observed.role is not None:
        role = observed.role.name
    lines = {
        "detach_group_policy": f"Group {group} holds {policy_name(str(params.get('PolicyArn', '')))} besides "
                               f"{assume}: every member gets those rights without MFA.",
        "delete_group_policy": f"Group {group} has inline policy {params.get('PolicyName')}: every member gets "
                               f"its rights without MFA.",
        "attach_group_policy": f"Group {group} no longer holds {assume}: its members cannot reach role {role}.",
        "create_group": f"Group {group} does not exist.",
        "update_assume_role_policy": f"The trust policy of role {role} no longer limits it to this account's "
                                     f"principals signed in with MFA.",
        "update_role": f"Role {role} allows sessions of "
                       f"{observed.role.max_session if observed.role else '?'} s; the baseline says "
                       f"{settings.session_seconds} s.",
        "attach_role_policy": f"Role {role} no longer has AdministratorAccess: the MFA path leads to no admin rights.",
        "create_role": f"Role {role} does not exist: there is no MFA path to admin.",
        "create_policy": f"Policy {assume} does not exist: group members cannot assume role {role}.",
        "create_policy_version": f"The default version of policy {assume} is not the baseline document "
                                 f"(sts:AssumeRole on {role} only): group members get whatever it allows, without MFA.",
    }
    return lines.get(call, change.name + ".")


def baseline_finding(
    event: CloudTrailEvent, settings: Settings, verdict: Triage, touch: Touch,
    observed: Observed, changes: list[Change], actions: list[Action],
    removed: Mapping[int, policy.PolicyVerdict] | None = None,
) -> Finding:
    """`removed`: the analyzer's verdict on a policy a change removes (by index in `changes`), where known."""
    removed = removed or {}

    def high(i: int, change: Change) -> bool:  # a deny-only policy on the group opens no door
        return change.call in HIGH_CALLS and (i not in removed or removed[i].kind != policy.DENY_ONLY)

    ranked = sorted(range(len(changes)), key=lambda i: not high(i, changes[i]))
    severity = Severity.HIGH if high(ranked[0], changes[ranked[0]]) else Severity.MEDIUM
    ranked_changes = [changes[i] for i in ranked]
    finding_id = FINDING_IDS.get(ranked_changes[0].call, "admin-path-broken")
    if severity is Severity.MEDIUM and ranked_changes[0].call in HIGH_CALLS:
        finding_id = "admin-group-extra-policy"
    actor, ident = short_actor(event.identity), event.identity
    done = what_was_done(event, touch)
    where = f" from {event.source_ip}" if event.source_ip else ""
    what = [f"{ident.display} ({ident.type or 'unknown identity'}) made this change: {done} "
            f"({event.event_name}, {event.event_time or 'time unknown'}{where})."]
    what.append(f"The guardrail re-read the {touch.kind.value} from the account: "
                + " ".join(drift_line(c, observed, settings, removed.get(i)) for i, c in enumerate(changes)))
    if severity is Severity.HIGH:
        what.append(f"The baseline allows admin rights only through role {settings.admin_role}, with MFA.")
    if verdict.verdict is Verdict.NOTIFY_ONLY:
        what.append(f"{actor} is an exempt (break-glass) principal: the change is reported, never undone.")
    steps = _baseline_steps(event, settings, changes, actions)
    links = [cloudtrail_link(event.aws_region or event.region, event.event_id)] if event.event_id else []
    links.append(_console_link(touch, settings))
    return Finding.for_event(
        event, id=finding_id, severity=severity,
        summary=f"{outcome(actions)}: {done} by {actor}",
        what_happened=" ".join(what), actions=actions, next_steps=steps, links=links,
        mode=f"{settings.mode}; exempt principal: report only" if verdict.verdict is Verdict.NOTIFY_ONLY else "",
    )


def _baseline_steps(event: CloudTrailEvent, settings: Settings, changes: list[Change],
                    actions: list[Action]) -> list[str]:
    steps: list[str] = []
    not_done = [c for c, a in zip(changes, actions, strict=True) if a.status is not Status.SUCCEEDED]
    held = [a for a in actions if "lockout" in a.detail]
    failed = [c for c, a in zip(changes, actions, strict=True) if a.status is Status.FAILED]
    if held:
        steps.append("Enrol an MFA device for at least one member of group "
                     f"{settings.admin_group} (IAM console > Users > the user > Security credentials > "
                     "Assign MFA device); the guardrail then removes the group's other rights on the next change, "
                     "or when you invoke the setup function.")
    if failed:
        steps.append("The guardrail could not make every change (FAILED above). Make it by hand: "
                     + "; ".join(by_hand(failed)))
    elif not_done and not held:
        steps.append("If the change was not intended, undo it by hand: " + "; ".join(by_hand(not_done)))
    steps.append(compromise_step(event, settings))
    if any(c.call == "update_role" for c in changes):
        steps.append("To allow longer (or shorter) admin sessions on purpose, set the stack parameter "
                     "AdminSessionSeconds (900 to 43200) and run sam deploy.")
    steps.append(PERMANENT_STEP)
    return steps


def _console_link(touch: Touch, settings: Settings) -> str:
    if touch.kind in (Kind.GROUP, Kind.GROUP_GRANT):
        return iam_console_link("groups", touch.name)
    if touch.kind is Kind.ROLE:
        return iam_console_link("roles", touch.name)
    if touch.kind is Kind.USER_GRANT:
        return iam_console_link("users", touch.name)
    return iam_console_link("policies", touch.policy_arn)


def converge_touched(event: CloudTrailEvent, settings: Settings, verdict: Triage, touch: Touch) -> list[Finding]:
    """Re-read the part of the baseline the event touched and converge it (setup's own code)."""
    iam = client("iam")
    observed = iam_baseline.read(
        iam, settings, PARTS[event.event_name],
        group_name=touch.name if touch.kind is Kind.GROUP else "",
        role_name=touch.name if touch.kind is Kind.ROLE else "",
    )
    proof: list[str] = []

    def ruled_out(changes: list[Change]) -> str:
        reason = lockout_ruled_out(event, changes, settings, lambda user: has_mfa_device(iam, user))
        proof.append(reason)
        return reason

    changes = iam_baseline.converge_plan(iam, settings, observed, lockout_ruled_out=ruled_out)
    if any(proof):
        logger.info("lockout check answered by the event itself", extra={"reason": proof[0]})
    if not changes:
        logger.info("no drift", extra={"reason": f"the {touch.kind.value} is in the baseline after "
                                                  f"{event.event_name}: nothing to report"})
        return []
    allowed, why_not = may_write(settings, verdict)
    actions = iam_baseline.apply(iam, changes, allowed=allowed, not_allowed_reason=why_not)
    removed = removed_verdicts(iam, event, changes)  # for the email's words: after the write, not before
    return [baseline_finding(event, settings, verdict, touch, observed, changes, actions, removed)]


def removed_verdicts(iam: Any, event: CloudTrailEvent, changes: list[Change]) -> dict[int, policy.PolicyVerdict]:
    """The analyzer's verdict on each policy the plan removes from the admin group, where it can be known.

    Managed: the list or the default version (two reads, once per policy); inline: the event's own
    document when the event put that very policy (the account's copy is deleted by then).
    """
    out: dict[int, policy.PolicyVerdict] = {}
    cache: dict[str, policy.PolicyVerdict] = {}
    for i, change in enumerate(changes):
        if change.call == "detach_group_policy":
            judged = held_rights.managed_verdict(iam, str(change.params.get("PolicyArn", "")), cache)
            if judged is not None:
                out[i] = judged
        elif change.call == "delete_group_policy" and event.event_name == "PutGroupPolicy" \
                and _same(event.param("policyName"), str(change.params.get("PolicyName", ""))):
            document = event_document(event)
            if document:
                out[i] = policy.analyze(document)
    return out


# --- admin rights granted around the role ------------------------------------------------


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
    """What breaks the MFA path to admin now ('' when intact): group, assume policy, member with MFA, role."""
    group = iam_baseline.read_group(iam, settings.admin_group, managed=True, inline=False)
    if group is None:
        return f"group {settings.admin_group} does not exist"
    if not any(_same(p.arn, settings.assume_policy_arn) for p in group.attached or []):
        return f"group {group.name} does not hold policy {settings.assume_policy}"
    if iam_baseline.find_member_with_mfa(iam, group.name) is None:
        return f"no member of group {group.name} has an MFA device"
    role = iam_baseline.read_role(iam, settings.admin_role, policies=True)
    if role is None:
        return f"role {settings.admin_role} does not exist"
    if not trust_requires_mfa(role.trust, settings):
        return f"the trust policy of role {role.name} does not require MFA"
    if not any(is_administrator_access(p.arn, settings) for p in role.attached or []):
        return f"role {role.name} does not have AdministratorAccess"
    return ""


def grant_finding(event: CloudTrailEvent, settings: Settings, verdict: Triage, headline: str, because: str,
                  grants: list[Grant], actions: list[Action], extra: list[Action] | None = None,
                  also_held_by: list[str] | None = None) -> Finding:
    """`actions` pair with `grants`; `extra`: the admin group's baseline actions, when it holds the policy too."""
    actor, ident = short_actor(event.identity), event.identity
    where = f" from {event.source_ip}" if event.source_ip else ""
    held = [g.holder for g in grants] + (also_held_by or [])
    admin = any(g.verdict.kind == policy.ADMIN for g in grants) or not grants
    rights = "admin rights" if admin else "a way to take admin rights (privilege escalation)"
    what = (f"{ident.display} ({ident.type or 'unknown identity'}) made this change: {headline} "
            f"({event.event_name}, {event.event_time or 'time unknown'}{where}). {because} "
            f"So {', '.join(held)} hold{'s' if len(held) == 1 else ''} {rights} without the MFA-protected role "
            f"{settings.admin_role}: the baseline allows admin rights only through that role, with MFA.")
    conditions = sorted({g.verdict.condition for g in grants if g.verdict.condition})
    if conditions:
        what += (" The granting statement has a condition, which may narrow when it applies: "
                 + "; ".join(conditions) + ".")
    if verdict.verdict is Verdict.NOTIFY_ONLY:
        what += f" {actor} is an exempt (break-glass) principal: the change is reported, never undone."
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
    steps.append("To keep such a grant on purpose: list the principal in ExemptPrincipalArns (break-glass "
                 "principals keep their admin rights and are never acted on); DetachOtherAdminGrants=false reports "
                 "grants without removing them.")
    links = [cloudtrail_link(event.aws_region or event.region, event.event_id)] if event.event_id else []
    links += [iam_console_link(f"{g.kind.value}s", g.name) for g in grants]
    all_actions = actions + (extra or [])
    severity = Severity.HIGH if admin or any(g.verdict.direct for g in grants) else Severity.MEDIUM
    return Finding.for_event(
        event, id="admin-granted-outside-role" if admin else "escalation-granted-outside-role", severity=severity,
        summary=f"{outcome(all_actions)}: {headline} by {actor}",
        what_happened=what, actions=all_actions, next_steps=steps, links=links,
        mode=f"{settings.mode}; exempt principal: report only" if verdict.verdict is Verdict.NOTIFY_ONLY else "",
    )


def mfa_admin_session(event: CloudTrailEvent, settings: Settings) -> bool:
    """Made in a session of the MFA-protected admin role, opened with MFA: an administrator acting."""
    ident = event.identity
    return ident.type == "AssumedRole" and _same(ident.session_issuer_arn, settings.admin_role_arn) \
        and ident.mfa_authenticated


def compromise_step(event: CloudTrailEvent, settings: Settings) -> str:
    """What to do if nobody expected the change; no "compromised" verdict on an MFA admin session."""
    ident = event.identity
    if mfa_admin_session(event, settings):
        session = ident.arn.rsplit("/", 1)[-1] if ident.arn.count("/") >= 2 else "unknown"
        return (f"This was done in an MFA-authenticated session of role {settings.admin_role} (session name "
                f"{session}): most likely an administrator's mistake or a deliberate change. If nobody expected it, "
                "ask that administrator, and review the session's other activity in CloudTrail.")
    return (f"If you did not make or expect this change, treat {ident.display} as compromised: review its "
            "other recent activity in CloudTrail and rotate its credentials.")


# adapters: one IAM call each


def has_mfa_device(iam: Any, user: str) -> bool:
    """Does the user have an MFA device now? (False when the user is gone.)"""
    try:
        return bool(iam.list_mfa_devices(UserName=user).get("MFADevices"))
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise


def read_default_document(iam: Any, arn: str) -> tuple[dict[str, Any], int] | None:
    """(default version's document, attachment count) of a managed policy; None when it is gone."""
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
        version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return load_document(version.get("Document")), int(policy.get("AttachmentCount", 0))


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
    read = read_default_document(iam, touch.policy_arn)
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
        observed = iam_baseline.read(iam, settings, {GROUP_MANAGED}, group_name=group)
        allowed, why_not = may_write(settings, verdict)
        extra += iam_baseline.apply(iam, iam_baseline.converge_plan(iam, settings, observed),
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


# --- the judge ----------------------------------------------------------------------------


def judge(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """The admin-drift detector's decision for one (triaged) CloudTrail event."""
    touch = classify(event, settings)
    if touch.kind is Kind.NONE:
        logger.info("event not judged", extra={"reason": touch.reason})
        return []
    if verdict.verdict is Verdict.ATTEMPT:
        if not attempt_is_relevant(event, touch, settings):
            logger.info("event not judged", extra={"reason": f"{verdict.reason}; and it did not concern admin rights"})
            return []
        return [attempt_finding(event, what_was_done(event, touch))]
    if touch.kind in (Kind.GROUP, Kind.ROLE, Kind.POLICY):
        return converge_touched(event, settings, verdict, touch)
    if touch.kind is Kind.POLICY_VERSION:
        return judge_policy_version(event, settings, verdict, touch)
    return judge_grant(event, settings, verdict, touch)
