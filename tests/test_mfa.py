"""The MFA detector: sign-ins without MFA, MFA removed, grace periods, quarantine and its lifting.

Real CloudTrail records from tests/corpus go through the template's own rule patterns and
through the handler; every AWS call the handler makes is counted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.iam.models import iam_backends

from guardrail_cli.local import ACCOUNT_ID, Invocation, LocalGuardrail
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, baseline_account, corpus_records, envelope, load_event, retarget
from guardrail_core import mfa
from guardrail_core.config import load_settings
from guardrail_core.events import parse_event
from guardrail_core.triage import Triage, Verdict

FUNCTION = "MfaDriftFunction"
QUARANTINE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:policy/account-guardrail-mfa-required"
PHOEBE_MFA = f"arn:aws:iam::{ACCOUNT_ID}:mfa/phoebe"

# The corpus sign-ins that are IAM users signing in successfully with a password alone
# (read off each record and its source's label; SAML-federated and partial records excluded).
SIGNINS_WITHOUT_MFA = {
    "raw/stratus-red-team/ConsoleLogin-1.json",
    "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-1.json",
    "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-7.json",
    "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-9.json",
    "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-12.json",
    "raw/awsdocs-iam-user-guide/ConsoleLogin-1.json",
    "raw/panther-analysis/ConsoleLogin-9.json",
    "raw/panther-analysis/ConsoleLogin-10.json",
    "raw/panther-analysis/ConsoleLogin-23.json",
    "raw/panther-analysis/ConsoleLogin-25.json",
    "raw/panther-analysis/ConsoleLogin-26.json",
    "raw/panther-analysis/ConsoleLogin-28.json",
}
# IAM records the MFA rule must see: a console password created, root enabling its own MFA.
# (The corpus AddUserToGroup adds Bob to a group called "admin", not the admin group.)
# Access keys created and passwords reset: the takeover signal for admin-group members.
IAM_RECORDS_ROUTED = {
    "raw/stratus-red-team/CreateLoginProfile-1.json",
    "raw/awsdocs-cloudtrail-user-guide/EnableMFADevice-1.json",
    "raw/stratus-red-team/CreateAccessKey-1.json",
    "raw/stratus-red-team/CreateAccessKey-2.json",
    "raw/stratus-red-team/UpdateLoginProfile-1.json",
    "raw/panther-analysis/UpdateLoginProfile-1.json",
    "raw/panther-analysis/UpdateLoginProfile-2.json",
    "raw/panther-analysis/UpdateLoginProfile-3.json",
    "raw/panther-analysis/CreateAccessKey-1.json",
    "raw/panther-analysis/CreateAccessKey-2.json",
    "raw/panther-analysis/CreateAccessKey-3.json",
    "raw/panther-analysis/CreateAccessKey-4.json",
    "raw/panther-analysis/CreateAccessKey-6.json",
    "raw/panther-analysis/CreateAccessKey-7.json",
}


@pytest.fixture(scope="module")
def stack() -> LocalGuardrail:
    """The template's rules (routing needs no account)."""
    return LocalGuardrail(Stack())


@pytest.fixture
def quarantine() -> Iterator[LocalGuardrail]:
    with baseline_account({"MfaMode": "quarantine"}) as local:
        yield local


def iam() -> Any:
    return boto3.client("iam")


def iam_calls(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.service == "iam"]


def writes(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.kind == "write"]


def aws_calls(inv: Invocation) -> list[str]:
    """Every call but the idempotency records (the benchmark's split)."""
    return [c.name for c in inv.calls if c.kind != "idempotency"]


def _age_user(name: str, *, hours: int) -> None:
    """Back-date a local user (and so its password: moto dates both from the user's creation)."""
    user = iam_backends[ACCOUNT_ID]["global"].users[name]
    user.create_date = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=hours)


def attached(user: str) -> list[str]:
    return [p["PolicyArn"] for p in iam().list_attached_user_policies(UserName=user)["AttachedPolicies"]]


