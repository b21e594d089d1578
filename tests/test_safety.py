"""Safe first: the kill switch, exempt (break-glass) principals, root, the guardrail itself (no
loops), and the last MFA path to admin are never acted on.

Each test makes a real drift in the local account and sends the event through the template's
rules and the real handlers; writes and emails are counted from the recorded AWS calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from guardrail_cli.faults import REMEDIATIONS, Remediation, function_landed, iam_event, publishes, remediation, writes
from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.recorder import Call
from guardrail_cli.seed import ADMINISTRATOR_ACCESS
from guardrail_cli.testing import baseline_account, corpus_dir, envelope, inject_errors, retarget

BOB = f"arn:aws:iam::{ACCOUNT_ID}:user/bob"
PHOEBE_MFA = f"arn:aws:iam::{ACCOUNT_ID}:mfa/phoebe"


def landed(r: Remediation) -> Any:
    return pytest.param(r, id=r.name, marks=pytest.mark.skipif(
        not function_landed(r.function), reason=f"{r.function} not written yet"))


SCENARIOS = [landed(r) for r in REMEDIATIONS]


def email(inv: Invocation) -> str:
    """The first email, on one line (the renderer wraps at 78 columns)."""
    return " ".join(inv.notifications[0]["message"].split()) if inv.notifications else ""


def remove_phoebes_mfa() -> None:
    """The admin group's only member with MFA loses it: the MFA role is nobody's way in any more."""
    iam = boto3.client("iam")
    iam.deactivate_mfa_device(UserName="phoebe", SerialNumber=PHOEBE_MFA)
    iam.delete_virtual_mfa_device(SerialNumber=PHOEBE_MFA)


def group_policies() -> list[str]:
    iam = boto3.client("iam")
    attached = iam.list_attached_group_policies(GroupName="administrators")["AttachedPolicies"]
    return sorted(p["PolicyArn"] for p in attached)


# --- the kill switch ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_kill_switch_turns_every_remediation_into_an_email_of_what_would_be_done(scenario: Remediation) -> None:
    with baseline_account({**scenario.parameters, "KillSwitch": "on"}) as local:
        event = scenario.drift()
        inv = local.invoke(scenario.function, event)
        assert inv.error is None
        assert writes(inv) == [] and not scenario.fixed()
        assert publishes(inv) == 1
        text = email(inv).lower()
        assert "kill switch" in text
        assert "[not done]" in text  # the change it would have made, listed but not made
        assert [a["status"] for a in inv.actions] and {a["status"] for a in inv.actions} == {"skipped"}


def test_kill_switch_is_a_parameter_every_function_reads() -> None:
    with baseline_account({"KillSwitch": "on"}) as local:
        for function in local.functions.values():
            assert function.environment["KILL_SWITCH"] == "on", function.logical_id


# --- exempt (break-glass) principals ----------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_changes_by_an_exempt_principal_are_reported_never_undone(scenario: Remediation) -> None:
    with baseline_account({**scenario.parameters, "ExemptPrincipalArns": BOB}) as local:
        event = scenario.drift()  # every scenario's actor (or signer-in) is bob
        assert event["detail"]["userIdentity"]["arn"] == BOB
        inv = local.invoke(scenario.function, event)
        assert inv.error is None and writes(inv) == [] and not scenario.fixed()
        assert publishes(inv) == 1 and "exempt" in email(inv).lower()


def test_exempt_arns_match_whatever_the_case() -> None:
    scenario = remediation("admin-policy-on-group")
    with baseline_account({"ExemptPrincipalArns": BOB.replace("bob", "BOB")}) as local:
        inv = local.invoke(scenario.function, scenario.drift())
        assert writes(inv) == [] and "exempt" in email(inv).lower()


# --- root -----------------------------------------------------------------------------------

AGGRESSIVE = {"MfaMode": "quarantine", "MfaGraceHours": "0", "DetachOtherAdminGrants": "true"}


def root_signin() -> dict[str, Any]:
    """The only genuine EventBridge envelope in the corpus: a root console sign-in, moved here."""
    path = corpus_dir() / "eventbridge" / "awsdocs-cloudwatch-events-user-guide" / "ConsoleLogin-1.json"
    event = json.loads(path.read_text())
    return envelope(retarget(event["detail"]), id=event["id"])


def test_root_is_never_acted_on_even_in_the_most_aggressive_modes() -> None:
    with baseline_account(AGGRESSIVE) as local:
        event = root_signin()
        assert event["detail"]["userIdentity"]["type"] == "Root"
        rules, invocations = local.dispatch(event)
        landed_invocations = [i for i in invocations if function_landed(i.function)]
        for inv in landed_invocations:
            assert inv.error is None, inv.error
            assert writes(inv) == [], inv.function
        # Root activity is notify-only: it emails and never writes.
        if function_landed("RootActivityFunction"):
            assert any(i.function == "RootActivityFunction" and publishes(i) == 1 for i in invocations)
        assert "MfaDriftFunction" not in [r.function for r in rules]  # root is judged by root activity


@pytest.mark.skipif(not function_landed("MfaDriftFunction"), reason="mfa drift not written yet")
def test_root_removing_its_own_mfa_is_reported_never_quarantined() -> None:
    with baseline_account(AGGRESSIVE) as local:
        root_mfa = f"arn:aws:iam::{ACCOUNT_ID}:mfa/root-account-mfa-device"
        event = iam_event("DeactivateMFADevice", {"userName": "aws root user", "serialNumber": root_mfa})
        detail = event["detail"]
        detail["userIdentity"] = {"type": "Root", "principalId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root",
                                  "accountId": ACCOUNT_ID}
        _, invocations = local.dispatch(event)
        assert invocations, "the MFA rule must see root removing its MFA"
        for inv in invocations:
            if function_landed(inv.function):
                assert inv.error is None and writes(inv) == [], inv.function


# --- never the last MFA path to admin -------------------------------------------------------


def test_setup_keeps_administrator_access_when_no_admin_has_mfa() -> None:
    with baseline_account(converge=False) as local:
        remove_phoebes_mfa()
        inv = local.invoke("SetupFunction", {})
        assert inv.error is None
        assert ADMINISTRATOR_ACCESS in group_policies()  # still the group's way in
        assert "iam:DetachGroupPolicy" not in writes(inv)
        held = [a for a in inv.result["actions"] if a["status"] == "skipped"]
        assert held and all("lockout" in a["detail"] for a in held)
        assert inv.result["compliant"] is False
        assert "lockout" in email(inv).lower()
        # The MFA path is still built, so the owner can finish by enrolling MFA and running setup again.
        assert boto3.client("iam").get_role(RoleName="admin-mfa")["Role"]


@pytest.mark.skipif(not function_landed("AdminDriftFunction"), reason="admin drift not written yet")
def test_admin_drift_keeps_administrator_access_when_no_admin_has_mfa() -> None:
    scenario = remediation("admin-policy-on-group")
    with baseline_account() as local:
        remove_phoebes_mfa()
        inv = local.invoke(scenario.function, scenario.drift())
        assert inv.error is None
        assert writes(inv) == [] and ADMINISTRATOR_ACCESS in group_policies()
        assert "lockout" in email(inv).lower()


@pytest.mark.skipif(not function_landed("AdminDriftFunction"), reason="admin drift not written yet")
def test_an_mfa_session_in_the_event_is_no_proof_an_mfa_device_still_exists() -> None:
    """Phoebe attaches AdministratorAccess from an MFA session, then removes her only MFA device,
    before the event is judged: the group's AdministratorAccess is now the only way in."""
    scenario = remediation("admin-policy-on-group")
    with baseline_account() as local:
        event = scenario.drift()
        identity = event["detail"]["userIdentity"]
        identity.update(arn=f"arn:aws:iam::{ACCOUNT_ID}:user/phoebe", userName="phoebe",
                        sessionContext={"attributes": {"mfaAuthenticated": "true",
                                                       "creationDate": "2026-11-28T09:00:00Z"}})
        remove_phoebes_mfa()
        inv = local.invoke(scenario.function, event)
        assert writes(inv) == [] and ADMINISTRATOR_ACCESS in group_policies()
        assert "lockout" in email(inv).lower()


