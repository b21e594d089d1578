"""Admin-access drift: every event type made for real on a baseline account, then judged.

Each scenario: a fresh local account in the baseline, the change made with boto3, the
function run on a realistic EventBridge event (directly, and through the template's own
rule with moto's EventBridge matcher), then the account and the email are inspected.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, baseline_account, corpus_records, envelope, load_event, retarget
from guardrail_core import admin_drift, baseline, iam_baseline
from guardrail_core.config import load_settings

FUNCTION = "AdminDriftFunction"
RULE = "AdminAccessChange"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
# The lockout guard's reads (lockout.read_facts), two rounds of concurrent calls: the group, its
# policies, the role, its policies, the assume policy; then the policy's document and, for each
# member (phoebe), her MFA devices, console password and access keys.
GUARD_READS = ["GetGroup", "ListAttachedGroupPolicies", "ListGroupPolicies", "GetRole", "ListAttachedRolePolicies",
               "ListRolePolicies", "GetPolicy", "GetPolicyVersion", "ListMFADevices", "GetLoginProfile",
               "ListAccessKeys"]
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
ASSUME_ARN = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
ALL_ON_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
S3_READ = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
IAM_WRITES = frozenset(a.split(":", 1)[1] for a in admin_drift.WRITE_ACTIONS | admin_drift.DETACH_OTHER_ACTIONS)

# Identities as CloudTrail records them (see events/*.json).
PHOEBE_CONSOLE = load_event(EVENTS_DIR / "admin-policy-attached-to-group.json")["detail"]["userIdentity"]
PHOEBE_ROLE = load_event(EVENTS_DIR / "admin-role-mfa-removed.json")["detail"]["userIdentity"]
PHOEBE_ACCESS_KEY = {"type": "IAMUser", "principalId": "AIDAEXAMPLEPHOEBE001",
                     "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/phoebe", "accountId": ACCOUNT_ID,
                     "accessKeyId": "AKIAEXAMPLEPHOEBE001", "userName": "phoebe"}
ROOT = {"type": "Root", "principalId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root",
        "accountId": ACCOUNT_ID, "accessKeyId": "ASIAEXAMPLEROOT00001",
        "sessionContext": {"attributes": {"creationDate": "2026-11-28T09:00:00Z", "mfaAuthenticated": "true"}}}


# --- helpers --------------------------------------------------------------------------------


def event(name: str, params: Any, identity: dict[str, Any] | None = None, **detail: Any) -> dict[str, Any]:
    """A realistic EventBridge event for an IAM call (shape of events/admin-role-mfa-removed.json)."""
    base = copy.deepcopy(load_event(EVENTS_DIR / "admin-role-mfa-removed.json"))
    base["id"] = str(uuid.uuid4())
    base["detail"].update(eventName=name, requestParameters=params, eventID=str(uuid.uuid4()),
                          userIdentity=copy.deepcopy(identity or PHOEBE_ROLE), **detail)
    return base


def fresh(ev: dict[str, Any]) -> dict[str, Any]:
    """The same event with new ids (another delivery would keep them; another call would not)."""
    ev = copy.deepcopy(ev)
    ev["id"] = str(uuid.uuid4())
    ev["detail"]["eventID"] = str(uuid.uuid4())
    return ev


def run(guardrail: LocalGuardrail, ev: dict[str, Any], how: str = "invoke") -> Invocation:
    """Invoke the function directly, or let the template's rules route the event to it."""
    if how == "invoke":
        inv = guardrail.invoke(FUNCTION, ev)
    else:
        rules, invocations = guardrail.dispatch(ev)
        assert [r.logical_id for r in rules] == [RULE], "the template's pattern must route this event here only"
        (inv,) = invocations
    assert inv.error is None, inv.logs
    return inv


def iam_calls(inv: Invocation) -> list[str]:
    return [c.operation for c in inv.calls if c.service == "iam"]


def iam_writes(inv: Invocation) -> list[str]:
    return [c.operation for c in inv.calls if c.service == "iam" and c.kind == "write"]


def one_email(inv: Invocation) -> tuple[str, str]:
    """The one email sent: subject, and its text with line wrapping undone."""
    (note,) = inv.notifications
    return note["subject"], " ".join(note["message"].split())


def iam() -> Any:
    return boto3.client("iam", region_name=REGION)


def account_state() -> dict[str, Any]:
    """Everything in IAM that admin rights depend on, for 'nothing else changed'."""
    client = iam()
    state: dict[str, Any] = {}
    for group in client.list_groups()["Groups"]:
        name = group["GroupName"]
        state[f"group {name}"] = (
            sorted(p["PolicyArn"] for p in client.list_attached_group_policies(GroupName=name)["AttachedPolicies"]),
            sorted(client.list_group_policies(GroupName=name)["PolicyNames"]),
            sorted(u["UserName"] for u in client.get_group(GroupName=name)["Users"]),
        )
    for user in client.list_users()["Users"]:
        name = user["UserName"]
        state[f"user {name}"] = (
            sorted(p["PolicyArn"] for p in client.list_attached_user_policies(UserName=name)["AttachedPolicies"]),
            sorted(client.list_user_policies(UserName=name)["PolicyNames"]),
            len(client.list_mfa_devices(UserName=name)["MFADevices"]),
        )
    for role in client.list_roles()["Roles"]:
        name = role["RoleName"]
        full = client.get_role(RoleName=name)["Role"]
        state[f"role {name}"] = (
            full["AssumeRolePolicyDocument"], full["MaxSessionDuration"],
            sorted(p["PolicyArn"] for p in client.list_attached_role_policies(RoleName=name)["AttachedPolicies"]),
        )
    for policy in client.list_policies(Scope="Local")["Policies"]:
        version = client.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
        state[f"policy {policy['PolicyName']}"] = version["PolicyVersion"]["Document"]
    return state


def group_policies(name: str = "administrators") -> list[str]:
    return sorted(p["PolicyName"] for p in iam().list_attached_group_policies(GroupName=name)["AttachedPolicies"])


def role_policies_now(role: str = "admin-mfa") -> tuple[list[str], list[str]]:
    client = iam()
    return (sorted(p["PolicyName"] for p in client.list_attached_role_policies(RoleName=role)["AttachedPolicies"]),
            sorted(client.list_role_policies(RoleName=role)["PolicyNames"]))


def trust() -> dict[str, Any]:
    return dict(iam().get_role(RoleName="admin-mfa")["Role"]["AssumeRolePolicyDocument"])


def settings_of(guardrail: LocalGuardrail) -> Any:
    return load_settings({**guardrail.functions[FUNCTION].environment, "AWS_REGION": REGION})


