"""The baseline's pure decisions: what counts as MFA-protected, what counts as admin, what to change."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from guardrail_core import baseline
from guardrail_core.baseline import GroupState, Observed, PolicyRef, RoleState
from guardrail_core.config import ADMINISTRATOR_ACCESS_ARN, Settings

SETTINGS = Settings(account_id="123456789012")
ROOT = "arn:aws:iam::123456789012:root"


def trust(statement_extra: Mapping[str, object] | None = None, principal: object = ROOT) -> dict[str, Any]:
    stmt: dict[str, object] = {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
    stmt.update(statement_extra or {})
    return {"Version": "2012-10-17", "Statement": [stmt]}


MFA = {"Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}


@pytest.mark.parametrize(("doc", "expected"), [
    (baseline.trust_policy(SETTINGS), True),
    (trust(MFA), True),
    (trust({"Condition": {"bool": {"AWS:MultiFactorAuthPresent": "TRUE"}}}), True),  # keys are case-insensitive
    (json.dumps(trust(MFA)), True),  # as CloudTrail carries it
    (trust(), False),
    (trust({"Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}}), False),  # keys without MFA pass
    (trust({"Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}}), False),
    (trust(MFA, principal="*"), False),
    (trust(MFA, principal="arn:aws:iam::999999999999:root"), False),  # another account
    (trust(MFA, principal=[ROOT, "arn:aws:iam::999999999999:root"]), False),
    ({"Statement": []}, False),
    ("not json", False),
])
def test_trust_requires_mfa(doc: object, expected: bool) -> None:
    assert baseline.trust_requires_mfa(doc, SETTINGS) is expected


def test_a_second_statement_without_mfa_breaks_the_trust() -> None:
    doc = trust(MFA)
    doc["Statement"].append({"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "sts:AssumeRole"})
    assert not baseline.trust_requires_mfa(doc, SETTINGS)


@pytest.mark.parametrize(("statement", "expected"), [
    ({"Effect": "Allow", "Action": "*", "Resource": "*"}, True),
    ({"Effect": "Allow", "Action": ["s3:GetObject", "*:*"], "Resource": ["*"]}, True),
    ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, True),
    ({"Effect": "Deny", "Action": "*", "Resource": "*"}, False),
    ({"Effect": "Allow", "Action": "s3:*", "Resource": "*"}, False),
    ({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::bucket/*"}, False),
])
def test_grants_admin(statement: dict[str, object], expected: bool) -> None:
    assert baseline.grants_admin({"Version": "2012-10-17", "Statement": [statement]}) is expected
    assert baseline.grants_admin(json.dumps({"Statement": statement})) is expected


def compliant_observed() -> Observed:
    return Observed(
        read=baseline.ALL_SCOPES,
        group=GroupState("administrators", attached=[PolicyRef("assume-admin-role", SETTINGS.assume_policy_arn)],
                         inline=[]),
        role=RoleState("admin-mfa", SETTINGS.admin_role_arn, baseline.trust_policy(SETTINGS), 3600,
                       attached=[PolicyRef("AdministratorAccess", ADMINISTRATOR_ACCESS_ARN)]),
        policy=baseline.PolicyState("assume-admin-role", SETTINGS.assume_policy_arn, "v1",
                                    baseline.assume_policy_document(SETTINGS)),
    )


def test_compliant_account_needs_no_change() -> None:
    assert baseline.plan(compliant_observed(), SETTINGS) == []


def test_removals_come_last_and_are_blocked_without_an_mfa_member() -> None:
    observed = compliant_observed()
    assert observed.group is not None and observed.role is not None
    observed.group.attached = [PolicyRef("AdministratorAccess", ADMINISTRATOR_ACCESS_ARN)]
    observed.group.inline = ["everything"]
    observed.group.path_gap = "no member of group administrators has an MFA device"
    observed.role.trust = trust()

    changes = baseline.plan(observed, SETTINGS)

    assert [c.call for c in changes] == [
        "update_assume_role_policy", "attach_group_policy", "detach_group_policy", "delete_group_policy",
    ]
    assert all(c.blocked for c in changes if c.removes_admin_path)
    assert not any(c.blocked for c in changes if not c.removes_admin_path)


def test_only_the_parts_read_are_planned() -> None:
    observed = compliant_observed()
    observed.read = frozenset({baseline.ROLE})
    assert observed.group is not None
    observed.group.attached = [PolicyRef("AdministratorAccess", ADMINISTRATOR_ACCESS_ARN)]
    assert baseline.plan(observed, SETTINGS) == []


def test_a_full_policy_version_history_is_pruned_before_a_new_version() -> None:
    observed = compliant_observed()
    assert observed.policy is not None
    observed.policy.document = {"Version": "2012-10-17",
                                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    observed.policy.versions = ["v1", "v2", "v3", "v4"]
    (change,) = baseline.plan(observed, SETTINGS)
    assert change.call == "create_policy_version"
    assert change.cleanup == (("delete_policy_version", {"PolicyArn": SETTINGS.assume_policy_arn, "VersionId": "v1"}),)
