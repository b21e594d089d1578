"""The inventory: an account seeded with admin grants that predate the stack; setup and the sweep list exactly those."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from guardrail_cli.local import ACCOUNT_ID, REGION, LocalGuardrail
from guardrail_cli.testing import EVENTS_DIR, baseline_account, load_event
from guardrail_core import inventory, mfa_sweep
from guardrail_core.config import load_settings

ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"
ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ESCALATE = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:Attach*", "Resource": "*"}]}
READ = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "*"}]}


def trust(principal: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]})


EXPECTED = sorted([
    "user bob: admin through AdministratorAccess",
    "user carol: escalation through inline policy attach-anything",
    "group legacy-admins: admin through everything (members: dave)",
    "role ops-automation: admin through AdministratorAccess (user bob can assume it without MFA)",
    "role partner-access: escalation through IAMFullAccess (account 210987654321 can assume it without MFA)",
])


def seed_grants() -> None:
    """Grants made before the stack existed, plus look-alikes that are not grants."""
    iam = boto3.client("iam", region_name=REGION)
    iam.attach_user_policy(UserName="bob", PolicyArn=ADMIN)
    iam.create_user(UserName="carol")
    iam.put_user_policy(UserName="carol", PolicyName="attach-anything", PolicyDocument=json.dumps(ESCALATE))
    iam.create_user(UserName="dave")
    everything = iam.create_policy(PolicyName="everything", PolicyDocument=json.dumps(ALL))["Policy"]["Arn"]
    iam.create_group(GroupName="legacy-admins")
    iam.attach_group_policy(GroupName="legacy-admins", PolicyArn=everything)
    iam.add_user_to_group(GroupName="legacy-admins", UserName="dave")
    iam.create_group(GroupName="empty-admins")  # holds admin, but nobody is in it: not a grant to anyone
    iam.attach_group_policy(GroupName="empty-admins", PolicyArn=ADMIN)
    bob = f"arn:aws:iam::{ACCOUNT_ID}:user/bob"
    iam.create_role(RoleName="ops-automation", AssumeRolePolicyDocument=trust({"AWS": bob}))
    iam.attach_role_policy(RoleName="ops-automation", PolicyArn=ADMIN)
    partner = "arn:aws:iam::210987654321:root"
    iam.create_role(RoleName="partner-access", AssumeRolePolicyDocument=trust({"AWS": partner}))
    iam.attach_role_policy(RoleName="partner-access", PolicyArn="arn:aws:iam::aws:policy/IAMFullAccess")
    iam.create_role(RoleName="lambda-admin", AssumeRolePolicyDocument=trust({"Service": "lambda.amazonaws.com"}))
    iam.attach_role_policy(RoleName="lambda-admin", PolicyArn=ADMIN)  # only Lambda assumes it
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=trust({"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}))
    iam.put_role_policy(RoleName="reader", PolicyName="read", PolicyDocument=json.dumps(READ))


@pytest.fixture
def seeded() -> Iterator[LocalGuardrail]:
    with baseline_account(converge=False) as local:
        seed_grants()
        yield local


def strip(line: str) -> str:
    return line.removeprefix("admin rights outside the baseline - ")


def test_setup_lists_exactly_the_preexisting_grants(seeded: LocalGuardrail) -> None:
    inv = seeded.invoke("SetupFunction", {})

    assert inv.error is None, inv.logs
    assert sorted(strip(line) for line in inv.result["admin_grants"]) == EXPECTED
    (note,) = inv.notifications
    assert note["subject"].startswith("[HIGH]")
    message = " ".join(note["message"].split())
    for line in EXPECTED:
        assert line in message, line
    assert "empty-admins" not in message and "lambda-admin" not in message and "reader" not in message
    # The baseline's own group held AdministratorAccess in the seed account: converged, not inventoried.
    assert "group administrators:" not in message


def test_the_daily_digest_lists_them_once(seeded: LocalGuardrail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mfa_sweep, "sleep", lambda _s: None)
    assert seeded.invoke("SetupFunction", {}).error is None
    inv = seeded.invoke("MfaSweepFunction", load_event(EVENTS_DIR / "mfa-sweep-scheduled.json"))

    assert inv.error is None, inv.logs
    (note,) = inv.notifications
    message = " ".join(note["message"].split())
    assert all(line in message for line in EXPECTED)
    assert message.count("user bob: admin through AdministratorAccess") == 1
    assert [c.operation for c in inv.calls if c.operation == "GetAccountAuthorizationDetails"] == [
        "GetAccountAuthorizationDetails"]


def test_a_clean_account_lists_nothing() -> None:
    with baseline_account() as local:
        inv = local.invoke("SetupFunction", {})
        assert inv.result["admin_grants"] == []
        assert inv.notifications == []


def test_exempt_principals_are_listed_and_marked() -> None:
    with baseline_account({"ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:user/bob"}, converge=False) as local:
        seed_grants()
        inv = local.invoke("SetupFunction", {})
        assert any(line.endswith("user bob: admin through AdministratorAccess; exempt principal (reported, never "
                                 "acted on)") for line in inv.result["admin_grants"])


def test_an_inventory_that_cannot_be_taken_is_said_not_raised() -> None:
    class Refusing:
        def get_paginator(self, _name: str) -> Any:
            raise RuntimeError("boom")

    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID})
    found, why = inventory.take(Refusing(), settings)
    assert found == [] and why.startswith("could not list who holds admin rights")
    assert inventory.lines(found, why) == [why]