@pytest.fixture(params=["invoke", "dispatch"])
def how(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def detaching() -> Iterator[LocalGuardrail]:
    with baseline_account({"DetachOtherAdminGrants": "true"}) as local:
        yield local


# --- the admin group ---------------------------------------------------------------------------


def test_administrator_access_reattached_to_the_group_is_detached(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    ev = load_event(EVENTS_DIR / "admin-policy-attached-to-group.json")
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)

    inv = run(guardrail, ev, how)

    assert group_policies() == ["assume-admin-role"]
    assert account_state() == before
    # The lockout guard's facts (which include the group's policies: nothing read twice), then the write:
    # the MFA path works and phoebe, a member, has an MFA device and can sign in.
    assert sorted(iam_calls(inv)[:-1]) == sorted(GUARD_READS) and iam_calls(inv)[-1] == "DetachGroupPolicy"
    assert inv.calls[[c.operation for c in inv.calls].index("ListMFADevices")].params == {"UserName": "phoebe"}
    assert [c.name for c in inv.calls if c.kind == "publish"] == ["sns:Publish"]
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: AdministratorAccess attached to group administrators by phoebe")
    assert len(subject) <= 100
    for text in ("arn:aws:iam::123456789012:user/phoebe", "AttachGroupPolicy", "198.51.100.23", "MFA used: yes",
                 "[DONE] Detach AdministratorAccess from group administrators", "When:",
                 "To undo: aws iam attach-group-policy --group-name administrators",
                 "ExemptPrincipalArns", "AdminDriftMode=notify", "without MFA"):
        assert text in email, text


def test_group_named_in_other_case_is_still_the_admin_group(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    iam().attach_group_policy(GroupName="administrators", PolicyArn=READ_ONLY)
    ev = event("AttachGroupPolicy", {"groupName": "Administrators", "policyArn": READ_ONLY})

    inv = run(guardrail, ev, how)

    assert account_state() == before
    assert iam_writes(inv) == ["DetachGroupPolicy"]
    assert inv.calls[[c.operation for c in inv.calls].index("DetachGroupPolicy")].params == {
        "GroupName": "administrators", "PolicyArn": READ_ONLY}
    subject, _ = one_email(inv)
    assert "[HIGH] Undone: policy ReadOnlyAccess attached to group Administrators" in subject


def test_inline_policy_put_on_the_group_is_deleted(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    ev = load_event(EVENTS_DIR / "admin-inline-policy-put-on-group.json")
    iam().put_group_policy(GroupName="administrators", PolicyName="temporary-full-access",
                           PolicyDocument=json.dumps(ALL_ON_ALL))

    inv = run(guardrail, ev, how)

    assert iam().list_group_policies(GroupName="administrators")["PolicyNames"] == []
    assert account_state() == before
    # Made through the admin role: who assumed it, and whether they still have MFA, is unknown,
    # so the lockout guard reads the group's members.
    assert "GetGroup" in iam_calls(inv) and "ListMFADevices" in iam_calls(inv)
    assert iam_writes(inv) == ["DeleteGroupPolicy"]
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: inline policy temporary-full-access put on group administrators")
    assert "[DONE] Delete inline policy temporary-full-access from group administrators" in email


def test_assume_policy_detached_from_the_group_is_attached_again(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    ev = load_event(EVENTS_DIR / "admin-assume-policy-detached.json")
    iam().detach_group_policy(GroupName="administrators", PolicyArn=ASSUME_ARN)

    inv = run(guardrail, ev, how)

    assert account_state() == before
    assert sorted(iam_calls(inv)) == sorted(["ListAttachedGroupPolicies", "AttachGroupPolicy"])
    subject, email = one_email(inv)
    assert subject.startswith("[MEDIUM] Undone: policy assume-admin-role detached from group administrators")
    assert "cannot reach role admin-mfa" in email


def test_inline_policy_deleted_from_the_group_leaves_nothing_to_do(guardrail: LocalGuardrail, how: str) -> None:
    """Deleting rights moves towards the baseline: re-read, found compliant, no email."""
    client = iam()
    client.put_group_policy(GroupName="administrators", PolicyName="old", PolicyDocument=json.dumps(S3_READ))
    client.delete_group_policy(GroupName="administrators", PolicyName="old")
    before = account_state()

    inv = run(guardrail, event("DeleteGroupPolicy", {"groupName": "administrators", "policyName": "old"}), how)

    assert account_state() == before
    assert iam_calls(inv) == ["ListGroupPolicies"]
    assert inv.notifications == []
    assert "in the baseline after DeleteGroupPolicy" in inv.logs


# --- the admin role -------------------------------------------------------------------------------


def test_mfa_condition_removed_from_the_role_trust_is_restored(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    ev = load_event(EVENTS_DIR / "admin-role-mfa-removed.json")
    iam().update_assume_role_policy(RoleName="admin-mfa",
                                    PolicyDocument=ev["detail"]["requestParameters"]["policyDocument"])
    assert not baseline.trust_requires_mfa(trust(), settings_of(guardrail))

    inv = run(guardrail, ev, how)

    assert baseline.trust_requires_mfa(trust(), settings_of(guardrail))
    assert account_state() == before
    assert sorted(iam_calls(inv)) == sorted(["GetRole", "UpdateAssumeRolePolicy"])
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: trust policy of role admin-mfa replaced by phoebe, using role admin-mfa")
    assert "arn:aws:sts::123456789012:assumed-role/admin-mfa/phoebe" in email
    assert "no longer limits it to this account's principals signed in with MFA" in email
    assert "To undo: aws iam update-assume-role-policy --role-name admin-mfa" in email


def test_role_named_in_capitals_is_still_the_admin_role(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    open_trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"},
                                                          "Action": "sts:AssumeRole"}]}
    iam().update_assume_role_policy(RoleName="admin-mfa", PolicyDocument=json.dumps(open_trust))

    inv = run(guardrail, event("UpdateAssumeRolePolicy", {"roleName": "ADMIN-MFA",
                                                          "policyDocument": json.dumps(open_trust)}), how)

    assert account_state() == before
    assert iam_writes(inv) == ["UpdateAssumeRolePolicy"]
    assert "ListRoles" in iam_calls(inv)  # the local account (moto) is case-sensitive; IAM is not


def test_trust_edit_that_keeps_mfa_is_left_alone(guardrail: LocalGuardrail) -> None:
    """The owner may add a statement for another principal of this account, with MFA."""
    settings = settings_of(guardrail)
    edited = baseline.trust_policy(settings)
    edited["Statement"].append({**edited["Statement"][0], "Sid": "PhoebeWithMfa",
                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/phoebe"}})
    iam().update_assume_role_policy(RoleName="admin-mfa", PolicyDocument=json.dumps(edited))

    inv = run(guardrail, event("UpdateAssumeRolePolicy",
                               {"roleName": "admin-mfa", "policyDocument": json.dumps(edited)}))

    assert iam_calls(inv) == ["GetRole"] and inv.notifications == []
    assert trust() == edited


def test_longer_sessions_are_set_back(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    ev = load_event(EVENTS_DIR / "admin-role-session-lengthened.json")
    iam().update_role(RoleName="admin-mfa", MaxSessionDuration=43200)

    inv = run(guardrail, ev, how)

    assert iam().get_role(RoleName="admin-mfa")["Role"]["MaxSessionDuration"] == 3600
    assert account_state() == before
    assert sorted(iam_calls(inv)) == sorted(["GetRole", "UpdateRole"])
    subject, email = one_email(inv)
    assert subject.startswith("[MEDIUM] Undone: maximum session of role admin-mfa set to 43200 s")
    assert "AdminSessionSeconds" in email and "--max-session-duration 43200" in email


def test_administrator_access_detached_from_the_role_is_attached_again(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    iam().detach_role_policy(RoleName="admin-mfa", PolicyArn=ADMIN)

    inv = run(guardrail, event("DetachRolePolicy", {"roleName": "admin-mfa", "policyArn": ADMIN}), how)

    assert account_state() == before
    # The role's inline policies are read too: a Deny put on the admin role is drift as well.
    assert sorted(iam_calls(inv)) == sorted(
        ["GetRole", "ListAttachedRolePolicies", "ListRolePolicies", "AttachRolePolicy"])
    subject, _ = one_email(inv)
    assert subject.startswith("[MEDIUM] Undone: AdministratorAccess detached from role admin-mfa")


def test_deleted_role_is_created_again_with_mfa(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    client = iam()
    client.detach_role_policy(RoleName="admin-mfa", PolicyArn=ADMIN)
    client.delete_role(RoleName="admin-mfa")

    inv = run(guardrail, event("DeleteRole", {"roleName": "admin-mfa"}), how)

    assert account_state() == before
    assert iam_writes(inv) == ["CreateRole", "AttachRolePolicy"]
    subject, email = one_email(inv)
    assert subject.startswith("[MEDIUM] Undone: role admin-mfa deleted")
    assert "there is no MFA path to admin" in email


@pytest.mark.parametrize("name", ["AttachRolePolicy", "PutRolePolicy", "DeleteRolePolicy"])
def test_role_changes_that_keep_it_compliant_send_nothing(guardrail: LocalGuardrail, name: str, how: str) -> None:
    """Removing a policy from the admin role sends nothing; adding one (it can only narrow the role) is undone."""
    client = iam()
    params: dict[str, Any] = {"roleName": "admin-mfa"}
    if name == "AttachRolePolicy":
        client.attach_role_policy(RoleName="admin-mfa", PolicyArn=READ_ONLY)
        params["policyArn"] = READ_ONLY
    else:
        client.put_role_policy(RoleName="admin-mfa", PolicyName="deny-billing", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "aws-portal:*", "Resource": "*"}]}))
        if name == "DeleteRolePolicy":
            client.delete_role_policy(RoleName="admin-mfa", PolicyName="deny-billing")
        params["policyName"] = "deny-billing"
    before = account_state()

    inv = run(guardrail, event(name, params), how)

    if name == "DeleteRolePolicy":
        assert sorted(iam_calls(inv)) == sorted(["GetRole", "ListAttachedRolePolicies", "ListRolePolicies"])
        assert inv.notifications == [] and account_state() == before
    else:  # the baseline's role holds AdministratorAccess only: the extra policy is removed
        assert iam_writes(inv) == ["DetachRolePolicy" if name == "AttachRolePolicy" else "DeleteRolePolicy"]
        assert role_policies_now() == (["AdministratorAccess"], [])
        assert one_email(inv)[0].startswith("[MEDIUM] Undone:")


# --- the assume policy ----------------------------------------------------------------------------


def test_assume_policy_rewritten_gets_its_document_back(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    ev = load_event(EVENTS_DIR / "admin-assume-policy-rewritten.json")
    iam().create_policy_version(PolicyArn=ASSUME_ARN, PolicyDocument=json.dumps(ALL_ON_ALL), SetAsDefault=True)

    inv = run(guardrail, ev, how)

    assert account_state() == before
    assert iam_calls(inv) == ["GetPolicy", "GetPolicyVersion", "ListPolicyVersions", "CreatePolicyVersion"]
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: new version of policy assume-admin-role")
    assert "aws iam set-default-policy-version" in email


def test_older_admin_version_made_default_is_replaced(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    client = iam()
    client.create_policy_version(PolicyArn=ASSUME_ARN, PolicyDocument=json.dumps(ALL_ON_ALL), SetAsDefault=False)
    client.set_default_policy_version(PolicyArn=ASSUME_ARN, VersionId="v2")

    inv = run(guardrail, event("SetDefaultPolicyVersion", {"policyArn": ASSUME_ARN, "versionId": "v2"}), how)

    assert account_state() == before
    assert iam_writes(inv) == ["CreatePolicyVersion"]
    assert one_email(inv)[0].startswith("[HIGH] Undone: default version of policy assume-admin-role changed")


def test_full_version_history_is_pruned_before_the_restore(guardrail: LocalGuardrail) -> None:
    client = iam()
    for _ in range(4):  # IAM keeps at most 5 versions
        client.create_policy_version(PolicyArn=ASSUME_ARN, PolicyDocument=json.dumps(ALL_ON_ALL), SetAsDefault=True)

    inv = run(guardrail, event("CreatePolicyVersion", {"policyArn": ASSUME_ARN, "setAsDefault": True,
                                                       "policyDocument": json.dumps(ALL_ON_ALL)}))

    assert iam_writes(inv) == ["DeletePolicyVersion", "CreatePolicyVersion"]
    assert inv.calls[[c.operation for c in inv.calls].index("DeletePolicyVersion")].params["VersionId"] == "v1"
    default = client.get_policy(PolicyArn=ASSUME_ARN)["Policy"]["DefaultVersionId"]
    document = client.get_policy_version(PolicyArn=ASSUME_ARN, VersionId=default)["PolicyVersion"]["Document"]
    assert document == baseline.assume_policy_document(settings_of(guardrail))


def test_deleted_assume_policy_is_created_and_attached_again(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    client = iam()
    client.detach_group_policy(GroupName="administrators", PolicyArn=ASSUME_ARN)
    client.delete_policy(PolicyArn=ASSUME_ARN)

    inv = run(guardrail, event("DeletePolicy", {"policyArn": ASSUME_ARN}), how)

    assert account_state() == before
    assert iam_writes(inv) == ["CreatePolicy", "AttachGroupPolicy"]
    assert one_email(inv)[0].startswith("[MEDIUM] Undone: policy assume-admin-role deleted")


# --- admin rights granted around the role ------------------------------------------------------------


def test_administrator_access_on_a_user_is_reported_not_detached_by_default(
        guardrail: LocalGuardrail, how: str) -> None:
    ev = load_event(EVENTS_DIR / "admin-policy-attached-to-user.json")
    iam().attach_user_policy(UserName="bob", PolicyArn=ADMIN)
    before = account_state()

    inv = run(guardrail, ev, how)

    assert account_state() == before  # DetachOtherAdminGrants defaults to false
    assert iam_calls(inv) == ["ListAttachedUserPolicies"]
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Reported: AdministratorAccess attached to user bob by phoebe, using role "
                              "admin-mfa")
    assert "[NOT DONE] Detach AdministratorAccess from user bob" in email
    assert "DetachOtherAdminGrants" in email
    assert f"remove it by hand: aws iam detach-user-policy --user-name bob --policy-arn {ADMIN}" in email
    # The template grants no write outside the baseline without the parameter.
    statements = guardrail.stack.role_statements("AdminDriftRole")
    assert not any("iam:DetachUserPolicy" in _actions(s) for s in statements)


def test_administrator_access_on_a_user_is_detached_when_enabled(detaching: LocalGuardrail, how: str) -> None:
    iam().attach_user_policy(UserName="bob", PolicyArn=ADMIN)

    inv = run(detaching, load_event(EVENTS_DIR / "admin-policy-attached-to-user.json"), how)

    assert iam().list_attached_user_policies(UserName="bob")["AttachedPolicies"] == []
    # One read of the grant, then the lockout guard: the MFA path to admin is intact.
    assert sorted(iam_calls(inv)) == sorted(["ListAttachedUserPolicies", *GUARD_READS, "DetachUserPolicy"])
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: AdministratorAccess attached to user bob")
    assert "To undo: aws iam attach-user-policy --user-name bob" in email


def test_administrator_access_on_another_group_is_detached_when_enabled(detaching: LocalGuardrail, how: str) -> None:
    client = iam()
    client.create_group(GroupName="developers")
    client.add_user_to_group(GroupName="developers", UserName="bob")
    client.attach_group_policy(GroupName="developers", PolicyArn=ADMIN)

    inv = run(detaching, event("AttachGroupPolicy", {"groupName": "developers", "policyArn": ADMIN}), how)

    assert group_policies("developers") == []
    assert group_policies() == ["assume-admin-role"]
    # The grant, the group's members (none exempt), the lockout guard.
    assert sorted(iam_calls(inv)) == sorted(["ListAttachedGroupPolicies", "GetGroup", *GUARD_READS,
                                             "DetachGroupPolicy"])
    assert one_email(inv)[0].startswith("[HIGH] Undone: AdministratorAccess attached to group developers")


def test_admin_inline_policy_on_a_user_is_read_back_and_deleted_when_enabled(
        detaching: LocalGuardrail, how: str) -> None:
    iam().put_user_policy(UserName="bob", PolicyName="everything", PolicyDocument=json.dumps(ALL_ON_ALL))

    inv = run(detaching, event("PutUserPolicy", {"userName": "bob", "policyName": "everything",
                                                 "policyDocument": json.dumps(ALL_ON_ALL)}), how)

    assert iam().list_user_policies(UserName="bob")["PolicyNames"] == []
    assert sorted(iam_calls(inv)) == sorted(["GetUserPolicy", *GUARD_READS, "DeleteUserPolicy"])
    _, email = one_email(inv)
    assert "as the account holds it now: it allows every action on every resource" in email
    assert "--policy-document" in email and '"Action": "*"' in email  # the undo carries the document


def test_admin_inline_policy_on_another_group_is_reported(guardrail: LocalGuardrail, how: str) -> None:
    client = iam()
    client.create_group(GroupName="ops")
    client.put_group_policy(GroupName="ops", PolicyName="all", PolicyDocument=json.dumps(ALL_ON_ALL))

    inv = run(guardrail, event("PutGroupPolicy", {"groupName": "ops", "policyName": "all",
                                                  "policyDocument": json.dumps(ALL_ON_ALL)}), how)

    assert client.list_group_policies(GroupName="ops")["PolicyNames"] == ["all"]
    assert iam_calls(inv) == ["GetGroupPolicy"]
    assert one_email(inv)[0].startswith("[HIGH] Reported: inline policy all put on group ops")


def test_event_document_is_not_trusted_alone(guardrail: LocalGuardrail) -> None:
    """The event says admin, but the account's copy was replaced since: no alert."""
    iam().put_user_policy(UserName="bob", PolicyName="p", PolicyDocument=json.dumps(S3_READ))

    inv = run(guardrail, event("PutUserPolicy", {"userName": "bob", "policyName": "p",
                                                 "policyDocument": json.dumps(ALL_ON_ALL)}))

    assert iam_calls(inv) == ["GetUserPolicy"] and inv.notifications == []


def test_non_admin_inline_policy_costs_no_call(guardrail: LocalGuardrail) -> None:
    iam().put_user_policy(UserName="bob", PolicyName="p", PolicyDocument=json.dumps(S3_READ))

    inv = run(guardrail, event("PutUserPolicy", {"userName": "bob", "policyName": "p",
                                                 "policyDocument": json.dumps(S3_READ)}), "dispatch")

    assert iam_calls(inv) == [] and inv.notifications == []


def test_customer_policy_is_judged_by_its_default_document(guardrail: LocalGuardrail) -> None:
    client = iam()
    admin_arn = client.create_policy(PolicyName="break-everything",
                                     PolicyDocument=json.dumps(ALL_ON_ALL))["Policy"]["Arn"]
    s3_arn = client.create_policy(PolicyName="s3-read", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    client.attach_user_policy(UserName="bob", PolicyArn=admin_arn)
    client.attach_user_policy(UserName="bob", PolicyArn=s3_arn)

    admin_inv = run(guardrail, event("AttachUserPolicy", {"userName": "bob", "policyArn": admin_arn}), "dispatch")
    s3_inv = run(guardrail, event("AttachUserPolicy", {"userName": "bob", "policyArn": s3_arn}), "dispatch")

    assert iam_calls(admin_inv) == ["GetPolicy", "GetPolicyVersion", "ListAttachedUserPolicies"]
    assert one_email(admin_inv)[0].startswith("[HIGH] Reported: policy break-everything attached to user bob")
    assert iam_calls(s3_inv) == ["GetPolicy", "GetPolicyVersion"] and s3_inv.notifications == []


def test_grant_already_removed_is_not_reported(guardrail: LocalGuardrail) -> None:
    """Decided from the account: attached and detached again before the event arrived."""
    inv = run(guardrail, load_event(EVENTS_DIR / "admin-policy-attached-to-user.json"))
    assert iam_calls(inv) == ["ListAttachedUserPolicies"] and inv.notifications == []


def test_exempt_user_keeps_its_admin_grant(how: str) -> None:
    params = {"DetachOtherAdminGrants": "true", "ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:user/bob"}
    with baseline_account(params) as guardrail:
        iam().attach_user_policy(UserName="bob", PolicyArn=ADMIN)

        inv = run(guardrail, load_event(EVENTS_DIR / "admin-policy-attached-to-user.json"), how)

        attached = iam().list_attached_user_policies(UserName="bob")["AttachedPolicies"]
        assert [p["PolicyArn"] for p in attached] == [ADMIN]
        assert iam_writes(inv) == []
        subject, email = one_email(inv)
        assert subject.startswith("[HIGH] Not undone (exempt principal)")
        assert "user bob is an exempt (break-glass) principal" in email


def test_customer_policy_that_becomes_admin_while_attached_is_reported(detaching: LocalGuardrail, how: str) -> None:
    client = iam()
    arn = client.create_policy(PolicyName="helpdesk", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    client.attach_user_policy(UserName="bob", PolicyArn=arn)
    client.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALL_ON_ALL), SetAsDefault=True)

    inv = run(detaching, event("CreatePolicyVersion", {"policyArn": arn, "setAsDefault": True,
                                                       "policyDocument": json.dumps(ALL_ON_ALL)}), how)

    assert client.list_attached_user_policies(UserName="bob")["AttachedPolicies"] == []
    assert sorted(iam_calls(inv)) == sorted(["GetPolicy", "GetPolicyVersion", "ListEntitiesForPolicy", *GUARD_READS,
                             "DetachUserPolicy"])
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: new version of policy helpdesk")
    assert "user bob holds admin rights" in email


def test_policy_that_becomes_admin_on_the_admin_group_is_removed_with_the_lockout_guard(
        guardrail: LocalGuardrail) -> None:
    client = iam()
    arn = client.create_policy(PolicyName="helpdesk", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    client.attach_group_policy(GroupName="administrators", PolicyArn=arn)  # held back, or made while undeployed
    client.attach_user_policy(UserName="bob", PolicyArn=arn)
    client.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(ALL_ON_ALL), SetAsDefault=True)

    inv = run(guardrail, event("SetDefaultPolicyVersion", {"policyArn": arn, "versionId": "v2"}), "dispatch")

    # The admin group follows the baseline (remediate, guarded); bob's grant is reported only.
    assert group_policies() == ["assume-admin-role"]
    assert [p["PolicyName"] for p in client.list_attached_user_policies(UserName="bob")["AttachedPolicies"]] == [
        "helpdesk"]
    assert sorted(iam_calls(inv)) == sorted(["GetPolicy", "GetPolicyVersion", "ListEntitiesForPolicy", *GUARD_READS,
                                             "DetachGroupPolicy"])
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Partly undone: default version of policy helpdesk changed")
    assert "user bob, group administrators hold admin rights" in email
    assert "[DONE] Detach helpdesk from group administrators" in email
    assert "[NOT DONE] Detach helpdesk from user bob" in email


def test_policy_versions_that_grant_nothing_to_people_are_ignored(guardrail: LocalGuardrail) -> None:
    client = iam()
    unattached = client.create_policy(PolicyName="spare", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    client.create_policy_version(PolicyArn=unattached, PolicyDocument=json.dumps(ALL_ON_ALL), SetAsDefault=True)
    attached = client.create_policy(PolicyName="s3", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    client.attach_user_policy(UserName="bob", PolicyArn=attached)
    client.create_policy_version(PolicyArn=attached, PolicyDocument=json.dumps(ALL_ON_ALL), SetAsDefault=False)

    first = run(guardrail, event("CreatePolicyVersion", {"policyArn": unattached, "setAsDefault": True}))
    second = run(guardrail, event("CreatePolicyVersion", {"policyArn": attached, "setAsDefault": False}))

    assert iam_calls(first) == ["GetPolicy", "GetPolicyVersion"] and first.notifications == []
    assert iam_calls(second) == [] and second.notifications == []
    assert "attached to nothing" in first.logs and "not set as default" in second.logs


# --- who did it, and whether the guardrail may act -------------------------------------------------


def test_exempt_principal_is_reported_not_undone(how: str) -> None:
    with baseline_account({"ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:user/phoebe"}) as guardrail:
        iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)

        inv = run(guardrail, load_event(EVENTS_DIR / "admin-policy-attached-to-group.json"), how)

        assert group_policies() == ["AdministratorAccess", "assume-admin-role"]
        assert iam_writes(inv) == []
        subject, email = one_email(inv)
        assert subject.startswith("[HIGH] Not undone (exempt principal): AdministratorAccess attached")
        assert "[NOT DONE] Detach AdministratorAccess from group administrators" in email
        assert "exempt (break-glass) principal" in email
        assert "aws iam detach-group-policy --group-name administrators" in email  # how to undo it by hand


@pytest.mark.parametrize("parameters", [{"AdminDriftMode": "notify"}, {"KillSwitch": "on"}],
                         ids=["notify-mode", "kill-switch"])
def test_notify_mode_writes_nothing_and_holds_no_write_permission(parameters: dict[str, str]) -> None:
    with baseline_account(parameters) as guardrail:
        statements = guardrail.stack.role_statements("AdminDriftRole")
        granted = {a for s in statements for a in _actions(s) if a.startswith("iam:")}
        assert granted and not granted & {f"iam:{w}" for w in IAM_WRITES}
        before = account_state()
        ev = load_event(EVENTS_DIR / "admin-role-mfa-removed.json")
        iam().update_assume_role_policy(RoleName="admin-mfa",
                                        PolicyDocument=ev["detail"]["requestParameters"]["policyDocument"])
        drifted = account_state()

        inv = run(guardrail, ev, "dispatch")

        assert iam_writes(inv) == [] and iam_calls(inv) == ["GetRole"]
        assert account_state() == drifted != before
        subject, email = one_email(inv)
        assert subject.startswith("[HIGH] Not undone (")
        assert "the guardrail would make this change" in email
        assert "undo it by hand: aws iam update-assume-role-policy --role-name admin-mfa" in email


def test_failed_calls_get_a_low_note_and_no_iam_call(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    ev = event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMIN},
               errorCode="AccessDenied", errorMessage="User: ... is not authorized to perform: iam:AttachGroupPolicy")

    inv = run(guardrail, ev, how)

    assert iam_calls(inv) == [] and account_state() == before
    subject, email = one_email(inv)
    assert subject.startswith("[LOW] Refused: AttachGroupPolicy")
    assert "AccessDenied" in email and "Nothing changed" in email


def test_failed_calls_that_concern_no_admin_right_send_nothing(guardrail: LocalGuardrail) -> None:
    arn = iam().create_policy(PolicyName="s3", PolicyDocument=json.dumps(S3_READ))["Policy"]["Arn"]
    ev = event("AttachUserPolicy", {"userName": "bob", "policyArn": arn}, errorCode="AccessDenied")

    inv = run(guardrail, ev, "dispatch")

    assert iam_calls(inv) == [] and inv.notifications == []


def test_events_from_another_account_are_ignored(guardrail: LocalGuardrail) -> None:
    ev = load_event(EVENTS_DIR / "admin-policy-attached-to-group.json")
    ev = json.loads(json.dumps(ev).replace(ACCOUNT_ID, "210987654321"))
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)

    inv = guardrail.invoke(FUNCTION, ev)

    assert inv.result["status"] == "ignored" and "210987654321" in inv.result["reason"]
    assert iam_calls(inv) == [] and inv.notifications == []
    assert group_policies() == ["AdministratorAccess", "assume-admin-role"]


def test_changes_made_by_the_guardrail_itself_are_never_judged(guardrail: LocalGuardrail, how: str) -> None:
    """The events the guardrail's own remediation produces, replayed: no loop."""
    own_role = guardrail.stack.get_att("AdminDriftRole", "Arn")
    assert own_role.lower() in guardrail.functions[FUNCTION].environment["GUARDRAIL_ROLE_ARNS"].lower()
    identity = copy.deepcopy(PHOEBE_ROLE)
    session = "account-guardrail-admin-drift"
    identity["arn"] = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{session}/{session}"
    identity["sessionContext"]["sessionIssuer"]["arn"] = own_role
    identity["sessionContext"]["sessionIssuer"]["userName"] = "account-guardrail-admin-drift"
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)
    first = run(guardrail, load_event(EVENTS_DIR / "admin-policy-attached-to-group.json"))
    own_calls = [c for c in first.calls if c.service == "iam" and c.kind == "write"]
    assert own_calls

    for call in own_calls:  # DetachGroupPolicy, as CloudTrail would record the guardrail making it
        params = {k[0].lower() + k[1:]: v for k, v in call.params.items()}
        inv = run(guardrail, event(call.operation, params, identity), how)
        assert inv.result["status"] == "ignored" and "no loops" in inv.result["reason"]
        assert iam_calls(inv) == [] and inv.notifications == []


def test_a_duplicate_delivery_acts_and_emails_once(guardrail: LocalGuardrail) -> None:
    ev = load_event(EVENTS_DIR / "admin-policy-attached-to-group.json")
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)

    first, second = run(guardrail, ev), run(guardrail, ev, "dispatch")

    assert len(first.notifications) == 1 and second.notifications == []
    assert iam_writes(first) == ["DetachGroupPolicy"] and iam_writes(second) == []


# --- never lock everyone out ---------------------------------------------------------------------------


def _remove_phoebes_mfa() -> None:
    client = iam()
    (device,) = client.list_mfa_devices(UserName="phoebe")["MFADevices"]
    client.deactivate_mfa_device(UserName="phoebe", SerialNumber=device["SerialNumber"])
    client.delete_virtual_mfa_device(SerialNumber=device["SerialNumber"])


def test_without_a_member_with_mfa_the_groups_rights_are_held_back(guardrail: LocalGuardrail, how: str) -> None:
    _remove_phoebes_mfa()
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)
    ev = event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMIN}, PHOEBE_ACCESS_KEY)

    inv = run(guardrail, ev, how)

    assert group_policies() == ["AdministratorAccess", "assume-admin-role"]
    # The guard's facts, read once: no member has an MFA device.
    assert sorted(iam_calls(inv)) == sorted(GUARD_READS)
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Held back (lockout guard)")
    assert "would lock everyone out" in email and "Enrol an MFA device" in email


