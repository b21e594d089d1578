"""The lockout guard (issue 13, item 1; issue 16's concurrent reads): a working MFA path to admin,
proven from facts, read concurrently in a bounded number of calls whatever the group's size."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import boto3
import pytest

from guardrail_cli.faults import round_trips
from guardrail_cli.local import ACCOUNT_ID, LocalGuardrail
from guardrail_cli.recorder import record_calls
from guardrail_cli.seed import add_user
from guardrail_cli.testing import baseline_account
from guardrail_core import lockout
from guardrail_core.baseline import PolicyRef, assume_policy_document, trust_policy
from guardrail_core.config import ADMINISTRATOR_ACCESS_ARN, load_settings
from guardrail_core.lockout import Facts, Member, RoleFacts, admin_path

SETTINGS = load_settings({"ACCOUNT_ID": ACCOUNT_ID})
ADMIN_REF = PolicyRef("AdministratorAccess", ADMINISTRATOR_ACCESS_ARN)
ASSUME_REF = PolicyRef("assume-admin-role", SETTINGS.assume_policy_arn)
DENY_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
PHOEBE = Member("phoebe", mfa_devices=1, console_password=True, active_keys=1)


def role(**changes: Any) -> RoleFacts:
    base = RoleFacts(name="admin-mfa", arn=SETTINGS.admin_role_arn, trust=trust_policy(SETTINGS), max_session=3600,
                     attached=(ADMIN_REF,), inline=())
    return dataclasses.replace(base, **changes)


def facts(**changes: Any) -> Facts:
    base = Facts(group_name="administrators", group_attached=(ASSUME_REF, ADMIN_REF), group_inline=(),
                 assume_policy_arn=SETTINGS.assume_policy_arn, assume_document=assume_policy_document(SETTINGS),
                 assume_default_version="v1", role=role(), members=(PHOEBE,), member_count=1)
    return dataclasses.replace(base, **changes)


# --- the decision, from facts ------------------------------------------------------------------------


def test_the_baseline_with_a_member_who_can_sign_in_with_mfa_is_a_path() -> None:
    verdict = admin_path(facts(), SETTINGS)
    assert verdict.ok and "phoebe" in verdict.reason


NO_PATH = {
    # a member with an MFA device who cannot sign in opens nothing (issue 13: counted before)
    "device-but-no-password-no-key": facts(members=(Member("phoebe", 1, False, 0),)),
    "password-but-no-device": facts(members=(Member("phoebe", 0, True, 1),)),
    "inactive-keys-only": facts(members=(Member("phoebe", 1, False, 0), Member("bob", 0, True, 0))),
    "no-members": facts(members=(), member_count=0),
    "group-gone": facts(group_attached=None),
    # the assume policy detached while an inline admin policy is removed (issue 13: judged in one order)
    "assume-policy-not-on-group": facts(group_attached=(ADMIN_REF,)),
    "assume-policy-gone": facts(assume_document=None),
    "assume-policy-rewritten": facts(assume_document={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::123456789012:role/other"}]}),
    "role-gone": facts(role=None),
    "role-without-mfa": facts(role=role(trust={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole"}]})),
    "role-trusts-another-account": facts(role=role(trust={"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"}, "Action": "sts:AssumeRole",
         "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]})),
    "trust-with-deny": facts(role=role(trust={"Version": "2012-10-17", "Statement": [
        *trust_policy(SETTINGS)["Statement"], {"Effect": "Deny", "Principal": {"AWS": "*"},
                                               "Action": "sts:AssumeRole"}]})),
    "role-without-admin": facts(role=role(attached=())),
    "role-with-boundary": facts(role=role(boundary_arn="arn:aws:iam::aws:policy/ReadOnlyAccess")),
    "role-with-deny-policy": facts(role=role(documents=(("deny-all", DENY_ALL),))),
    "role-with-unread-policies": facts(role=role(unread=("p11",))),
}


@pytest.mark.parametrize("name", NO_PATH)
def test_no_path_is_held_back_with_a_reason(name: str) -> None:
    verdict = admin_path(NO_PATH[name], SETTINGS)
    assert not verdict.ok and verdict.reason


def test_a_boundary_of_administrator_access_limits_nothing() -> None:
    assert admin_path(facts(role=role(boundary_arn=ADMINISTRATOR_ACCESS_ARN)), SETTINGS).ok


def test_parts_the_plan_rebuilds_first_count_as_rebuilt_but_members_never_do() -> None:
    broken = facts(group_attached=(ADMIN_REF,), role=role(attached=(), trust={}), assume_document=None)
    assert not admin_path(broken, SETTINGS).ok
    repairs = ["attach_group_policy", "attach_role_policy", "update_assume_role_policy", "create_policy"]
    assert admin_path(broken, SETTINGS, repairs=repairs).ok
    assert not admin_path(dataclasses.replace(broken, members=(Member("phoebe", 0, True, 1),)), SETTINGS,
                          repairs=repairs).ok


def test_a_member_beyond_those_read_is_named_in_the_reason() -> None:
    verdict = admin_path(facts(members=(Member("a", 0, True, 0),), member_count=200), SETTINGS)
    assert not verdict.ok and "reads 1 of the group's 200 members" in verdict.reason


# --- the adapter: bounded, concurrent ---------------------------------------------------------------


def _iam() -> Any:
    return boto3.client("iam")


def test_facts_of_the_local_baseline_account(guardrail: LocalGuardrail) -> None:
    read = lockout.read_facts(_iam(), SETTINGS)
    assert read.member_names == ("phoebe",) and read.members == (PHOEBE,)
    assert admin_path(read, SETTINGS).ok


@pytest.mark.parametrize("members", [1, 200])
def test_calls_do_not_grow_with_the_group(members: int) -> None:
    """Issue 13 (7): 211 calls with 200 members before. Now at most 8 + 1 + 3 x MEMBERS_CHECKED."""
    with baseline_account() as local:
        del local
        iam = _iam()
        for n in range(members - 1):
            iam.create_user(UserName=f"user{n:03}")
            iam.add_user_to_group(GroupName="administrators", UserName=f"user{n:03}")
        lockout.last_seen().clear()  # a cold container: nothing to guess from
        with record_calls() as calls:
            read = lockout.read_facts(iam, SETTINGS)
    assert len(calls.calls) <= 8 + 3 * lockout.MEMBERS_CHECKED
    assert len(read.members) == min(members, lockout.MEMBERS_CHECKED) and read.member_count == members


def test_the_last_member_with_mfa_beyond_the_cap_holds_back_and_says_so() -> None:
    with baseline_account() as local:
        del local
        iam = _iam()
        iam.remove_user_from_group(GroupName="administrators", UserName="phoebe")
        for n in range(lockout.MEMBERS_CHECKED):
            add_user(iam, f"a{n:02}", mfa=False, group="administrators")
        iam.add_user_to_group(GroupName="administrators", UserName="phoebe")
        verdict = admin_path(lockout.read_facts(iam, SETTINGS), SETTINGS)
    assert not verdict.ok and f"reads {lockout.MEMBERS_CHECKED} of the group's" in verdict.reason


def test_member_with_a_device_but_no_way_to_sign_in_is_no_path() -> None:
    with baseline_account() as local:
        del local
        iam = _iam()
        iam.delete_login_profile(UserName="phoebe")
        for key in iam.list_access_keys(UserName="phoebe")["AccessKeyMetadata"]:
            iam.update_access_key(UserName="phoebe", AccessKeyId=key["AccessKeyId"], Status="Inactive")
        verdict = admin_path(lockout.read_facts(iam, SETTINGS), SETTINGS)
    assert not verdict.ok and "neither a console password nor an active access key" in verdict.reason


def test_a_deny_policy_on_the_role_is_read_and_blocks() -> None:
    with baseline_account() as local:
        del local
        iam = _iam()
        iam.put_role_policy(RoleName="admin-mfa", PolicyName="deny-all", PolicyDocument=json.dumps(DENY_ALL))
        verdict = admin_path(lockout.read_facts(iam, SETTINGS), SETTINGS)
    assert not verdict.ok and "deny-all" in verdict.reason


def test_reads_run_concurrently_in_two_rounds() -> None:
    """The guard's 11 reads are made in two sequential round trips, not eleven."""
    with baseline_account() as local:
        del local
        lockout.last_seen().clear()  # a cold container
        with round_trips() as timed:
            read = lockout.read_facts(_iam(), SETTINGS)
    assert admin_path(read, SETTINGS).ok
    assert len(timed) == 11 and max(c.depth for c in timed) == 2
    second = sorted(c.name for c in timed if c.depth == 2)
    assert second == ["iam:GetLoginProfile", "iam:GetPolicyVersion", "iam:ListAccessKeys", "iam:ListMFADevices"]


