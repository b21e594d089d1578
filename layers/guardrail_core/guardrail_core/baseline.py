"""The baseline, as data, and the pure decision of what to change to reach it.

One source of truth: the setup function converges the whole baseline with `plan`, and
each detector converges only the part an event touched with the same `plan` and a scope.
Nothing here calls AWS; `guardrail_core.iam_baseline` reads and applies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from guardrail_core import policy
from guardrail_core.config import ADMINISTRATOR_ACCESS_ARN, Settings

GROUP, ROLE, POLICY = "group", "role", "policy"
ALL_SCOPES = frozenset({GROUP, ROLE, POLICY})
MFA_KEY = "aws:multifactorauthpresent"


# --- desired documents -------------------------------------------------------------------


def trust_policy(settings: Settings) -> dict[str, Any]:
    """Only this account's principals, and only with MFA."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountPrincipalsWithMfa",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{settings.partition}:iam::{settings.account_id}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
            }
        ],
    }


def assume_policy_document(settings: Settings) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AssumeAdminRoleWithMfa",
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Resource": settings.admin_role_arn,
            }
        ],
    }


# --- reading documents ---------------------------------------------------------------------


def load_document(doc: Any) -> dict[str, Any]:
    """Policy documents arrive as dicts (boto3) or JSON strings (CloudTrail); {} when unreadable.

    Read through `policy.load`, the one place documents are parsed: a document past its limits
    (over 131,072 characters, IAM's own maximum, or nested deeper than `policy.MAX_DEPTH`) is
    never handed to the recursive JSON parser, so a document nested 5,000 deep is {} here, never
    a RecursionError.
    """
    try:
        return policy.load(doc)
    except policy.DocumentError:
        return {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def statements(doc: Any) -> list[Mapping[str, Any]]:
    return [s for s in _as_list(load_document(doc).get("Statement")) if isinstance(s, Mapping)]


def grants_admin(doc: Any) -> bool:
    """True when an Allow statement grants every action on every resource.

    `NotAction` with an Allow on `*` is treated as admin too: it grants everything but a few.
    """
    for stmt in statements(doc):
        if str(stmt.get("Effect", "")).lower() != "allow":
            continue
        resources = [str(r) for r in _as_list(stmt.get("Resource"))]
        if "*" not in resources:
            continue
        actions = [str(a) for a in _as_list(stmt.get("Action"))]
        if "*" in actions or "*:*" in actions or "NotAction" in stmt:
            return True
    return False


def _lower_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    return value


def trust_requires_mfa(doc: Any, settings: Settings) -> bool:
    """Every statement must be an Allow for this account's principals, demanding MFA with `Bool`, and nothing else.

    `BoolIfExists` is not enough: long-term access keys carry no MFA key at all, so
    `BoolIfExists` lets them through. A Deny statement, or any condition besides the MFA one
    (a source IP, a tag, a time), can stop the members from reaching the role: the admin path
    is then broken, and the trust is restored like a weakened one.
    """
    stmts = statements(doc)
    allows = [s for s in stmts if str(s.get("Effect", "")).lower() == "allow"]
    if not allows or len(allows) != len(stmts):
        return False
    account_prefix = f"arn:{settings.partition}:iam::{settings.account_id}:"
    for stmt in allows:
        principal = stmt.get("Principal")
        if not isinstance(principal, Mapping) or set(principal) != {"AWS"}:
            return False
        for p in _as_list(principal["AWS"]):
            if not (str(p) == settings.account_id or str(p).startswith(account_prefix)):
                return False
        condition = _lower_keys(stmt.get("Condition") or {})
        mfa = (condition.get("bool") or {}).get(MFA_KEY)
        if [str(v).lower() for v in _as_list(mfa)] != ["true"]:
            return False
        if set(condition) != {"bool"} or set(condition["bool"]) != {MFA_KEY}:
            return False
    return True


def same_document(a: Any, b: Any) -> bool:
    """Semantic equality for the small documents we write (order of keys does not matter)."""
    def norm(doc: Any) -> Any:
        doc = load_document(doc)
        out = dict(doc)
        out["Statement"] = [dict(s) for s in statements(doc)]
        return json.loads(json.dumps(out, sort_keys=True))

    return bool(norm(a)) and norm(a) == norm(b)


# --- observed state --------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRef:
    name: str
    arn: str


@dataclass
class GroupState:
    """None in a field means it was not read (a detector reads only what its event touched)."""

    name: str
    attached: list[PolicyRef] | None = None
    inline: list[str] | None = None
    # The lockout guard's answer (lockout.admin_path): None not asked yet, "" a working MFA path
    # to admin is proven, otherwise why there is none (removals are then held back).
    path_gap: str | None = None


@dataclass
class RoleState:
    name: str
    arn: str
    trust: dict[str, Any]
    max_session: int
    attached: list[PolicyRef] | None = None  # None: not read
    inline: list[str] | None = None  # inline policy names; None: not read
    boundary: str = ""  # permissions boundary ARN ('' when none): GetRole returns it


@dataclass
class PolicyState:
    name: str
    arn: str
    default_version: str
    document: dict[str, Any]
    versions: list[str] = field(default_factory=list)  # non-default version ids, oldest first


@dataclass
class Observed:
    """What was read; a part left as None with its scope not in `read` was not looked at."""

    read: frozenset[str]
    group: GroupState | None = None
    role: RoleState | None = None
    policy: PolicyState | None = None


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One IAM write that moves the account towards the baseline."""

    name: str  # human words: "Detach AdministratorAccess from group administrators"
    target: str  # ARN
    call: str  # boto3 IAM method name
    params: Mapping[str, Any]
    undo: str = ""
    removes_admin_path: bool = False  # could lock people out: guarded by the MFA-member check
    blocked: str = ""  # why this change must not be made now (the lockout guard)
    cleanup: tuple[tuple[str, Mapping[str, Any]], ...] = ()  # calls needed first (e.g. prune a version)


def _undo_attach(kind: str, name: str, arn: str) -> str:
    return f"aws iam attach-{kind}-policy --{kind}-name {name} --policy-arn {arn}"


def plan(observed: Observed, settings: Settings) -> list[Change]:
    """The ordered writes that converge the scopes in `observed.read`; [] when compliant.

    Order matters for never locking the owner out: the MFA path (policy, role, group
    attachment) is built first; removals of the group's other rights come last and are
    blocked unless the lockout guard proves a working MFA path to admin (lockout.admin_path).
    """
    changes: list[Change] = []
    group_name = observed.group.name if observed.group else settings.admin_group
    role_arn = observed.role.arn if observed.role else settings.admin_role_arn
    policy_arn = observed.policy.arn if observed.policy else settings.assume_policy_arn
    group_arn = settings.iam_arn("group", group_name)

    if POLICY in observed.read:
        desired = assume_policy_document(settings)
        if observed.policy is None:
            changes.append(Change(
                f"Create policy {settings.assume_policy} (sts:AssumeRole on {settings.admin_role} only)",
                policy_arn, "create_policy",
                {"PolicyName": settings.assume_policy, "PolicyDocument": json.dumps(desired),
                 "Description": "Lets its holders assume the MFA-protected admin role (account-guardrail)"},
                undo=f"aws iam delete-policy --policy-arn {policy_arn}",
            ))
        elif not same_document(observed.policy.document, desired):
            prune: tuple[tuple[str, Mapping[str, Any]], ...] = ()
            if len(observed.policy.versions) >= 4:  # IAM keeps at most 5 versions
                prune = (("delete_policy_version",
                          {"PolicyArn": policy_arn, "VersionId": observed.policy.versions[0]}),)
            changes.append(Change(
                f"Restore the document of policy {observed.policy.name} (new default version)",
                policy_arn, "create_policy_version",
                {"PolicyArn": policy_arn, "PolicyDocument": json.dumps(desired), "SetAsDefault": True},
                undo=f"aws iam set-default-policy-version --policy-arn {policy_arn} "
                     f"--version-id {observed.policy.default_version}",
                cleanup=prune,
            ))

    if ROLE in observed.read:
        trust = trust_policy(settings)
        if observed.role is None:
            changes.append(Change(
                f"Create role {settings.admin_role} "
                f"(MFA required, {settings.session_seconds // 60}-minute sessions)",
                role_arn, "create_role",
                {"RoleName": settings.admin_role, "AssumeRolePolicyDocument": json.dumps(trust),
                 "MaxSessionDuration": settings.session_seconds,
                 "Description": "Administrator access, only with MFA (account-guardrail)"},
                undo=f"aws iam delete-role --role-name {settings.admin_role} (detach its policies first)",
            ))
            changes.append(Change(
                f"Attach AdministratorAccess to role {settings.admin_role}", role_arn, "attach_role_policy",
                {"RoleName": settings.admin_role, "PolicyArn": ADMINISTRATOR_ACCESS_ARN},
                undo=f"aws iam detach-role-policy --role-name {settings.admin_role} "
                     f"--policy-arn {ADMINISTRATOR_ACCESS_ARN}",
            ))
        else:
            role = observed.role
            if not trust_requires_mfa(role.trust, settings):
                changes.append(Change(
                    f"Restore the trust policy of role {role.name}: this account's principals, with MFA only",
                    role_arn, "update_assume_role_policy",
                    {"RoleName": role.name, "PolicyDocument": json.dumps(trust)},
                    undo=f"aws iam update-assume-role-policy --role-name {role.name} "
                         f"--policy-document '{json.dumps(role.trust)}'",
                ))
            if role.max_session != settings.session_seconds:
                changes.append(Change(
                    f"Set the session length of role {role.name} back to {settings.session_seconds} s",
                    role_arn, "update_role",
                    {"RoleName": role.name, "MaxSessionDuration": settings.session_seconds},
                    undo=f"aws iam update-role --role-name {role.name} --max-session-duration {role.max_session}",
                ))
            if role.attached is not None and not any(p.arn == ADMINISTRATOR_ACCESS_ARN for p in role.attached):
                changes.append(Change(
                    f"Attach AdministratorAccess to role {role.name}", role_arn, "attach_role_policy",
                    {"RoleName": role.name, "PolicyArn": ADMINISTRATOR_ACCESS_ARN},
                    undo=f"aws iam detach-role-policy --role-name {role.name} --policy-arn {ADMINISTRATOR_ACCESS_ARN}",
                ))
            # The role holds AdministratorAccess and nothing else: any other policy can only narrow it
            # (a Deny), and a permissions boundary caps it; either can break the path to admin.
            if role.boundary:
                changes.append(Change(
                    f"Remove the permissions boundary {role.boundary.rsplit('/', 1)[-1]} from role {role.name}",
                    role_arn, "delete_role_permissions_boundary", {"RoleName": role.name},
                    undo=f"aws iam put-role-permissions-boundary --role-name {role.name} "
                         f"--permissions-boundary {role.boundary}",
                ))
            for ref in role.attached or []:
                if ref.arn != ADMINISTRATOR_ACCESS_ARN:
                    changes.append(Change(
                        f"Detach {ref.name} from role {role.name}", role_arn, "detach_role_policy",
                        {"RoleName": role.name, "PolicyArn": ref.arn},
                        undo=f"aws iam attach-role-policy --role-name {role.name} --policy-arn {ref.arn}",
                    ))
            for inline_name in role.inline or []:
                changes.append(Change(
                    f"Delete inline policy {inline_name} from role {role.name}", role_arn, "delete_role_policy",
                    {"RoleName": role.name, "PolicyName": inline_name},
                    undo=f"aws iam put-role-policy --role-name {role.name} --policy-name {inline_name} "
                         "--policy-document file://policy.json",
                ))

    if GROUP in observed.read:
        group = observed.group
        if group is None:
            changes.append(Change(
                f"Create group {settings.admin_group}", group_arn, "create_group",
                {"GroupName": settings.admin_group},
                undo=f"aws iam delete-group --group-name {settings.admin_group}",
            ))
        attached = group.attached if group else []
        if attached is not None and not any(p.arn.lower() == policy_arn.lower() for p in attached):
            changes.append(Change(
                f"Attach policy {settings.assume_policy} to group {group_name}", group_arn, "attach_group_policy",
                {"GroupName": group_name, "PolicyArn": policy_arn},
                undo=f"aws iam detach-group-policy --group-name {group_name} --policy-arn {policy_arn}",
            ))
        blocked = ""
        if group is not None and group.path_gap:
            blocked = (
                f"{group.path_gap}, so removing the group's other rights would lock everyone out of admin. "
                f"Enrol an MFA device for at least one member of {group_name} who has a console password or "
                f"an access key (IAM console > Users > the user > Security credentials > Assign MFA device), "
                f"then update the stack or invoke the setup function again."
            )
        for ref in attached or []:
            if ref.arn.lower() == policy_arn.lower():
                continue
            changes.append(Change(
                f"Detach {ref.name} from group {group_name}", group_arn, "detach_group_policy",
                {"GroupName": group_name, "PolicyArn": ref.arn},
                undo=_undo_attach("group", group_name, ref.arn),
                removes_admin_path=True, blocked=blocked,
            ))
        for inline_name in (group.inline or []) if group else []:
            changes.append(Change(
                f"Delete inline policy {inline_name} from group {group_name}", group_arn, "delete_group_policy",
                {"GroupName": group_name, "PolicyName": inline_name},
                undo=f"aws iam put-group-policy --group-name {group_name} --policy-name {inline_name} "
                     f"--policy-document file://<the document from the CloudTrail event>",
                removes_admin_path=True, blocked=blocked,
            ))
    return changes


def describe(changes: Iterable[Change]) -> list[str]:
    return [f"{c.name}" + (f" [held back: {c.blocked}]" if c.blocked else "") for c in changes]
