"""Root activity: root sign-ins and root API calls, through the template's rules and the real handler.

Real records from tests/corpus (root console logins with and without MFA, failed ones,
root CreateAccessKey, root MFA changes; and every non-root sign-in) are routed with the
template's own patterns, then judged by the handler after `retarget` moves them into the
local account. Every AWS call is counted: a warm root sign-in alert is one sns:Publish.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3
import pytest

from guardrail_cli.local import ACCOUNT_ID, Invocation, LocalGuardrail
from guardrail_cli.template import Stack
from guardrail_cli.testing import (
    EVENTS_DIR,
    baseline_account,
    corpus_dir,
    corpus_records,
    envelope,
    inject_errors,
    load_event,
    retarget,
)
from guardrail_core import root_activity
from guardrail_core.config import load_settings
from guardrail_core.events import parse_event
from guardrail_core.findings import Severity
from guardrail_core.root_activity import FailureWindow, Kind, classify, event_moment, signin_facts, signin_severity
from guardrail_core.triage import Triage, Verdict

FUNCTION = "RootActivityFunction"

# Every root console sign-in in the corpus, and the severity its own record calls for
# (outcome and MFAUsed as the source's note states them: see MANIFEST.md).
ROOT_SIGNINS = {
    "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-4.json": "CRITICAL",  # Success, MFAUsed No
    "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-5.json": "HIGH",  # Success, MFAUsed YES
    "raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-6.json": "MEDIUM",  # Failure
    "raw/awsdocs-cloudwatch-events-user-guide/ConsoleLogin-1.json": "CRITICAL",  # Success, No
    "raw/panther-analysis/ConsoleLogin-4.json": "MEDIUM",  # Failure (partial record)
    "raw/panther-analysis/ConsoleLogin-11.json": "CRITICAL",  # Success, No
    "raw/panther-analysis/ConsoleLogin-21.json": "CRITICAL",  # Success, No
    "raw/panther-analysis/ConsoleLogin-22.json": "MEDIUM",  # Failure
    "raw/panther-analysis/ConsoleLogin-29.json": "CRITICAL",  # Success, No
    "raw/panther-analysis/ConsoleLogin-35.json": "HIGH",  # Success, Yes
    "raw/panther-analysis/ConsoleLogin-37.json": "HIGH",  # Failure at the MFA step (MFA Yes): password right
}
# Root activity besides ConsoleLogin that the rules must route here: root's password changed
# (sign-in events), and root's own API calls (console calls carry invokedBy signin.amazonaws.com).
ROOT_OTHER = {
    "raw/awsdocs-cloudtrail-user-guide/PasswordUpdated-1.json",
    "raw/panther-analysis/PasswordUpdated-1.json",
    "raw/panther-analysis/PasswordUpdated-2.json",
    "raw/awsdocs-cloudtrail-user-guide/EnableMFADevice-1.json",
    "raw/panther-analysis/CreateAccessKey-6.json",
    "raw/panther-analysis/CreateAccessKey-7.json",
}
# Root records deliberately NOT routed: a read-only call in a console session (covered by the
# sign-in alert; Panther's own label says "not root activity"), and an odd sign-in event type.
ROOT_NOT_ROUTED = {
    "raw/panther-analysis/ListAccessKeys-1.json",
    "raw/panther-analysis/ExternalIdPDirectoryLogin-1.json",
}


@pytest.fixture(scope="module")
def stack() -> LocalGuardrail:
    return LocalGuardrail(Stack())


@pytest.fixture(autouse=True)
def fresh_failure_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with a container that has seen no failed root sign-in."""
    monkeypatch.setattr(root_activity, "_failures", FailureWindow())


def routed_here(stack: LocalGuardrail, event: dict[str, Any]) -> bool:
    return any(rule.function == FUNCTION for rule in stack.route(event))


def iam_calls(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.service == "iam"]


def aws_calls(inv: Invocation) -> list[str]:
    """Every call but the idempotency records."""
    return [c.name for c in inv.calls if c.kind != "idempotency"]


def publishes(inv: Invocation) -> int:
    return sum(c.name == "sns:Publish" for c in inv.calls)


