"""Every path to standing admin (issue 12): each example of its "Why", played on one local account.

Each test makes the attacker's calls for real (boto3 on moto), runs the function on the event
CloudTrail would record for each call (directly, and through the template's rules), and ends
with the account in the baseline (remediation on) or with the alert (reported only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_admin_drift import (
    ADMIN,
    ALL_ON_ALL,
    PHOEBE_ACCESS_KEY,
    PHOEBE_ROLE,
    account_state,
    event,
    group_policies,
    how,
    iam,
    iam_writes,
    one_email,
    run,
)

from guardrail_cli.local import ACCOUNT_ID, LocalGuardrail
from guardrail_cli.testing import baseline_account

BOB_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/bob"}, "Action": "sts:AssumeRole"}]}
LAMBDA_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
MFA_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole",
    "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}
# The admin-mfa session of an administrator who signed in with MFA (events/admin-role-mfa-removed.json).
ADMIN_SESSION = PHOEBE_ROLE
__all__ = ["how"]  # the fixture, shared with test_admin_drift


@pytest.fixture
def detaching() -> Iterator[LocalGuardrail]:
    with baseline_account({"DetachOtherAdminGrants": "true"}) as local:
        yield local


def role_policies(name: str) -> list[str]:
    return sorted(p["PolicyName"] for p in iam().list_attached_role_policies(RoleName=name)["AttachedPolicies"])


# --- example 1: a role trusting bob, then AdministratorAccess on it ---------------------------------


def test_a_role_bob_can_assume_that_gets_administrator_access_is_caught_and_detached(
        detaching: LocalGuardrail, how: str) -> None:
    before = account_state()
    iam().create_role(RoleName="ops-automation", AssumeRolePolicyDocument=json.dumps(BOB_TRUST))
    if how == "dispatch":  # CreateRole itself gives no rights: the template does not route it
        rules, _ = detaching.dispatch(event("CreateRole", {"roleName": "ops-automation",
                                                           "assumeRolePolicyDocument": json.dumps(BOB_TRUST)}))
        assert rules == []
    iam().attach_role_policy(RoleName="ops-automation", PolicyArn=ADMIN)

    inv = run(detaching, event("AttachRolePolicy", {"roleName": "ops-automation", "policyArn": ADMIN},
                               PHOEBE_ACCESS_KEY), how)

    assert role_policies("ops-automation") == []  # the policy is removed; the role is kept
    iam().delete_role(RoleName="ops-automation")
    assert account_state() == before
    assert iam_writes(inv) == ["DetachRolePolicy"]
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: AdministratorAccess attached to role ops-automation by phoebe")
    for text in ("role ops-automation (which user bob can assume without MFA) holds admin rights",
                 "[DONE] Detach AdministratorAccess from role ops-automation",
                 "To undo: aws iam attach-role-policy --role-name ops-automation",
                 "treat IAM user phoebe as compromised"):
        assert text in email, text


def test_a_role_trust_opened_to_people_after_it_got_admin_is_caught(guardrail: LocalGuardrail, how: str) -> None:
    """The other order: admin on a Lambda role (not a path for people), then the trust opened to bob."""
    client = iam()
    client.create_role(RoleName="worker", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST))
    client.put_role_policy(RoleName="worker", PolicyName="all", PolicyDocument=json.dumps(ALL_ON_ALL))
    quiet = run(guardrail, event("PutRolePolicy", {"roleName": "worker", "policyName": "all",
                                                   "policyDocument": json.dumps(ALL_ON_ALL)}), how)
    assert quiet.notifications == []
    assert "trusted only by lambda.amazonaws.com" in quiet.logs

    client.update_assume_role_policy(RoleName="worker", PolicyDocument=json.dumps(BOB_TRUST))
    inv = run(guardrail, event("UpdateAssumeRolePolicy", {"roleName": "worker",
                                                          "policyDocument": json.dumps(BOB_TRUST)}), how)

    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Reported: trust policy of role worker replaced")
    assert "role worker (which user bob can assume without MFA) holds admin rights" in email
    assert "DetachOtherAdminGrants is false" in email
    assert client.list_role_policies(RoleName="worker")["PolicyNames"] == ["all"]  # reported only


@pytest.mark.parametrize(("trust", "who"), [
    ({"AWS": "arn:aws:iam::210987654321:root"}, "account 210987654321"),
    ("*", "anyone (Principal *)"),
    ({"AWS": ACCOUNT_ID}, "any user or role of this account"),
    ({"Federated": f"arn:aws:iam::{ACCOUNT_ID}:saml-provider/okta"}, "federated provider okta"),
])
def test_every_kind_of_human_trust_counts(guardrail: LocalGuardrail, trust: Any, who: str) -> None:
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": trust,
                                                  "Action": ["sts:AssumeRole", "sts:AssumeRoleWithSAML"]}]}
    iam().create_role(RoleName="outside", AssumeRolePolicyDocument=json.dumps(doc))
    iam().attach_role_policy(RoleName="outside", PolicyArn="arn:aws:iam::aws:policy/IAMFullAccess")

    inv = run(guardrail, event("AttachRolePolicy", {"roleName": "outside",
                                                    "policyArn": "arn:aws:iam::aws:policy/IAMFullAccess"}))

    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Reported: policy IAMFullAccess attached to role outside")
    assert f"which {who}" in email
    assert "a way to take admin rights (privilege escalation)" in email


@pytest.mark.parametrize("trust", [LAMBDA_TRUST, MFA_TRUST])
def test_roles_only_services_or_mfa_principals_can_assume_are_not_a_path(
        detaching: LocalGuardrail, trust: dict[str, Any]) -> None:
    iam().create_role(RoleName="svc", AssumeRolePolicyDocument=json.dumps(trust))
    iam().attach_role_policy(RoleName="svc", PolicyArn=ADMIN)

    inv = run(detaching, event("AttachRolePolicy", {"roleName": "svc", "policyArn": ADMIN}))

    assert inv.notifications == [] and iam_writes(inv) == []
    assert role_policies("svc") == ["AdministratorAccess"]
    assert "role not a path for people" in inv.logs


def test_an_exempt_role_keeps_its_grant(how: str) -> None:
    with baseline_account({"DetachOtherAdminGrants": "true",
                           "ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:role/break-glass"}) as local:
        iam().create_role(RoleName="break-glass", AssumeRolePolicyDocument=json.dumps(BOB_TRUST))
        iam().attach_role_policy(RoleName="break-glass", PolicyArn=ADMIN)

        inv = run(local, event("AttachRolePolicy", {"roleName": "break-glass", "policyArn": ADMIN}), how)

        assert role_policies("break-glass") == ["AdministratorAccess"]
        assert iam_writes(inv) == []
        assert "exempt (break-glass) principal" in one_email(inv)[1]


# --- example 2: Action * with NotResource on bob ---------------------------------------------------


def test_not_resource_admin_on_a_user_is_detected_and_removed(detaching: LocalGuardrail, how: str) -> None:
    before = account_state()
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*",
                                                  "NotResource": "arn:aws:s3:::x"}]}
    iam().put_user_policy(UserName="bob", PolicyName="almost", PolicyDocument=json.dumps(doc))

    inv = run(detaching, event("PutUserPolicy", {"userName": "bob", "policyName": "almost",
                                                 "policyDocument": json.dumps(doc)}), how)

    assert account_state() == before
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: inline policy almost put on user bob")
    assert "it allows every action on every resource" in email


def test_an_escalation_policy_on_a_user_is_reported(guardrail: LocalGuardrail, how: str) -> None:
    doc = {"Version": "2012-10-17", "Statement": [{"Sid": "SelfService", "Effect": "Allow",
                                                  "Action": "iam:Put*", "Resource": "*"}]}
    iam().put_user_policy(UserName="bob", PolicyName="self-service", PolicyDocument=json.dumps(doc))

    inv = run(guardrail, event("PutUserPolicy", {"userName": "bob", "policyName": "self-service",
                                                 "policyDocument": json.dumps(doc)}), how)

    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Reported: inline policy self-service put on user bob")
    assert "write any inline policy on a user" in email
    assert "(statement SelfService)" in email


# --- example 3: the admin group renamed away, given admin, renamed back -------------------------------


def test_renaming_the_admin_group_away_and_back_ends_in_the_baseline(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    client = iam()
    client.update_group(GroupName="administrators", NewGroupName="ops")
    away = run(guardrail, event("UpdateGroup", {"groupName": "administrators", "newGroupName": "ops"}), how)
    subject, email = one_email(away)
    assert subject.startswith("[HIGH] Reported: admin group administrators renamed to ops")
    assert "aws iam update-group --group-name ops --new-group-name administrators" in email

    client.attach_group_policy(GroupName="ops", PolicyArn=ADMIN)
    granted = run(guardrail, event("AttachGroupPolicy", {"groupName": "ops", "policyArn": ADMIN}), how)
    assert one_email(granted)[0].startswith("[HIGH] Reported: AdministratorAccess attached to group ops")

    client.update_group(GroupName="ops", NewGroupName="administrators")
    back = run(guardrail, event("UpdateGroup", {"groupName": "ops", "newGroupName": "administrators"}), how)

    assert group_policies() == ["assume-admin-role"]
    assert account_state() == before
    assert iam_writes(back) == ["DetachGroupPolicy"]
    assert one_email(back)[0].startswith("[HIGH] Undone: group ops renamed to administrators")


def test_renames_of_other_groups_are_ignored(guardrail: LocalGuardrail) -> None:
    iam().create_group(GroupName="dev")
    iam().update_group(GroupName="dev", NewGroupName="developers")
    inv = run(guardrail, event("UpdateGroup", {"groupName": "dev", "newGroupName": "developers"}))
    assert inv.notifications == [] and iam_writes(inv) == []


# --- example 4: a password-only user added to a group that holds AdministratorAccess ------------------


def test_adding_a_user_to_an_admin_group_is_caught_and_the_grant_removed(detaching: LocalGuardrail, how: str) -> None:
    client = iam()
    client.create_group(GroupName="legacy-admins")
    client.attach_group_policy(GroupName="legacy-admins", PolicyArn=ADMIN)  # before anyone was in it
    client.add_user_to_group(GroupName="legacy-admins", UserName="bob")

    inv = run(detaching, event("AddUserToGroup", {"groupName": "legacy-admins", "userName": "bob"}), how)

    assert client.list_attached_group_policies(GroupName="legacy-admins")["AttachedPolicies"] == []
    subject, email = one_email(inv)
    assert subject.startswith("[HIGH] Undone: user bob added to group legacy-admins")
    assert "so user bob now has those rights, without MFA" in email


def test_adding_a_user_to_an_ordinary_group_sends_nothing(guardrail: LocalGuardrail) -> None:
    iam().create_group(GroupName="readers")
    iam().attach_group_policy(GroupName="readers", PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
    iam().add_user_to_group(GroupName="readers", UserName="bob")
    inv = run(guardrail, event("AddUserToGroup", {"groupName": "readers", "userName": "bob"}), "dispatch")
    assert inv.notifications == []
    assert "holds no admin or escalation rights" in inv.logs


# --- example 5: a Deny-only policy on the admin group ---------------------------------------------------


def test_a_deny_only_policy_on_the_admin_group_is_removed_with_truthful_words(guardrail: LocalGuardrail,
                                                                              how: str) -> None:
    before = account_state()
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:DeleteBucket",
                                                   "Resource": "*"}]}
    arn = iam().create_policy(PolicyName="no-bucket-deletes", PolicyDocument=json.dumps(deny))["Policy"]["Arn"]
    before = account_state()
    iam().attach_group_policy(GroupName="administrators", PolicyArn=arn)

    inv = run(guardrail, event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": arn},
                               ADMIN_SESSION), how)

    assert account_state() == before
    subject, email = one_email(inv)
    assert subject.startswith("[MEDIUM] Undone: policy no-bucket-deletes attached to group administrators")
    assert "it only denies: it gives nobody any right" in email
    assert "without MFA" not in email
    assert "compromised" not in email
    assert "MFA-authenticated session of role admin-mfa" in email


# --- the admin path itself broken ------------------------------------------------------------------------


def test_a_permissions_boundary_on_the_admin_role_is_removed(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    deny_all = "arn:aws:iam::aws:policy/AWSDenyAll"
    iam().put_role_permissions_boundary(RoleName="admin-mfa", PermissionsBoundary=deny_all)

    inv = run(guardrail, event("PutRolePermissionsBoundary", {"roleName": "admin-mfa",
                                                              "permissionsBoundary": deny_all}), how)

    assert "PermissionsBoundary" not in iam().get_role(RoleName="admin-mfa")["Role"]
    assert account_state() == before
    assert iam_writes(inv) == ["DeleteRolePermissionsBoundary"]
    subject, email = one_email(inv)
    assert subject.startswith("[MEDIUM] Undone: permissions boundary AWSDenyAll set on role admin-mfa")
    assert "caps what the admin role may do" in email


def test_a_deny_policy_on_the_admin_role_is_removed(guardrail: LocalGuardrail, how: str) -> None:
    before = account_state()
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "iam:*", "Resource": "*"}]}
    iam().put_role_policy(RoleName="admin-mfa", PolicyName="no-iam", PolicyDocument=json.dumps(deny))

    inv = run(guardrail, event("PutRolePolicy", {"roleName": "admin-mfa", "policyName": "no-iam",
                                                 "policyDocument": json.dumps(deny)}), how)

    assert iam().list_role_policies(RoleName="admin-mfa")["PolicyNames"] == []
    assert account_state() == before
    assert iam_writes(inv) == ["DeleteRolePolicy"]
    assert "[DONE] Delete inline policy no-iam from role admin-mfa" in one_email(inv)[1]


@pytest.mark.parametrize("extra", [
    {"Sid": "NoOneFromHome", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"},
    None,  # the MFA statement gets an extra condition instead
])
def test_a_deny_or_an_extra_condition_in_the_admin_trust_is_restored(guardrail: LocalGuardrail,
                                                                    extra: dict[str, Any] | None) -> None:
    trust = json.loads(json.dumps(iam().get_role(RoleName="admin-mfa")["Role"]["AssumeRolePolicyDocument"]))
    if extra:
        trust["Statement"].append(extra)
    else:
        trust["Statement"][0]["Condition"]["IpAddress"] = {"aws:SourceIp": "203.0.113.9/32"}
    iam().update_assume_role_policy(RoleName="admin-mfa", PolicyDocument=json.dumps(trust))

    inv = run(guardrail, event("UpdateAssumeRolePolicy", {"roleName": "admin-mfa",
                                                          "policyDocument": json.dumps(trust)}))

    assert iam_writes(inv) == ["UpdateAssumeRolePolicy"]
    restored = iam().get_role(RoleName="admin-mfa")["Role"]["AssumeRolePolicyDocument"]
    assert [s["Effect"] for s in restored["Statement"]] == ["Allow"]
    assert restored["Statement"][0]["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}


def test_root_changes_to_the_admin_role_are_alerted_never_undone(guardrail: LocalGuardrail) -> None:
    from test_admin_drift import ROOT

    deny_all = "arn:aws:iam::aws:policy/AWSDenyAll"
    iam().put_role_permissions_boundary(RoleName="admin-mfa", PermissionsBoundary=deny_all)

    inv = run(guardrail, event("PutRolePermissionsBoundary", {"roleName": "admin-mfa",
                                                              "permissionsBoundary": deny_all}, ROOT))

    assert iam_writes(inv) == []
    assert iam().get_role(RoleName="admin-mfa")["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == deny_all
    subject, _ = one_email(inv)
    assert "Undone" not in subject