def test_a_no_op_reattach_while_held_back_stays_held_back(how: str) -> None:
    """Setup held the group's AdministratorAccess back (no member has MFA). Attaching it again changes
    nothing; a caller without MFA proves no other way to admin, so the guard reads and holds back."""
    with baseline_account(converge=False) as guardrail:
        _remove_phoebes_mfa()
        setup = guardrail.invoke("SetupFunction", {})
        assert "lockout" in json.dumps(setup.result)
        iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)  # already there: a no-op

        inv = run(guardrail, event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMIN},
                                   PHOEBE_ACCESS_KEY), how)

        assert group_policies() == ["AdministratorAccess", "assume-admin-role"]
        assert iam_writes(inv) == []


@pytest.mark.parametrize("identity", [ROOT, PHOEBE_ACCESS_KEY, PHOEBE_CONSOLE],
                         ids=["root", "keys", "console-mfa"])
def test_every_caller_takes_the_guards_reads(guardrail: LocalGuardrail, identity: dict[str, Any]) -> None:
    """No shortcut on the event's word: whoever the caller, the guard's facts decide."""
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)

    inv = run(guardrail, event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMIN}, identity))

    assert sorted(iam_calls(inv)) == sorted([*GUARD_READS, "DetachGroupPolicy"])
    assert group_policies() == ["assume-admin-role"]


