"""Golden emails: every finding kind, in every mode, exactly as the owner receives it.

Each case below builds a local account (moto), makes the change for real, runs the real
handler on a realistic event with a fixed clock and fixed ids, and renders what was
published (subject and email text). The result must equal tests/golden/<case>.txt.

Changed an email on purpose? Regenerate, then read the diff as the owner would:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py -n 0
    git diff tests/golden/

A case whose golden file is missing fails (never silently created outside UPDATE_GOLDEN).
"""

from __future__ import annotations

import copy
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from guardrail_cli import local
from guardrail_cli.local import ACCOUNT_ID, Invocation, LocalGuardrail
from guardrail_cli.testing import EVENTS_DIR, baseline_account, inject_errors, load_event
from guardrail_core import findings, heartbeat, iam_baseline, mfa, trail_guard

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN", "") not in ("", "0")
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)  # the guardrail's clock in every case
ACCOUNT_CREATED = datetime(2026, 10, 1, 8, 0, 0)  # every local user's creation (and password) time
REPORT_TIME = datetime(2026, 11, 28, 9, 30, 0)  # when the local credential report was generated
SEPARATOR = "\n" + "=" * 78 + "\n"

PHOEBE = f"arn:aws:iam::{ACCOUNT_ID}:user/phoebe"
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
ASSUME = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
REMEDIATE = {"AdminDriftMode": "remediate"}
NOTIFY = {"AdminDriftMode": "notify"}
KILL = {"AdminDriftMode": "remediate", "KillSwitch": "on"}
EXEMPT = {"AdminDriftMode": "remediate", "ExemptPrincipalArns": PHOEBE}


class _FrozenDatetime(datetime):
    """datetime whose now() is the golden clock (for modules that call datetime.now directly)."""

    @classmethod
    def now(cls, tz: Any = None) -> _FrozenDatetime:  # type: ignore[override]
        moment = NOW if tz is None else NOW.astimezone(tz)
        return cls.fromtimestamp(moment.timestamp(), tz=moment.tzinfo)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mfa, "utc_now", lambda: NOW)
    monkeypatch.setattr(findings, "clock", lambda: NOW)
    monkeypatch.setattr(iam_baseline, "datetime", _FrozenDatetime)
    monkeypatch.setattr(trail_guard, "datetime", _FrozenDatetime)
    monkeypatch.setattr(heartbeat, "datetime", _FrozenDatetime)
    monkeypatch.setattr(local, "report_clock", lambda: REPORT_TIME)


def pin_account_times() -> None:
    """Every local user (and so its password) created at ACCOUNT_CREATED."""
    from moto.iam.models import iam_backends

    backend = iam_backends[ACCOUNT_ID]["global"]
    for user in backend.users.values():
        user.create_date = ACCOUNT_CREATED


def event(name: str, **detail: Any) -> dict[str, Any]:
    """An event from events/ with its detail fields overridden (ids stay fixed)."""
    raw = copy.deepcopy(load_event(EVENTS_DIR / f"{name}.json"))
    raw["detail"].update(detail)
    return raw


def with_identity(raw: dict[str, Any], identity: Mapping[str, Any]) -> dict[str, Any]:
    raw["detail"]["userIdentity"] = copy.deepcopy(dict(identity))
    return raw


@dataclass
class Case:
    """One golden email (or several, when one event yields several alerts)."""

    parameters: dict[str, str]
    function: str
    event: Callable[[], Any]
    prepare: Callable[[Any], None] = lambda iam: None  # changes made before the event (boto3 IAM client)
    errors: dict[str, str] = field(default_factory=dict)  # AWS errors injected during the handler
    converge: bool = True  # False: the seed account as it was before the first deploy
    forwarding: bool = False  # also the forwarding rules in the forwarded regions (the heartbeat reads them)
    # Runs before the case's own invocation, its emails not kept (e.g. a first heartbeat that saw the blind state).
    warmup: Callable[[LocalGuardrail], None] | None = None
    masks: tuple[tuple[str, str], ...] = ()  # (regex, replacement): ids AWS makes up anew on every run


def iam_client() -> Any:
    return boto3.client("iam")


def _attach_admin(iam: Any) -> None:
    iam.attach_group_policy(GroupName="administrators", PolicyArn=ADMIN)


def _no_member_mfa(iam: Any) -> None:
    """phoebe (the only member) loses her MFA device: the lockout guard must hold back."""
    for device in iam.list_mfa_devices(UserName="phoebe")["MFADevices"]:
        iam.deactivate_mfa_device(UserName="phoebe", SerialNumber=device["SerialNumber"])


def _admin_attached_without_member_mfa(iam: Any) -> None:
    _no_member_mfa(iam)
    _attach_admin(iam)


def _weaken_trust(iam: Any) -> None:
    doc = json.loads(event("admin-role-mfa-removed")["detail"]["requestParameters"]["policyDocument"])
    iam.update_assume_role_policy(RoleName="admin-mfa", PolicyDocument=json.dumps(doc))


def _lengthen_session(iam: Any) -> None:
    iam.update_role(RoleName="admin-mfa", MaxSessionDuration=43200)


def _rewrite_assume(iam: Any) -> None:
    doc = event("admin-assume-policy-rewritten")["detail"]["requestParameters"]["policyDocument"]
    iam.create_policy_version(PolicyArn=ASSUME, PolicyDocument=doc, SetAsDefault=True)


def _detach_assume(iam: Any) -> None:
    iam.detach_group_policy(GroupName="administrators", PolicyArn=ASSUME)


def _inline_on_group(iam: Any) -> None:
    params = event("admin-inline-policy-put-on-group")["detail"]["requestParameters"]
    iam.put_group_policy(GroupName="administrators", PolicyName=params["policyName"],
                         PolicyDocument=params["policyDocument"])