def email(inv: Invocation, n: int = 0) -> str:
    """The n-th email's text with its line wrapping undone."""
    return " ".join(inv.notifications[n]["message"].split())


def severities(inv: Invocation) -> list[str]:
    return [f["severity"] for f in inv.findings]


def with_id(event: dict[str, Any], suffix: str, *, new_record: bool = True) -> dict[str, Any]:
    """Another event like this one (new EventBridge id and CloudTrail eventID: not a duplicate delivery);
    with `new_record=False`, the same record delivered again in another envelope (a duplicate)."""
    copied = copy.deepcopy(event)
    copied["id"] = f"{event['id']}-{suffix}"
    if new_record:
        copied["detail"]["eventID"] = f"{event['detail'].get('eventID', '')}-{suffix}"
    return copied


def corpus_record(name: str) -> dict[str, Any]:
    (record,) = [r for f, r in corpus_records() if f == name]
    return record


# --- the rules: which real records reach the detector ----------------------------------------


def test_rules_route_every_root_record_and_no_other(stack: LocalGuardrail) -> None:
    routed = {file for file, record in corpus_records() if routed_here(stack, envelope(record))}
    assert routed == set(ROOT_SIGNINS) | ROOT_OTHER
    root_files = {file for file, record in corpus_records()
                  if isinstance(record.get("userIdentity"), dict) and record["userIdentity"].get("type") == "Root"}
    assert root_files == set(ROOT_SIGNINS) | ROOT_OTHER | ROOT_NOT_ROUTED


def test_the_one_real_eventbridge_envelope_is_routed(stack: LocalGuardrail) -> None:
    """The only genuine EventBridge event in the corpus: AWS's own example of a root console login."""
    event = json.loads((corpus_dir() / "eventbridge/awsdocs-cloudwatch-events-user-guide/ConsoleLogin-1.json")
                       .read_text())
    assert [rule.logical_id for rule in stack.route(event)] == ["RootSignIn"]


def test_non_root_signins_never_reach_the_detector(stack: LocalGuardrail) -> None:
    others = [(f, r) for f, r in corpus_records("ConsoleLogin") if f not in ROOT_SIGNINS]
    assert len(others) > 40
    assert [f for f, r in others if routed_here(stack, envelope(r))] == []


def test_aws_services_acting_for_root_and_console_reads_are_not_routed(stack: LocalGuardrail) -> None:
    record = corpus_record("raw/panther-analysis/CreateAccessKey-6.json")
    by_service = copy.deepcopy(record)
    by_service["userIdentity"]["invokedBy"] = "cloudformation.amazonaws.com"
    assert not routed_here(stack, envelope(by_service))
    console_read = copy.deepcopy(record)
    console_read.update(eventName="ListAccessKeys", readOnly=True)
    assert not routed_here(stack, envelope(console_read))
    # A read made with a long-term root access key is news: someone holds root's key.
    key_read = copy.deepcopy(corpus_record("raw/panther-analysis/ListAccessKeys-1.json"))
    key_read["userIdentity"]["accessKeyId"] = "AKIAEXAMPLEROOTKEY01"
    assert routed_here(stack, envelope(key_read))


# --- the handler on real records ---------------------------------------------------------------


def test_real_root_signins_get_the_severity_their_record_calls_for(
        guardrail: LocalGuardrail, monkeypatch: pytest.MonkeyPatch) -> None:
    for file, expected in ROOT_SIGNINS.items():
        monkeypatch.setattr(root_activity, "_failures", FailureWindow())  # judged alone
        event = envelope(dict(retarget(corpus_record(file)), eventID=file))  # samples reuse eventIDs
        assert routed_here(guardrail, event), file
        inv = guardrail.invoke(FUNCTION, event)
        assert inv.error is None, (file, inv.error)
        assert severities(inv) == [expected], file
        assert publishes(inv) == 1 and inv.actions == [], file
        text = email(inv)
        assert "ROOT user" in text and "change the root password" in text, file
        assert ("WITHOUT MFA" in text) == (expected == "CRITICAL"), file


