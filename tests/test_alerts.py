"""The email an owner reads at a glance, and the JSON every other subscriber gets."""

from __future__ import annotations

import json
from typing import Any

from guardrail_cli.testing import envelope
from guardrail_core import alerts
from guardrail_core.events import parse_event
from guardrail_core.findings import Action, Finding, Severity, Status

RECORD: dict[str, Any] = {
    "eventVersion": "1.08", "eventTime": "2026-11-29T10:15:00Z", "eventSource": "iam.amazonaws.com",
    "eventName": "AttachGroupPolicy", "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.7",
    "userAgent": "aws-cli/2.15.0", "eventID": "3f1e2d4c-0000-4000-8000-000000000001",
    "recipientAccountId": "123456789012", "eventType": "AwsApiCall",
    "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/phoebe", "accountId": "123456789012",
                     "principalId": "AIDAEXAMPLE", "userName": "phoebe",
                     "sessionContext": {"attributes": {"mfaAuthenticated": "false"}}},
    "requestParameters": {"groupName": "administrators", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
}


def sample_finding() -> Finding:
    event = parse_event(envelope(RECORD))
    return Finding.for_event(
        event,
        id="admin-group-policy-attached",
        severity=Severity.HIGH,
        summary="AdministratorAccess attached to group administrators",
        what_happened="phoebe attached AdministratorAccess to the administrators group, bypassing the MFA role.",
        actions=[Action("Detach AdministratorAccess from group administrators",
                        "arn:aws:iam::123456789012:group/administrators", Status.SUCCEEDED,
                        undo="aws iam attach-group-policy --group-name administrators --policy-arn "
                             "arn:aws:iam::aws:policy/AdministratorAccess",
                        at="2026-11-29 10:15:03 UTC")],
        next_steps=["To keep such a change on purpose, add the principal to ExemptPrincipalArns."],
        links=[alerts.cloudtrail_link("us-east-1", RECORD["eventID"])],
        mode="remediate",
    )


def test_subject_has_severity_what_and_account_within_100_characters() -> None:
    finding = sample_finding()
    subject = alerts.render_subject(finding)
    assert subject == "[HIGH] AdministratorAccess attached to group administrators - 123456789012"
    finding.summary = "x" * 300
    long_subject = alerts.render_subject(finding, "my-very-long-account-alias")
    assert len(long_subject) == 100
    assert long_subject.startswith("[HIGH] xxx") and long_subject.endswith("... - my-very-long-account-alias")


def test_subject_is_one_printable_ascii_line() -> None:
    finding = sample_finding()
    finding.summary = "Root sign-in \u2014 from\nsomewhere"
    subject = alerts.render_subject(finding)
    assert "\n" not in subject and all(32 <= ord(c) < 127 for c in subject)


def test_email_says_who_did_what_where_and_what_was_done() -> None:
    email = alerts.render_email(sample_finding())
    assert email.startswith("HIGH: AdministratorAccess attached to group administrators")
    assert "Principal:  arn:aws:iam::123456789012:user/phoebe" in email
    assert "Type:       IAMUser" in email
    assert "Source IP:  203.0.113.7" in email
    assert "User agent: aws-cli/2.15.0" in email
    assert "MFA used:   no" in email
    assert "Time (UTC): 2026-11-29T10:15:00Z" in email
    assert "Region:     us-east-1" in email
    assert "[DONE] Detach AdministratorAccess from group administrators" in email
    assert "When:   2026-11-29 10:15:03 UTC" in email
    assert "To undo: aws iam attach-group-policy --group-name administrators" in email
    assert "add the principal to ExemptPrincipalArns" in " ".join(email.split())
    assert "CloudTrail event ID: 3f1e2d4c-0000-4000-8000-000000000001" in email
    assert "(mode: remediate)" in email
    # Links and commands are never broken across lines.
    assert alerts.cloudtrail_link("us-east-1", RECORD["eventID"]) in email.splitlines()[-4].strip()
    assert "{" not in email  # no raw JSON dumps


def test_notify_mode_email_says_what_would_have_been_done() -> None:
    finding = sample_finding()
    finding.mode = "notify"
    finding.actions = [Action("Detach AdministratorAccess from group administrators", "arn:group", Status.SKIPPED,
                              detail="notify mode: the guardrail would make this change")]
    email = alerts.render_email(finding)
    assert "[NOT DONE] Detach AdministratorAccess" in email
    assert "notify mode: the guardrail would make this change" in email
    assert "To undo" not in email


def test_json_variant_carries_the_same_finding_for_non_email_subscribers() -> None:
    finding = sample_finding()
    message = alerts.sns_message(finding)
    assert message["MessageStructure"] == "json"
    body = json.loads(message["Message"])
    assert body["email"] == alerts.render_email(finding)
    data = json.loads(body["default"])["guardrail_finding"]
    assert data["id"] == "admin-group-policy-attached"
    assert data["severity"] == "HIGH"
    assert data["actor"]["arn"] == "arn:aws:iam::123456789012:user/phoebe"
    assert data["actions"][0]["status"] == "succeeded"
    assert data["event_id"] == RECORD["eventID"]


def test_publish_sends_subject_and_both_renderings() -> None:
    sent: list[dict[str, str]] = []

    class FakeSns:
        def publish(self, **kwargs: str) -> dict[str, str]:
            sent.append(kwargs)
            return {"MessageId": "m-1"}

    finding = sample_finding()
    assert alerts.publish(FakeSns(), "arn:aws:sns:us-east-1:123456789012:t", finding) == "m-1"
    assert sent[0]["TopicArn"] == "arn:aws:sns:us-east-1:123456789012:t"
    assert sent[0]["Subject"] == alerts.render_subject(finding)
    assert sent[0]["MessageStructure"] == "json"
    body = json.loads(sent[0]["Message"])
    assert body["email"] == alerts.render_email(finding)
    assert json.loads(body["default"])["guardrail_finding"]["id"] == finding.id