@pytest.mark.skipif(not function_landed("AdminDriftFunction"), reason="admin drift not written yet")
def test_admin_drift_removes_administrator_access_once_an_admin_has_mfa() -> None:
    """The control for the two tests above: with phoebe's MFA in place the same drift is undone."""
    scenario = remediation("admin-policy-on-group")
    with baseline_account() as local:
        inv = local.invoke(scenario.function, scenario.drift())
        assert writes(inv) == ["iam:DetachGroupPolicy"] and ADMINISTRATOR_ACCESS not in group_policies()


def delete_admin_role() -> None:
    iam = boto3.client("iam")
    iam.detach_role_policy(RoleName="admin-mfa", PolicyArn=ADMINISTRATOR_ACCESS)
    iam.delete_role(RoleName="admin-mfa")


def test_a_broken_mfa_path_is_rebuilt_before_the_groups_rights_are_removed() -> None:
    """The role is gone and someone re-grants admin to the group to get back in: the guardrail
    must not take that away until the MFA role works again, so it rebuilds the role first."""
    scenario = remediation("admin-policy-on-group")
    with baseline_account() as local:
        delete_admin_role()
        inv = local.invoke(scenario.function, scenario.drift())
        assert inv.error is None
        assert writes(inv) == ["iam:CreateRole", "iam:AttachRolePolicy", "iam:DetachGroupPolicy"]
        iam = boto3.client("iam")
        trust: Any = iam.get_role(RoleName="admin-mfa")["Role"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Condition"] == {
            "Bool": {"aws:MultiFactorAuthPresent": "true"}}
        assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="admin-mfa")["AttachedPolicies"]] \
            == [ADMINISTRATOR_ACCESS]
        assert ADMINISTRATOR_ACCESS not in group_policies()