def test_non_root_signins_handed_to_the_handler_anyway_give_nothing(guardrail: LocalGuardrail) -> None:
    for file, record in corpus_records("ConsoleLogin"):
        if file in ROOT_SIGNINS:
            continue
        inv = guardrail.invoke(FUNCTION, envelope(dict(retarget(record), eventID=str(record.get("eventID")) + file)))
        assert inv.error is None and inv.findings == [] and publishes(inv) == 0, file
        assert iam_calls(inv) == [], file


def test_real_root_api_calls(guardrail: LocalGuardrail) -> None:
    expected = {
        "raw/panther-analysis/CreateAccessKey-6.json": ("root-access-key-created", "CRITICAL"),  # root's own key
        "raw/panther-analysis/CreateAccessKey-7.json": ("root-api-call", "HIGH"),  # a key for example-user
        "raw/awsdocs-cloudtrail-user-guide/EnableMFADevice-1.json": ("root-api-call", "HIGH"),
        "raw/awsdocs-cloudtrail-user-guide/PasswordUpdated-1.json": ("root-password", "HIGH"),
        "raw/panther-analysis/PasswordUpdated-2.json": ("root-password", "MEDIUM"),  # Failure
    }
    emails, calls = {}, []
    for file, (finding_id, severity) in expected.items():
        inv = guardrail.invoke(FUNCTION, envelope(dict(retarget(corpus_record(file)), eventID=file)))
        assert inv.error is None, inv.error
        assert [(f["id"], f["severity"]) for f in inv.findings] == [(finding_id, severity)], file
        calls.append(aws_calls(inv))
        emails[file] = email(inv)
        assert "in the console" in emails[file] or "PasswordUpdated" in file or "EnableMFADevice" in file
    # One publish each; the alias is read on the container's first event only.
    assert calls == [["iam:ListAccountAliases", "sns:Publish"]] + [["sns:Publish"]] * (len(expected) - 1)
    assert "for IAM user example-user" in emails["raw/panther-analysis/CreateAccessKey-7.json"]
    assert "Delete the new root access key 1111" in emails["raw/panther-analysis/CreateAccessKey-6.json"]


def test_root_mfa_removed_is_critical_by_root_and_by_anyone(guardrail: LocalGuardrail) -> None:
    enable = retarget(corpus_record("raw/awsdocs-cloudtrail-user-guide/EnableMFADevice-1.json"))
    by_root = copy.deepcopy(enable)
    by_root["eventName"] = "DeactivateMFADevice"
    event = envelope(by_root)
    assert {r.logical_id for r in guardrail.route(event)} >= {"RootApiCall"}
    inv = guardrail.invoke(FUNCTION, event)
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("root-mfa-removed", "CRITICAL")]
    assert "Add an MFA device to root now" in email(inv)
    # Another principal deleting root's (unassigned) virtual device: routed by its own rule.
    by_admin = copy.deepcopy(by_root)
    by_admin.update(eventName="DeleteVirtualMFADevice", eventID="delete-root-device")
    by_admin["requestParameters"] = {"serialNumber": f"arn:aws:iam::{ACCOUNT_ID}:mfa/root-account-mfa-device"}
    by_admin["userIdentity"] = {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/phoebe",
                                "accountId": ACCOUNT_ID, "userName": "phoebe"}
    event = envelope(by_admin)
    assert "RootMfaChange" in {r.logical_id for r in guardrail.route(event)}
    inv = guardrail.invoke(FUNCTION, event)
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("root-mfa-removed", "CRITICAL")]
    assert "user/phoebe" in email(inv)


def test_refused_root_call_is_still_news(guardrail: LocalGuardrail) -> None:
    record = retarget(corpus_record("raw/panther-analysis/CreateAccessKey-6.json"))
    record.update(errorCode="AccessDenied", errorMessage="denied by a service control policy")
    inv = guardrail.invoke(FUNCTION, envelope(record))
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("root-api-call-failed", "MEDIUM")]
    assert "AccessDenied" in email(inv)


# --- the repository's example event, the email, the call budget --------------------------------