def iam_event(name: str, params: dict[str, Any], *, actor: str = "phoebe", error: str | None = None,
              event_time: str = "2026-11-28T09:14:03Z", mfa: bool = True) -> dict[str, Any]:
    """An IAM API-call event in the shape of events/mfa-device-deactivated.json, for another call."""
    event = load_event(EVENTS_DIR / "mfa-device-deactivated.json")
    detail = event["detail"]
    detail["eventName"] = name
    detail["requestParameters"] = params
    detail["eventTime"] = event_time
    detail["userIdentity"]["userName"] = actor
    detail["userIdentity"]["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:user/{actor}"
    detail["userIdentity"]["sessionContext"] = {"attributes": {"mfaAuthenticated": str(mfa).lower()}}
    detail["eventID"] = f"{name}-{'-'.join(str(v) for v in params.values())}-{error}"
    event["id"] = detail["eventID"]
    if error:
        detail["errorCode"] = error
        detail["errorMessage"] = f"User is not authorized to perform: iam:{name}"
    return event


def deactivate_phoebe() -> dict[str, Any]:
    """Phoebe's only MFA device is deactivated (the account changes, then the event arrives)."""
    iam().deactivate_mfa_device(UserName="phoebe", SerialNumber=PHOEBE_MFA)
    return load_event(EVENTS_DIR / "mfa-device-deactivated.json")


ADMIN_SESSION = {
    "type": "AssumedRole", "principalId": "AROAEXAMPLEADMINMFA:phoebe",
    "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/admin-mfa/phoebe", "accountId": ACCOUNT_ID,
    "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa"},
                       "attributes": {"mfaAuthenticated": "true"}},
}


def enable_mfa(user: str, serial: str, *, by_admin: bool = True, in_account: bool = True) -> dict[str, Any]:
    """EnableMFADevice for `user`: by an MFA-authenticated admin-role session (the way an
    administrator enrols a device), or as in events/mfa-device-enabled.json (bob's own session
    without MFA)."""
    if in_account:
        iam().enable_mfa_device(UserName=user, SerialNumber=serial, AuthenticationCode1="123456",
                                AuthenticationCode2="654321")
    event = load_event(EVENTS_DIR / "mfa-device-enabled.json")
    event["id"] = event["detail"]["eventID"] = f"enable-{user}-{serial}-{by_admin}"  # a record of its own
    event["detail"]["requestParameters"] = {"userName": user, "serialNumber": serial}
    if by_admin:
        event["detail"]["userIdentity"] = copy.deepcopy(ADMIN_SESSION)
    return event


def routed_to_mfa(local: LocalGuardrail, event: dict[str, Any]) -> list[str]:
    return [r.logical_id for r in local.route(event) if r.function == FUNCTION]


# --- the template's patterns, against every real record --------------------------------------------


def test_signin_pattern_matches_exactly_iam_users_without_mfa(stack: LocalGuardrail) -> None:
    records = corpus_records(event_source="signin.amazonaws.com")
    assert len(records) >= 80  # ConsoleLogin, CheckMfa, SSO CredentialChallenge, ...
    # The patterns are what is tested here (the corpus' regions are anonymised): route in the home region.
    routed = {file for file, record in records if routed_to_mfa(stack, envelope(record, region="us-east-1"))}
    assert routed == SIGNINS_WITHOUT_MFA


def test_iam_pattern_sees_only_mfa_changes_in_the_whole_corpus(stack: LocalGuardrail) -> None:
    routed = {file for file, record in corpus_records()  # IAM records its events in us-east-1
              if record.get("eventSource") != "signin.amazonaws.com"
              and routed_to_mfa(stack, envelope(record, region="us-east-1"))}
    assert routed == IAM_RECORDS_ROUTED


