"""The email an owner reads at a glance, and the JSON every other subscriber gets."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_golden import load_schema, schema_errors

from guardrail_cli.testing import envelope
from guardrail_core import alerts, aws, runtime, security_hub
from guardrail_core.config import Settings
from guardrail_core.events import parse_event
from guardrail_core.findings import Action, Actor, Finding, Severity, Status

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
    assert subject == "[HIGH] AdministratorAccess attached to group administrators by phoebe - 123456789012"
    finding.summary = "x" * 300
    long_subject = alerts.render_subject(finding, "my-very-long-account-alias")
    assert len(long_subject) == 100
    # The account (it is in the body) goes first, then the middle of what happened; the actor stays whole.
    assert long_subject.startswith("[HIGH] xxx") and "..." in long_subject
    assert long_subject.endswith("xxx by phoebe") and "my-very-long-account-alias" not in long_subject
    finding.summary = "CloudTrail trail management-events stopped; another trail covers the account"
    assert alerts.render_subject(finding, "my-very-long-account-alias") == (
        "[HIGH] CloudTrail trail management-events stopped; another trail covers the account by phoebe")


def test_subject_names_the_person_and_the_role_they_used() -> None:
    finding = sample_finding()
    finding.actor = Actor.from_event(parse_event(envelope({**RECORD, "userIdentity": ROLE_SESSION})))
    finding.outcome, finding.summary = "Undone", "trust policy of role admin-mfa replaced"
    assert alerts.render_subject(finding) == ("[HIGH] Undone: trust policy of role admin-mfa replaced by phoebe, "
                                              "using role admin-mfa")
    assert finding.headline.endswith("by phoebe, using role admin-mfa")


ROLE_SESSION: dict[str, Any] = {
    "type": "AssumedRole", "principalId": "AROAEXAMPLE:phoebe", "accountId": "123456789012",
    "arn": "arn:aws:sts::123456789012:assumed-role/admin-mfa/phoebe",
    "sessionContext": {"sessionIssuer": {"type": "Role", "arn": "arn:aws:iam::123456789012:role/admin-mfa"},
                       "attributes": {"mfaAuthenticated": "true"}},
}
_IAM_CHARS = string.ascii_letters + string.digits + "+=,.@_-"
# IAM user, group, role and session names: 1 to 64 characters; the longest drawn often.
NAME = st.one_of(st.text(alphabet=_IAM_CHARS, min_size=1, max_size=64),
                 st.text(alphabet=_IAM_CHARS, min_size=64, max_size=64))
OUTCOMES = st.sampled_from(["", "Undone", "Undo FAILED", "Partly undone", "Held back (lockout guard)",
                            "Not undone (exempt principal)", "Not undone (kill switch)", "Not undone (notify mode)"])


@settings(max_examples=300, deadline=None)
@given(user=NAME, group=NAME, role=NAME, session=NAME, kind=st.sampled_from(["user", "session"]),
       outcome=OUTCOMES, severity=st.sampled_from(list(Severity)), alias=st.sampled_from(["", "prod", "x" * 63]),
       shape=st.sampled_from(["{p} attached to group {g}", "trust policy of role {r} replaced",
                              "inline policy {p} put on user {u}", "{u} added to group {g} without MFA",
                              "Guardrail role {r} given to function {u}",
                              "No one can reach admin: the last MFA device in group {g} removed",
                              "maximum session of role {r} set to 43200 s"]))
def test_subject_never_cuts_the_actor_and_never_exceeds_the_limit(
        user: str, group: str, role: str, session: str, kind: str, outcome: str, severity: Severity, alias: str,
        shape: str) -> None:
    """64-character user, group, role and session names (IAM's maximum): the subject still fits in 100
    characters, starts with the severity, and carries the actor's name whole."""
    if kind == "user":
        identity = {"type": "IAMUser", "arn": f"arn:aws:iam::123456789012:user/{user}", "userName": user,
                    "accountId": "123456789012"}
        name = user
    else:
        identity = {**ROLE_SESSION, "arn": f"arn:aws:sts::123456789012:assumed-role/{role}/{session}"}
        name = session
    event = parse_event(envelope({**RECORD, "userIdentity": identity}))
    finding = Finding.for_event(event, id="x", severity=severity, outcome=outcome,
                                summary=shape.format(p="AdministratorAccess", g=group, r=role, u=user))
    subject = alerts.render_subject(finding, alias)
    assert len(subject) <= alerts.SUBJECT_LIMIT
    assert subject.startswith(f"[{severity.value}] ")
    assert f" by {name}" in subject and (subject.endswith(name) or f" by {name} - " in subject
                                         or f" by {name}, using role " in subject)
    assert all(32 <= ord(c) < 127 for c in subject)


def test_short_subjects_are_left_alone_and_names_lose_their_middle_first() -> None:
    finding = sample_finding()
    long_group = "g" * 30 + "-middle-" + "h" * 26
    finding.summary = f"AdministratorAccess attached to group {long_group}"
    subject = alerts.render_subject(finding)
    assert len(subject) <= 100 and "AdministratorAccess attached to group " in subject and "by phoebe" in subject
    assert "..." in subject and long_group not in subject


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


# --- Security Hub: best effort, from what was published ---------------------------------------------

HUB_ON = Settings(account_id="123456789012", region="us-east-1", security_hub=True)


class FakeHub:
    def __init__(self, fail: Exception | None = None, refuse: bool = False) -> None:
        self.fail, self.refuse, self.sent = fail, refuse, list[list[dict[str, Any]]]()

    def batch_import_findings(self, Findings: list[dict[str, Any]]) -> dict[str, Any]:  # boto3 names it Findings
        if self.fail:
            raise self.fail
        self.sent.append(Findings)
        if self.refuse:
            return {"SuccessCount": 0, "FailedCount": len(Findings),
                    "FailedFindings": [{"Id": f["Id"], "ErrorCode": "InvalidInput", "ErrorMessage": "no"}
                                       for f in Findings]}
        return {"SuccessCount": len(Findings), "FailedCount": 0, "FailedFindings": []}


def test_security_hub_import_is_off_unless_the_parameter_is_true(monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub()
    monkeypatch.setattr(aws, "client", lambda name: hub)
    message = alerts.sns_message(sample_finding())
    assert security_hub.import_alerts([message], Settings(account_id="123456789012")) == 0
    assert hub.sent == []
    assert security_hub.import_alerts([message], HUB_ON) == 1
    (batch,) = hub.sent
    assert batch[0]["Id"] == "account-guardrail/123456789012/admin-group-policy-attached/" + RECORD["eventID"]
    assert batch[0]["Title"] == sample_finding().headline


@pytest.mark.parametrize("hub", [FakeHub(fail=RuntimeError("Security Hub is not enabled")), FakeHub(refuse=True)])
def test_a_refused_or_failed_import_is_counted_never_raised(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    counted: list[str] = []
    monkeypatch.setattr(aws, "client", lambda name: hub)
    assert security_hub.import_alerts([alerts.sns_message(sample_finding())], HUB_ON, counted.append) == 0
    assert counted == ["SecurityHubImportFailed"]


def test_a_clipped_alert_still_imports_what_it_kept() -> None:
    finding = sample_finding()
    finding.what_happened = "x" * 300_000  # hostile input echoed: the SNS message is clipped
    message = runtime.render_alerts([finding], Settings(account_id="123456789012"))[0]
    default = json.loads(json.loads(message["Message"])["default"])
    assert default["guardrail_finding"]["clipped"] is True
    assert schema_errors(default, load_schema("finding.schema.json")) == []  # still the documented shape
    (record,) = security_hub.records_from_alerts([message], HUB_ON)
    assert record["Severity"]["Label"] == "HIGH" and record["GeneratorId"].endswith(finding.id)
    assert record["Description"] == finding.summary  # the brief keeps the summary


def test_the_same_event_gives_the_same_record_id_and_another_event_another() -> None:
    first = security_hub.asff(sample_finding(), HUB_ON)
    again = security_hub.asff(sample_finding(), HUB_ON)
    other = sample_finding()
    other.event_id = "3f1e2d4c-0000-4000-8000-000000000002"
    assert first["Id"] == again["Id"] != security_hub.asff(other, HUB_ON)["Id"]