def test_other_rights_on_the_group_are_not_removed_on_the_events_word(guardrail: LocalGuardrail) -> None:
    """Only what this event added skips the guard's reads; anything else found is guarded."""
    client = iam()
    client.attach_group_policy(GroupName="administrators", PolicyArn=READ_ONLY)
    client.attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)

    inv = run(guardrail, load_event(EVENTS_DIR / "admin-policy-attached-to-group.json"))

    assert sorted(iam_calls(inv)[:len(GUARD_READS)]) == sorted(GUARD_READS)
    assert sorted(iam_writes(inv)) == ["DetachGroupPolicy", "DetachGroupPolicy"]
    assert group_policies() == ["assume-admin-role"]


SSO_ADMIN: dict[str, Any] = {"type": "AssumedRole", "principalId": "AROAEXAMPLESSO:carol",
             "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/AWSReservedSSO_AdministratorAccess_1a2b/carol",
             "accountId": ACCOUNT_ID, "sessionContext": {"sessionIssuer": {
                 "type": "Role", "principalId": "AROAEXAMPLESSO", "accountId": ACCOUNT_ID,
                 "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/aws-reserved/sso.amazonaws.com/"
                        "AWSReservedSSO_AdministratorAccess_1a2b"}}}



def test_an_mfa_session_in_the_event_is_no_proof_the_device_still_exists(guardrail: LocalGuardrail) -> None:
    """Phoebe attaches AdministratorAccess from an MFA session, then removes her only MFA device
    before the event is judged: the group's AdministratorAccess is now the only way in."""
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)
    _remove_phoebes_mfa()

    inv = run(guardrail, load_event(EVENTS_DIR / "admin-policy-attached-to-group.json"))

    assert iam_writes(inv) == [] and "AdministratorAccess" in group_policies()
    assert one_email(inv)[0].startswith("[HIGH] Held back (lockout guard)")