def test_iam_pattern_groups_and_failures(stack: LocalGuardrail) -> None:
    add = iam_event("AddUserToGroup", {"groupName": "ADMINISTRATORS", "userName": "bob"})
    assert routed_to_mfa(stack, add) == ["MfaChange"]  # IAM names are case-insensitive
    assert routed_to_mfa(stack, iam_event("AddUserToGroup", {"groupName": "developers", "userName": "bob"})) == []
    assert routed_to_mfa(stack, iam_event("AddUserToGroup", {"groupName": "administrators", "userName": "bob"},
                                          error="AccessDenied")) == []
    assert routed_to_mfa(stack, iam_event("EnableMFADevice", {"userName": "bob"}, error="AccessDenied")) == []
    # A refused attempt to remove MFA still reaches the detector (a LOW note).
    refused = iam_event("DeactivateMFADevice", {"userName": "phoebe", "serialNumber": PHOEBE_MFA}, error="AccessDenied")
    assert routed_to_mfa(stack, refused) == ["MfaChange"]
    for name in ("mfa-device-deactivated", "mfa-device-enabled", "mfa-admin-group-member-added"):
        assert routed_to_mfa(stack, load_event(EVENTS_DIR / f"{name}.json")) == ["MfaChange"]
    assert routed_to_mfa(stack, load_event(EVENTS_DIR / "signin-iam-user-without-mfa.json")) == [
        "ConsoleSignInWithoutMfa"]


# --- sign-ins: the handler over every real sign-in record ------------------------------------------


def test_handler_finds_exactly_the_signins_without_mfa(guardrail: LocalGuardrail) -> None:
    records = corpus_records(event_source="signin.amazonaws.com")
    flagged = set()
    for file, record in records:
        # Own ids per file: two sources publish the same record (and samples reuse eventIDs), and a
        # repeated record is a duplicate delivery, judged once.
        inv = guardrail.invoke(FUNCTION, envelope(dict(retarget(record), eventID=file), id=file))
        assert inv.error is None, (file, inv.error)
        if inv.findings:
            assert [f["id"] for f in inv.findings] == ["console-signin-without-mfa"], file
            assert inv.findings[0]["severity"] == "MEDIUM"
            assert len(inv.notifications) == 1
            flagged.add(file)
        assert iam_calls(inv) == [], file  # notify mode: the record says it all, no IAM read
    assert flagged == SIGNINS_WITHOUT_MFA


def test_signin_email_says_the_password_alone_protects_the_user(guardrail: LocalGuardrail) -> None:
    inv = guardrail.invoke(FUNCTION, load_event(EVENTS_DIR / "signin-iam-user-without-mfa.json"))
    assert aws_calls(inv) == ["sns:Publish"]
    (mail,) = inv.notifications
    assert mail["subject"] == "[MEDIUM] IAM user bob signed in to the console without MFA - 123456789012"
    text = " ".join(mail["message"].split())
    assert "with a password alone" in text and "192.0.2.187" in text
    assert "Security credentials > Multi-factor authentication (MFA) > Assign MFA device" in text
    assert "aws iam create-virtual-mfa-device --virtual-mfa-device-name bob" in text
    assert f"aws iam enable-mfa-device --user-name bob --serial-number arn:aws:iam::{ACCOUNT_ID}:mfa/bob" in text


def test_signin_with_mfa_federated_root_and_failures_are_not_findings() -> None:
    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID})
    act = Triage(Verdict.ACT, "judge")
    cases = {
        "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-2.json": "signed in with MFA",
        "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-5.json": "Root",  # root with MFA=YES
        "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-4.json": "Root",
        "raw/aws-cli/ConsoleLogin-1.json": "AssumedRole",
        "raw/panther-analysis/ConsoleLogin-16.json": "AssumedRole",  # SSO
        "raw/panther-analysis/ConsoleLogin-12.json": "SAML",
        "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-11.json": "failed sign-in",
        "raw/panther-analysis/ConsoleLogin-3.json": "does not say",
    }
    records = dict(corpus_records("ConsoleLogin"))
    for file, why in cases.items():
        event = parse_event(envelope(retarget(records[file])))
        flagged, reason = mfa.signin_verdict(event)
        assert not flagged and why in reason, (file, reason)
        assert mfa.judge(event, settings, act) == []


def test_mfa_used_is_compared_case_insensitively() -> None:
    record = dict(corpus_records("ConsoleLogin"))["raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-1.json"]
    for value, flagged in (("YES", False), ("yes", False), ("Yes", False), ("No", True), ("NO", True)):
        moved = retarget(record)
        moved["additionalEventData"]["MFAUsed"] = value
        assert mfa.signin_verdict(parse_event(envelope(moved)))[0] is flagged, value


# --- MFA removed -----------------------------------------------------------------------------------


