"""The lockout guard: is there a working path to admin, so that taking other rights away is safe?

A path to admin, in the baseline, is all of:

1. the admin group exists and holds the assume policy, whose default version is the baseline's
   document (sts:AssumeRole on the admin role);
2. the admin role exists, its trust lets in this account's principals only with MFA, nothing
   in it can deny that (no Deny statement in its trust or its policies, no permissions
   boundary other than AdministratorAccess), and it holds AdministratorAccess;
3. at least one member of the group has an MFA device AND can sign in: a console password
   or an active access key (an MFA device alone opens nothing).

`admin_path(facts, settings)` decides that from facts only (pure; tests call it directly).
`read_facts(iam, settings)` reads those facts concurrently in at most three rounds of calls
whatever the group's size: members beyond MEMBERS_CHECKED are not read, and when none of
those read can use the path the guard holds back and says so. Facts are read live, never
from the credential report, which IAM may serve up to 4 hours old: an MFA device removed in
that window would still count.

What the guard cannot see, and the README says so: service control policies of an
organization, and a member's own Deny policies or permissions boundary.

Sources: IAM User Guide, "Policy evaluation logic" (an explicit Deny anywhere, or a boundary,
limits what a role's AdministratorAccess allows) and "Using multi-factor authentication (MFA)
in AWS" (assuming a role with an MFA condition needs a device and credentials to sign in with).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core.aws import concurrently, is_not_found
from guardrail_core.baseline import (
    PolicyRef,
    assume_policy_document,
    load_document,
    same_document,
    statements,
    trust_requires_mfa,
)
from guardrail_core.config import ADMINISTRATOR_ACCESS_ARN, Settings

MEMBERS_CHECKED = 10  # members read per judgement: 3 calls each, all at once (30 calls at most)
ROLE_POLICIES_CHECKED = 10  # the role's other policies read for Deny statements; more: unproven

# Every IAM action read_facts may call (for the least-privilege test and the template).
READ_ACTIONS = frozenset({
    "iam:GetGroup", "iam:ListGroups", "iam:ListAttachedGroupPolicies", "iam:ListGroupPolicies",
    "iam:GetRole", "iam:ListRoles", "iam:ListAttachedRolePolicies", "iam:ListRolePolicies", "iam:GetRolePolicy",
    "iam:GetPolicy", "iam:GetPolicyVersion",
    "iam:ListMFADevices", "iam:GetLoginProfile", "iam:ListAccessKeys",
})

# Planned changes that rebuild a broken part of the path before any removal (apply() skips the
# removals when one of these fails, so the guard may count them as done).
REPAIRS = {
    "attach_group_policy": "group",
    "create_group": "group",
    "create_policy": "policy",
    "create_policy_version": "policy",
    "create_role": "role",
    "update_assume_role_policy": "trust",
    "attach_role_policy": "admin",
    # The plan strips the admin role to AdministratorAccess alone: no boundary, no other policy.
    "delete_role_permissions_boundary": "boundary",
    "detach_role_policy": "role-policies",
    "delete_role_policy": "role-policies",
}


@dataclass(frozen=True)
class Member:
    name: str
    mfa_devices: int
    console_password: bool
    active_keys: int

    @property
    def can_use_path(self) -> bool:
        return self.mfa_devices > 0 and (self.console_password or self.active_keys > 0)


@dataclass(frozen=True)
class RoleFacts:
    name: str
    arn: str
    trust: Mapping[str, Any]
    max_session: int
    attached: tuple[PolicyRef, ...]
    inline: tuple[str, ...]
    boundary_arn: str = ""
    # Documents of the role's policies other than AdministratorAccess: (label, document).
    documents: tuple[tuple[str, Mapping[str, Any]], ...] = ()
    unread: tuple[str, ...] = ()  # policies not read (over the cap): cannot prove they deny nothing


@dataclass(frozen=True)
class Facts:
    """What the guard decides from. None for a part means it does not exist."""

    group_name: str
    group_attached: tuple[PolicyRef, ...] | None  # None: the group does not exist
    group_inline: tuple[str, ...] = ()
    assume_policy_arn: str = ""
    assume_document: Mapping[str, Any] | None = None  # default version; None: the policy does not exist
    assume_default_version: str = ""
    role: RoleFacts | None = None
    members: tuple[Member, ...] = ()  # those read (at most MEMBERS_CHECKED)
    member_count: int = 0  # all members of the group
    member_names: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class PathVerdict:
    ok: bool
    reason: str  # why there is (the member who proves it) or is not a path, in owner's words

    def __bool__(self) -> bool:
        return self.ok


# --- the decision (pure) ---------------------------------------------------------------------------


def _same(a: str, b: str) -> bool:
    return bool(a) and a.lower() == b.lower()


def _denies(document: Mapping[str, Any]) -> bool:
    return any(str(s.get("Effect", "")).lower() == "deny" for s in statements(document))


def role_blocker(role: RoleFacts, settings: Settings) -> str:
    """What keeps the role from giving admin rights with MFA ('' when nothing does)."""
    if not trust_requires_mfa(role.trust, settings):
        return f"the trust policy of role {role.name} does not limit it to this account's principals with MFA"
    if _denies(role.trust):
        return f"the trust policy of role {role.name} has a Deny statement"
    if not any(_same(p.arn, ADMINISTRATOR_ACCESS_ARN) for p in role.attached):
        return f"role {role.name} does not have AdministratorAccess"
    if role.boundary_arn and not _same(role.boundary_arn, ADMINISTRATOR_ACCESS_ARN):
        return f"role {role.name} has a permissions boundary ({role.boundary_arn}) that may limit it"
    for label, document in role.documents:
        if _denies(document):
            return f"policy {label} on role {role.name} has a Deny statement that may block admin rights"
    if role.unread:
        return (f"role {role.name} has more policies than the guard reads ({len(role.unread)} unread): "
                "it cannot prove none of them denies admin rights")
    return ""


def admin_path(facts: Facts, settings: Settings, *, repairs: Iterable[str] = ()) -> PathVerdict:
    """Is there a working MFA path to admin once the planned `repairs` (boto3 IAM calls) are made?

    `repairs` are the plan's path-building changes, made before any removal; apply() skips every
    removal when one of them fails, so a part they rebuild counts as working.
    """
    fixed = {REPAIRS[r] for r in repairs if r in REPAIRS}
    group = facts.group_name or settings.admin_group
    if facts.group_attached is None and "group" not in fixed:
        return PathVerdict(False, f"group {group} does not exist")
    if "group" not in fixed and not any(_same(p.arn, facts.assume_policy_arn or settings.assume_policy_arn)
                                        for p in facts.group_attached or ()):
        return PathVerdict(False, f"group {group} does not hold policy {settings.assume_policy}")
    if "policy" not in fixed:
        if facts.assume_document is None:
            return PathVerdict(False, f"policy {settings.assume_policy} does not exist")
        if not same_document(facts.assume_document, assume_policy_document(settings)):
            return PathVerdict(False, f"policy {settings.assume_policy} is not the baseline's document "
                                      f"(sts:AssumeRole on {settings.admin_role} only)")
    if facts.role is None:
        if "role" not in fixed:
            return PathVerdict(False, f"role {settings.admin_role} does not exist")
    else:
        role = facts.role
        if "trust" in fixed:
            role = _with_baseline_trust(role, settings)
        if "admin" in fixed:
            role = _with_admin(role)
        if "boundary" in fixed:
            role = replace(role, boundary_arn="")
        if "role-policies" in fixed:
            role = replace(role, documents=(), unread=())
        blocker = role_blocker(role, settings)
        if blocker:
            return PathVerdict(False, blocker)
    ready = [m for m in facts.members if m.can_use_path]
    if ready:
        how = "a console password" if ready[0].console_password else "an active access key"
        return PathVerdict(True, f"member {ready[0].name} of group {group} has an MFA device and {how}")
    if facts.member_count == 0:
        return PathVerdict(False, f"group {group} has no members")
    with_mfa = [m.name for m in facts.members if m.mfa_devices]
    if with_mfa:
        why = (f"the members of group {group} with an MFA device ({', '.join(with_mfa[:3])}) have neither a "
               "console password nor an active access key to sign in with")
    else:
        why = f"no member of group {group} has an MFA device"
    if facts.member_count > len(facts.members):
        why += (f" (the guard reads {len(facts.members)} of the group's {facts.member_count} members; "
                "give one of the first an MFA device, or invoke the setup function after enrolling one)")
    return PathVerdict(False, why)


def _with_baseline_trust(role: RoleFacts, settings: Settings) -> RoleFacts:
    from guardrail_core.baseline import trust_policy

    return RoleFacts(role.name, role.arn, trust_policy(settings), role.max_session, role.attached, role.inline,
                     role.boundary_arn, role.documents, role.unread)


def _with_admin(role: RoleFacts) -> RoleFacts:
    attached = (*role.attached, PolicyRef("AdministratorAccess", ADMINISTRATOR_ACCESS_ARN))
    return RoleFacts(role.name, role.arn, role.trust, role.max_session, attached, role.inline,
                     role.boundary_arn, role.documents, role.unread)


# --- the adapter: read the facts concurrently, bounded --------------------------------------------


def _or_none(call: Callable[[], Any]) -> Any:
    """The call's answer, or None when the entity does not exist."""
    try:
        return call()
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def _call(method: Callable[..., Any], **params: Any) -> Callable[[], Any]:
    return lambda: _or_none(lambda: method(**params))