def test_a_caller_outside_the_group_proves_nothing_about_the_groups_last_way_in(guardrail: LocalGuardrail,
                                                                                 how: str) -> None:
    """Issue 13 (1): the old caller shortcut ("an SSO admin keeps a way in") removed the group's last
    way in. Phoebe, the only member, has no MFA device: the group's AdministratorAccess stays."""
    _remove_phoebes_mfa()
    iam().attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)

    inv = run(guardrail, event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMIN},
                               SSO_ADMIN), how)

    assert iam_writes(inv) == [] and "AdministratorAccess" in group_policies()
    assert one_email(inv)[0].startswith("[HIGH] Held back (lockout guard)")


# --- the template's rule, with real records ----------------------------------------------------------


ROUTED = {  # every corpus record of these calls -> should the admin-drift rule match it?
    "raw/stratus-red-team/AttachUserPolicy-1.json": True,  # AdministratorAccess to a user
    "raw/panther-analysis/AttachUserPolicy-1.json": True,  # AdministratorAccess to a user
    "raw/panther-analysis/AttachUserPolicy-2.json": False,  # ReadOnlyAccess (AWS-managed, not admin)
    "raw/panther-analysis/AttachUserPolicy-3.json": False,  # AWSCompromisedKeyQuarantineV2
    "raw/stratus-red-team/AttachRolePolicy-1.json": True,  # AdministratorAccess on any role: who may assume it?
    "raw/panther-analysis/AttachRolePolicy-1.json": False,  # an AWS-managed policy outside the list
    "raw/panther-analysis/AttachRolePolicy-2.json": False,
    "raw/panther-analysis/AttachRolePolicy-3.json": True,  # AdministratorAccess to role new-role
    "raw/panther-analysis/AttachRolePolicy-4.json": False,
    "raw/stratus-red-team/UpdateAssumeRolePolicy-1.json": True,  # any role's new trust: people let in?
    "raw/panther-analysis/UpdateAssumeRolePolicy-1.json": True,  # (roleName not recorded: judged, nothing found)
    "raw/panther-analysis/UpdateAssumeRolePolicy-2.json": True,
    "raw/panther-analysis/UpdateAssumeRolePolicy-3.json": True,
    "raw/panther-analysis/PutUserPolicy-1.json": True,  # inline documents are judged by the function
    "raw/panther-analysis/PutUserPolicy-2.json": True,
    "raw/panther-analysis/PutUserPolicy-3.json": True,  # (requestParameters null: judged, nothing found)
    "raw/panther-analysis/PutUserPolicy-4.json": True,
    "raw/panther-analysis/DeleteGroupPolicy-1.json": False,  # group "group", not the admin group
    "raw/panther-analysis/DeleteGroupPolicy-2.json": False,
    "raw/stratus-red-team/CreateUser-1.json": False,
    "raw/panther-analysis/CreateUser-1.json": False,
    "raw/awsdocs-cloudtrail-user-guide/AddUserToGroup-1.json": True,  # the group's rights are read
    "raw/stratus-red-team/CreateRole-1.json": False,
    "raw/panther-analysis/GetGroupPolicy-1.json": False,  # reads never
}
WATCHED = ("AttachUserPolicy", "AttachRolePolicy", "UpdateAssumeRolePolicy", "PutUserPolicy", "DeleteGroupPolicy")