def test_deactivation_leaving_no_device_is_a_high_finding(guardrail: LocalGuardrail) -> None:
    inv = guardrail.invoke(FUNCTION, deactivate_phoebe())
    # phoebe was the only member of the admin group with MFA: nobody can reach admin now (its own finding).
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("mfa-removed", "HIGH"), ("admin-group-no-mfa", "HIGH")]
    assert aws_calls(inv) == ["iam:ListMFADevices", "iam:GetLoginProfile", "iam:GetGroup", "sns:Publish",
                              "sns:Publish"]
    assert writes(inv) == []  # notify mode (the template's default)
    text = " ".join(inv.notifications[0]["message"].split())
    assert "phoebe now has no MFA device" in text and "console password" in text
    assert "aws iam enable-mfa-device --user-name phoebe" in text
    nobody = inv.notifications[1]
    assert nobody["subject"].startswith("[HIGH] No one can reach admin: the last MFA device in group "
                                        "administrators removed by phoebe")
    assert "Sign in as the root user" in " ".join(nobody["message"].split())


def test_losing_mfa_while_another_admin_keeps_it_is_no_lockout(guardrail: LocalGuardrail) -> None:
    from guardrail_cli.seed import add_user

    add_user(iam(), "quentin", mfa=True, group="administrators")
    inv = guardrail.invoke(FUNCTION, deactivate_phoebe())
    assert [f["id"] for f in inv.findings] == ["mfa-removed"]
    assert aws_calls(inv) == ["iam:ListMFADevices", "iam:GetLoginProfile", "iam:GetGroup", "iam:ListMFADevices",
                              "sns:Publish"]


def test_deactivation_with_a_second_device_left_is_not_a_finding(guardrail: LocalGuardrail) -> None:
    enable_mfa("phoebe", "GAHT12345678")  # a hardware token as well as the virtual device
    inv = guardrail.invoke(FUNCTION, deactivate_phoebe())
    assert inv.findings == [] and inv.notifications == []
    assert aws_calls(inv) == ["iam:ListMFADevices"]


def test_severity_depends_on_console_password_and_admin_group(guardrail: LocalGuardrail) -> None:
    for user, group, severity in (("svc-admin", "administrators", "HIGH"), ("svc-batch", None, "LOW")):
        iam().create_user(UserName=user)
        if group:
            iam().add_user_to_group(GroupName=group, UserName=user)
        inv = guardrail.invoke(FUNCTION, iam_event("DeactivateMFADevice", {"userName": user, "serialNumber": "x"}))
        assert [f["severity"] for f in inv.findings] == [severity], user
        # GetGroup: does another member still have MFA (phoebe does: one ListMFADevices) - members only.
        admin_check = ["iam:GetGroup", "iam:ListMFADevices"] if group else ["iam:GetGroup"]
        assert aws_calls(inv) == ["iam:ListMFADevices", "iam:GetLoginProfile", "iam:ListGroupsForUser",
                                  *admin_check, "sns:Publish"]


def test_caller_is_the_user_when_username_is_omitted(guardrail: LocalGuardrail) -> None:
    iam().deactivate_mfa_device(UserName="phoebe", SerialNumber=PHOEBE_MFA)
    inv = guardrail.invoke(FUNCTION, iam_event("DeactivateMFADevice", {"serialNumber": PHOEBE_MFA}, actor="phoebe"))
    assert [f["id"] for f in inv.findings] == ["mfa-removed", "admin-group-no-mfa"]
    assert [c.params for c in inv.calls if c.name == "iam:ListMFADevices"] == [{"UserName": "phoebe"}]


def test_root_mfa_and_deleted_virtual_devices_cost_no_iam_call(guardrail: LocalGuardrail) -> None:
    root_enable = envelope(retarget(dict(corpus_records("EnableMFADevice"))[
        "raw/awsdocs-cloudtrail-user-guide/EnableMFADevice-1.json"]))
    deleted = iam_event("DeleteVirtualMFADevice", {"serialNumber": PHOEBE_MFA})
    for event in (root_enable, deleted):
        inv = guardrail.invoke(FUNCTION, event)
        assert inv.error is None and inv.findings == [] and iam_calls(inv) == []


