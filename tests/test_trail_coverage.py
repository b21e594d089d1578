"""The trail guard judges the account's coverage, not one trail.

Two trails, as many accounts have them: the seed's multi-region management trail, and a
data-events trail (S3 object events, no management events). Each change is made for real on
the local account, routed by the template's rule and judged by the handler.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.seed import TRAIL, TRAIL_BUCKET
from guardrail_cli.testing import EVENTS_DIR, baseline_account, load_event

DATA = "s3-object-events"
FUNCTION = "TrailGuardFunction"


@pytest.fixture
def two_trails() -> Iterator[LocalGuardrail]:
    with baseline_account() as local:
        ct().create_trail(Name=DATA, S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True,
                          IncludeGlobalServiceEvents=True)
        ct().put_event_selectors(TrailName=DATA, EventSelectors=[{
            "ReadWriteType": "All", "IncludeManagementEvents": False,
            "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}])
        ct().start_logging(Name=DATA)
        yield local


def ct() -> Any:
    return boto3.client("cloudtrail", region_name=REGION)


def logging(name: str) -> bool:
    return bool(ct().get_trail_status(Name=name)["IsLogging"])


def event(kind: str, trail: str, **request: Any) -> dict[str, Any]:
    """The events/ record of `kind`, naming `trail` (and the request parameters given)."""
    files = {"StopLogging": "trail-stopped.json", "PutEventSelectors": "trail-event-selectors-narrowed.json"}
    base = load_event(EVENTS_DIR / files.get(kind, "trail-stopped.json"))
    out = copy.deepcopy(base)
    out["id"] = out["detail"]["eventID"] = f"{kind}-{trail}-{len(request)}"  # a record of its own
    out["detail"]["eventName"] = kind
    key = "trailName" if kind == "PutEventSelectors" else "name"
    out["detail"]["requestParameters"] = {key: trail, **request}
    return out


def judged(local: LocalGuardrail, ev: dict[str, Any]) -> Invocation:
    rules, invocations = local.dispatch(ev)
    assert [r.function for r in rules] == [FUNCTION]
    (inv,) = invocations
    assert inv.error is None, inv.logs
    return inv


def outcome(inv: Invocation) -> tuple[list[tuple[str, str]], list[str], str]:
    findings = [(f["id"], f["severity"]) for f in inv.findings]
    writes = [c.name for c in inv.calls if c.name == "cloudtrail:StartLogging"]
    text = " ".join(" ".join(n["message"] for n in inv.notifications).split())
    return findings, writes, text


COVERED = f"still covered: trail {TRAIL} (all regions, home us-east-1) logs every region's management events"


# --- the data-events trail changes while the management trail logs: at most LOW, never restarted ---


def test_data_trail_stopped_is_low_and_not_restarted(two_trails: LocalGuardrail) -> None:
    ct().stop_logging(Name=DATA)
    findings, writes, text = outcome(judged(two_trails, event("StopLogging", DATA)))
    assert findings == [("trail-stopped", "LOW")] and writes == [] and logging(DATA) is False
    assert COVERED in text and "records data events only" in text


def test_data_trail_narrowed_is_low(two_trails: LocalGuardrail) -> None:
    ct().put_event_selectors(TrailName=DATA, EventSelectors=[{
        "ReadWriteType": "WriteOnly", "IncludeManagementEvents": False,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3:::one-bucket/"]}]}])
    findings, writes, text = outcome(judged(two_trails, event("PutEventSelectors", DATA)))
    assert findings == [("trail-selectors-narrowed", "LOW")] and writes == []
    assert COVERED in text


def test_data_trail_deleted_is_low(two_trails: LocalGuardrail) -> None:
    ct().delete_trail(Name=DATA)
    findings, writes, text = outcome(judged(two_trails, event("DeleteTrail", DATA)))
    assert findings == [("trail-deleted", "LOW")] and writes == [] and COVERED in text


# --- the management trail changes: it is the last one recording management events: CRITICAL ---------


def test_management_trail_stopped_is_critical_and_restarted(two_trails: LocalGuardrail) -> None:
    ct().stop_logging(Name=TRAIL)
    findings, writes, text = outcome(judged(two_trails, event("StopLogging", TRAIL)))
    assert findings == [("trail-stopped", "CRITICAL")] and writes == ["cloudtrail:StartLogging"]
    assert logging(TRAIL) is True and logging(DATA) is True
    assert "It was the last trail logging the account's management events" in text


def test_management_trail_narrowed_to_nothing_is_critical(two_trails: LocalGuardrail) -> None:
    ct().put_event_selectors(TrailName=TRAIL, EventSelectors=[{"ReadWriteType": "All",
                                                               "IncludeManagementEvents": False}])
    findings, writes, text = outcome(judged(two_trails, event("PutEventSelectors", TRAIL)))
    assert findings == [("trail-selectors-narrowed", "CRITICAL")] and writes == []
    assert "No other trail logs every region's management events" in text


def test_management_trail_deleted_is_critical(two_trails: LocalGuardrail) -> None:
    ct().delete_trail(Name=TRAIL)
    findings, writes, text = outcome(judged(two_trails, event("DeleteTrail", TRAIL)))
    assert findings == [("trail-deleted", "CRITICAL")] and writes == []
    assert f"Other trails visible in us-east-1: {DATA} (none of them logs every region's management events)" in text


def test_management_trail_made_single_region_is_critical(two_trails: LocalGuardrail) -> None:
    ct().update_trail(Name=TRAIL, IsMultiRegionTrail=False)
    findings, _, text = outcome(judged(two_trails, event("UpdateTrail", TRAIL, isMultiRegionTrail=False)))
    assert findings == [("trail-updated", "CRITICAL")] and "records only its home region us-east-1" in text


# --- with a second management trail, stopping one leaves the account covered ------------------------


def test_one_of_two_management_trails_stopped_is_medium_and_names_the_other(two_trails: LocalGuardrail) -> None:
    ct().create_trail(Name="security-copy", S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True,
                      IncludeGlobalServiceEvents=True)
    ct().start_logging(Name="security-copy")
    ct().stop_logging(Name=TRAIL)
    findings, writes, text = outcome(judged(two_trails, event("StopLogging", TRAIL)))
    assert findings == [("trail-stopped", "MEDIUM")] and writes == ["cloudtrail:StartLogging"]
    assert "still covered: trail security-copy (all regions, home us-east-1)" in text
    ct().update_trail(Name="security-copy", IsMultiRegionTrail=False)
    findings, _, text = outcome(judged(two_trails, event("UpdateTrail", "security-copy", isMultiRegionTrail=False)))
    assert findings == [("trail-updated", "LOW")] and COVERED in text


def test_data_trail_stopped_while_nothing_logs_management_events_says_the_guardrail_is_blind(
        two_trails: LocalGuardrail) -> None:
    ct().stop_logging(Name=TRAIL)
    ct().stop_logging(Name=DATA)
    findings, writes, text = outcome(judged(two_trails, event("StopLogging", DATA)))
    assert findings == [("trail-stopped", "HIGH")] and writes == []
    assert "the guardrail is blind until one does" in text


def test_an_organization_trail_counts_as_coverage() -> None:
    from guardrail_core.trail_guard import FULL, TrailState, covering

    org = TrailState(name="org", arn=f"arn:aws:cloudtrail:{REGION}:999999999999:trail/org", home_region=REGION,
                     multi_region=True, global_events=True, organization=True, logging=True, cover=None,
                     problem="GetEventSelectors: AccessDeniedException")
    local = TrailState(name=TRAIL, arn=f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{TRAIL}", home_region=REGION,
                       multi_region=True, global_events=True, logging=False, cover=FULL)
    assert covering([org, local]) == [org]
