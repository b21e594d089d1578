"""Read the baseline's IAM resources and apply planned changes: the AWS side of baseline.py.

Reads are scoped: a detector passes only the parts its event touched, so one event costs
one or two IAM calls rather than a full account read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core import baseline
from guardrail_core.aws import error_code, is_access_denied, is_not_found
from guardrail_core.baseline import Change, GroupState, Observed, PolicyRef, PolicyState, RoleState
from guardrail_core.config import Settings
from guardrail_core.findings import Action, Status

# Read parts (finer than plan scopes, to keep detector calls few).
GROUP_MANAGED, GROUP_INLINE, ROLE, ROLE_POLICIES, POLICY = (
    "group_managed", "group_inline", "role", "role_policies", "policy",
)
EVERYTHING = frozenset({GROUP_MANAGED, GROUP_INLINE, ROLE, ROLE_POLICIES, POLICY})

# Every IAM action this module may call, for the least-privilege test and the template.
READ_ACTIONS = frozenset({
    "iam:ListAttachedGroupPolicies", "iam:ListGroupPolicies", "iam:GetGroup", "iam:ListGroups",
    "iam:ListMFADevices", "iam:GetRole", "iam:ListRoles", "iam:ListAttachedRolePolicies",
    "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions", "iam:ListRolePolicies",
})
WRITE_ACTIONS = frozenset({
    "iam:CreateGroup", "iam:AttachGroupPolicy", "iam:DetachGroupPolicy", "iam:DeleteGroupPolicy",
    "iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:AttachRolePolicy",
    "iam:DetachRolePolicy", "iam:DeleteRolePolicy", "iam:DeleteRolePermissionsBoundary",
    "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion",
})


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _find_case_insensitive(
    pages: Iterable[dict[str, Any]], key: str, name_key: str, name: str
) -> dict[str, Any] | None:
    for page in pages:
        for item in page.get(key, []):
            if str(item.get(name_key, "")).lower() == name.lower():
                return dict(item)
    return None


def _group_name(iam: Any, name: str) -> str | None:
    """The group's real name (IAM names are case-insensitive), or None when it does not exist."""
    found = _find_case_insensitive(iam.get_paginator("list_groups").paginate(), "Groups", "GroupName", name)
    return str(found["GroupName"]) if found else None


def read_group(iam: Any, name: str, *, managed: bool, inline: bool) -> GroupState | None:
    state = GroupState(name=name)
    try:
        if managed:
            state.attached = _attached(iam.list_attached_group_policies(GroupName=name))
        if inline:
            state.inline = list(iam.list_group_policies(GroupName=name).get("PolicyNames", []))
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        real = _group_name(iam, name)
        return None if real is None or real == name else read_group(iam, real, managed=managed, inline=inline)
    return state


def _attached(response: dict[str, Any]) -> list[PolicyRef]:
    # One page holds 100 policies; a group or role may hold at most 20 managed policies.
    return [PolicyRef(p["PolicyName"], p["PolicyArn"]) for p in response.get("AttachedPolicies", [])]


def find_member_with_mfa(iam: Any, group_name: str) -> str | None:
    """A member of the group with an MFA device (stops at the first), or None."""
    for page in iam.get_paginator("get_group").paginate(GroupName=group_name):
        for user in page.get("Users", []):
            if iam.list_mfa_devices(UserName=user["UserName"]).get("MFADevices"):
                return str(user["UserName"])
    return None