def test_refused_deactivation_is_a_low_attempt(guardrail: LocalGuardrail) -> None:
    event = iam_event("DeactivateMFADevice", {"userName": "phoebe", "serialNumber": PHOEBE_MFA}, actor="bob",
                      error="AccessDenied")
    inv = guardrail.invoke(FUNCTION, event)
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("attempt", "LOW")]
    assert iam_calls(inv) == []
    assert iam().list_mfa_devices(UserName="phoebe")["MFADevices"]  # nothing changed


# --- grace period for new console users and admins -------------------------------------------------


def test_new_console_password_starts_the_grace_period(guardrail: LocalGuardrail) -> None:
    record = dict(corpus_records("CreateLoginProfile"))["raw/stratus-red-team/CreateLoginProfile-1.json"]
    iam().create_user(UserName="stratus-red-team-login-profile-user")
    inv = guardrail.invoke(FUNCTION, envelope(retarget(record)))
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("mfa-grace-started", "LOW")]
    assert inv.notifications[0]["subject"].startswith("[LOW] MFA due 2024-08-02 13:42 UTC: console password "
                                                      "created for")  # eventTime + 24 h
    # The takeover check: a password created without MFA, for a user outside the admin group.
    assert aws_calls(inv) == ["iam:ListGroupsForUser", "iam:ListMFADevices", "sns:Publish"] and writes(inv) == []


def test_admin_group_member_without_mfa_starts_the_grace_period(guardrail: LocalGuardrail) -> None:
    inv = guardrail.invoke(FUNCTION, load_event(EVENTS_DIR / "mfa-admin-group-member-added.json"))
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("mfa-grace-started", "LOW")]
    text = " ".join(inv.notifications[0]["message"].split())
    assert "cannot assume the admin role" in text and "2026-11-29 08:41 UTC" in text
    # Phoebe has MFA: joining the group again is no news; another group is not judged.
    assert guardrail.invoke(FUNCTION, iam_event("AddUserToGroup", {"groupName": "Administrators",
                                                                   "userName": "phoebe"})).findings == []
    other = guardrail.invoke(FUNCTION, iam_event("AddUserToGroup", {"groupName": "developers", "userName": "bob"}))
    assert other.findings == [] and iam_calls(other) == []


def test_no_grace_period_means_quarantine_at_once() -> None:
    with baseline_account({"MfaMode": "quarantine", "MfaGraceHours": "0"}) as local:
        iam().create_user(UserName="carol")
        iam().create_login_profile(UserName="carol", Password="Correct-horse-battery-1")
        inv = local.invoke(FUNCTION, iam_event("CreateLoginProfile", {"userName": "carol"}))
        assert [(f["id"], f["severity"]) for f in inv.findings] == [("user-without-mfa", "MEDIUM")]
        assert attached("carol") == [QUARANTINE_ARN]


# --- quarantine ------------------------------------------------------------------------------------


def test_quarantine_attached_then_lifted_when_mfa_is_enabled(quarantine: LocalGuardrail) -> None:
    inv = quarantine.invoke(FUNCTION, deactivate_phoebe())
    assert aws_calls(inv) == ["iam:ListMFADevices", "iam:GetLoginProfile", "iam:AttachUserPolicy", "iam:GetGroup",
                              "sns:Publish", "sns:Publish"]
    assert attached("phoebe") == [QUARANTINE_ARN]
    text = " ".join(inv.notifications[0]["message"].split())
    assert "[DONE] Quarantine: attach account-guardrail-mfa-required to phoebe" in text
    assert f"aws iam detach-user-policy --user-name phoebe --policy-arn {QUARANTINE_ARN}" in text
    assert "phoebe cannot enrol an MFA device themselves: an administrator does it" in text
    assert "aws iam create-virtual-mfa-device --virtual-mfa-device-name phoebe" in text

    lifted = quarantine.invoke(FUNCTION, enable_mfa("phoebe", PHOEBE_MFA))  # by an MFA admin session
    assert [(f["id"], f["severity"]) for f in lifted.findings] == [("mfa-quarantine-lifted", "INFO")]
    # Lifted only after reading that phoebe has a device now (events may arrive out of order).
    assert aws_calls(lifted) == ["iam:ListAttachedUserPolicies", "iam:ListMFADevices", "iam:DetachUserPolicy",
                                 "sns:Publish"]
    assert attached("phoebe") == []
    # MFA enabled by someone never quarantined: one read, no email.
    quiet = quarantine.invoke(FUNCTION, enable_mfa("bob", "GAHT00000001"))
    assert quiet.findings == [] and aws_calls(quiet) == ["iam:ListAttachedUserPolicies"]


