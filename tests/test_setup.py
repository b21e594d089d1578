"""The setup function converges the baseline from any starting state, and never locks the owner out."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from guardrail_cli.local import ACCOUNT_ID, REGION, LocalGuardrail, deploy_stack_resources, local_aws
from guardrail_cli.seed import ADMINISTRATOR_ACCESS, add_user, create_seed_account
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, inject_errors
from guardrail_core import baseline, setup
from guardrail_core.config import load_settings

ASSUME_POLICY_ARN = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa"


@contextlib.contextmanager
def local_stack(parameters: dict[str, str]) -> Iterator[LocalGuardrail]:
    """The stack with other parameters, in the account already active (a redeploy)."""
    local = LocalGuardrail(Stack(account_id=ACCOUNT_ID, region=REGION, parameters=parameters))
    yield local


@pytest.fixture
def empty_account() -> Iterator[LocalGuardrail]:
    """The stack deployed into an account with no IAM baseline at all."""
    with local_aws():
        local = LocalGuardrail(Stack(account_id=ACCOUNT_ID, region=REGION))
        deploy_stack_resources(local.stack)
        yield local


def attached(iam: Any, group: str) -> list[str]:
    return sorted(p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"])


def iam_writes(invocation: Any) -> list[str]:
    return [c.name for c in invocation.calls if c.service == "iam" and c.kind == "write"]


def assert_in_baseline(iam: Any, group: str = "administrators") -> None:
    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID, "AWS_REGION": REGION})
    assert attached(iam, group) == [ASSUME_POLICY_ARN]
    assert iam.list_group_policies(GroupName=group)["PolicyNames"] == []
    role = iam.get_role(RoleName="admin-mfa")["Role"]
    assert role["MaxSessionDuration"] == 3600
    trust = role["AssumeRolePolicyDocument"]
    assert baseline.trust_requires_mfa(trust, settings)
    assert trust["Statement"][0]["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    role_policies = iam.list_attached_role_policies(RoleName="admin-mfa")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in role_policies] == [ADMINISTRATOR_ACCESS]
    policy = iam.get_policy(PolicyArn=ASSUME_POLICY_ARN)["Policy"]
    document = iam.get_policy_version(PolicyArn=ASSUME_POLICY_ARN, VersionId=policy["DefaultVersionId"])
    statement = document["PolicyVersion"]["Document"]["Statement"]
    assert statement == [{"Sid": "AssumeAdminRoleWithMfa", "Effect": "Allow", "Action": "sts:AssumeRole",
                          "Resource": ROLE_ARN}]


def test_walkthrough_state_reaches_the_baseline_then_a_second_run_writes_nothing(empty_account: LocalGuardrail) -> None:
    create_seed_account()  # group with AdministratorAccess, phoebe (MFA) in it, no role
    iam = boto3.client("iam")
    users_before = iam.list_users()["Users"]

    first = empty_account.invoke("SetupFunction", {})

    assert first.error is None
    assert first.result["compliant"] is True
    assert_in_baseline(iam)
    assert iam_writes(first) == [
        "iam:CreatePolicy", "iam:CreateRole", "iam:AttachRolePolicy", "iam:AttachGroupPolicy", "iam:DetachGroupPolicy",
    ]
    assert [u["UserName"] for u in iam.list_users()["Users"]] == [u["UserName"] for u in users_before]
    assert iam.get_group(GroupName="administrators")["Users"][0]["UserName"] == "phoebe"
    # The owner is told what changed, with the undo command.
    email = first.notifications[0]["message"]
    assert "Detach AdministratorAccess from group administrators" in email
    assert "aws iam attach-group-policy --group-name administrators" in email

    second = empty_account.invoke("SetupFunction", {})

    assert second.error is None
    assert second.result["plan"] == []
    assert iam_writes(second) == []
    assert second.notifications == []  # nothing changed and the trail is fine: no email


def test_dry_run_reports_the_plan_and_changes_nothing(empty_account: LocalGuardrail) -> None:
    create_seed_account()
    iam = boto3.client("iam")

    result = empty_account.invoke("SetupFunction", {"dry_run": True})

    assert len(result.result["plan"]) == 5
    assert {a["status"] for a in result.result["actions"]} == {"skipped"}
    assert iam_writes(result) == []
    assert attached(iam, "administrators") == [ADMINISTRATOR_ACCESS]
    with pytest.raises(ClientError):
        iam.get_role(RoleName="admin-mfa")


def test_existing_role_without_mfa_condition_is_adopted_and_fixed(empty_account: LocalGuardrail) -> None:
    create_seed_account()
    iam = boto3.client("iam")
    no_mfa_trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="admin-mfa", AssumeRolePolicyDocument=json.dumps(no_mfa_trust), MaxSessionDuration=7200)
    iam.attach_role_policy(RoleName="admin-mfa", PolicyArn=ADMINISTRATOR_ACCESS)

    result = empty_account.invoke("SetupFunction", {})

    assert "iam:CreateRole" not in iam_writes(result)
    assert "iam:UpdateAssumeRolePolicy" in iam_writes(result)
    assert "iam:UpdateRole" in iam_writes(result)  # 2 h sessions back to 1 h
    assert len([r for r in iam.list_roles()["Roles"] if r["RoleName"].lower() == "admin-mfa"]) == 1
    assert_in_baseline(iam)


def test_existing_group_named_with_capitals_is_adopted_once_the_stack_names_it_so(
        empty_account: LocalGuardrail, response_url: tuple[str, list[dict[str, Any]]]) -> None:
    """IAM finds `administrators` when the group is `Administrators`, but the stack's policies
    would name group/administrators, which IAM does not match to group/Administrators: setup
    stops before changing anything and says which parameter value to set."""
    url, received = response_url
    iam = boto3.client("iam")
    iam.create_group(GroupName="Administrators")
    iam.attach_group_policy(GroupName="Administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    add_user(iam, "phoebe", mfa=True, group="Administrators")

    stopped = empty_account.invoke("SetupFunction", cfn_event("Create", url))

    assert iam_writes(stopped) == []
    assert [r["Status"] for r in received] == ["FAILED"]
    assert received[0]["Reason"] == (
        "Setup stopped, nothing changed: group Administrators exists but the stack says administrators (IAM "
        "policies match names case-sensitively): set AdminGroupName=Administrators.")
    assert "\n" not in received[0]["Reason"]
    with local_stack({"AdminGroupName": "Administrators"}) as adopting:
        result = adopting.invoke("SetupFunction", {})

    assert result.result["compliant"] is True
    assert "iam:CreateGroup" not in iam_writes(result)
    assert [g["GroupName"] for g in iam.list_groups()["Groups"]] == ["Administrators"]
    assert_in_baseline(iam, group="Administrators")


def test_no_member_with_mfa_keeps_the_groups_admin_rights_and_says_why(empty_account: LocalGuardrail) -> None:
    iam = boto3.client("iam")
    iam.create_group(GroupName="administrators")
    iam.attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    add_user(iam, "phoebe", mfa=False, group="administrators")

    result = empty_account.invoke("SetupFunction", {})

    assert result.error is None
    assert result.result["compliant"] is False
    # Everything else converged: the MFA path exists, ready for when someone enrols MFA.
    assert attached(iam, "administrators") == sorted([ADMINISTRATOR_ACCESS, ASSUME_POLICY_ARN])
    assert iam.get_role(RoleName="admin-mfa")["Role"]["MaxSessionDuration"] == 3600
    held = [a for a in result.result["actions"] if a["status"] == "skipped"]
    assert [a["name"] for a in held] == ["Detach AdministratorAccess from group administrators"]
    assert "no member of group administrators has an MFA device" in held[0]["detail"]
    email = result.notifications[0]
    assert email["subject"].startswith("[HIGH] Baseline setup incomplete")
    assert "Enrol an MFA device for at least one member" in email["message"]
    assert "iam:DetachGroupPolicy" not in iam_writes(result)


def test_missing_trail_is_reported_plainly(empty_account: LocalGuardrail) -> None:
    iam = boto3.client("iam")
    iam.create_group(GroupName="administrators")
    add_user(iam, "phoebe", mfa=True, group="administrators")

    result = empty_account.invoke("SetupFunction", {})

    assert result.result["trail_ok"] is False
    assert "No multi-region CloudTrail trail exists" in result.result["trail"]
    assert "the detectors are blind" in result.notifications[0]["message"]


# --- custom resource protocol -------------------------------------------------------------


class _Listener(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local stand-in for CloudFormation's pre-signed S3 response URL."""
    received: list[dict[str, Any]] = []
    handler = type("Listener", (_Listener,), {"received": received})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", received
    server.shutdown()