def test_when_the_mfa_path_cannot_be_rebuilt_the_groups_rights_stay() -> None:
    scenario = remediation("admin-policy-on-group")
    with baseline_account() as local:
        delete_admin_role()
        with inject_errors({"CreateRole": "AccessDenied"}):
            inv = local.invoke(scenario.function, scenario.drift())
        assert inv.error is None
        assert "iam:DetachGroupPolicy" not in writes(inv)
        assert ADMINISTRATOR_ACCESS in group_policies()
        text = " ".join(email(inv).split())
        assert "[FAILED] Create role admin-mfa" in text
        assert "not removed because an earlier step failed" in text


# --- the guardrail itself: no loops ----------------------------------------------------------


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def own_event(call: Call, role_arn: str, session: str, n: int) -> dict[str, Any]:
    """The CloudTrail event a guardrail write produces: an assumed-role call whose session issuer
    is the function's role (path included, as CloudTrail records it)."""
    role_name = role_arn.rsplit("/", 1)[1]
    detail = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": f"AROAEXAMPLEGUARDRAIL:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role_name}/{session}",
            "accountId": ACCOUNT_ID,
            "accessKeyId": "ASIAEXAMPLEGUARDRAIL",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROAEXAMPLEGUARDRAIL", "arn": role_arn,
                                  "accountId": ACCOUNT_ID, "userName": role_name},
                "attributes": {"creationDate": "2026-11-28T09:00:00Z", "mfaAuthenticated": "false"},
            },
        },
        "eventTime": "2026-11-28T09:00:01Z",
        "eventSource": f"{call.service}.amazonaws.com",
        "eventName": call.operation,
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.200",
        "userAgent": "Boto3/1.40.0 md/Botocore#1.40.0 ua/2.1 os/linux exec-env/AWS_Lambda_python3.13",
        "requestParameters": {_camel(k): v for k, v in call.params.items()},
        "responseElements": None,
        "eventID": f"own-{session}-{n}",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT_ID,
        "eventCategory": "Management",
    }
    return envelope(detail)


def replay_own_writes(local: LocalGuardrail, inv: Invocation, role_arn: str) -> list[Invocation]:
    """Send the events of the writes `inv` made, as made by `role_arn`, through every rule."""
    own = [c for c in inv.calls if c.kind == "write" and c.service in ("iam", "cloudtrail")]
    assert own, "the scenario made no write to replay"
    out: list[Invocation] = []
    for n, call in enumerate(own):
        # Lambda names the role session after the function: the deployed function's name.
        _, invocations = local.dispatch(own_event(call, role_arn, local.functions[inv.function].name, n))
        out += [i for i in invocations if function_landed(i.function)]
    return out


def role_arn(local: LocalGuardrail, function: str) -> str:
    return local.stack.get_att(local.functions[function].role, "Arn")


@pytest.fixture
def seed_account() -> Iterator[LocalGuardrail]:
    with baseline_account(converge=False) as local:
        yield local


def test_setup_writes_replayed_are_ignored_by_every_detector(seed_account: LocalGuardrail) -> None:
    setup = seed_account.invoke("SetupFunction", {})
    assert setup.result["compliant"] is True
    replies = replay_own_writes(seed_account, setup, role_arn(seed_account, "SetupFunction"))
    assert replies, "the setup's writes must reach a detector (else this test proves nothing)"
    for reply in replies:
        assert reply.error is None
        assert reply.result["status"] == "ignored" and "own role" in reply.result["reason"]
        assert writes(reply) == [] and publishes(reply) == 0
        assert [c for c in reply.calls if c.service != "dynamodb"] == []  # not even a read


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_remediation_writes_replayed_are_never_remediated_or_alerted_again(scenario: Remediation) -> None:
    with baseline_account(scenario.parameters) as local:
        inv = local.invoke(scenario.function, scenario.drift())
        assert writes(inv) == [scenario.write]
        replies = replay_own_writes(local, inv, role_arn(local, scenario.function))
        for reply in replies:
            assert reply.error is None
            assert reply.result["status"] == "ignored", reply.result
            assert writes(reply) == [] and publishes(reply) == 0


@pytest.mark.skipif(not function_landed("AdminDriftFunction"), reason="admin drift not written yet")
def test_the_same_writes_by_another_role_are_judged(seed_account: LocalGuardrail) -> None:
    """The control: it is the session issuer that makes the replay above ignored, nothing else."""
    setup = seed_account.invoke("SetupFunction", {})
    other = f"arn:aws:iam::{ACCOUNT_ID}:role/ops/deployer"
    replies = replay_own_writes(seed_account, setup, other)
    judged = [r for r in replies if r.result and r.result["status"] != "ignored"]
    assert judged and all(r.error is None for r in replies)


def test_every_function_role_is_in_the_guardrail_role_list() -> None:
    with baseline_account(converge=False) as local:
        for function in local.functions.values():
            listed = function.environment["GUARDRAIL_ROLE_ARNS"].split(",")
            roles = {role_arn(local, f) for f in local.functions}
            assert set(listed) == roles, function.logical_id
            assert all(re.fullmatch(rf"arn:aws:iam::{ACCOUNT_ID}:role/account-guardrail/[\w-]+", r) for r in roles)