def test_quarantine_is_kept_when_the_user_has_no_mfa_device_now(quarantine: LocalGuardrail) -> None:
    """EnableMFADevice arrives after the device was removed again (out of order): no device, no lift."""
    quarantine.invoke(FUNCTION, deactivate_phoebe())
    assert attached("phoebe") == [QUARANTINE_ARN]
    event = enable_mfa("phoebe", PHOEBE_MFA, in_account=False)  # the account still shows no device

    kept = quarantine.invoke(FUNCTION, event)

    assert attached("phoebe") == [QUARANTINE_ARN]
    assert aws_calls(kept) == ["iam:ListAttachedUserPolicies", "iam:ListMFADevices", "sns:Publish"]
    assert [(f["id"], f["severity"]) for f in kept.findings] == [("mfa-quarantine-kept", "LOW")]
    text = " ".join(kept.notifications[0]["message"].split())
    assert "no MFA device now" in text and "quarantine is kept" in text


def test_quarantine_only_the_quarantine_policy_and_only_once(quarantine: LocalGuardrail) -> None:
    event = deactivate_phoebe()
    first = quarantine.invoke(FUNCTION, event)
    again = quarantine.invoke(FUNCTION, copy.deepcopy(event))  # EventBridge delivers at least once
    assert len(first.notifications) == 2 and again.notifications == []  # mfa-removed, admin-group-no-mfa
    assert [c.params for c in first.calls if c.name == "iam:AttachUserPolicy"] == [
        {"UserName": "phoebe", "PolicyArn": QUARANTINE_ARN}]
    # The duplicate's reads overlap its duplicate-protection check (one critical path, issue 16):
    # it may read, but it never writes again.
    assert [c.name for c in again.calls if c.service == "iam" and c.kind == "write"] == []


def test_signin_quarantines_only_after_the_grace_period(quarantine: LocalGuardrail) -> None:
    signin = load_event(EVENTS_DIR / "signin-iam-user-without-mfa.json")
    inv = quarantine.invoke(FUNCTION, signin)  # bob's password was set moments ago
    assert aws_calls(inv) == ["iam:ListMFADevices", "iam:GetLoginProfile", "sns:Publish"] and attached("bob") == []
    assert inv.actions[0]["status"] == "skipped" and "grace period" in inv.actions[0]["detail"]
    _age_user("bob", hours=25)
    later = copy.deepcopy(signin)
    later["id"] = later["detail"]["eventID"] = "another-sign-in"
    inv = quarantine.invoke(FUNCTION, later)
    assert aws_calls(inv) == ["iam:ListMFADevices", "iam:GetLoginProfile", "iam:AttachUserPolicy", "sns:Publish"]
    assert attached("bob") == [QUARANTINE_ARN]


def test_exempt_users_and_exempt_actors_are_never_quarantined() -> None:
    exempt_user = f"arn:aws:iam::{ACCOUNT_ID}:user/PHOEBE"  # IAM names are case-insensitive
    with baseline_account({"MfaMode": "quarantine", "ExemptPrincipalArns": exempt_user}) as local:
        inv = local.invoke(FUNCTION, deactivate_phoebe())
        assert [f["id"] for f in inv.findings] == ["mfa-removed", "admin-group-no-mfa"]
        assert writes(inv) == [] and attached("phoebe") == []
        assert inv.actions[0]["status"] == "skipped" and "exempt" in inv.actions[0]["detail"]
    exempt_actor = f"arn:aws:iam::{ACCOUNT_ID}:user/bob"
    with baseline_account({"MfaMode": "quarantine", "ExemptPrincipalArns": exempt_actor}) as local:
        iam().deactivate_mfa_device(UserName="phoebe", SerialNumber=PHOEBE_MFA)
        event = iam_event("DeactivateMFADevice", {"userName": "phoebe", "serialNumber": PHOEBE_MFA}, actor="bob")
        inv = local.invoke(FUNCTION, event)
        assert [f["id"] for f in inv.findings] == ["mfa-removed", "admin-group-no-mfa"] and writes(inv) == []


