"""Trail guard: CloudTrail stopped, deleted or narrowed - real records, the template's rule, the handler.

The local account's trails are put in the state each record describes (the call is made for
real on moto first), then the record is routed by the template's pattern and judged by the
handler, which re-reads the trail rather than trusting the event. Calls are counted.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from guardrail_cli.apply import APPLIED, apply_recorded_call
from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.seed import TRAIL, TRAIL_BUCKET
from guardrail_cli.template import Stack
from guardrail_cli.testing import (
    EVENTS_DIR,
    baseline_account,
    corpus_records,
    envelope,
    inject_errors,
    load_event,
    retarget,
)
from guardrail_core import trail_guard
from guardrail_core.events import parse_event
from guardrail_core.findings import Severity
from guardrail_core.trail_guard import FULL, Coverage, coverage, trail_ref, update_changes

FUNCTION = "TrailGuardFunction"
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{TRAIL}"

ROUTED = {  # every corpus record of a call that can stop or narrow logging
    "raw/stratus-red-team/StopLogging-1.json", "raw/panther-analysis/StopLogging-1.json",
    "raw/panther-analysis/StopLogging-2.json",
    "raw/stratus-red-team/DeleteTrail-1.json", "raw/panther-analysis/DeleteTrail-1.json",
    "raw/panther-analysis/DeleteTrail-2.json",
    "raw/stratus-red-team/PutEventSelectors-1.json", "raw/panther-analysis/PutEventSelectors-1.json",
    "raw/panther-analysis/PutEventSelectors-2.json",
    "raw/awsdocs-cloudtrail-user-guide/UpdateTrail-1.json", "raw/panther-analysis/UpdateTrail-1.json",
}


@pytest.fixture(scope="module")
def stack() -> LocalGuardrail:
    return LocalGuardrail(Stack())


@pytest.fixture
def notify() -> Iterator[LocalGuardrail]:
    with baseline_account({"TrailMode": "notify"}) as local:
        yield local


def ct(region: str = REGION) -> Any:
    return boto3.client("cloudtrail", region_name=region)


def logging(name: str = TRAIL, region: str = REGION) -> bool:
    return bool(ct(region).get_trail_status(Name=name)["IsLogging"])


def make_trail(name: str, region: str = REGION, *, running: bool = True) -> None:
    """A trail of that name in the local account (the corpus's trails live in other accounts)."""
    ct(region).create_trail(Name=name, S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True,
                            IncludeGlobalServiceEvents=True)
    if running:
        ct(region).start_logging(Name=name)


def record(name: str) -> dict[str, Any]:
    (found,) = [r for f, r in corpus_records() if f == name]
    return found


def moved(name: str) -> dict[str, Any]:
    """The corpus record as recorded in the local account, in its envelope."""
    return envelope(retarget(record(name)))


def writes(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.kind == "write" and c.service == "cloudtrail"]


def aws_calls(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.kind != "idempotency"]


def email(inv: Invocation) -> str:
    return " ".join(inv.notifications[0]["message"].split())


def found(inv: Invocation) -> list[tuple[str, str]]:
    return [(f["id"], f["severity"]) for f in inv.findings]


# --- the rule -------------------------------------------------------------------------------


def test_rule_routes_every_tampering_call_and_nothing_benign(stack: LocalGuardrail) -> None:
    cloudtrail = corpus_records(event_source="cloudtrail.amazonaws.com")
    # Recorded in the home region (several corpus records carry invented, anonymised regions that
    # no rule covers: routing by region is tested in test_routing.py).
    routed = {f for f, r in cloudtrail
              if any(rule.function == FUNCTION for rule in stack.route(envelope(retarget(r))))}
    assert routed == ROUTED
    benign = {f for f, _ in cloudtrail} - ROUTED  # StartLogging, CreateTrail, DescribeTrail, GetEventSelectors, ...
    assert {f.split("/")[-1].split("-")[0] for f in benign} >= {"StartLogging", "CreateTrail", "GetEventSelectors"}
    # Nothing from any other service reaches the trail guard.
    others = [f for f, r in corpus_records() if f not in ROUTED
              and any(rule.function == FUNCTION for rule in stack.route(envelope(retarget(r))))]
    assert others == []


# --- StopLogging ------------------------------------------------------------------------------


def test_stopped_trail_is_started_again_in_remediate_mode(guardrail: LocalGuardrail) -> None:
    ct().stop_logging(Name=TRAIL)
    event = load_event(EVENTS_DIR / "trail-stopped.json")
    assert [r.logical_id for r in guardrail.route(event)] == ["TrailTamper"]
    inv = guardrail.invoke(FUNCTION, event)
    assert inv.error is None
    assert logging() is True
    assert aws_calls(inv) == ["cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors",
                              "cloudtrail:StartLogging", "sns:Publish"]
    assert found(inv) == [("trail-stopped", "CRITICAL")]
    assert "It was the last trail logging the account's management events" in email(inv)
    assert [(a["name"], a["status"]) for a in inv.actions] == [(f"Start logging on trail {TRAIL}", "succeeded")]
    text = email(inv)
    assert "IAM user phoebe stopped logging on trail management-events (us-east-1)" in text
    assert "[DONE] Start logging" in text and "To undo: aws cloudtrail stop-logging" in text


def test_notify_mode_reports_and_writes_nothing(notify: LocalGuardrail) -> None:
    ct().stop_logging(Name=TRAIL)
    inv = notify.invoke(FUNCTION, load_event(EVENTS_DIR / "trail-stopped.json"))
    assert writes(inv) == [] and logging() is False
    assert aws_calls(inv) == ["cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors",
                              "sns:Publish"]
    assert found(inv) == [("trail-stopped", "CRITICAL")]
    assert [a["status"] for a in inv.actions] == ["skipped"]
    assert "TrailMode is notify" in email(inv) and "aws cloudtrail start-logging --name" in email(inv)


@pytest.mark.parametrize("params", [{"TrailMode": "notify"}, {"KillSwitch": "on"}])
def test_notify_mode_and_kill_switch_grant_no_start_logging(params: dict[str, str]) -> None:
    actions = {a for st in Stack(parameters=params).role_statements("TrailGuardRole")
               for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert "cloudtrail:StartLogging" not in actions
    assert {a for a in actions if a.startswith("cloudtrail:")} == trail_guard.READ_ACTIONS
    remediate = {a for st in Stack().role_statements("TrailGuardRole")
                 for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
    assert "cloudtrail:StartLogging" in remediate


def test_kill_switch_reports_and_writes_nothing() -> None:
    with baseline_account({"KillSwitch": "on"}) as local:
        ct().stop_logging(Name=TRAIL)
        inv = local.invoke(FUNCTION, load_event(EVENTS_DIR / "trail-stopped.json"))
        assert writes(inv) == [] and logging() is False
        assert "kill switch is on" in email(inv)


def test_real_stop_logging_records_restart_the_trail_they_name(guardrail: LocalGuardrail) -> None:
    # Stratus Red Team's detonation: the trail by name, in the (moved) event's region.
    stratus = moved("raw/stratus-red-team/StopLogging-1.json")
    name = stratus["detail"]["requestParameters"]["name"]
    make_trail(name)
    ct().stop_logging(Name=name)
    inv = guardrail.invoke(FUNCTION, stratus)
    # The seed trail still logs every region's management events: the account stays covered.
    assert found(inv) == [("trail-stopped", "MEDIUM")] and logging(name) is True
    assert f"still covered: trail {TRAIL} (all regions, home us-east-1)" in email(inv)
    ct().stop_logging(Name=TRAIL)  # now the last one
    ct().stop_logging(Name=name)
    inv = guardrail.invoke(FUNCTION, dict(stratus, id="again", detail=dict(stratus["detail"], eventID="again")))
    assert found(inv) == [("trail-stopped", "CRITICAL")] and logging(name) is True
    ct().start_logging(Name=TRAIL)
    # Panther's record names the trail by ARN, homed in us-west-2: read and restarted there.
    panther = moved("raw/panther-analysis/StopLogging-1.json")
    make_trail("example-trail", "us-west-2")
    ct("us-west-2").stop_logging(Name="example-trail")
    inv = guardrail.invoke(FUNCTION, panther)
    assert found(inv) == [("trail-stopped", "MEDIUM")]
    assert logging("example-trail", "us-west-2") is True  # the trail exists only there: read and started there
    assert writes(inv) == ["cloudtrail:StartLogging"]


def test_refused_stop_is_quiet_unless_refused_for_permission(guardrail: LocalGuardrail) -> None:
    failed = moved("raw/panther-analysis/StopLogging-2.json")  # InvalidTrailNameException: a typo, nothing changed
    inv = guardrail.invoke(FUNCTION, failed)
    assert inv.findings == [] and aws_calls(inv) == []
    denied = copy.deepcopy(failed)
    denied["id"] += "-denied"
    denied["detail"]["eventID"] += "-denied"  # another record, not a redelivery
    denied["detail"]["errorCode"] = "AccessDenied"
    inv = guardrail.invoke(FUNCTION, denied)
    assert found(inv) == [("attempt", "MEDIUM")] and aws_calls(inv) == ["sns:Publish"]


def test_already_logging_again_is_reported_without_a_write(guardrail: LocalGuardrail) -> None:
    inv = guardrail.invoke(FUNCTION, load_event(EVENTS_DIR / "trail-stopped.json"))  # the seed trail runs
    assert found(inv) == [("trail-stopped", "HIGH")] and writes(inv) == []
    assert "logging again now" in email(inv)


def test_exempt_principal_is_reported_not_undone() -> None:
    with baseline_account({"ExemptPrincipalArns": f"arn:aws:iam::{ACCOUNT_ID}:user/phoebe"}) as local:
        ct().stop_logging(Name=TRAIL)
        inv = local.invoke(FUNCTION, load_event(EVENTS_DIR / "trail-stopped.json"))
        assert found(inv) == [("trail-stopped", "CRITICAL")] and writes(inv) == [] and logging() is False


def test_start_logging_refused_says_what_to_do_by_hand(guardrail: LocalGuardrail) -> None:
    ct().stop_logging(Name=TRAIL)
    with inject_errors({"StartLogging": "AccessDenied"}):
        inv = guardrail.invoke(FUNCTION, load_event(EVENTS_DIR / "trail-stopped.json"))
    assert inv.error is None and [a["status"] for a in inv.actions] == ["failed"]
    text = email(inv)
    assert "lacks cloudtrail:StartLogging" in text and "Make that change by hand" in text
    assert f"aws cloudtrail start-logging --name {TRAIL_ARN}" in text


def test_stopped_then_deleted_trail_cannot_be_restarted(guardrail: LocalGuardrail) -> None:
    stratus = moved("raw/stratus-red-team/StopLogging-1.json")  # that trail does not exist here
    inv = guardrail.invoke(FUNCTION, stratus)
    assert found(inv) == [("trail-stopped", "LOW")] and writes(inv) == []  # the seed trail covers the account
    assert "no longer exists" in email(inv) and "aws cloudtrail create-trail" in email(inv)
    ct().stop_logging(Name=TRAIL)
    inv = guardrail.invoke(FUNCTION, dict(stratus, id="again", detail=dict(stratus["detail"], eventID="again")))
    assert found(inv) == [("trail-stopped", "CRITICAL")] and writes(inv) == []


# --- DeleteTrail -----------------------------------------------------------------------------


def test_deleted_trail_is_critical_and_says_it_cannot_be_restored(guardrail: LocalGuardrail) -> None:
    ct().stop_logging(Name=TRAIL)  # the seed trail exists but logs nothing: no trail covers the account
    for name in ("raw/stratus-red-team/DeleteTrail-1.json", "raw/panther-analysis/DeleteTrail-1.json"):
        inv = guardrail.invoke(FUNCTION, moved(name))
        assert found(inv) == [("trail-deleted", "CRITICAL")], name
        assert writes(inv) == []
        text = email(inv)
        assert "a deleted trail cannot be restored" in text and "aws cloudtrail create-trail --name" in text
        assert f"Other trails visible in us-east-1: {TRAIL} (none of them logs every region's" in text


def test_deleted_trail_while_another_covers_is_low(guardrail: LocalGuardrail) -> None:
    inv = guardrail.invoke(FUNCTION, moved("raw/stratus-red-team/DeleteTrail-1.json"))
    assert found(inv) == [("trail-deleted", "LOW")] and writes(inv) == []
    assert f"still covered: trail {TRAIL} (all regions, home us-east-1)" in email(inv)


def test_deleting_the_only_trail_says_nothing_logs_any_more(guardrail: LocalGuardrail) -> None:
    ct().delete_trail(Name=TRAIL)
    event = moved("raw/stratus-red-team/DeleteTrail-1.json")
    event["detail"]["requestParameters"]["name"] = TRAIL
    inv = guardrail.invoke(FUNCTION, event)
    assert found(inv) == [("trail-deleted", "CRITICAL")]
    assert "No other trail is visible in us-east-1" in email(inv)


def test_trail_of_that_name_exists_again_is_high(guardrail: LocalGuardrail) -> None:
    event = moved("raw/stratus-red-team/DeleteTrail-1.json")
    ct().stop_logging(Name=TRAIL)
    make_trail(event["detail"]["requestParameters"]["name"])
    assert found(guardrail.invoke(FUNCTION, event)) == [("trail-deleted", "HIGH")]


def test_failed_delete_changes_nothing(guardrail: LocalGuardrail) -> None:
    inv = guardrail.invoke(FUNCTION, moved("raw/panther-analysis/DeleteTrail-2.json"))  # ConflictException
    assert inv.findings == [] and aws_calls(inv) == []


# --- PutEventSelectors --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("raw/stratus-red-team/PutEventSelectors-1.json", [("trail-selectors-narrowed", "CRITICAL")]),
    ("raw/panther-analysis/PutEventSelectors-1.json", [("trail-selectors-narrowed", "CRITICAL")]),  # "Disabled"
    ("raw/panther-analysis/PutEventSelectors-2.json", []),  # "Enabled": all management events kept
])
def test_real_selector_changes(guardrail: LocalGuardrail, name: str, expected: list[tuple[str, str]]) -> None:
    event = moved(name)
    ct().stop_logging(Name=TRAIL)  # the record's trail is the only one that logs
    make_trail(event["detail"]["requestParameters"]["trailName"])
    applied = apply_recorded_call(event)  # the account as the call left it
    assert applied is not None and applied.status == APPLIED, applied
    inv = guardrail.invoke(FUNCTION, event)
    assert found(inv) == expected
    calls = aws_calls(inv)
    assert calls[0] == "cloudtrail:GetEventSelectors" and (calls[-1] == "sns:Publish") == bool(expected)
    assert writes(inv) == []


def test_selectors_are_reread_not_trusted(guardrail: LocalGuardrail) -> None:
    """The event says management events were dropped; by the time it is judged they are back."""
    event = load_event(EVENTS_DIR / "trail-event-selectors-narrowed.json")
    ct().put_event_selectors(TrailName=TRAIL, EventSelectors=[{"ReadWriteType": "All",
                                                               "IncludeManagementEvents": True}])
    assert guardrail.invoke(FUNCTION, event).findings == []
    ct().put_event_selectors(TrailName=TRAIL, EventSelectors=[{"ReadWriteType": "All",
                                                               "IncludeManagementEvents": False}])
    inv = guardrail.invoke(FUNCTION, dict(event, id="again", detail=dict(event["detail"], eventID="again")))
    assert found(inv) == [("trail-selectors-narrowed", "CRITICAL")]
    assert "no management events are recorded at all" in email(inv)
    assert [a["status"] for a in inv.actions] == ["skipped"]  # alert only: never rewritten


def test_coverage_of_basic_and_advanced_selectors() -> None:
    def basic(*sels: dict[str, Any]) -> Coverage:
        return coverage({"EventSelectors": list(sels)})

    def advanced(*fields: dict[str, Any]) -> Coverage:
        return coverage({"AdvancedEventSelectors": [{"Name": "m", "FieldSelectors": list(fields)}]})

    management = {"Field": "eventCategory", "Equals": ["Management"]}
    assert coverage({"EventSelectors": [], "AdvancedEventSelectors": []}) == FULL  # the default
    assert basic({"ReadWriteType": "All", "IncludeManagementEvents": True}) == FULL
    assert basic({"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}).severity is Severity.HIGH
    assert basic({"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True}).severity is Severity.CRITICAL
    assert basic({"ReadWriteType": "ReadOnly"}, {"ReadWriteType": "WriteOnly"}) == FULL
    kms = basic({"ReadWriteType": "All", "ExcludeManagementEventSources": ["kms.amazonaws.com"]})
    assert kms.excluded == ("kms.amazonaws.com",) and kms.severity is Severity.HIGH
    assert basic({"ReadWriteType": "All", "ExcludeManagementEventSources": ["kms.amazonaws.com"]},
                 {"ReadWriteType": "All"}) == FULL  # another selector still records KMS
    assert advanced(management) == FULL
    assert advanced(management, {"Field": "readOnly", "Equals": ["false"]}) == Coverage(False, True)
    assert advanced(management, {"Field": "readOnly", "Equals": ["true"]}).severity is Severity.CRITICAL
    assert advanced({"Field": "eventCategory", "Equals": ["Data"]}).gaps() == [
        "no management events are recorded at all"]
    assert advanced(management, {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}).excluded == (
        "kms.amazonaws.com",)
    # Odd shapes never crash: they simply record nothing.
    assert coverage({"EventSelectors": ["x", None, {"IncludeManagementEvents": "yes"}]}) == Coverage(False, False)
    assert coverage({"AdvancedEventSelectors": [{"FieldSelectors": "x"}, 3]}) == Coverage(False, False)


# --- UpdateTrail --------------------------------------------------------------------------------


def test_real_update_to_single_region_is_critical(guardrail: LocalGuardrail) -> None:
    event = moved("raw/panther-analysis/UpdateTrail-1.json")  # names management-events: isMultiRegionTrail false
    assert apply_recorded_call(event) is not None
    inv = guardrail.invoke(FUNCTION, event)
    assert found(inv) == [("trail-updated", "CRITICAL")]
    assert aws_calls(inv) == ["cloudtrail:DescribeTrails", "cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus",
                              "cloudtrail:GetEventSelectors", "sns:Publish"] and writes(inv) == []
    assert "records only its home region us-east-1" in email(inv)


def test_update_that_narrows_nothing_is_no_finding(guardrail: LocalGuardrail) -> None:
    event = moved("raw/panther-analysis/UpdateTrail-1.json")
    event["detail"]["requestParameters"] = {"name": TRAIL, "snsTopicName": "trail-news"}
    inv = guardrail.invoke(FUNCTION, event)
    assert inv.findings == [] and aws_calls(inv) == ["cloudtrail:DescribeTrails"]
    # Asked for single-region, but the trail (re-read) is still multi-region: not trusted, not alerted.
    event["id"] += "-2"
    event["detail"]["requestParameters"] = {"name": TRAIL, "isMultiRegionTrail": False}
    assert guardrail.invoke(FUNCTION, event).findings == []
    # The doc's failed UpdateTrail (TrailNotFoundException) changed nothing.
    assert guardrail.invoke(FUNCTION, moved("raw/awsdocs-cloudtrail-user-guide/UpdateTrail-1.json")).findings == []


def test_update_changes_table() -> None:
    trail = {"IsMultiRegionTrail": False, "IncludeGlobalServiceEvents": False, "S3BucketName": "elsewhere",
             "LogFileValidationEnabled": False, "HomeRegion": "us-east-1"}
    asked = {"isMultiRegionTrail": False, "includeGlobalServiceEvents": False, "s3BucketName": "elsewhere",
             "enableLogFileValidation": False}
    assert [c.severity for c in update_changes(asked, trail)] == [Severity.CRITICAL, Severity.CRITICAL,
                                                                  Severity.HIGH, Severity.MEDIUM]
    assert update_changes({"kmsKeyId": "k"}, trail) == []
    assert update_changes(asked, {"IsMultiRegionTrail": True, "IncludeGlobalServiceEvents": True}) == []


# --- benign events, bad input ---------------------------------------------------------------------


def test_benign_cloudtrail_records_handed_to_the_handler_give_nothing(guardrail: LocalGuardrail) -> None:
    for name, rec in corpus_records(event_source="cloudtrail.amazonaws.com"):
        if name in ROUTED:
            continue
        inv = guardrail.invoke(FUNCTION, envelope(retarget(rec)))
        assert inv.error is None and inv.findings == [] and aws_calls(inv) == [], name


@pytest.mark.parametrize("params", [None, {}, {"name": 3}, {"name": "x"}, {"name": "a b c"},
                                    {"name": "arn:aws:cloudtrail:us-east-1:123:trail/x"}, {"trailName": ["x"]},
                                    {"name": "arn:aws:cloudtrail:us-east-1:999999999999:trail/theirs"}])
def test_bad_trail_names_read_and_write_nothing(guardrail: LocalGuardrail, params: Any) -> None:
    event = load_event(EVENTS_DIR / "trail-stopped.json")
    event["id"] = f"bad-{params!r}"
    event["detail"]["requestParameters"] = params
    inv = guardrail.invoke(FUNCTION, event)
    assert inv.error is None and inv.findings == [] and aws_calls(inv) == []


def test_trail_ref_takes_the_region_from_an_arn() -> None:
    event = parse_event(moved("raw/panther-analysis/StopLogging-1.json"))
    ref = trail_ref(event)
    assert ref is not None and (ref.short, ref.region, ref.account) == ("example-trail", "us-west-2", ACCOUNT_ID)


def test_no_loop_the_guardrails_own_restart_is_not_judged(guardrail: LocalGuardrail) -> None:
    """StartLogging is not in the rule; a StopLogging by the guardrail's own role would be ignored."""
    event = load_event(EVENTS_DIR / "trail-stopped.json")
    event["detail"]["eventName"] = "StartLogging"
    assert all(r.function != FUNCTION for r in guardrail.route(event))
    own = load_event(EVENTS_DIR / "trail-stopped.json")
    role = guardrail.stack.get_att("TrailGuardRole", "Arn")
    session = guardrail.functions[FUNCTION].name  # Lambda names the role session after the function
    own["detail"]["userIdentity"] = {
        "type": "AssumedRole", "arn": f"arn:aws:sts::123456789012:assumed-role/account-guardrail-trail-guard/{session}",
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role}}}
    inv = guardrail.invoke(FUNCTION, own)
    assert inv.result["status"] == "ignored" and aws_calls(inv) == []
