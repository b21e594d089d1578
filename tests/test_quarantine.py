"""Quarantine never adds a right a password alone lacked; new credentials for admins are a takeover signal.

The story from issue 14, on the local account: bob, a member of `administrators` without MFA,
signs in with a password (a thief holds it). Each call the thief then tries is decided as IAM
would decide it (tools/guardrail_cli/iam_eval.py over bob's policies, read from the account),
and made on the account only when IAM would allow it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.iam.models import iam_backends

from guardrail_cli.iam_eval import Decision, Request, evaluate, user_policies
from guardrail_cli.local import ACCOUNT_ID, Invocation, LocalGuardrail
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, baseline_account, load_event

FUNCTION = "MfaDriftFunction"
QUARANTINE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:policy/account-guardrail-mfa-required"
ADMIN_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa"
ADMIN_SESSION: dict[str, Any] = {
    "type": "AssumedRole", "principalId": "AROAEXAMPLEADMINMFA:phoebe",
    "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/admin-mfa/phoebe", "accountId": ACCOUNT_ID,
    "sessionContext": {"sessionIssuer": {"type": "Role", "arn": ADMIN_ROLE},
                       "attributes": {"mfaAuthenticated": "true"}},
}
THIEF_DEVICE = f"arn:aws:iam::{ACCOUNT_ID}:mfa/thief-phone"
BOB = f"arn:aws:iam::{ACCOUNT_ID}:user/bob"


def iam() -> Any:
    return boto3.client("iam")


def attached(user: str) -> list[str]:
    return [p["PolicyArn"] for p in iam().list_attached_user_policies(UserName=user)["AttachedPolicies"]]


def age_user(name: str, *, hours: int) -> None:
    """Back-date a local user and so its password (moto dates both from the user's creation)."""
    user = iam_backends[ACCOUNT_ID]["global"].users[name]
    user.create_date = datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=hours)


def iam_call(name: str, params: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge event for a successful IAM call by `identity` (shape of the files in events/)."""
    event = load_event(EVENTS_DIR / "mfa-device-enabled.json")
    detail = event["detail"]
    detail.update(eventName=name, requestParameters=params, userIdentity=copy.deepcopy(identity))
    marks = identity.get("sessionContext", {}).get("attributes", {}).get("mfaAuthenticated", "key")
    event["id"] = detail["eventID"] = f"{name}-{params.get('userName')}-{identity['arn']}-{marks}"
    return event


def bob_may(action: str, resource: str, *, mfa: bool) -> Decision:
    """IAM's decision for a call by bob, from his policies as the account holds them now."""
    context = {"aws:username": "bob", "aws:MultiFactorAuthPresent": str(mfa).lower(),
               "aws:PrincipalArn": BOB}
    return evaluate(user_policies(iam(), "bob"), Request(action, resource, context))


# What a thief holding bob's password would try, in order: enrol a device of their own, then
# take admin rights through the MFA role.
THIEF_CALLS = [
    ("iam:CreateVirtualMFADevice", THIEF_DEVICE),
    ("iam:EnableMFADevice", BOB),
    ("iam:ChangePassword", BOB),
    ("iam:CreateAccessKey", BOB),
    ("sts:AssumeRole", ADMIN_ROLE),
]


@pytest.fixture
def quarantine() -> Iterator[LocalGuardrail]:
    with baseline_account({"MfaMode": "quarantine"}) as local:
        iam().add_user_to_group(GroupName="administrators", UserName="bob")
        age_user("bob", hours=48)  # past the 24 h grace period
        yield local


def thief_signs_in(local: LocalGuardrail) -> Invocation:
    return local.invoke(FUNCTION, load_event(EVENTS_DIR / "signin-iam-user-without-mfa.json"))


def test_the_quarantine_gives_a_password_alone_no_right_it_lacked(quarantine: LocalGuardrail) -> None:
    before = {call: bob_may(*call, mfa=False) for call in THIEF_CALLS}
    # In the baseline, a password alone can do none of it (the group allows only AssumeRole, and
    # the role's trust requires MFA, which bob has no device for).
    assert before[("sts:AssumeRole", ADMIN_ROLE)] is Decision.ALLOW  # identity side only: trust says MFA
    assert all(d is not Decision.ALLOW for call, d in before.items() if call[0] != "sts:AssumeRole")

    inv = thief_signs_in(quarantine)
    assert attached("bob") == [QUARANTINE_ARN], inv.logs
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("console-signin-without-mfa", "MEDIUM")]

    for call in THIEF_CALLS:
        for mfa in (False, True):  # with a device of their own, too: the quarantine holds regardless
            assert bob_may(*call, mfa=mfa) is Decision.EXPLICIT_DENY, (call, mfa)
    # The thief's steps, made only if IAM allows them: none is.
    assert bob_may("iam:CreateVirtualMFADevice", THIEF_DEVICE, mfa=False) is not Decision.ALLOW
    assert iam().list_mfa_devices(UserName="bob")["MFADevices"] == []
    # The email tells the owner how an administrator enrols bob, never to let bob do it alone.
    text = " ".join(inv.notifications[0]["message"].split())
    assert "bob cannot enrol an MFA device themselves: an administrator does it" in text
    assert "from an admin-role session (admin-mfa, with MFA)" in text
    assert "in person (never by email or chat)" in text
    assert "Assign MFA device" not in text  # no self-service step for a quarantined user