def test_kill_switch_keeps_quarantine_mode_from_writing() -> None:
    with baseline_account({"MfaMode": "quarantine", "KillSwitch": "on"}) as local:
        inv = local.invoke(FUNCTION, deactivate_phoebe())
        assert writes(inv) == [] and attached("phoebe") == []
        assert "kill switch" in inv.actions[0]["detail"]


def test_notify_mode_tells_how_to_lift_a_leftover_quarantine(guardrail: LocalGuardrail) -> None:
    iam().deactivate_mfa_device(UserName="phoebe", SerialNumber=PHOEBE_MFA)
    iam().attach_user_policy(UserName="phoebe", PolicyArn=QUARANTINE_ARN)  # from when the mode was quarantine
    inv = guardrail.invoke(FUNCTION, enable_mfa("phoebe", PHOEBE_MFA))
    assert [f["id"] for f in inv.findings] == ["mfa-quarantine-still-attached"]
    assert writes(inv) == [] and attached("phoebe") == [QUARANTINE_ARN]
    assert f"aws iam detach-user-policy --user-name phoebe --policy-arn {QUARANTINE_ARN}" in " ".join(
        inv.notifications[0]["message"].split())


def test_notify_mode_makes_no_write_call_in_any_scenario(guardrail: LocalGuardrail) -> None:
    events = [load_event(EVENTS_DIR / name) for name in (
        "signin-iam-user-without-mfa.json", "mfa-admin-group-member-added.json", "mfa-device-enabled.json")]
    events.append(deactivate_phoebe())
    for event in events:
        inv = guardrail.invoke(FUNCTION, event)
        assert inv.error is None and writes(inv) == []
        assert len(aws_calls(inv)) <= 5


# --- least privilege -------------------------------------------------------------------------------


def _iam_actions(statements: list[dict[str, Any]]) -> set[str]:
    out: set[str] = set()
    for statement in statements:
        actions = statement["Action"]
        out |= {a for a in ([actions] if isinstance(actions, str) else actions) if a.startswith("iam:")}
    return out


@pytest.mark.parametrize("role", ["MfaDriftRole", "MfaSweepRole"])
def test_notify_mode_grants_no_iam_write(role: str) -> None:
    for params in ({}, {"MfaMode": "quarantine", "KillSwitch": "on"}):
        granted = _iam_actions(Stack(parameters=params).role_statements(role))
        assert granted and all(a.split(":")[1].startswith(("Get", "List", "Generate")) for a in granted), granted


def test_quarantine_mode_grants_only_the_quarantine_policy() -> None:
    from guardrail_core import mfa_sweep

    for role, needed in (("MfaDriftRole", mfa.READ_ACTIONS | mfa.WRITE_ACTIONS),
                         ("MfaSweepRole", mfa_sweep.READ_ACTIONS | mfa_sweep.WRITE_ACTIONS)):
        statements = Stack(parameters={"MfaMode": "quarantine"}).role_statements(role)
        assert _iam_actions(statements) == needed
        for statement in statements:
            actions = statement["Action"]
            if any(a in ("iam:AttachUserPolicy", "iam:DetachUserPolicy")
                   for a in ([actions] if isinstance(actions, str) else actions)):
                assert statement["Condition"] == {"ArnEquals": {"iam:PolicyARN": QUARANTINE_ARN}}
                assert statement["Resource"] == f"arn:aws:iam::{ACCOUNT_ID}:user/*"