def test_example_root_signin_email_says_what_happened_and_what_to_do(guardrail: LocalGuardrail) -> None:
    event = load_event(EVENTS_DIR / "root-console-signin.json")
    assert [r.logical_id for r in guardrail.route(event)] == ["RootSignIn"]
    inv = guardrail.invoke(FUNCTION, event)
    (note,) = inv.notifications
    assert note["subject"] == "[CRITICAL] Root user signed in to the console WITHOUT MFA - 123456789012"
    text = email(inv)
    for expected in ("203.0.113.77", "Firefox/133.0", "Sign-in endpoint region: us-east-1", "WITHOUT MFA",
                     "Sign-in succeeded", "change the root password", "Security credentials page",
                     "delete any listed", "CloudTrail Event history", "iam/home#/security_credentials",
                     "cloudtrailv2/home?region=us-east-1#/events/4f1d7c2a-8e3b-4a65-b9d0-2c7e5f1a8b34",
                     "Nothing: this is a notification only."):
        assert expected in text, expected


def test_root_signin_costs_one_publish_and_no_iam_call_when_warm(guardrail: LocalGuardrail) -> None:
    event = load_event(EVENTS_DIR / "root-console-signin.json")
    cold = guardrail.invoke(FUNCTION, event)
    warm = [guardrail.invoke(FUNCTION, with_id(event, str(n))) for n in range(3)]
    # The alias is read once per container, on the first event only.
    assert aws_calls(cold) == ["iam:ListAccountAliases", "sns:Publish"]
    assert [aws_calls(inv) for inv in warm] == [["sns:Publish"]] * 3


def test_account_alias_is_in_the_subject_and_read_once(guardrail: LocalGuardrail) -> None:
    boto3.client("iam").create_account_alias(AccountAlias="acme-prod")
    event = load_event(EVENTS_DIR / "root-console-signin.json")
    first, second = guardrail.invoke(FUNCTION, event), guardrail.invoke(FUNCTION, with_id(event, "2"))
    for inv in (first, second):
        assert inv.notifications[0]["subject"] == \
            "[CRITICAL] Root user signed in to the console WITHOUT MFA (acme-prod) - 123456789012"
        assert "account 123456789012 (alias acme-prod)" in email(inv)
    assert iam_calls(first) == ["iam:ListAccountAliases"] and iam_calls(second) == []


def test_alias_refused_still_alerts_and_is_not_retried(guardrail: LocalGuardrail) -> None:
    event = load_event(EVENTS_DIR / "root-console-signin.json")
    with inject_errors({"ListAccountAliases": "AccessDenied"}) as failed:
        first = guardrail.invoke(FUNCTION, event)
        second = guardrail.invoke(FUNCTION, with_id(event, "2"))
    assert failed == ["ListAccountAliases"]  # once per container, even when it fails
    assert first.error is None and severities(first) == ["CRITICAL"] and publishes(first) == 1
    assert iam_calls(second) == [] and publishes(second) == 1


# --- repeated failures --------------------------------------------------------------------------


def failed_signin(when: str, event_id: str) -> dict[str, Any]:
    record = retarget(corpus_record("raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-6.json"))
    record.update(eventTime=when, eventID=event_id)
    event = envelope(record)
    event["id"] = f"eb-{event_id}"
    return event


def test_third_failed_root_signin_within_an_hour_is_high(guardrail: LocalGuardrail) -> None:
    times = ["2026-11-28T10:00:00Z", "2026-11-28T10:20:00Z", "2026-11-28T10:20:00Z", "2026-11-28T10:40:00Z",
             "2026-11-28T12:00:00Z"]
    ids = ["f1", "f2", "f2", "f3", "f4"]  # f2 delivered twice under two EventBridge ids
    runs = []
    for n, (when, event_id) in enumerate(zip(times, ids, strict=True)):
        runs.append(guardrail.invoke(FUNCTION, with_id(failed_signin(when, event_id), str(n), new_record=False)))
    # The second f2 is the same CloudTrail record: judged once, emailed once (its stored result is replayed).
    assert [severities(inv) for inv in runs] == [["MEDIUM"], ["MEDIUM"], ["MEDIUM"], ["HIGH"], ["MEDIUM"]]
    assert [publishes(inv) for inv in runs] == [1, 1, 0, 1, 1]
    assert runs[3].notifications[0]["subject"].startswith("[HIGH] 3 failed root sign-ins within an hour")
    assert all(iam_calls(inv) == [] for inv in runs[1:])