def read_role(iam: Any, name: str, *, policies: bool, inline: bool = False) -> RoleState | None:
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        found = _find_case_insensitive(iam.get_paginator("list_roles").paginate(), "Roles", "RoleName", name)
        if found is None:
            return None
        role = found
    state = RoleState(
        name=role["RoleName"], arn=role["Arn"],
        trust=baseline.load_document(role.get("AssumeRolePolicyDocument")),
        max_session=int(role.get("MaxSessionDuration", 3600)),
        boundary=str((role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn", "")),
    )
    if policies:
        state.attached = _attached(iam.list_attached_role_policies(RoleName=state.name))
    if inline:  # one page: the admin role holds none in the baseline
        state.inline = [str(n) for n in iam.list_role_policies(RoleName=state.name).get("PolicyNames", [])]
    return state


def read_policy(iam: Any, arn: str) -> PolicyState | None:
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        return None
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    state = PolicyState(
        name=policy["PolicyName"], arn=policy["Arn"], default_version=policy["DefaultVersionId"],
        document=baseline.load_document(version.get("Document")),
    )
    return state


def read(iam: Any, settings: Settings, parts: Iterable[str], *, group_name: str = "", role_name: str = "") -> Observed:
    """Read the named parts of the baseline. Names default to the configured ones."""
    parts = frozenset(parts)
    scopes: set[str] = set()
    observed = Observed(read=frozenset())
    if parts & {GROUP_MANAGED, GROUP_INLINE}:
        scopes.add(baseline.GROUP)
        observed.group = read_group(
            iam, group_name or settings.admin_group,
            managed=GROUP_MANAGED in parts, inline=GROUP_INLINE in parts,
        )
    if ROLE in parts or ROLE_POLICIES in parts:
        scopes.add(baseline.ROLE)
        observed.role = read_role(iam, role_name or settings.admin_role, policies=ROLE_POLICIES in parts,
                                  inline=ROLE_POLICIES in parts)
    if POLICY in parts:
        scopes.add(baseline.POLICY)
        observed.policy = read_policy(iam, settings.assume_policy_arn)
        if observed.policy and not baseline.same_document(
            observed.policy.document, baseline.assume_policy_document(settings)
        ):
            versions = iam.list_policy_versions(PolicyArn=observed.policy.arn).get("Versions", [])
            observed.policy.versions = [
                v["VersionId"] for v in sorted(versions, key=lambda v: v["CreateDate"]) if not v["IsDefaultVersion"]
            ]
    observed.read = frozenset(scopes)
    return observed


def converge_plan(
    iam: Any,
    settings: Settings,
    observed: Observed,
    *,
    lockout_ruled_out: Callable[[list[Change]], str] | None = None,
) -> list[Change]:
    """plan(), plus the lockout guard's read when (and only when) a removal is planned.

    `lockout_ruled_out`: a detector's cheaper proof that the planned removals cannot lock
    everyone out (returns why, or '' when it cannot tell), from what its event says plus at most
    a fact it reads now; when it answers, the guard's own reads are skipped. Setup passes none.
    """
    changes = baseline.plan(observed, settings)
    if not any(c.removes_admin_path for c in changes):
        return changes
    # Taking rights away is only safe once the MFA path works: the role must exist, trust
    # MFA only and hold AdministratorAccess. Read it when the event did not, so the plan
    # rebuilds the path first (and apply() skips the removals if that fails).
    if observed.role is None or observed.role.attached is None:
        observed.role = read_role(iam, settings.admin_role, policies=True)
        observed.read = observed.read | {baseline.ROLE}
        changes = baseline.plan(observed, settings)
    group = observed.group
    if group is not None and not group.mfa_checked and any(c.removes_admin_path for c in changes):
        if lockout_ruled_out is not None and lockout_ruled_out(changes):
            return changes
        group.member_with_mfa = find_member_with_mfa(iam, group.name)
        group.mfa_checked = True
        changes = baseline.plan(observed, settings)
    return changes


def _skip(change: Change, why: str) -> Action:
    return Action(change.name, change.target, Status.SKIPPED, detail=why)


def apply(
    iam: Any,
    changes: Iterable[Change],
    *,
    allowed: bool,
    not_allowed_reason: str = "notify mode: the guardrail would make this change",
    clock: Callable[[], str] = now_utc,
) -> list[Action]:
    """Make the changes in order; report each. Never raises for an AWS error.

    If a step that builds the MFA path fails, later removals are not attempted: taking
    rights away is only safe once the path to the admin role is known to work.
    """
    actions: list[Action] = []
    path_broken = ""
    for change in changes:
        if not allowed:
            actions.append(_skip(change, not_allowed_reason))
            continue
        if change.blocked:
            actions.append(_skip(change, f"held back to avoid a lockout: {change.blocked}"))
            continue
        if change.removes_admin_path and path_broken:
            actions.append(_skip(change, f"not removed because an earlier step failed ({path_broken})"))
            continue
        try:
            for call, params in change.cleanup:
                getattr(iam, call)(**params)
            getattr(iam, change.call)(**change.params)
            actions.append(Action(change.name, change.target, Status.SUCCEEDED, undo=change.undo, at=clock()))
        except ClientError as exc:
            code = error_code(exc)
            if change.removes_admin_path and is_not_found(exc):
                actions.append(Action(change.name, change.target, Status.SUCCEEDED,
                                      detail="already gone: nothing to undo", at=clock()))
                continue
            if code == "EntityAlreadyExists":
                actions.append(Action(change.name, change.target, Status.SUCCEEDED,
                                      detail="already exists: adopted as it is", at=clock()))
                continue
            detail = f"{code}: {exc.response.get('Error', {}).get('Message', '')}".strip()
            if is_access_denied(exc):
                detail = (f"the guardrail lacks the permission iam:{_action_name(change.call)} on "
                          f"{change.target}; check the stack's role policies. ({detail})")
            actions.append(Action(change.name, change.target, Status.FAILED, detail=detail))
            if not change.removes_admin_path:
                path_broken = change.name
    return actions


def _action_name(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_")).replace("Mfa", "MFA")