def test_a_failed_read_among_the_concurrent_ones_fails_the_whole_read() -> None:
    from guardrail_cli.testing import inject_errors

    with baseline_account() as local:
        del local
        with inject_errors({"GetLoginProfile": "ServiceUnavailable"}), pytest.raises(Exception, match="injected"):
            lockout.read_facts(_iam(), SETTINGS)


# --- warm containers: who and which version to read, guessed from the last judgement; facts never ----


def test_a_warm_container_reads_everything_in_one_round() -> None:
    """The member who proved the path last time, and the assume policy's version, are read beside
    GetGroup and GetPolicy: one round trip, the same 11 calls, every fact read afresh."""
    with baseline_account() as local:
        del local
        lockout.read_facts(_iam(), SETTINGS)  # fills the container's memory (as setup's run does)
        with round_trips() as timed:
            read = lockout.read_facts(_iam(), SETTINGS)
    assert admin_path(read, SETTINGS).ok
    assert len(timed) == 11 and max(c.depth for c in timed) == 1


def test_a_guessed_member_who_left_the_group_proves_nothing() -> None:
    """phoebe proved the path last time; she has left the group since: her fresh facts are not counted,
    the members GetGroup names now are read in a second round, and the verdict is theirs."""
    with baseline_account() as local:
        del local
        iam = _iam()
        lockout.read_facts(iam, SETTINGS)
        assert lockout.last_seen()[SETTINGS.admin_group.lower()][0] == ("phoebe",)
        iam.remove_user_from_group(GroupName="administrators", UserName="phoebe")
        add_user(iam, "quinn", mfa=False, group="administrators")
        with round_trips() as timed:
            read = lockout.read_facts(iam, SETTINGS)
    verdict = admin_path(read, SETTINGS)
    assert not verdict.ok and "no member of group administrators has an MFA device" in verdict.reason
    assert [m.name for m in read.members] == ["quinn"]
    assert max(c.depth for c in timed) == 2  # the guess was wrong: a second round, as when cold