def test_failure_window_counts_each_event_once_and_only_within_the_hour() -> None:
    window = FailureWindow()
    t = event_moment("2026-11-28T10:00:00Z")
    assert [window.add("a", t, "1"), window.add("a", t, "1"), window.add("b", t, "2")] == [1, 1, 1]
    assert window.add("a", event_moment("2026-11-28T10:59:00Z"), "3") == 2
    assert window.add("a", event_moment("2026-11-28T11:00:00Z"), "4") == 2  # 10:00 is an hour old now


# --- pure decisions, bad input -------------------------------------------------------------------


def parsed(record: dict[str, Any]) -> Any:
    return parse_event(envelope(record))


def test_signin_severity_table() -> None:
    cases = {(True, "yes", 0): Severity.HIGH, (True, "no", 0): Severity.CRITICAL, (True, "", 0): Severity.CRITICAL,
             (False, "yes", 0): Severity.HIGH, (False, "no", 2): Severity.MEDIUM, (False, "no", 3): Severity.HIGH}
    for (ok, mfa, failures), severity in cases.items():
        facts = root_activity.SignIn(succeeded=ok, mfa=mfa, endpoint_region="us-east-1")
        assert signin_severity(facts, failures) is severity


@pytest.mark.parametrize("response", [None, {}, {"ConsoleLogin": None}, {"ConsoleLogin": 7}, {"ConsoleLogin": "yes"}])
def test_odd_signin_results_count_as_failures_never_crash(response: Any) -> None:
    record = copy.deepcopy(corpus_record("raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-4.json"))
    record["responseElements"] = response
    record["additionalEventData"] = {"MFAUsed": ["No"], "LoginTo": 3}
    event = parsed(record)
    assert signin_facts(event).succeeded is False
    finding = root_activity.signin_finding(event, load_settings({"ACCOUNT_ID": "111122223333"}))
    assert finding.severity is Severity.MEDIUM


def test_classify() -> None:
    login = parsed(corpus_record("raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-4.json"))
    assert classify(login) is Kind.SIGNIN
    iam_user_login = corpus_record("raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-1.json")  # an IAM user's
    assert classify(parsed(iam_user_login)) is Kind.NONE
    key = corpus_record("raw/panther-analysis/CreateAccessKey-6.json")
    assert classify(parsed(key)) is Kind.ROOT_KEY
    by_service = copy.deepcopy(key)
    by_service["userIdentity"]["invokedBy"] = "AWS Internal"
    assert classify(parsed(by_service)) is Kind.NONE


def test_judge_reads_nothing_for_events_it_does_not_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_alias() -> str:
        raise AssertionError("the alias is read only for an alert")

    monkeypatch.setattr(root_activity, "account_alias", no_alias)
    record = corpus_record("raw/panther-analysis/ExternalIdPDirectoryLogin-1.json")
    record = {**record, "awsRegion": "us-east-1", "recipientAccountId": ACCOUNT_ID}
    findings = root_activity.judge(parsed(record), load_settings({"ACCOUNT_ID": ACCOUNT_ID}),
                                   Triage(Verdict.ACT, "judge"))
    assert findings == []


def test_the_role_may_read_the_alias_and_nothing_else() -> None:
    for params in ({}, {"KillSwitch": "on"}):
        actions = {a for st in Stack(parameters=params).role_statements("RootActivityRole")
                   for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
        assert {a for a in actions if a.startswith("iam:")} == {"iam:ListAccountAliases"}


def test_template_runs_the_detector_in_notify_mode_whatever_the_parameters() -> None:
    env = Stack(parameters={"TrailMode": "remediate", "AdminDriftMode": "remediate"}).functions()[FUNCTION].environment
    assert env["MODE"] == "notify"


def test_a_new_account_sees_its_own_root_signins_only() -> None:
    """Another account's root sign-in (a forwarded event) is ignored, never alerted."""
    with baseline_account() as local:
        record = corpus_record("raw/awsdocs-cloudtrail-user-guide/ConsoleLogin-4.json")
        inv = local.invoke(FUNCTION, envelope(record))  # account 111122223333
        assert inv.result["status"] == "ignored" and publishes(inv) == 0 and aws_calls(inv) == []
