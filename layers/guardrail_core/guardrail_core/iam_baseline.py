"""Read the baseline's IAM resources and apply planned changes: the AWS side of baseline.py.

Reads are scoped: a detector passes only the parts its event touched, so one event costs
one or two IAM calls rather than a full account read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core import baseline, lockout
from guardrail_core.aws import (
    TransientError,
    concurrently,
    error_code,
    is_access_denied,
    is_not_found,
    raise_if_transient,
)
from guardrail_core.baseline import Change, GroupState, Observed, PolicyRef, PolicyState, RoleState
from guardrail_core.config import Settings
from guardrail_core.findings import Action, Status
from guardrail_core.lockout import Facts

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
}) | lockout.READ_ACTIONS
WRITE_ACTIONS = frozenset({
    "iam:CreateGroup", "iam:AttachGroupPolicy", "iam:DetachGroupPolicy", "iam:DeleteGroupPolicy",
    "iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole", "iam:AttachRolePolicy",
    "iam:DetachRolePolicy", "iam:DeleteRolePolicy", "iam:DeleteRolePermissionsBoundary",
    "iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion",
})


# What setup reads to learn the real name and path of what it adopts (adopted_names).
ADOPTION_READ_ACTIONS = frozenset({"iam:ListPolicies"})


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
    """The group's managed and/or inline policies (read at once), or None when it does not exist."""
    state = GroupState(name=name)
    try:
        attached, names = concurrently([
            (lambda: _attached(iam.list_attached_group_policies(GroupName=name))) if managed else _nothing,
            (lambda: [str(n) for n in iam.list_group_policies(GroupName=name).get("PolicyNames", [])]) if inline
            else _nothing,
        ])
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        real = _group_name(iam, name)
        return None if real is None or real == name else read_group(iam, real, managed=managed, inline=inline)
    state.attached, state.inline = attached, names
    return state


def _nothing() -> Any:
    return None


def _attached(response: dict[str, Any]) -> list[PolicyRef]:
    # One page holds 100 policies; a group or role may hold at most 20 managed policies.
    return [PolicyRef(p["PolicyName"], p["PolicyArn"]) for p in response.get("AttachedPolicies", [])]