def _admin_on_bob(iam: Any) -> None:
    iam.attach_user_policy(UserName="bob", PolicyArn=ADMIN)


def _phoebe_mfa_off(iam: Any) -> None:
    _no_member_mfa(iam)


def _bob_joins(iam: Any) -> None:
    iam.add_user_to_group(GroupName="administrators", UserName="bob")


def _bob_quarantined_then_enrols(iam: Any) -> None:
    policy = f"arn:aws:iam::{ACCOUNT_ID}:policy/account-guardrail-mfa-required"
    iam.attach_user_policy(UserName="bob", PolicyArn=policy)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-phone")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(UserName="bob", SerialNumber=serial, AuthenticationCode1="123456",
                          AuthenticationCode2="654321")


def _bob_quarantined(iam: Any) -> None:
    iam.attach_user_policy(UserName="bob", PolicyArn=f"arn:aws:iam::{ACCOUNT_ID}:policy/account-guardrail-mfa-required")


# An administrator enrolling a user's device: an MFA-authenticated admin-mfa session (issue 14).
ADMIN_SESSION = {
    "type": "AssumedRole", "principalId": "AROAEXAMPLEADMINMFA:phoebe",
    "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/admin-mfa/phoebe", "accountId": ACCOUNT_ID,
    "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa"},
                       "attributes": {"mfaAuthenticated": "true"}},
}


def _bob_joins_then_enrols(iam: Any) -> None:
    _bob_joins(iam)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="bob-phone")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(UserName="bob", SerialNumber=serial, AuthenticationCode1="123456",
                          AuthenticationCode2="654321")


def _tamper(source: str, name: str, params: dict[str, Any]) -> dict[str, Any]:
    raw = event("tamper-rule-disabled", eventSource=f"{source}.amazonaws.com", eventName=name,
                requestParameters=params)
    raw["source"] = f"aws.{source}"
    return raw


def _stop_trail(iam: Any) -> None:
    boto3.client("cloudtrail").stop_logging(Name="management-events")