def _corpus() -> dict[str, dict[str, Any]]:
    names = {f.split("/")[-1].rsplit("-", 1)[0] for f in ROUTED}
    return {f: r for n in names for f, r in corpus_records(n)}


def test_the_table_covers_every_corpus_record_of_the_watched_calls() -> None:
    assert {f for n in WATCHED for f, _ in corpus_records(n)} <= set(ROUTED)


@pytest.mark.parametrize("path", sorted(ROUTED))
def test_corpus_records_match_the_rule_only_when_they_should(path: str) -> None:
    record = _corpus()[path]
    # IAM records its events in us-east-1 (the corpus' regions are anonymised): route them there.
    rules = [r.logical_id for r in LocalGuardrail().route(envelope(record, region="us-east-1"))
             if r.function == FUNCTION]
    assert (rules == [RULE]) is ROUTED[path]


@pytest.mark.parametrize(("field", "value"), [("roleName", "admin-mfa"), ("roleName", "ADMIN-MFA"),
                                              ("roleName", "Admin-Mfa")])
def test_real_records_on_the_admin_role_match_in_any_case(field: str, value: str) -> None:
    (_, record), = [(f, r) for f, r in corpus_records("UpdateAssumeRolePolicy") if "stratus" in f]
    record = copy.deepcopy(record)
    record["requestParameters"][field] = value
    assert [r.logical_id for r in LocalGuardrail().route(envelope(record, region="us-east-1"))] == [RULE]