def test_a_changed_default_version_is_read_afresh() -> None:
    """The assume policy got a new default version since: the guessed one is not used."""
    with baseline_account() as local:
        del local
        iam = _iam()
        lockout.read_facts(iam, SETTINGS)
        arn = SETTINGS.assume_policy_arn
        iam.create_policy_version(PolicyArn=arn, SetAsDefault=True, PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}))
        read = lockout.read_facts(iam, SETTINGS)
    verdict = admin_path(read, SETTINGS)
    assert not verdict.ok and "is not the baseline's document" in verdict.reason


def _guessed_phoebe(iam: Any) -> None:
    lockout.read_facts(iam, SETTINGS)
    assert lockout.last_seen()[SETTINGS.admin_group.lower()][0] == ("phoebe",)


def test_the_guessed_member_whose_device_was_deactivated_proves_nothing() -> None:
    """Another way to the same state (the guessed member cannot use the path): DeactivateMFADevice
    while she stays in the group. Her facts are read afresh; quinn, without MFA, cannot prove it."""
    with baseline_account() as local:
        del local
        iam = _iam()
        _guessed_phoebe(iam)
        add_user(iam, "quinn", mfa=False, group="administrators")
        for device in iam.list_mfa_devices(UserName="phoebe")["MFADevices"]:
            iam.deactivate_mfa_device(UserName="phoebe", SerialNumber=device["SerialNumber"])
        verdict = admin_path(lockout.read_facts(iam, SETTINGS), SETTINGS)
    assert not verdict.ok and "no member of group administrators has an MFA device" in verdict.reason


def test_the_guessed_member_without_a_way_to_sign_in_proves_nothing() -> None:
    """A third way: DeleteLoginProfile and DeleteAccessKey leave her MFA device but no way to sign in;
    the second round reads the other members, and rob (MFA and a password) proves the path."""
    with baseline_account() as local:
        del local
        iam = _iam()
        _guessed_phoebe(iam)
        iam.delete_login_profile(UserName="phoebe")
        for key in iam.list_access_keys(UserName="phoebe")["AccessKeyMetadata"]:
            iam.delete_access_key(UserName="phoebe", AccessKeyId=key["AccessKeyId"])
        assert not admin_path(lockout.read_facts(iam, SETTINGS), SETTINGS).ok
        add_user(iam, "rob", mfa=True, group="administrators")
        verdict = admin_path(lockout.read_facts(iam, SETTINGS), SETTINGS)
    assert verdict.ok and "member rob" in verdict.reason