def _narrow_trail(iam: Any) -> None:
    boto3.client("cloudtrail").put_event_selectors(
        TrailName="management-events",
        EventSelectors=[{"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}])


def _refused(raw: dict[str, Any]) -> dict[str, Any]:
    raw["detail"]["errorCode"] = "AccessDenied"
    raw["detail"]["errorMessage"] = "User is not authorized to perform this operation"
    return raw


ROOT_SIGNIN_FAILED = {"ConsoleLogin": "Failure"}
# A privileged root session opened from the management account (sts:AssumeRoot), as recorded in
# the member account (IAM User Guide, "Track privileged tasks in AWS CloudTrail").
ROOT_SESSION = {"type": "Root", "principalId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root",
                "accountId": ACCOUNT_ID, "accessKeyId": "ASIAEXAMPLEROOTTASK1",
                "sessionContext": {"attributes": {"creationDate": "2026-11-28T06:14:40Z", "mfaAuthenticated": "false"},
                                   "assumedRoot": "true"}}
PASSWORD_FAILED = "Failed authentication"


def iam_event(name: str, params: dict[str, Any], identity: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An IAM call as CloudTrail records it (shape of events/admin-role-mfa-removed.json), ids fixed."""
    raw = event("admin-role-mfa-removed", eventName=name, requestParameters=params,
                eventID=f"00000000-0000-4000-8000-{zlib.crc32(name.encode()):012d}")
    if identity is not None:
        raw["detail"]["userIdentity"] = copy.deepcopy(dict(identity))
    return raw


PHOEBE_USER = {"type": "IAMUser", "principalId": "AIDAEXAMPLEPHOEBE001", "arn": PHOEBE, "accountId": ACCOUNT_ID,
               "accessKeyId": "AKIAEXAMPLEPHOEBE001", "userName": "phoebe"}
ROOT_USER = {"type": "Root", "principalId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root",
             "accountId": ACCOUNT_ID, "accessKeyId": "ASIAEXAMPLEROOT00001",
             "sessionContext": {"attributes": {"creationDate": "2026-11-28T09:00:00Z", "mfaAuthenticated": "true"}}}
DENY_ALL = "arn:aws:iam::aws:policy/AWSDenyAll"
BOB_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/bob"}, "Action": "sts:AssumeRole"}]}
ESCALATION = {"Version": "2012-10-17", "Statement": [{"Sid": "SelfService", "Effect": "Allow",
                                                      "Action": "iam:Put*", "Resource": "*"}]}
SCHEDULED_HEARTBEAT = {
    "version": "0", "id": "00000000-0000-4000-8000-00000000beat", "detail-type": "Scheduled Event",
    "source": "aws.scheduler", "account": ACCOUNT_ID, "time": "2026-11-28T12:00:00Z", "region": "us-east-1",
    "resources": [f"arn:aws:scheduler:us-east-1:{ACCOUNT_ID}:schedule/default/account-guardrail-heartbeat"],
    "detail": {"attempt": "1"}}
FORWARDED_TWO = {"ForwardedRegions": "ap-southeast-2,eu-north-1"}  # two regions keep the heartbeat cases quick


def _deny_policy_for_group(iam: Any) -> None:
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}]}
    arn = iam.create_policy(PolicyName="no-bucket-deletes", PolicyDocument=json.dumps(deny))["Policy"]["Arn"]
    iam.attach_group_policy(GroupName="administrators", PolicyArn=arn)


def _boundary_on_admin_role(iam: Any) -> None:
    iam.put_role_permissions_boundary(RoleName="admin-mfa", PermissionsBoundary=DENY_ALL)


def _role_bob_assumes_gets_admin(iam: Any) -> None:
    iam.create_role(RoleName="bob-tools", AssumeRolePolicyDocument=json.dumps(BOB_TRUST))
    iam.attach_role_policy(RoleName="bob-tools", PolicyArn=ADMIN)


def _escalation_on_bob(iam: Any) -> None:
    iam.put_user_policy(UserName="bob", PolicyName="self-service", PolicyDocument=json.dumps(ESCALATION))


def _group_renamed(iam: Any) -> None:
    iam.update_group(GroupName="administrators", NewGroupName="ops")


def _held_back_then_phoebe_enrols(iam: Any) -> None:
    """AdministratorAccess kept on the group by the lockout guard (no member had MFA); then phoebe enrols."""
    _admin_attached_without_member_mfa(iam)
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName="phoebe-new")["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(UserName="phoebe", SerialNumber=serial, AuthenticationCode1="123456",
                          AuthenticationCode2="654321")


def _grants_before_deploy(iam: Any) -> None:
    """Admin grants that predate the stack: listed by setup (the inventory)."""
    _admin_on_bob(iam)
    _role_bob_assumes_gets_admin(iam)


def _owner_unsubscribed(iam: Any) -> None:
    sns = boto3.client("sns", region_name="us-east-1")
    for topic in sns.list_topics()["Topics"]:
        for sub in sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]:
            if sub["Protocol"] == "email":
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])


def _second_management_trail(iam: Any) -> None:
    from guardrail_cli.seed import TRAIL_BUCKET

    ct = boto3.client("cloudtrail", region_name="us-east-1")
    ct.create_trail(Name="org-audit", S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True,
                    IncludeGlobalServiceEvents=True)
    ct.start_logging(Name="org-audit")


def _covered_trail_stopped(iam: Any) -> None:
    _second_management_trail(iam)
    _stop_trail(iam)


def _covered_trail_deleted(iam: Any) -> None:
    _second_management_trail(iam)
    boto3.client("cloudtrail", region_name="us-east-1").delete_trail(Name="management-events")


def _disable_rule(iam: Any) -> None:
    boto3.client("events", region_name="us-east-1").disable_rule(Name="account-guardrail-admin-drift")


def _blind_then_seen(local: LocalGuardrail) -> None:
    """The heartbeat saw the trail stopped (its CRITICAL sent then), and the trail logs again now."""
    local.invoke("HeartbeatFunction", SCHEDULED_HEARTBEAT)
    boto3.client("cloudtrail", region_name="us-east-1").start_logging(Name="management-events")

CASES: dict[str, Case] = {
    # --- admin drift: the admin group -------------------------------------------------------
    "admin-group-policy-attached.remediate": Case(REMEDIATE, "AdminDriftFunction",
                                                  lambda: event("admin-policy-attached-to-group"), _attach_admin),
    "admin-group-policy-attached.notify": Case(NOTIFY, "AdminDriftFunction",
                                               lambda: event("admin-policy-attached-to-group"), _attach_admin),
    "admin-group-policy-attached.kill-switch": Case(KILL, "AdminDriftFunction",
                                                    lambda: event("admin-policy-attached-to-group"), _attach_admin),
    "admin-group-policy-attached.exempt": Case(EXEMPT, "AdminDriftFunction",
                                               lambda: event("admin-policy-attached-to-group"), _attach_admin),
    "admin-group-policy-attached.held-back": Case(
        REMEDIATE, "AdminDriftFunction",
        lambda: with_identity(event("admin-policy-attached-to-group"), {
            "type": "Root", "principalId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root",
            "accountId": ACCOUNT_ID}),
        _admin_attached_without_member_mfa),
    "admin-group-policy-attached.failed": Case(REMEDIATE, "AdminDriftFunction",
                                               lambda: event("admin-policy-attached-to-group"), _attach_admin,
                                               errors={"DetachGroupPolicy": "AccessDenied"}),
    "admin-group-policy-attached.refused": Case(REMEDIATE, "AdminDriftFunction",
                                                lambda: _refused(event("admin-policy-attached-to-group"))),
    "admin-group-inline-policy.remediate": Case(REMEDIATE, "AdminDriftFunction",
                                                lambda: event("admin-inline-policy-put-on-group"), _inline_on_group),
    "admin-group-assume-policy-detached.remediate": Case(REMEDIATE, "AdminDriftFunction",
                                                         lambda: event("admin-assume-policy-detached"),
                                                         _detach_assume),
    "admin-group-assume-policy-detached.notify": Case(NOTIFY, "AdminDriftFunction",
                                                      lambda: event("admin-assume-policy-detached"), _detach_assume),
    # --- admin drift: the role and the assume policy ----------------------------------------
    "admin-role-trust-weakened.remediate": Case(REMEDIATE, "AdminDriftFunction",
                                                lambda: event("admin-role-mfa-removed"), _weaken_trust),
    "admin-role-trust-weakened.notify": Case(NOTIFY, "AdminDriftFunction",
                                             lambda: event("admin-role-mfa-removed"), _weaken_trust),
    "admin-role-trust-weakened.kill-switch": Case(KILL, "AdminDriftFunction",
                                                  lambda: event("admin-role-mfa-removed"), _weaken_trust),
    "admin-role-session-length.remediate": Case(REMEDIATE, "AdminDriftFunction",
                                                lambda: event("admin-role-session-lengthened"), _lengthen_session),
    "admin-role-session-length.notify": Case(NOTIFY, "AdminDriftFunction",
                                             lambda: event("admin-role-session-lengthened"), _lengthen_session),
    "assume-policy-rewritten.remediate": Case(REMEDIATE, "AdminDriftFunction",
                                              lambda: event("admin-assume-policy-rewritten"), _rewrite_assume),
    "assume-policy-rewritten.failed": Case(REMEDIATE, "AdminDriftFunction",
                                           lambda: event("admin-assume-policy-rewritten"), _rewrite_assume,
                                           errors={"CreatePolicyVersion": "AccessDenied"}),
    # --- admin drift: grants around the role ------------------------------------------------
    "admin-granted-to-user.reported": Case(REMEDIATE, "AdminDriftFunction",
                                           lambda: event("admin-policy-attached-to-user"), _admin_on_bob),
    "admin-granted-to-user.remediate": Case({**REMEDIATE, "DetachOtherAdminGrants": "true"}, "AdminDriftFunction",
                                            lambda: event("admin-policy-attached-to-user"), _admin_on_bob),
    "admin-granted-to-user.notify": Case({**NOTIFY, "DetachOtherAdminGrants": "true"}, "AdminDriftFunction",
                                         lambda: event("admin-policy-attached-to-user"), _admin_on_bob),
    # --- MFA: sign-ins, devices, group members, quarantine ----------------------------------
    "console-signin-without-mfa.notify": Case({}, "MfaDriftFunction", lambda: event("signin-iam-user-without-mfa")),
    "console-signin-without-mfa.quarantine": Case({"MfaMode": "quarantine"}, "MfaDriftFunction",
                                                  lambda: event("signin-iam-user-without-mfa")),
    "console-signin-without-mfa.kill-switch": Case({"MfaMode": "quarantine", "KillSwitch": "on"}, "MfaDriftFunction",
                                                   lambda: event("signin-iam-user-without-mfa")),
    "console-signin-without-mfa.exempt": Case(
        {"MfaMode": "quarantine", "ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:user/bob"},
        "MfaDriftFunction", lambda: event("signin-iam-user-without-mfa")),
    "console-signin-without-mfa.failed": Case({"MfaMode": "quarantine"}, "MfaDriftFunction",
                                              lambda: event("signin-iam-user-without-mfa"),
                                              errors={"AttachUserPolicy": "AccessDenied"}),
    "mfa-removed.notify": Case({}, "MfaDriftFunction", lambda: event("mfa-device-deactivated"), _phoebe_mfa_off),
    "mfa-removed.quarantine": Case({"MfaMode": "quarantine"}, "MfaDriftFunction",
                                   lambda: event("mfa-device-deactivated"), _phoebe_mfa_off),
    "mfa-check-failed.notify": Case({}, "MfaDriftFunction", lambda: event("mfa-device-deactivated"), _phoebe_mfa_off,
                                    errors={"ListMFADevices": "AccessDenied"}),
    "mfa-removed.refused": Case({}, "MfaDriftFunction", lambda: _refused(event("mfa-device-deactivated"))),
    "mfa-grace-started.notify": Case({}, "MfaDriftFunction", lambda: event("mfa-admin-group-member-added"),
                                     _bob_joins),
    "user-without-mfa.quarantine-no-grace": Case({"MfaMode": "quarantine", "MfaGraceHours": "0"}, "MfaDriftFunction",
                                                 lambda: event("mfa-admin-group-member-added"), _bob_joins),
    "mfa-quarantine-lifted.quarantine": Case(
        {"MfaMode": "quarantine"}, "MfaDriftFunction",
        lambda: with_identity(event("mfa-device-enabled"), ADMIN_SESSION), _bob_quarantined_then_enrols),
    "mfa-quarantine-kept.quarantine": Case({"MfaMode": "quarantine"}, "MfaDriftFunction",
                                           lambda: with_identity(event("mfa-device-enabled"), ADMIN_SESSION),
                                           _bob_quarantined),
    "mfa-quarantine-kept-unconfirmed.quarantine": Case({"MfaMode": "quarantine"}, "MfaDriftFunction",
                                                       lambda: event("mfa-device-enabled"),
                                                       _bob_quarantined_then_enrols),
    "mfa-quarantine-still-attached.notify": Case({}, "MfaDriftFunction",
                                                 lambda: with_identity(event("mfa-device-enabled"), ADMIN_SESSION),
                                                 _bob_quarantined_then_enrols),
    "admin-credential-takeover.notify": Case({}, "MfaDriftFunction", lambda: event("mfa-device-enabled"),
                                             _bob_joins_then_enrols),
    # --- the daily MFA sweep ------------------------------------------------------------------
    "mfa-sweep.notify": Case({}, "MfaSweepFunction", lambda: load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")),
    "mfa-sweep.quarantine": Case({"MfaMode": "quarantine"}, "MfaSweepFunction",
                                 lambda: load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")),
    "mfa-sweep.kill-switch": Case({"MfaMode": "quarantine", "KillSwitch": "on"}, "MfaSweepFunction",
                                  lambda: load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")),
    "mfa-sweep.admin-group-no-mfa": Case({}, "MfaSweepFunction",
                                         lambda: load_event(EVENTS_DIR / "mfa-sweep-scheduled.json"), _no_member_mfa),
    "mfa-sweep-failed.notify": Case({}, "MfaSweepFunction",
                                    lambda: load_event(EVENTS_DIR / "mfa-sweep-scheduled.json"),
                                    errors={"GenerateCredentialReport": "AccessDenied"}),
    # --- root activity (notify only, whatever the modes) ------------------------------------
    "root-console-signin.without-mfa": Case({}, "RootActivityFunction", lambda: event("root-console-signin")),
    "root-console-signin.with-mfa": Case({}, "RootActivityFunction", lambda: event(
        "root-console-signin", additionalEventData={"LoginTo": "https://console.aws.amazon.com/console/home",
                                                    "MobileVersion": "No", "MFAUsed": "Yes"})),
    "root-console-signin-failed.wrong-password": Case({}, "RootActivityFunction", lambda: event(
        "root-console-signin", responseElements=ROOT_SIGNIN_FAILED, errorMessage=PASSWORD_FAILED,
        additionalEventData={"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No",
                             "MFAUsed": "No"})),
    "root-console-signin-failed-mfa.password-right": Case({}, "RootActivityFunction", lambda: event(
        "root-console-signin", responseElements=ROOT_SIGNIN_FAILED, errorMessage=PASSWORD_FAILED,
        additionalEventData={"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No",
                             "MFAUsed": "Yes"})),
    "root-session-call.password-deleted": Case({}, "RootActivityFunction", lambda: with_identity(event(
        "root-access-key-created", eventName="DeleteLoginProfile", requestParameters=None, responseElements=None,
        userAgent="aws-cli/2.22.4 md/command#iam.delete-login-profile"), ROOT_SESSION)),
    "root-session-call.refused": Case({}, "RootActivityFunction", lambda: with_identity(_refused(event(
        "root-access-key-created", eventName="DeleteAccessKey",
        requestParameters={"accessKeyId": "AKIAEXAMPLEROOT0001"},
        responseElements=None)), ROOT_SESSION)),
    "root-access-key-created.notify": Case({}, "RootActivityFunction", lambda: event("root-access-key-created")),
    "root-api-call.notify": Case({}, "RootActivityFunction", lambda: event(
        "root-access-key-created", eventName="PutBucketPolicy", eventSource="s3.amazonaws.com",
        requestParameters={"bucketName": "example-bucket"}, responseElements=None)),
    "root-api-call-failed.notify": Case({}, "RootActivityFunction", lambda: _refused(event(
        "root-access-key-created", responseElements=None))),
    "root-mfa-removed.notify": Case({}, "RootActivityFunction", lambda: event(
        "root-access-key-created", eventName="DeactivateMFADevice", responseElements=None,
        requestParameters={"userName": "AWS ROOT USER",
                           "serialNumber": f"arn:aws:iam::{ACCOUNT_ID}:mfa/root-account-mfa-device"})),
    "root-password.changed": Case({}, "RootActivityFunction", lambda: event(
        "root-console-signin", eventName="PasswordUpdated", responseElements={"PasswordUpdated": "Success"},
        additionalEventData={})),
    # --- the audit trail ------------------------------------------------------------------------
    "trail-stopped.remediate": Case({}, "TrailGuardFunction", lambda: event("trail-stopped"), _stop_trail),
    "trail-stopped.notify": Case({"TrailMode": "notify"}, "TrailGuardFunction", lambda: event("trail-stopped"),
                                 _stop_trail),
    "trail-stopped.kill-switch": Case({"KillSwitch": "on"}, "TrailGuardFunction", lambda: event("trail-stopped"),
                                      _stop_trail),
    "trail-stopped.failed": Case({}, "TrailGuardFunction", lambda: event("trail-stopped"), _stop_trail,
                                 errors={"StartLogging": "AccessDenied"}),
    "trail-stopped.restarted-already": Case({}, "TrailGuardFunction", lambda: event("trail-stopped")),
    "trail-selectors-narrowed.notify": Case({}, "TrailGuardFunction", lambda: event("trail-event-selectors-narrowed"),
                                            _narrow_trail),
    # --- self-protection -----------------------------------------------------------------------
    "guardrail-tampered.rule-disabled": Case({}, "SelfProtectFunction", lambda: event("tamper-rule-disabled")),
    "guardrail-tampered.function-changed": Case({}, "SelfProtectFunction",
                                                lambda: event("tamper-function-config-changed")),
    "guardrail-tampered.role-borrowed": Case({}, "SelfProtectFunction", lambda: event(
        "tamper-function-config-changed", eventName="CreateFunction20150331", requestParameters={
            "functionName": "quiet-helper", "runtime": "python3.13", "handler": "app.handler",
            "role": f"arn:aws:iam::{ACCOUNT_ID}:role/account-guardrail/account-guardrail-admin-drift"})),
    "guardrail-tampered.subscription-filtered": Case({}, "SelfProtectFunction", lambda: _tamper(
        "sns", "SetSubscriptionAttributes", {
            "subscriptionArn": f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:account-guardrail-alerts:"
                               "0b1e5a3c-6d2f-4a8e-9c71-2f5d8e3b4a90",
            "attributeName": "FilterPolicy", "attributeValue": '{"severity": ["none"]}'})),
    "guardrail-tampered.alert-key-disabled": Case({}, "SelfProtectFunction", lambda: _tamper(
        "kms", "DisableKey", {"keyId": "00000000-0000-0000-0000-000000000000"})),
    "guardrail-tamper-attempt.refused": Case({}, "SelfProtectFunction",
                                             lambda: _refused(event("tamper-rule-disabled"))),
    # --- setup (every deploy) --------------------------------------------------------------------
    "baseline-setup.first-deploy": Case({}, "SetupFunction", dict, converge=False),
    "baseline-setup.held-back": Case({}, "SetupFunction", dict, _no_member_mfa, converge=False),
    "baseline-setup.failed": Case({}, "SetupFunction", dict, converge=False, errors={"CreateRole": "AccessDenied"}),
    "admin-drift-closed.before-judged": Case(REMEDIATE, "AdminDriftFunction",
                                             lambda: event("admin-policy-attached-to-group")),
    # --- admin paths beyond the group (policy analyzer) -------------------------------------------
    "admin-group-extra-policy.remediate": Case(REMEDIATE, "AdminDriftFunction", lambda: iam_event(
        "AttachGroupPolicy", {"groupName": "administrators",
                              "policyArn": f"arn:aws:iam::{ACCOUNT_ID}:policy/no-bucket-deletes"}),
        _deny_policy_for_group),
    "admin-path-broken.boundary": Case(REMEDIATE, "AdminDriftFunction", lambda: iam_event(
        "PutRolePermissionsBoundary", {"roleName": "admin-mfa", "permissionsBoundary": DENY_ALL}, PHOEBE_USER),
        _boundary_on_admin_role),
    "admin-path-broken.by-root": Case(REMEDIATE, "AdminDriftFunction", lambda: iam_event(
        "PutRolePermissionsBoundary", {"roleName": "admin-mfa", "permissionsBoundary": DENY_ALL}, ROOT_USER),
        _boundary_on_admin_role),
    "admin-granted-to-role.remediate": Case({**REMEDIATE, "DetachOtherAdminGrants": "true"}, "AdminDriftFunction",
                                            lambda: iam_event("AttachRolePolicy", {"roleName": "bob-tools",
                                                                                   "policyArn": ADMIN}, PHOEBE_USER),
                                            _role_bob_assumes_gets_admin),
    "escalation-granted-to-user.reported": Case(REMEDIATE, "AdminDriftFunction", lambda: iam_event(
        "PutUserPolicy", {"userName": "bob", "policyName": "self-service", "policyDocument": json.dumps(ESCALATION)},
        PHOEBE_USER), _escalation_on_bob),
    "admin-group-renamed.reported": Case(REMEDIATE, "AdminDriftFunction", lambda: iam_event(
        "UpdateGroup", {"groupName": "administrators", "newGroupName": "ops"}, PHOEBE_USER), _group_renamed),
    "admin-group-held-back-finished.remediate": Case(REMEDIATE, "AdminDriftFunction", lambda: event(
        "mfa-device-enabled", requestParameters={"userName": "phoebe",
                                                 "serialNumber": f"arn:aws:iam::{ACCOUNT_ID}:mfa/phoebe-new"},
        userIdentity=PHOEBE_USER), _held_back_then_phoebe_enrols),
    "admin-inventory.setup": Case({}, "SetupFunction", dict, _grants_before_deploy, converge=False),
    # --- the alert subscription (setup: every deploy and daily) -------------------------------------
    "alert-subscription.repaired": Case({}, "SetupFunction", dict, _owner_unsubscribed, masks=(
        (r"account-guardrail-alerts:[0-9a-f-]{36}", "account-guardrail-alerts:<new-subscription-id>"),)),
    # --- trail coverage: another trail still logs every region's management events -------------------
    "trail-stopped.covered": Case({}, "TrailGuardFunction", lambda: event("trail-stopped"), _covered_trail_stopped),
    "trail-deleted.covered": Case({}, "TrailGuardFunction", lambda: event("trail-stopped", eventName="DeleteTrail"),
                                  _covered_trail_deleted),
    # --- self-protection: the alerts silenced ---------------------------------------------------------
    "guardrail-tampered.owner-unsubscribed": Case({}, "SelfProtectFunction", lambda: _tamper(
        "sns", "Unsubscribe", {"subscriptionArn": f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:account-guardrail-alerts:"
                                                  "0b1e5a3c-6d2f-4a8e-9c71-2f5d8e3b4a90"})),
    "guardrail-tampered.topic-deleted": Case({}, "SelfProtectFunction", lambda: _tamper(
        "sns", "DeleteTopic", {"topicArn": f"arn:aws:sns:us-east-1:{ACCOUNT_ID}:account-guardrail-alerts"})),
    # --- the heartbeat: is the guardrail blind? ------------------------------------------------------
    "guardrail-blind.no-trail-logging": Case(FORWARDED_TWO, "HeartbeatFunction", lambda: SCHEDULED_HEARTBEAT,
                                             _stop_trail, forwarding=True),
    "guardrail-blind.rule-disabled": Case(FORWARDED_TWO, "HeartbeatFunction", lambda: SCHEDULED_HEARTBEAT,
                                          _disable_rule, forwarding=True),
    "guardrail-sees-again.recovered": Case(FORWARDED_TWO, "HeartbeatFunction", lambda: SCHEDULED_HEARTBEAT,
                                           _stop_trail, forwarding=True, warmup=_blind_then_seen),
    # --- the guardrail itself ------------------------------------------------------------------
    "guardrail-permission-missing.admin-drift": Case(REMEDIATE, "AdminDriftFunction",
                                                     lambda: event("admin-policy-attached-to-group"), _attach_admin,
                                                     errors={"ListAttachedGroupPolicies": "AccessDenied",
                                                             "GetGroup": "AccessDenied"}),
}


# --- rendering and comparing ----------------------------------------------------------------------


def published(inv: Invocation) -> list[dict[str, Any]]:
    """Every sns:Publish the invocation made, as sent (Subject, MessageStructure, Message)."""
    return [dict(c.params) for c in inv.calls if c.name == "sns:Publish"]


def render(messages: list[dict[str, Any]]) -> str:
    """What the owner's mailbox shows: subject, then the email text, per message."""
    if not messages:
        return "(no alert)\n"
    parts = []
    for message in messages:
        body = message.get("Message", "")
        if message.get("MessageStructure") == "json":
            body = json.loads(body)["email"]
        parts.append(f"Subject: {message.get('Subject', '')}\n\n{body}\n")
    return SEPARATOR.join(parts)


def run_case(case: Case) -> list[dict[str, Any]]:
    """Run one case on a fresh baseline account; the SNS messages it published."""
    with baseline_account(case.parameters, converge=case.converge, forwarding=case.forwarding) as local:
        case.prepare(iam_client())
        pin_account_times()
        if case.warmup:
            case.warmup(local)
        raw = case.event()
        if case.errors:
            with inject_errors(case.errors):
                inv = local.invoke(case.function, raw)
        else:
            inv = local.invoke(case.function, raw)
    assert inv.error is None or "AlertDeliveryError" not in (inv.error or ""), inv.logs
    return published(inv)


_cache: dict[str, list[dict[str, Any]]] = {}


def case_messages(name: str) -> list[dict[str, Any]]:
    """The messages a case publishes (computed once per test process)."""
    if name not in _cache:
        _cache[name] = run_case(CASES[name])
    return _cache[name]


@pytest.fixture
def messages_of(frozen_clock: None) -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    yield case_messages


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_email(name: str, messages_of: Callable[[str], list[dict[str, Any]]]) -> None:
    text = render(messages_of(name))
    for pattern, replacement in CASES[name].masks:
        text = re.sub(pattern, replacement, text)
    path = GOLDEN_DIR / f"{name}.txt"
    if UPDATE:
        GOLDEN_DIR.mkdir(exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        return
    assert path.exists(), f"no golden file for {name}: run UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden.py"
    assert text == path.read_text(), f"{name}: the email changed; if on purpose, regenerate (see the module docstring)"


def test_every_golden_file_has_a_case() -> None:
    """A golden file nobody renders any more is stale: delete it (or restore its case)."""
    stale = sorted(p.stem for p in GOLDEN_DIR.glob("*.txt") if p.stem not in CASES)
    assert not stale, f"golden files without a case: {stale}"


# --- the same alerts for machines, chat and Security Hub: each validated against its schema -------

SCHEMAS = Path(__file__).parent.parent / "schemas"


def schema_errors(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None,
                  path: str = "$") -> list[str]:
    """The JSON Schema keywords our schemas use (draft 2020-12 subset): $ref to #/$defs, type, const,
    enum, required, properties, additionalProperties, items, min/maxItems, min/maxLength,
    maxProperties, pattern. jsonschema is not a dependency; this stays small on purpose."""
    root = root or schema
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix("#/$defs/")
        return schema_errors(value, root["$defs"][name], root, path)
    errors: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
                  "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
                  "null": lambda v: v is None, "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)}
        if not any(checks[k](value) for k in allowed):
            return [f"{path}: {type(value).__name__} is not {kinds}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
            errors.append(f"{path}: length {len(value)} outside the schema's bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value[:80]!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 10**9):
            errors.append(f"{path}: {len(value)} items outside the schema's bounds")
        for index, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), root, f"{path}[{index}]")
    if isinstance(value, dict):
        errors += [f"{path}: missing {key}" for key in schema.get("required", []) if key not in value]
        if len(value) > schema.get("maxProperties", 10**9):
            errors.append(f"{path}: too many properties")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected property {key}")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, root, f"{path}.{key}")
    return errors


def load_schema(name: str) -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / name).read_text()))


def test_the_validator_rejects_what_the_schemas_forbid() -> None:
    chat = load_schema("chat-notification.schema.json")
    good = {"version": "1.0", "source": "custom", "content": {"textType": "client-markdown", "description": "x"}}
    assert schema_errors(good, chat) == []
    assert schema_errors({**good, "source": "aws"}, chat)
    assert schema_errors({**good, "content": {"title": "no description"}}, chat)
    assert schema_errors({**good, "extra": 1}, chat)
    assert schema_errors({**good, "metadata": {"additionalContext": {"n": 1}}}, chat)
    assert schema_errors({**good, "content": {"description": "x", "nextSteps": ["a"] * 6}}, chat)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_body_of_every_golden_alert_validates(name: str,
                                                   messages_of: Callable[[str], list[dict[str, Any]]]) -> None:
    """default: the machine JSON; https: the chat card; and the ASFF record Security Hub would get."""
    from guardrail_core import security_hub
    from guardrail_core.config import Settings

    machine, chat, asff_schema = (load_schema(n) for n in (
        "finding.schema.json", "chat-notification.schema.json", "asff-finding.schema.json"))
    for message in messages_of(name):
        body = json.loads(message["Message"])
        assert set(body) == {"default", "email", "https"}
        default = json.loads(body["default"])
        assert schema_errors(default, machine) == [], name
        card = json.loads(body["https"])
        assert schema_errors(card, chat) == [], name
        assert card["metadata"]["summary"] == message["Subject"]
        settings = Settings(account_id=ACCOUNT_ID, region="us-east-1", security_hub=True)
        (record,) = security_hub.records_from_alerts([message], settings)  # what the runtime imports
        assert schema_errors(record, asff_schema) == [], name
        assert record["UpdatedAt"] >= record["CreatedAt"]
        assert findings.Finding.from_dict(default["guardrail_finding"]).to_dict() == default["guardrail_finding"]


def test_security_hub_gets_each_finding_once_and_redelivery_updates_it(frozen_clock: None) -> None:
    """SecurityHubFindings=true: the finding lands in Security Hub (ASFF, the account's own product);
    the same event delivered again updates that record instead of adding another."""
    with baseline_account({**REMEDIATE, "SecurityHubFindings": "true"}) as local:
        _attach_admin(iam_client())
        raw = event("admin-policy-attached-to-group")
        first = local.invoke("AdminDriftFunction", raw)
        again = local.invoke("AdminDriftFunction", copy.deepcopy(raw))
        hub = boto3.client("securityhub", region_name="us-east-1").get_findings()["Findings"]
    assert first.error is None and again.error is None
    assert [c.name for c in first.calls if c.service == "securityhub"] == ["securityhub:BatchImportFindings"]
    # Setup's own email (baseline set up, when the stack was deployed) is there too; the drift once.
    assert sorted(r["GeneratorId"] for r in hub) == ["account-guardrail/admin-group-rights-granted",
                                                     "account-guardrail/baseline-setup"]
    (record,) = [r for r in hub if r["GeneratorId"] == "account-guardrail/admin-group-rights-granted"]
    assert record["ProductArn"] == f"arn:aws:securityhub:us-east-1:{ACCOUNT_ID}:product/{ACCOUNT_ID}/default"
    assert record["Severity"]["Label"] == "HIGH" and record["AwsAccountId"] == ACCOUNT_ID
    assert record["Title"].startswith("Undone: AdministratorAccess attached to group administrators by phoebe")
    assert record["Id"].endswith("/admin-group-rights-granted/47b1f82b-79f8-71d2-d6c5-766a289d62bb")
    assert {r["Type"] for r in record["Resources"]} == {"AwsAccount", "AwsIamGroup"}
    assert "Remediation" in record and record["Remediation"]["Recommendation"]["Text"]


def test_security_hub_is_off_by_default(frozen_clock: None) -> None:
    with baseline_account(REMEDIATE) as local:
        _attach_admin(iam_client())
        inv = local.invoke("AdminDriftFunction", event("admin-policy-attached-to-group"))
    assert inv.error is None and not [c for c in inv.calls if c.service == "securityhub"]


# --- what every email must get right, checked across all golden cases ------------------------------


def emails_of(messages: list[dict[str, Any]]) -> list[str]:
    return [json.loads(m["Message"])["email"] for m in messages]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_email_reads_right(name: str, messages_of: Callable[[str], list[dict[str, Any]]]) -> None:
    for message, email in zip(messages_of(name), emails_of(messages_of(name)), strict=True):
        flat = " ".join(email.split())
        # Times always present; 80 columns except links and commands that cannot be broken.
        assert "Time (UTC): unknown" not in email and "Time (UTC): 20" in email, name
        assert all(len(line) <= 80 or " " not in line.strip() for line in email.splitlines()), name
        # Advice true to the mode: never "switch to notify" to someone who is in notify mode or killed it.
        if "(mode: notify" in email or "kill switch on" in email or "(mode: setup" in email:
            assert "set AdminDriftMode=notify" not in flat, name
        # An undo that recreates the drift says first what to change, so the guardrail does not revert it.
        if "To undo:" in email and message["Subject"].startswith(("[HIGH] Undone", "[MEDIUM] Undone",
                                                                  "[HIGH] Partly", "[HIGH] Undo FAILED")):
            assert "Before running a 'To undo' command below" in flat and "ExemptPrincipalArns" in flat, name
        # Plain words first: the first paragraph names nobody by ARN.
        first = email.split("WHAT HAPPENED\n", 1)[1].split("\n\n", 1)[0]
        assert "arn:aws:sts::" not in first and ":user/" not in first, name
        assert len(message["Subject"]) <= 100, name


def test_root_signin_that_failed_at_the_mfa_step_is_high_because_the_password_was_right(
        messages_of: Callable[[str], list[dict[str, Any]]]) -> None:
    (message,) = messages_of("root-console-signin-failed-mfa.password-right")
    flat = " ".join(json.loads(message["Message"])["email"].split())
    assert message["Subject"] == "[HIGH] Root sign-in failed at the MFA step: the password was right - 123456789012"
    assert "whoever this was knows the root password" in flat and "change the root password now" in flat
    (wrong_password,) = messages_of("root-console-signin-failed.wrong-password")
    assert wrong_password["Subject"].startswith("[MEDIUM] Failed root console sign-in")


def test_assume_root_session_is_named_with_the_way_to_its_principal(
        messages_of: Callable[[str], list[dict[str, Any]]]) -> None:
    (message,) = messages_of("root-session-call.password-deleted")
    flat = " ".join(json.loads(message["Message"])["email"].split())
    assert message["Subject"].startswith("[HIGH] Root password deleted by a root session from the management "
                                         "account (AssumeRoot)")
    assert "sts:AssumeRoot" in flat and "ASIAEXAMPLEROOTTASK1" in flat and "Event name = AssumeRoot" in flat
    assert "change the root password now" not in flat and "Allow password recovery" in flat
    (refused,) = messages_of("root-session-call.refused")
    assert refused["Subject"].startswith("[MEDIUM] Refused: DeleteAccessKey by a root session")


def test_last_mfa_admin_gone_is_its_own_high_finding_from_the_detector_and_the_sweep(
        messages_of: Callable[[str], list[dict[str, Any]]]) -> None:
    for name in ("mfa-removed.notify", "mfa-sweep.admin-group-no-mfa"):
        subjects = [m["Subject"] for m in messages_of(name)]
        assert any(s.startswith("[HIGH] No one can reach admin: ")
                   for s in subjects), (name, subjects)
    # phoebe keeps her device: no such finding.
    assert not any("No one can reach admin" in m["Subject"] for m in messages_of("mfa-sweep.notify"))


def test_dates_come_from_the_data(messages_of: Callable[[str], list[dict[str, Any]]]) -> None:
    (digest,) = messages_of("mfa-sweep.notify")
    flat = " ".join(json.loads(digest["Message"])["email"].split())
    assert "credential report (generated 2026-11-28 09:30 UTC" in flat  # the report's own GeneratedTime
    assert "2015" not in flat
    (setup,) = messages_of("baseline-setup.first-deploy")
    assert "Time (UTC): 2026-11-28T12:00:00Z" in json.loads(setup["Message"])["email"]  # the run's time