def test_device_enabled_without_mfa_keeps_the_quarantine_and_is_high(quarantine: LocalGuardrail) -> None:
    """Someone enables a device for quarantined bob from a session without MFA (bob's own, as in
    events/mfa-device-enabled.json): HIGH, the quarantine stays, bob still cannot reach admin."""
    thief_signs_in(quarantine)
    serial = iam().create_virtual_mfa_device(VirtualMFADeviceName="thief-phone")["VirtualMFADevice"]["SerialNumber"]
    iam().enable_mfa_device(UserName="bob", SerialNumber=serial, AuthenticationCode1="123456",
                            AuthenticationCode2="654321")
    event = load_event(EVENTS_DIR / "mfa-device-enabled.json")  # bob's own session, without MFA
    event["detail"]["requestParameters"]["serialNumber"] = serial

    inv = quarantine.invoke(FUNCTION, event)

    assert [(f["id"], f["severity"]) for f in inv.findings] == [("admin-credential-takeover", "HIGH")]
    assert [c.name for c in inv.calls if c.kind == "write"] == []
    assert attached("bob") == [QUARANTINE_ARN]
    assert inv.actions[0]["status"] == "skipped" and "quarantine stays" in inv.actions[0]["detail"]
    assert bob_may("sts:AssumeRole", ADMIN_ROLE, mfa=True) is Decision.EXPLICIT_DENY
    text = " ".join(inv.notifications[0]["message"].split())
    assert f"aws iam deactivate-mfa-device --user-name bob --serial-number {serial}" in text
    assert f"aws iam detach-user-policy --user-name bob --policy-arn {QUARANTINE_ARN}" in text

    # The owner follows the email: the thief's device goes; bob stays quarantined, without admin.
    iam().deactivate_mfa_device(UserName="bob", SerialNumber=serial)
    iam().delete_virtual_mfa_device(SerialNumber=serial)
    assert iam().list_mfa_devices(UserName="bob")["MFADevices"] == []
    assert bob_may("sts:AssumeRole", ADMIN_ROLE, mfa=True) is Decision.EXPLICIT_DENY


def test_only_an_mfa_admin_session_enrolling_the_device_lifts_the_quarantine(quarantine: LocalGuardrail) -> None:
    thief_signs_in(quarantine)
    # By another IAM user, with MFA, who is not the admin role: kept, the owner confirms.
    serial = iam().create_virtual_mfa_device(VirtualMFADeviceName="bob")["VirtualMFADevice"]["SerialNumber"]
    iam().enable_mfa_device(UserName="bob", SerialNumber=serial, AuthenticationCode1="123456",
                            AuthenticationCode2="654321")
    params = {"userName": "bob", "serialNumber": serial}
    kept = quarantine.invoke(FUNCTION, iam_call("EnableMFADevice", params, CAROL_MFA_SESSION))
    assert [(f["id"], f["severity"]) for f in kept.findings] == [("admin-credential-takeover", "HIGH")]
    assert attached("bob") == [QUARANTINE_ARN]

    # The administrator's way (an MFA-authenticated admin-mfa session): lifted.
    lifted = quarantine.invoke(FUNCTION, iam_call("EnableMFADevice", params, ADMIN_SESSION))
    assert [(f["id"], f["severity"]) for f in lifted.findings] == [("mfa-quarantine-lifted", "INFO")]
    assert attached("bob") == []
    assert bob_may("sts:AssumeRole", ADMIN_ROLE, mfa=True) is Decision.ALLOW


def test_a_user_with_a_device_now_is_never_quarantined_by_a_late_signin(quarantine: LocalGuardrail) -> None:
    """Issue 13 item 6: the sign-in is old news; bob enrolled (through an administrator) since."""
    serial = iam().create_virtual_mfa_device(VirtualMFADeviceName="bob")["VirtualMFADevice"]["SerialNumber"]
    iam().enable_mfa_device(UserName="bob", SerialNumber=serial, AuthenticationCode1="123456",
                            AuthenticationCode2="654321")
    inv = thief_signs_in(quarantine)
    assert attached("bob") == []
    assert [c.name for c in inv.calls if c.kind == "write"] == []
    assert inv.actions[0]["status"] == "skipped" and "has an MFA device now" in inv.actions[0]["detail"]


