"""One critical path (issue 16): the judgement's reads, the lockout guard's reads and the idempotency
records all at once; the remediation write waits for all of them, and never follows a failed one."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from guardrail_cli.faults import iam_event, metrics, publishes, remediation, round_trips, writes
from guardrail_cli.seed import ADMINISTRATOR_ACCESS
from guardrail_cli.testing import baseline_account, envelope, inject_errors

SCENARIO = remediation("admin-policy-on-group")


def test_admin_group_restore_writes_after_two_round_trips() -> None:
    """Before: 7 AWS calls and 4 DynamoDB calls, every one in a line (the DetachGroupPolicy write was the
    8th sequential call). Now: round 1 the act and intent records with every read by name; round 2 the
    policy's document and the members' facts; then the write: critical path 2 (budget <= 3)."""
    with baseline_account() as local:
        event = SCENARIO.drift()
        with round_trips() as timed:
            inv = local.invoke(SCENARIO.function, event)
        assert inv.error is None and SCENARIO.fixed()
    (write,) = [c for c in timed if c.name == "iam:DetachGroupPolicy"]
    before = [c for c in timed if c.start < write.start]
    assert write.depth == 3 and max(c.depth for c in before) == 2  # two round trips before the write
    first = sorted(c.name for c in before if c.depth == 1)
    assert "dynamodb:PutItem" in first and "iam:GetGroup" in first and "iam:GetRole" in first
    assert first.count("dynamodb:PutItem") == 2  # the act record and the intent, beside the reads
    reads = [c.name for c in before if c.name.startswith("iam:")]
    assert len(reads) == len(set(reads))  # nothing read twice in one invocation


def test_a_warm_container_restores_the_admin_group_after_one_round_trip() -> None:
    """The second event in the same container: the member who proved the path and the assume policy's
    version are read beside everything else (lockout.last_seen): the write follows one round trip,
    where Cloud Custodian's follows two (GetGroup, then ListAttachedGroupPolicies)."""
    with baseline_account() as local:
        local.invoke(SCENARIO.function, SCENARIO.drift())  # warms the container
        event = iam_event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMINISTRATOR_ACCESS},
                          event_id="second")
        boto3.client("iam").attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
        with round_trips() as timed:
            inv = local.invoke(SCENARIO.function, event)
        assert inv.error is None and SCENARIO.fixed()
    (write,) = [c for c in timed if c.name == "iam:DetachGroupPolicy"]
    assert write.depth == 2 and max(c.depth for c in timed if c.start < write.start) == 1


@pytest.mark.parametrize("failing", ["GetRole", "GetLoginProfile", "ListAttachedGroupPolicies"])
@pytest.mark.parametrize("code", ["AccessDenied", "ServiceUnavailable"])
def test_a_failed_read_among_the_concurrent_ones_cancels_the_write(failing: str, code: str) -> None:
    with baseline_account() as local:
        event = SCENARIO.drift()
        with inject_errors({failing: code}):
            inv = local.invoke(SCENARIO.function, event)
        assert writes(inv) == [] and not SCENARIO.fixed()  # never half-acts
        if code == "AccessDenied":  # permanent: reported
            assert inv.error is None and publishes(inv) == 1
            email = " ".join(inv.notifications[0]["message"].split())
            assert "lacks a permission" in email and failing in email
        else:  # transient: the run fails, Lambda retries, and the retry acts
            assert inv.error is not None and publishes(inv) == 0
            retry = local.invoke(SCENARIO.function, event)
            assert retry.error is None and writes(retry) == [SCENARIO.write] and SCENARIO.fixed()


def test_a_duplicate_whose_record_arrives_late_never_writes() -> None:
    """The judge reads while the act record is being written; when the record says "already done",
    the write the judge was about to make is refused at the gate."""
    with baseline_account() as local:
        event = SCENARIO.drift()
        local.invoke(SCENARIO.function, event)
        import boto3
        boto3.client("iam").attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
        dup = local.invoke(SCENARIO.function, event)  # the drift is back, but this record was judged
    assert dup.error is None and dup.result["duplicate"] is True
    assert writes(dup) == [] and publishes(dup) == 0 and metrics(dup)["DuplicateEvents"] == 1


def test_the_same_cloudtrail_record_in_a_new_envelope_is_judged_once() -> None:
    """Issue 13 (9): forwarded between buses, a record arrives with a new envelope id; before, the
    alert-only detectors emailed it again."""
    with baseline_account() as local:
        event = SCENARIO.drift()
        first = local.invoke(SCENARIO.function, event)
        forwarded: dict[str, Any] = envelope(event["detail"])
        forwarded["id"] = "another-envelope-id"
        again = local.invoke(SCENARIO.function, forwarded)
        root_event = iam_event("CreateAccessKey", {}, actor="root")
        root_event["detail"]["userIdentity"] = {"type": "Root", "arn": "arn:aws:iam::123456789012:root",
                                                "accountId": "123456789012", "principalId": "123456789012"}
        root_first = local.invoke("RootActivityFunction", root_event)
        root_again = local.invoke("RootActivityFunction", {**root_event, "id": "forwarded-copy"})
    assert publishes(first) == 1 and publishes(again) == 0 and again.result["duplicate"] is True
    assert publishes(root_first) == 1 and publishes(root_again) == 0