def read_role(iam: Any, name: str, *, policies: bool, inline: bool = False) -> RoleState | None:
    """The role (GetRole) and, with `policies`/`inline`, its managed and inline policy names, read at once;
    None when it does not exist."""
    try:
        got, attached, inline_names = concurrently([
            lambda: iam.get_role(RoleName=name)["Role"],
            (lambda: _attached(iam.list_attached_role_policies(RoleName=name))) if policies else _nothing,
            # one page: the admin role holds no inline policy in the baseline
            (lambda: [str(n) for n in iam.list_role_policies(RoleName=name).get("PolicyNames", [])])
            if inline else _nothing,
        ])
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        found = _find_case_insensitive(iam.get_paginator("list_roles").paginate(), "Roles", "RoleName", name)
        if found is None or found["RoleName"] == name:
            return None
        return read_role(iam, str(found["RoleName"]), policies=policies, inline=inline)
    state = RoleState(
        name=got["RoleName"], arn=got["Arn"],
        trust=baseline.load_document(got.get("AssumeRolePolicyDocument")),
        max_session=int(got.get("MaxSessionDuration", 3600)),
        boundary=str((got.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn", "")),
    )
    if policies:
        state.attached = attached
    if inline:
        state.inline = inline_names
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


def _versions_to_prune(iam: Any, settings: Settings, policy: PolicyState | None) -> None:
    """A drifted assume policy is restored with a new version: list the old ones (IAM keeps five)."""
    if policy and not baseline.same_document(policy.document, baseline.assume_policy_document(settings)):
        versions = iam.list_policy_versions(PolicyArn=policy.arn).get("Versions", [])
        policy.versions = [
            v["VersionId"] for v in sorted(versions, key=lambda v: v["CreateDate"]) if not v["IsDefaultVersion"]
        ]


def read(iam: Any, settings: Settings, parts: Iterable[str], *, group_name: str = "", role_name: str = "") -> Observed:
    """Read the named parts of the baseline, all at once. Names default to the configured ones."""
    parts = frozenset(parts)
    scopes: set[str] = set()
    observed = Observed(read=frozenset())
    thunks: list[Callable[[], Any]] = []
    if parts & {GROUP_MANAGED, GROUP_INLINE}:
        scopes.add(baseline.GROUP)
        thunks.append(lambda: setattr(observed, "group", read_group(
            iam, group_name or settings.admin_group,
            managed=GROUP_MANAGED in parts, inline=GROUP_INLINE in parts)))
    if ROLE in parts or ROLE_POLICIES in parts:
        scopes.add(baseline.ROLE)
        thunks.append(lambda: setattr(observed, "role", read_role(
            iam, role_name or settings.admin_role, policies=ROLE_POLICIES in parts, inline=ROLE_POLICIES in parts)))
    if POLICY in parts:
        scopes.add(baseline.POLICY)

        def policy() -> None:
            observed.policy = read_policy(iam, settings.assume_policy_arn)
            _versions_to_prune(iam, settings, observed.policy)
        thunks.append(policy)
    concurrently(thunks)
    observed.read = frozenset(scopes)
    return observed


def observed_from(iam: Any, settings: Settings, facts: Facts) -> Observed:
    """The whole baseline as the lockout guard's facts show it (no second read of the same thing)."""
    observed = Observed(read=baseline.ALL_SCOPES)
    if facts.group_attached is not None:
        observed.group = GroupState(name=facts.group_name, attached=list(facts.group_attached),
                                    inline=list(facts.group_inline))
    if facts.role is not None:
        role = facts.role
        observed.role = RoleState(name=role.name, arn=role.arn, trust=dict(role.trust), max_session=role.max_session,
                                  attached=list(role.attached), inline=list(role.inline), boundary=role.boundary_arn)
    if facts.assume_document is not None:
        observed.policy = PolicyState(name=settings.assume_policy, arn=facts.assume_policy_arn,
                                      default_version=facts.assume_default_version,
                                      document=dict(facts.assume_document))
        _versions_to_prune(iam, settings, observed.policy)
    return observed


def converge_plan(iam: Any, settings: Settings, observed: Observed, *, facts: Facts | None = None) -> list[Change]:
    """plan(), with the lockout guard's verdict when (and only when) a removal is planned.

    `facts`: the guard's facts when the caller read them already (with `observed`, concurrently);
    otherwise they are read here, once. Parts of the baseline the caller did not read (the role,
    the assume policy) are taken from the facts and converged too, so the plan rebuilds a broken
    path before it removes anything (apply() skips the removals if rebuilding fails).
    """
    changes = baseline.plan(observed, settings)
    group = observed.group
    if group is None or group.path_gap is not None or not any(c.removes_admin_path for c in changes):
        return changes
    if facts is None:
        facts = lockout.read_facts(iam, settings, group_name=group.name)
    full = observed_from(iam, settings, facts) if observed.read != baseline.ALL_SCOPES else observed
    if baseline.ROLE not in observed.read:
        observed.role = full.role
    if baseline.POLICY not in observed.read:
        observed.policy = full.policy
    observed.read = observed.read | {baseline.ROLE, baseline.POLICY}
    changes = baseline.plan(observed, settings)
    repairs = [c.call for c in changes if not c.removes_admin_path]
    verdict = lockout.admin_path(facts, settings, repairs=repairs)
    group.path_gap = "" if verdict.ok else verdict.reason
    return baseline.plan(observed, settings)


def _skip(change: Change, why: str) -> Action:
    return Action(change.name, change.target, Status.SKIPPED, detail=why)


class RaceError(TransientError):
    """IAM's answer to a write contradicts what was just read (eventual consistency, or a concurrent
    change): nothing is reported as done on such an answer. Transient: the run fails and Lambda
    retries it with a fresh read (setup converges once more)."""


def _still_there(iam: Any, change: Change) -> bool:
    """After NoSuchEntity on a removal: is the policy really gone? (IAM is eventually consistent.)"""
    params = change.params
    try:
        if change.call == "detach_group_policy":
            held = iam.list_attached_group_policies(GroupName=params["GroupName"]).get("AttachedPolicies", [])
            return any(str(p["PolicyArn"]).lower() == str(params["PolicyArn"]).lower() for p in held)
        if change.call == "delete_group_policy":
            names = iam.list_group_policies(GroupName=params["GroupName"]).get("PolicyNames", [])
            return params["PolicyName"] in names
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return False


def _exists(iam: Any, change: Change) -> bool:
    """After EntityAlreadyExists on a create the read said was missing: does it exist now?"""
    params = change.params
    reads: dict[str, Callable[[], Any]] = {
        "create_group": lambda: iam.get_group(GroupName=params["GroupName"], MaxItems=1),
        "create_role": lambda: iam.get_role(RoleName=params["RoleName"]),
        "create_policy": lambda: iam.get_policy(PolicyArn=change.target),
    }
    read = reads.get(change.call)
    if read is None:
        return True
    try:
        read()
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def apply(
    iam: Any,
    changes: Iterable[Change],
    *,
    allowed: bool,
    not_allowed_reason: str = "notify mode: the guardrail would make this change",
    clock: Callable[[], str] = now_utc,
) -> list[Action]:
    """Make the changes in order; report each.

    If a step that builds the MFA path fails, later removals are not attempted: taking
    rights away is only safe once the path to the admin role is known to work.

    Raises (so Lambda retries the event, and nothing is reported done on a doubtful answer):
    transient errors (throttling past the client's retries, 5xx, timeouts), like reads do;
    RaceError when IAM's answer contradicts the read (NoSuchEntity on a removal of a policy
    still attached; EntityAlreadyExists on a create the read said was missing, whatever
    exists now is judged afresh). Permanent refusals (AccessDenied, limits, validation)
    become FAILED actions with what to do by hand.
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
            raise_if_transient(exc)
            code = error_code(exc)
            if change.removes_admin_path and is_not_found(exc):
                if _still_there(iam, change):
                    raise RaceError(f"{change.name}: IAM answered NoSuchEntity but it is still there") from exc
                actions.append(Action(change.name, change.target, Status.SUCCEEDED,
                                      detail="already gone: nothing to undo", at=clock()))
                continue
            if code == "EntityAlreadyExists":
                raise RaceError(f"{change.name}: IAM answered EntityAlreadyExists although it was missing when read"
                                + ("" if _exists(iam, change) else ", and it is still missing")) from exc
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


# --- what setup adopts: its real name and path ---------------------------------------------------


@dataclass(frozen=True)
class Existing:
    """A baseline entity that already exists, as IAM stores it."""

    kind: str  # "group", "role" or "policy"
    name: str  # with its real case
    path: str
    arn: str


PARAMETERS = {"group": "AdminGroupName", "role": "AdminRoleName", "policy": "AssumeRolePolicyName"}


def existing_entities(iam: Any, settings: Settings) -> list[Existing]:
    """The admin group, role and assume policy that exist, with the real case of their names and
    their paths. Found through list calls only: IAM authorizes a Get on the entity's stored ARN,
    which the stack's policies may not name yet (that is what this looks for), and a list on "*"."""
    found: list[Existing] = []
    for kind, paginator, key, name_key, name, kwargs in (
        ("group", "list_groups", "Groups", "GroupName", settings.admin_group, {}),
        ("role", "list_roles", "Roles", "RoleName", settings.admin_role, {}),
        ("policy", "list_policies", "Policies", "PolicyName", settings.assume_policy, {"Scope": "Local"}),
    ):
        pages = iam.get_paginator(paginator).paginate(**kwargs, PaginationConfig={"PageSize": 1000})
        item = _find_case_insensitive(pages, key, name_key, name)
        if item:
            found.append(Existing(kind, str(item[name_key]), str(item.get("Path", "/")), str(item["Arn"])))
    return found


def adoption_problems(existing: Iterable[Existing], settings: Settings) -> list[str]:
    """Why setup must not adopt what exists: the stack's policies name each baseline entity by
    the parameter's exact case (IAM matches policy resources case-sensitively), at path / for the
    role and the policy (the assume policy allows sts:AssumeRole on role/<name>); the group may
    have any path (the stack's policies name group/<name> and group/*/<name>). Each problem is one
    sentence saying which parameter value to set. Pure."""
    wanted = {"group": settings.admin_group, "role": settings.admin_role, "policy": settings.assume_policy}
    problems = []
    for entity in existing:
        parameter = PARAMETERS[entity.kind]
        if entity.name != wanted[entity.kind]:
            problems.append(f"{entity.kind} {entity.name} exists but the stack says {wanted[entity.kind]} (IAM "
                            f"policies match names case-sensitively): set {parameter}={entity.name}")
        elif entity.kind != "group" and entity.path != "/":
            problems.append(f"{entity.kind} {entity.name} exists under path {entity.path}, which the baseline's "
                            f"ARN {entity.kind}/{entity.name} does not match: set {parameter} to a name not in "
                            f"use (setup creates it at path /)")
    return problems