def cfn_event(request_type: str, url: str) -> dict[str, Any]:
    event = {
        "RequestType": request_type, "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/account-guardrail/1",
        "RequestId": f"req-{request_type}", "LogicalResourceId": "Baseline", "ResourceType": "Custom::Baseline",
        "ResourceProperties": {"ServiceToken": "arn", "AdminGroupName": "administrators"},
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = "baseline-Baseline"
    return event


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_converge_and_answer_success_once(
    empty_account: LocalGuardrail, response_url: tuple[str, list[dict[str, Any]]], request_type: str
) -> None:
    url, received = response_url
    create_seed_account()

    empty_account.invoke("SetupFunction", cfn_event(request_type, url))

    assert len(received) == 1
    assert received[0]["Status"] == "SUCCESS"
    assert received[0]["RequestId"] == f"req-{request_type}"
    assert received[0]["PhysicalResourceId"] == "baseline-Baseline"
    assert received[0]["Data"] == {"Compliant": "true"}
    assert_in_baseline(boto3.client("iam"))


def test_delete_leaves_the_baseline_and_answers_success_once(
    empty_account: LocalGuardrail, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = response_url
    create_seed_account()
    empty_account.invoke("SetupFunction", {})

    delete = empty_account.invoke("SetupFunction", cfn_event("Delete", url))

    assert [r["Status"] for r in received] == ["SUCCESS"]
    assert iam_writes(delete) == []
    assert_in_baseline(boto3.client("iam"))


def test_an_error_answers_failed_once_with_a_readable_reason(
    empty_account: LocalGuardrail, response_url: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = response_url
    create_seed_account()

    def denied(*args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed iam:ListAttachedGroupPolicies"}},
                          "ListAttachedGroupPolicies")

    monkeypatch.setattr("guardrail_core.lockout.read_facts", denied)

    result = empty_account.invoke("SetupFunction", cfn_event("Create", url))

    assert result.error is None  # answered, not crashed: CloudFormation is never left hanging
    assert len(received) == 1
    assert received[0]["Status"] == "FAILED"
    assert "AccessDenied" in received[0]["Reason"]


def test_a_failed_write_fails_the_deployment_with_what_to_fix(
    empty_account: LocalGuardrail, response_url: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = response_url
    create_seed_account()
    iam = boto3.client("iam")

    with inject_errors({"CreateRole": "AccessDenied"}):
        empty_account.invoke("SetupFunction", cfn_event("Create", url))

    assert len(received) == 1
    assert received[0]["Status"] == "FAILED"
    assert "Failed: Create role admin-mfa" in received[0]["Reason"]
    assert "lacks the permission iam:CreateRole" in received[0]["Reason"]
    # The lockout guard: with the MFA role not created, the group keeps its admin rights.
    assert ADMINISTRATOR_ACCESS in attached(iam, "administrators")


def test_near_the_timeout_it_answers_failed_instead_of_hanging() -> None:
    sent: list[tuple[str, str]] = []

    def slow() -> setup.SetupResult:
        time.sleep(3)
        return setup.SetupResult(dry_run=False)

    def send(event: Any, status: str, reason: str, data: Any, physical_id: str) -> None:
        sent.append((status, reason))

    started = time.monotonic()
    setup.handle_custom_resource(
        {"RequestType": "Create", "ResponseURL": "unused", "LogicalResourceId": "Baseline"},
        remaining_ms=lambda: setup.RESPONSE_MARGIN_MS + 1000, work=slow, send=send,
    )

    assert time.monotonic() - started < 2.5
    assert sent == [("FAILED", "Setup did not finish in time; invoke the setup function directly to see why.")]


# --- the daily converge: held-back steps finished once safe --------------------------------------

SCHEDULED = {"converge": "scheduled"}  # what the template's DailyConverge schedule sends


def enable_mfa(iam: Any, user: str) -> None:
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=user)["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(UserName=user, SerialNumber=serial, AuthenticationCode1="123456",
                          AuthenticationCode2="654321")


def create_trail() -> None:
    boto3.client("s3").create_bucket(Bucket="trail-logs")
    cloudtrail = boto3.client("cloudtrail")
    cloudtrail.create_trail(Name="all", S3BucketName="trail-logs", IsMultiRegionTrail=True)
    cloudtrail.start_logging(Name="all")


def held_back_account(iam: Any, local: LocalGuardrail) -> None:
    """Setup ran while nobody in the group had MFA: the group kept AdministratorAccess."""
    iam.create_group(GroupName="administrators")
    iam.attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    add_user(iam, "phoebe", mfa=False, group="administrators")
    first = local.invoke("SetupFunction", {})
    assert [a["status"] for a in first.actions if "Detach" in a["name"]] == ["skipped"]
    assert ADMINISTRATOR_ACCESS in attached(iam, "administrators")


def test_the_daily_converge_finishes_a_held_back_removal_once_a_member_has_mfa(empty_account: LocalGuardrail) -> None:
    iam = boto3.client("iam")
    create_trail()
    held_back_account(iam, empty_account)

    still = empty_account.invoke("SetupFunction", SCHEDULED)

    assert iam_writes(still) == [] and still.notifications == []  # nothing safe to do: no daily nagging
    enable_mfa(iam, "phoebe")

    daily = empty_account.invoke("SetupFunction", SCHEDULED)

    assert daily.error is None
    assert iam_writes(daily) == ["iam:DetachGroupPolicy"]
    assert_in_baseline(iam)
    (email,) = daily.notifications
    assert email["subject"].startswith("[INFO] Baseline converged by the daily check")
    assert "Detach AdministratorAccess from group administrators" in email["message"]
    assert "aws iam attach-group-policy --group-name administrators" in email["message"]  # the undo

    quiet = empty_account.invoke("SetupFunction", SCHEDULED)

    assert iam_writes(quiet) == [] and quiet.notifications == []


@pytest.mark.parametrize(("parameters", "why"), [
    ({"AdminDriftMode": "notify"}, "notify mode (AdminDriftMode=notify)"),
    ({"KillSwitch": "on"}, "kill switch on (KillSwitch=on)"),
])
def test_the_daily_converge_writes_nothing_when_remediation_is_off(parameters: dict[str, str], why: str) -> None:
    with local_aws():
        local = LocalGuardrail(Stack(account_id=ACCOUNT_ID, region=REGION, parameters=parameters))
        deploy_stack_resources(local.stack)
        create_seed_account()  # the group holds AdministratorAccess; phoebe has MFA

        daily = local.invoke("SetupFunction", SCHEDULED)

        assert iam_writes(daily) == [] and daily.notifications == []
        assert {a["status"] for a in daily.actions} == {"skipped"}
        assert all(a["detail"].startswith(why) for a in daily.actions)
        assert attached(boto3.client("iam"), "administrators") == [ADMINISTRATOR_ACCESS]


def mfa_enabled_event(user: str) -> dict[str, Any]:
    """events/mfa-device-enabled.json, for `user` enabling their own device."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / "mfa-device-enabled.json").read_text())
    detail = event["detail"]
    detail["userIdentity"].update(userName=user, arn=f"arn:aws:iam::{ACCOUNT_ID}:user/{user}")
    detail["requestParameters"] = {"userName": user, "serialNumber": f"arn:aws:iam::{ACCOUNT_ID}:mfa/{user}"}
    event["id"] = detail["eventID"] = f"enable-mfa-{user}"
    return event


def test_a_member_enabling_mfa_finishes_the_held_back_removal_within_the_event(empty_account: LocalGuardrail) -> None:
    iam = boto3.client("iam")
    held_back_account(iam, empty_account)
    add_user(iam, "bob", mfa=False)  # not a member
    enable_mfa(iam, "bob")

    rules, runs = empty_account.dispatch(mfa_enabled_event("bob"))

    assert "AdminAccessChange" in [r.logical_id for r in rules]
    admin = [i for i in runs if i.function == "AdminDriftFunction"]
    assert iam_writes(admin[0]) == [] and admin[0].notifications == []  # still no member with MFA
    assert ADMINISTRATOR_ACCESS in attached(iam, "administrators")
    enable_mfa(iam, "phoebe")

    rules, runs = empty_account.dispatch(mfa_enabled_event("phoebe"))

    (admin_run,) = [i for i in runs if i.function == "AdminDriftFunction"]
    assert admin_run.error is None
    assert iam_writes(admin_run) == ["iam:DetachGroupPolicy"]
    assert_in_baseline(iam)
    (email,) = admin_run.notifications
    assert email["subject"].startswith("[MEDIUM] Removed: admin rights held back on group administrators "
                                       "(phoebe now has MFA)")
    assert "An MFA device was enabled for user phoebe" in email["message"]
    assert "aws iam attach-group-policy --group-name administrators" in email["message"]  # the undo


def test_mfa_enabled_with_remediation_off_changes_nothing() -> None:
    with local_aws():
        local = LocalGuardrail(Stack(account_id=ACCOUNT_ID, region=REGION, parameters={"KillSwitch": "on"}))
        deploy_stack_resources(local.stack)
        iam = boto3.client("iam")
        held_back_account(iam, local)
        enable_mfa(iam, "phoebe")

        run = local.invoke("AdminDriftFunction", mfa_enabled_event("phoebe"))

        assert iam_writes(run) == [] and run.notifications == []
        assert ADMINISTRATOR_ACCESS in attached(iam, "administrators")