def test_quarantine_policy_only_denies() -> None:
    """A policy without Allow can never give a session a right it did not have (the whole point)."""
    stack = Stack()
    document = stack.resolve(stack.resources["MfaQuarantinePolicy"]["Properties"]["PolicyDocument"])
    assert [s["Effect"] for s in document["Statement"]] == ["Deny"]
    assert document["Statement"][0]["Action"] == "*" and document["Statement"][0]["Resource"] == "*"
    assert "Condition" not in document["Statement"][0]  # with MFA too: a thief's device must not lift it


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(requestParameters=None),
    lambda d: d.update(requestParameters={}),
    lambda d: d.update(requestParameters={"userName": 42, "serialNumber": "x"}),
    lambda d: d.update(requestParameters={"userName": ["bob"], "serialNumber": "x"}),
    lambda d: d.update(requestParameters={"userName": "", "serialNumber": "x"}),
    lambda d: d.update(requestParameters={"userName": "x" * 5000, "serialNumber": "x"}),
    lambda d: d.pop("userIdentity"),
    lambda d: d.update(userIdentity={"type": "IAMUser"}),
])
def test_odd_request_parameters_never_crash_or_act_on_a_guess(quarantine: LocalGuardrail, mutate: Any) -> None:
    """Bob (no MFA) sends a mangled DeactivateMFADevice for phoebe (who keeps her MFA): a missing or
    mistyped userName must never fall back to the caller, and nothing is written."""
    event = iam_event("DeactivateMFADevice", {"userName": "phoebe", "serialNumber": PHOEBE_MFA}, actor="bob")
    mutate(event["detail"])
    inv = quarantine.invoke(FUNCTION, event)
    assert inv.error is None, inv.logs
    assert writes(inv) == [] and inv.findings == []
    assert attached("bob") == []
    # At most a look at the user the request names; never the caller, never a name IAM would reject.
    assert [c.params for c in inv.calls if c.service == "iam"] in ([], [{"UserName": "phoebe"}])


def test_signin_with_odd_fields_is_not_a_finding(guardrail: LocalGuardrail) -> None:
    for change in ({"additionalEventData": {"MFAUsed": None}}, {"additionalEventData": {"MFAUsed": 0}},
                   {"responseElements": {"ConsoleLogin": None}}, {"responseElements": "Success"}):
        event = load_event(EVENTS_DIR / "signin-iam-user-without-mfa.json")
        event["detail"].update(change)
        inv = guardrail.invoke(FUNCTION, event)
        assert inv.error is None and inv.findings == [], change


# --- regions and loops ------------------------------------------------------------------------------------------


def test_signins_are_judged_from_any_region_iam_events_only_from_us_east_1(guardrail: LocalGuardrail) -> None:
    signin = load_event(EVENTS_DIR / "signin-iam-user-without-mfa.json")
    signin["region"] = signin["detail"]["awsRegion"] = "eu-west-1"  # a regional sign-in endpoint, forwarded
    assert [f["id"] for f in guardrail.invoke(FUNCTION, signin).findings] == ["console-signin-without-mfa"]
    iam().deactivate_mfa_device(UserName="phoebe", SerialNumber=PHOEBE_MFA)
    elsewhere = load_event(EVENTS_DIR / "mfa-device-deactivated.json")
    elsewhere["region"] = elsewhere["detail"]["awsRegion"] = "eu-west-1"
    inv = guardrail.invoke(FUNCTION, elsewhere)
    assert inv.result["status"] == "ignored" and iam_calls(inv) == []


def test_the_guardrails_own_quarantine_calls_are_never_judged_again(quarantine: LocalGuardrail) -> None:
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/account-guardrail/account-guardrail-mfa-drift"
    own = []
    for name in ("AttachUserPolicy", "DetachUserPolicy", "DeactivateMFADevice"):
        event = iam_event(name, {"userName": "bob", "policyArn": QUARANTINE_ARN})
        event["detail"]["userIdentity"] = {
            "type": "AssumedRole",
            "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/account-guardrail-mfa-drift/account-guardrail-mfa-drift",
            "accountId": ACCOUNT_ID, "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role}}}
        own.append(event)
    assert [routed_to_mfa(quarantine, e) for e in own] == [[], [], ["MfaChange"]]
    for event in own:
        inv = quarantine.invoke(FUNCTION, event)
        assert inv.result["status"] == "ignored", inv.result
        assert iam_calls(inv) == [] and inv.notifications == []