@pytest.mark.parametrize("group", ["administrators", "Administrators", "ADMINISTRATORS"])
def test_admin_group_events_match_in_any_case(group: str) -> None:
    for name, arn in (("AttachGroupPolicy", READ_ONLY), ("DetachGroupPolicy", ASSUME_ARN)):
        ev = event(name, {"groupName": group, "policyArn": arn})
        assert [r.logical_id for r in LocalGuardrail().route(ev)] == [RULE]
    other = event("DetachGroupPolicy", {"groupName": "administrators-old", "policyArn": ASSUME_ARN})
    assert LocalGuardrail().route(other) == []


@pytest.mark.parametrize(("arn", "matched"), [
    (ADMIN, True), ("arn:aws:iam::aws:policy/administratoraccess", True),
    (READ_ONLY, False), ("arn:aws:iam::aws:policy/job-function/SystemAdministrator", False),
    (f"arn:aws:iam::{ACCOUNT_ID}:policy/anything", True),
])
def test_attachments_to_other_principals_match_only_when_they_may_grant_admin(arn: str, matched: bool) -> None:
    for name, target in (("AttachUserPolicy", {"userName": "bob"}), ("AttachGroupPolicy", {"groupName": "ops"})):
        routed = LocalGuardrail().route(event(name, {**target, "policyArn": arn}))
        assert bool(routed) is matched, (name, arn)


def test_every_event_file_routes_to_this_function_only() -> None:
    local = LocalGuardrail()
    files = sorted(EVENTS_DIR.glob("admin-*.json"))
    assert {f.name for f in files} >= {"admin-policy-attached-to-group.json", "admin-role-mfa-removed.json"}
    for path in files:
        assert [(r.logical_id, r.function) for r in local.route(load_event(path))] == [(RULE, FUNCTION)], path.name


def test_a_real_attack_record_is_judged_end_to_end(guardrail: LocalGuardrail) -> None:
    """Stratus Red Team's AttachUserPolicy (AdministratorAccess to a new user), moved into this account."""
    (_, record), = [(f, r) for f, r in corpus_records("AttachUserPolicy") if "stratus" in f]
    record = retarget(record)
    user = record["requestParameters"]["userName"]
    iam().create_user(UserName=user)
    iam().attach_user_policy(UserName=user, PolicyArn=ADMIN)

    inv = run(guardrail, envelope(record), "dispatch")

    subject, email = one_email(inv)
    assert subject.startswith(f"[HIGH] Reported: AdministratorAccess attached to user {user}")
    assert "IAM user christophe made this change" in email  # plain words first
    assert f"Principal: arn:aws:iam::{ACCOUNT_ID}:user/christophe" in email  # the ARN below, under WHO