# --- the takeover signal, in every mode --------------------------------------------------------------


def user_identity(name: str, *, mfa: bool | None) -> dict[str, Any]:
    """An IAM user's userIdentity: a console/STS session (mfa True/False) or a long-term key (None)."""
    identity: dict[str, Any] = {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/{name}",
                                "accountId": ACCOUNT_ID, "userName": name}
    if mfa is None:
        identity["accessKeyId"] = "AKIAEXAMPLE" + name.upper().ljust(9, "0")[:9]
    else:
        identity["sessionContext"] = {"attributes": {"mfaAuthenticated": str(mfa).lower()}}
    return identity


BOB_NO_MFA = user_identity("bob", mfa=False)
PHOEBE_MFA_SESSION = user_identity("phoebe", mfa=True)
PHOEBE_ACCESS_KEY = user_identity("phoebe", mfa=None)
CAROL_MFA_SESSION = user_identity("carol", mfa=True)


def credential_event(call: str, user: str, identity: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"userName": user}
    if call == "EnableMFADevice":
        params["serialNumber"] = f"arn:aws:iam::{ACCOUNT_ID}:mfa/x"
    event = iam_call(call, params, identity)
    if call == "CreateAccessKey":
        event["detail"]["responseElements"] = {
            "accessKey": {"userName": user, "accessKeyId": "AKIAEXAMPLENEW000001", "status": "Active"}}
    return event


@pytest.mark.parametrize("mode", ["notify", "quarantine"])
@pytest.mark.parametrize("call", ["EnableMFADevice", "CreateLoginProfile", "UpdateLoginProfile", "CreateAccessKey"])
def test_new_credential_for_an_admin_member_is_high_unless_vouched_for(mode: str, call: str) -> None:
    with baseline_account({"MfaMode": mode}) as local:
        cases: list[tuple[dict[str, Any], str | None]] = [
            (BOB_NO_MFA, "HIGH"),  # a session without MFA (even if it were phoebe's own)
            (PHOEBE_ACCESS_KEY, "HIGH"),  # a long-term key carries no MFA
            (CAROL_MFA_SESSION, "HIGH"),  # with MFA, but neither phoebe nor the admin role
            (PHOEBE_MFA_SESSION, None),  # phoebe herself, with MFA
            (ADMIN_SESSION, None),  # an MFA-authenticated admin-mfa session
        ]
        for identity, expected in cases:
            event = credential_event(call, "phoebe", identity)
            # (EnableMFADevice also reaches admin-drift: it may finish a held-back removal.)
            assert FUNCTION in [r.function for r in local.route(event)], call
            inv = local.invoke(FUNCTION, event)
            assert inv.error is None, inv.logs
            takeover = [f["severity"] for f in inv.findings if f["id"] == "admin-credential-takeover"]
            assert takeover == ([expected] if expected else []), (call, identity["arn"])
            assert [c.name for c in inv.calls if c.kind == "write"] == []  # an alert, in every mode
        # Not a member of the admin group: no takeover signal (bob has no way to admin to take).
        event = credential_event(call, "bob", BOB_NO_MFA)
        inv = local.invoke(FUNCTION, event)
        assert [f for f in inv.findings if f["id"] == "admin-credential-takeover"] == []


def test_takeover_email_says_who_what_and_how_to_undo() -> None:
    with baseline_account() as local:
        event = credential_event("CreateAccessKey", "phoebe", BOB_NO_MFA)
        inv = local.invoke(FUNCTION, event)
        (mail,) = inv.notifications
        assert mail["subject"].startswith("[HIGH] Possible takeover: access key created for admin phoebe without MFA")
        text = " ".join(mail["message"].split())
        assert "IAM user bob called CreateAccessKey for IAM user phoebe" in text
        assert ("aws iam update-access-key --user-name phoebe --access-key-id AKIAEXAMPLENEW000001 "
                "--status Inactive") in text


def test_quarantine_policy_evaluated_as_iam_would_never_allows_anything() -> None:
    stack = Stack(parameters={"MfaMode": "quarantine"})
    document = stack.resolve(stack.resources["MfaQuarantinePolicy"]["Properties"]["PolicyDocument"])
    for action in ("iam:CreateVirtualMFADevice", "iam:EnableMFADevice", "iam:ChangePassword", "sts:AssumeRole",
                   "sts:GetSessionToken", "s3:GetObject"):
        for mfa in ("true", "false"):
            decision = evaluate([document], Request(action, "arn:aws:iam::123456789012:user/bob",
                                                    {"aws:MultiFactorAuthPresent": mfa, "aws:username": "bob"}))
            assert decision is Decision.EXPLICIT_DENY