def _nothing() -> None:
    return None


def _find(pages: Iterable[Mapping[str, Any]], key: str, name_key: str, name: str) -> Mapping[str, Any] | None:
    for page in pages:
        for item in page.get(key, []):
            if str(item.get(name_key, "")).lower() == name.lower():
                return dict(item)
    return None


def _refs(response: Mapping[str, Any] | None) -> tuple[PolicyRef, ...]:
    # A group or role holds at most 20 managed policies: one page (100) holds them all.
    return tuple(PolicyRef(p["PolicyName"], p["PolicyArn"]) for p in (response or {}).get("AttachedPolicies", []))


def _member_reads(iam: Any, name: str) -> list[Callable[[], Any]]:
    """The three reads that tell whether a member can use the path (run them with `concurrently`)."""
    return [_call(iam.list_mfa_devices, UserName=name), _call(iam.get_login_profile, UserName=name),
            _call(iam.list_access_keys, UserName=name)]


def _member_of(name: str, devices: Any, profile: Any, keys: Any) -> Member:
    active = [k for k in (keys or {}).get("AccessKeyMetadata", []) if k.get("Status") == "Active"]
    return Member(name, len((devices or {}).get("MFADevices", [])), profile is not None, len(active))


# Warm containers: which members and which assume-policy version the last judgement found, so that
# this one reads their facts in its FIRST round, beside GetGroup and GetPolicy, instead of after
# them. Only names and a version id are remembered, never facts: every fact is read afresh, and a
# guess that GetGroup or GetPolicy contradicts is dropped and read in a second round as before.
@cache
def last_seen() -> dict[str, tuple[tuple[str, ...], str]]:
    """group name (lower) -> (the member who proved the path, else the first read; the assume policy's
    default version id). One per container (`cache_clear()` forgets it)."""
    return {}