@pytest.mark.parametrize("params", [
    None, {}, {"groupName": 5, "policyArn": ADMIN}, {"groupName": "administrators", "policyArn": None},
    {"groupName": "administrators", "policyArn": ["x"]}, {"userName": "bob", "policyDocument": {"Statement": 3}},
    {"userName": "bob", "policyName": "p", "policyDocument": "not json"},
], ids=["null", "empty", "int-name", "null-arn", "list-arn", "odd-document", "bad-json"])
def test_odd_request_parameters_never_crash_or_write(guardrail: LocalGuardrail, params: Any) -> None:
    before = account_state()
    for name in ("AttachGroupPolicy", "PutUserPolicy", "UpdateAssumeRolePolicy", "CreatePolicyVersion"):
        inv = guardrail.invoke(FUNCTION, event(name, params))
        assert inv.error is None, inv.logs
        assert iam_writes(inv) == []
    assert account_state() == before


# --- least privilege -------------------------------------------------------------------------------------


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement.get("Action", [])
    return [actions] if isinstance(actions, str) else list(actions)


def test_role_grants_exactly_what_the_code_calls_and_writes_only_on_the_baseline() -> None:
    stack = Stack()
    statements = stack.role_statements("AdminDriftRole")
    iam_statements = [s for s in statements if any(a.startswith("iam:") for a in _actions(s))]
    granted = {a for s in iam_statements for a in _actions(s)}
    assert granted == admin_drift.READ_ACTIONS | admin_drift.WRITE_ACTIONS
    writes = [s for s in iam_statements if set(_actions(s)) & admin_drift.WRITE_ACTIONS]
    baseline_arns = {f"arn:aws:iam::{ACCOUNT_ID}:group/administrators", f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa",
                     f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role",
                     f"arn:aws:iam::{ACCOUNT_ID}:group/*/administrators"}  # the admin group under a path
    for statement in writes:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert set(resources) <= baseline_arns, statement
    detaching = Stack(parameters={"DetachOtherAdminGrants": "true"}).role_statements("AdminDriftRole")
    extra = {a for s in detaching for a in _actions(s)} - {a for s in statements for a in _actions(s)}
    # (DetachRolePolicy/DeleteRolePolicy are granted without it too, on the admin role only: it holds
    # AdministratorAccess and nothing else.)
    assert extra == {"iam:DetachUserPolicy", "iam:DeleteUserPolicy"}
    # (The only-from-its-function Deny, on "*" with a condition, is tests/test_self_protection.py's.)
    denied = [s for s in detaching if s.get("Effect") == "Deny" and "Condition" not in s]
    assert {r for s in denied for r in s["Resource"]} == {f"arn:aws:iam::{ACCOUNT_ID}:role/account-guardrail/*",
                                                          f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/*"}
    assert {a for s in detaching for a in _actions(s)} >= admin_drift.DETACH_OTHER_ACTIONS
    assert iam_baseline.READ_ACTIONS <= admin_drift.READ_ACTIONS


# --- DetachOtherAdminGrants: never the last way in, never a break-glass user's group ---------------


def test_a_grant_is_held_back_when_no_admin_member_has_mfa(detaching: LocalGuardrail, how: str) -> None:
    """Bob's AdministratorAccess may be the only way to admin left: removing it could lock everyone out."""
    _remove_phoebes_mfa()
    iam().attach_user_policy(UserName="bob", PolicyArn=ADMIN)

    inv = run(detaching, event("AttachUserPolicy", {"userName": "bob", "policyArn": ADMIN}), how)

    assert [p["PolicyArn"] for p in iam().list_attached_user_policies(UserName="bob")["AttachedPolicies"]] == [ADMIN]
    assert iam_writes(inv) == []
    [action] = inv.result["actions"]
    assert action["status"] == "skipped"
    assert action["detail"].startswith("held back to avoid a lockout: no member of group administrators has an "
                                       "MFA device")
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Held back (lockout guard): AdministratorAccess attached to user bob")
    assert "First repair the MFA path to admin" in " ".join(email.split())


def test_a_grant_is_held_back_when_the_admin_role_lacks_administrator_access(detaching: LocalGuardrail) -> None:
    client = iam()
    client.detach_role_policy(RoleName="admin-mfa", PolicyArn=ADMIN)
    client.put_user_policy(UserName="bob", PolicyName="everything", PolicyDocument=json.dumps(ALL_ON_ALL))

    inv = detaching.invoke("AdminDriftFunction",
                           event("PutUserPolicy", {"userName": "bob", "policyName": "everything"}))

    assert client.list_user_policies(UserName="bob")["PolicyNames"] == ["everything"]
    assert iam_writes(inv) == []
    [action] = inv.result["actions"]
    assert action["detail"] == ("held back to avoid a lockout: role admin-mfa does not have AdministratorAccess; "
                                "this grant may be the only way to admin")


def test_a_grant_is_held_back_when_the_admin_group_lost_the_assume_policy(detaching: LocalGuardrail) -> None:
    client = iam()
    arn = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
    client.detach_group_policy(GroupName="administrators", PolicyArn=arn)
    client.attach_user_policy(UserName="bob", PolicyArn=ADMIN)

    inv = detaching.invoke("AdminDriftFunction", event("AttachUserPolicy", {"userName": "bob", "policyArn": ADMIN}))

    assert iam_writes(inv) == []
    assert inv.result["actions"][0]["detail"].startswith(
        "held back to avoid a lockout: group administrators does not hold policy assume-admin-role")


def test_a_group_grant_is_kept_when_an_exempt_user_is_a_member(how: str) -> None:
    """Break-glass user in a group holding admin: detaching from the group would strip the user too."""
    # Exempt ARN in other case: IAM names and ARNs are case-insensitive.
    with baseline_account({"DetachOtherAdminGrants": "true",
                           "ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:user/BreakGlass"}) as local:
        client = iam()
        client.create_user(UserName="breakglass", Path="/emergency/")
        client.create_group(GroupName="emergency")
        client.add_user_to_group(GroupName="emergency", UserName="bob")
        client.add_user_to_group(GroupName="emergency", UserName="breakglass")
        client.attach_group_policy(GroupName="emergency", PolicyArn=ADMIN)

        inv = run(local, event("AttachGroupPolicy", {"groupName": "emergency", "policyArn": ADMIN}), how)

        assert group_policies("emergency") == ["AdministratorAccess"]
        assert iam_writes(inv) == []
        [action] = inv.result["actions"]
        assert action["status"] == "skipped"
        assert action["detail"].startswith("exempt member user breakglass of group emergency")
        subject, _ = one_email(inv)
        assert subject.startswith("[HIGH] Not undone (exempt principal): AdministratorAccess attached to group")


def test_a_group_grant_is_kept_when_the_group_itself_is_exempt() -> None:
    with baseline_account({"DetachOtherAdminGrants": "true",
                           "ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:group/Emergency"}) as local:
        client = iam()
        client.create_group(GroupName="emergency")
        client.attach_group_policy(GroupName="emergency", PolicyArn=ADMIN)

        inv = local.invoke("AdminDriftFunction",
                           event("AttachGroupPolicy", {"groupName": "emergency", "policyArn": ADMIN}))

        assert group_policies("emergency") == ["AdministratorAccess"]
        assert iam_writes(inv) == []
        assert inv.result["actions"][0]["detail"].startswith("exempt member group emergency")