def _guess(group: str) -> tuple[tuple[str, ...], str]:
    return last_seen().get(group.lower(), ((), ""))


def read_facts(iam: Any, settings: Settings, *, group_name: str = "", role_name: str = "") -> Facts:
    """Read what admin_path needs: round 1 everything by name; round 2 the documents and members.

    Calls: GetGroup (first page: up to 100 members), ListAttachedGroupPolicies, ListGroupPolicies,
    GetRole, ListAttachedRolePolicies, ListRolePolicies, GetPolicy (assume policy), all at once; then
    at once GetPolicyVersion, three per member read (ListMFADevices, GetLoginProfile, ListAccessKeys;
    at most MEMBERS_CHECKED members), GetRolePolicy per inline role policy and GetPolicy per other
    managed role policy; a third round (GetPolicyVersion) only for such other managed policies.
    A name that is not found is looked up case-insensitively (ListGroups/ListRoles) and read again.
    Raises what boto3 raises (throttling, AccessDenied): no verdict on a partial read.
    """
    group = group_name or settings.admin_group
    role = role_name or settings.admin_role
    arn = settings.assume_policy_arn
    guessed_members, guessed_version = _guess(group)
    first: list[Callable[[], Any]] = [
        lambda: _or_none(lambda: iam.get_group(GroupName=group, MaxItems=100)),
        lambda: _or_none(lambda: iam.list_attached_group_policies(GroupName=group)),
        lambda: _or_none(lambda: iam.list_group_policies(GroupName=group)),
        lambda: _or_none(lambda: iam.get_role(RoleName=role)),
        lambda: _or_none(lambda: iam.list_attached_role_policies(RoleName=role)),
        lambda: _or_none(lambda: iam.list_role_policies(RoleName=role)),
        lambda: _or_none(lambda: iam.get_policy(PolicyArn=arn)),
        _call(iam.get_policy_version, PolicyArn=arn, VersionId=guessed_version) if guessed_version else _nothing,
    ]
    for name in guessed_members:
        first += _member_reads(iam, name)
    answers = concurrently(first)
    got_group, attached, inline, got_role, role_attached, role_inline, policy, early_version = answers[:8]
    early_members = {name: _member_of(name, *answers[8 + 3 * i:11 + 3 * i])
                     for i, name in enumerate(guessed_members)}
    if got_group is None:
        found = _find(iam.get_paginator("list_groups").paginate(), "Groups", "GroupName", group)
        if found is not None and str(found["GroupName"]) != group:
            return read_facts(iam, settings, group_name=str(found["GroupName"]), role_name=role_name)
    if got_role is None:
        found = _find(iam.get_paginator("list_roles").paginate(), "Roles", "RoleName", role)
        if found is not None and str(found["RoleName"]) != role:
            return read_facts(iam, settings, group_name=group_name, role_name=str(found["RoleName"]))
    users = [str(u["UserName"]) for u in (got_group or {}).get("Users", [])]
    count = len(users) + (1 if (got_group or {}).get("IsTruncated") else 0)
    checked = users[:MEMBERS_CHECKED]
    role_refs = _refs(role_attached)
    others = [p for p in role_refs if not _same(p.arn, ADMINISTRATOR_ACCESS_ARN)]
    inline_names = [str(n) for n in (role_inline or {}).get("PolicyNames", [])]
    room = max(0, ROLE_POLICIES_CHECKED - len(others))
    read_inline = inline_names[:room]
    unread = [p.name for p in others[ROLE_POLICIES_CHECKED:]] + inline_names[room:]
    others = others[:ROLE_POLICIES_CHECKED]
    real_role = str((got_role or {}).get("Role", {}).get("RoleName", role))
    default = str((policy or {}).get("Policy", {}).get("DefaultVersionId", ""))
    version_known = bool(default) and default == guessed_version and early_version is not None
    # Members the first round read already stand; the second round reads the rest of the first
    # MEMBERS_CHECKED, unless one member read already proves the path (one is enough).
    proven = any(early_members[n].can_use_path for n in checked if n in early_members)
    missing = [] if proven else [n for n in checked if n not in early_members]

    second: list[Callable[[], Any]] = [
        _call(iam.get_policy_version, PolicyArn=arn, VersionId=default) if default and not version_known
        else _nothing]
    for name in missing:
        second += _member_reads(iam, name)
    second += [_call(iam.get_role_policy, RoleName=real_role, PolicyName=name) for name in read_inline]
    second += [_call(iam.get_policy, PolicyArn=ref.arn) for ref in others]
    results = concurrently(second) if any(t is not _nothing for t in second) else [None]
    version = early_version if version_known else results[0]
    read_late = {name: _member_of(name, *results[1 + 3 * i:4 + 3 * i]) for i, name in enumerate(missing)}
    members = tuple(early_members.get(n) or read_late[n] for n in checked if n in early_members or n in read_late)
    rest = results[1 + 3 * len(missing):]
    inline_docs = rest[:len(read_inline)]
    managed = rest[len(read_inline):]
    managed_docs = concurrently([
        _call(iam.get_policy_version, PolicyArn=ref.arn, VersionId=meta["Policy"]["DefaultVersionId"]) if meta
        else _nothing for ref, meta in zip(others, managed, strict=True)
    ]) if others else []

    documents = [(name, load_document((doc or {}).get("PolicyDocument")))
                 for name, doc in zip(read_inline, inline_docs, strict=True)]
    documents += [(ref.name, load_document(((doc or {}).get("PolicyVersion") or {}).get("Document")))
                  for ref, doc in zip(others, managed_docs, strict=True)]
    role_facts = None
    if got_role is not None:
        raw = got_role["Role"]
        role_facts = RoleFacts(
            name=real_role, arn=str(raw["Arn"]), trust=load_document(raw.get("AssumeRolePolicyDocument")),
            max_session=int(raw.get("MaxSessionDuration", 3600)), attached=role_refs, inline=tuple(inline_names),
            boundary_arn=str((raw.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn", "")),
            documents=tuple(documents), unread=tuple(unread),
        )
    real_group = str((got_group or {}).get("Group", {}).get("GroupName", group))
    exists = got_group is not None or attached is not None
    last_seen()[group.lower()] = (tuple(m.name for m in members if m.can_use_path)[:1] or tuple(checked[:1]),
                                 default)
    return Facts(
        group_name=real_group,
        group_attached=_refs(attached) if exists else None,
        group_inline=tuple(str(n) for n in (inline or {}).get("PolicyNames", [])),
        assume_policy_arn=str((policy or {}).get("Policy", {}).get("Arn", arn)),
        assume_document=load_document((version or {}).get("PolicyVersion", {}).get("Document"))
        if version is not None else None,
        assume_default_version=default,
        role=role_facts,
        members=members,
        member_count=count,
        member_names=tuple(users),
    )
