"""The heartbeat: blind states noticed without any CloudTrail event, one CRITICAL each, one recovery.

Each story runs on the local account through the template's schedule and the real handler:
the account is broken the way an owner (or an attacker) would break it, the heartbeat runs
several times, and what the owner receives is counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.seed import TRAIL, TRAIL_BUCKET
from guardrail_cli.testing import baseline_account, inject_errors
from guardrail_core import heartbeat
from guardrail_core.config import Settings
from guardrail_core.findings import Severity
from guardrail_core.heartbeat import CheckResult, HeartbeatConfig, Problem, decide, trail_problems
from guardrail_core.trail_guard import FULL, Coverage, TrailState

FUNCTION = "HeartbeatFunction"
SETTINGS = Settings(account_id=ACCOUNT_ID)
CONFIG = HeartbeatConfig(home_region=REGION)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


FORWARDED = "ap-southeast-2,eu-north-1"  # two regions keep the tests quick; one test uses all 16


@pytest.fixture
def guardrail() -> Iterator[LocalGuardrail]:
    with baseline_account({"ForwardedRegions": FORWARDED}, forwarding=True) as local:
        yield local


def beat(local: LocalGuardrail) -> Invocation:
    """One scheduled run, routed as EventBridge Scheduler delivers it (the schedule's name in resources)."""
    event = {"version": "0", "id": f"heartbeat-{datetime.now(UTC).isoformat()}", "detail-type": "Scheduled Event",
             "source": "aws.scheduler", "account": ACCOUNT_ID, "time": "2026-11-30T12:00:00Z", "region": REGION,
             "resources": [f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/account-guardrail-heartbeat"],
             "detail": {"attempt": "1"}}
    rules, (invocation,) = local.dispatch(event)
    assert [r.function for r in rules] == [FUNCTION]
    assert invocation.error is None, invocation.logs
    return invocation


def emails(runs: list[Invocation]) -> list[dict[str, str]]:
    """What the owner receives (message whitespace folded: the email wraps long lines)."""
    return [{"subject": n["subject"], "message": " ".join(n["message"].split())}
            for run in runs for n in run.notifications]


def beats(local: LocalGuardrail, times: int = 3) -> list[Invocation]:
    return [beat(local) for _ in range(times)]


def cloudtrail(region: str = REGION) -> Any:
    return boto3.client("cloudtrail", region_name=region)


def events(region: str = REGION) -> Any:
    return boto3.client("events", region_name=region)


def data_events_trail(name: str = "s3-data-events") -> None:
    """A logging multi-region trail that records S3 data events and no management events."""
    cloudtrail().create_trail(Name=name, S3BucketName=TRAIL_BUCKET, IsMultiRegionTrail=True,
                              IncludeGlobalServiceEvents=True)
    cloudtrail().put_event_selectors(TrailName=name, EventSelectors=[{
        "ReadWriteType": "All", "IncludeManagementEvents": False,
        "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}])
    cloudtrail().start_logging(Name=name)


# --- the stories ----------------------------------------------------------------------------


def test_all_well_sends_nothing_however_often_it_runs(guardrail: LocalGuardrail) -> None:
    runs = beats(guardrail)
    assert emails(runs) == []
    assert all(run.result["problems"] == {} for run in runs)
    calls = set(runs[0].api_calls)
    assert {"cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors",
            "events:DescribeRule", "events:ListTargetsByRule"} <= calls
    assert not any(c.startswith("cloudtrail:Lookup") for c in calls)  # reads state, never CloudTrail events


def test_no_trail_logging_one_critical_then_one_recovery(guardrail: LocalGuardrail) -> None:
    assert emails(beats(guardrail, 1)) == []
    cloudtrail().stop_logging(Name=TRAIL)
    blind = emails(beats(guardrail))
    assert len(blind) == 1
    assert blind[0]["subject"].startswith("[CRITICAL] Guardrail is blind: no trail logs management events")
    assert f"{TRAIL}: not logging" in blind[0]["message"]
    assert "start-logging" in blind[0]["message"]
    cloudtrail().start_logging(Name=TRAIL)
    back = emails(beats(guardrail))
    assert len(back) == 1
    assert back[0]["subject"].startswith("[INFO] Guardrail sees the account again")
    assert f"{TRAIL}: not logging" in back[0]["message"]  # what it had reported
    assert emails(beats(guardrail, 2)) == []


def test_no_trail_at_all(guardrail: LocalGuardrail) -> None:
    cloudtrail().delete_trail(Name=TRAIL)
    blind = emails(beats(guardrail))
    assert len(blind) == 1 and "no CloudTrail trail exists" in blind[0]["message"]


def test_only_a_data_events_trail_logging_is_blind(guardrail: LocalGuardrail) -> None:
    data_events_trail()
    assert emails(beats(guardrail, 1)) == []  # the management trail still covers the account
    cloudtrail().stop_logging(Name=TRAIL)
    blind = emails(beats(guardrail))
    assert len(blind) == 1 and blind[0]["subject"].startswith("[CRITICAL] Guardrail is blind")
    assert "s3-data-events: logs data events only, no management events" in blind[0]["message"]
    cloudtrail().start_logging(Name=TRAIL)
    back = emails(beats(guardrail))
    assert len(back) == 1 and back[0]["subject"].startswith("[INFO] Guardrail sees the account again")


def test_a_single_region_trail_does_not_cover_the_account(guardrail: LocalGuardrail) -> None:
    cloudtrail().update_trail(Name=TRAIL, IsMultiRegionTrail=False)
    blind = emails(beats(guardrail, 2))
    assert len(blind) == 1 and f"logs its home region {REGION} only" in blind[0]["message"]


@pytest.mark.parametrize("rule", ["account-guardrail-signin-without-mfa", "account-guardrail-admin-drift"])
def test_a_disabled_rule_one_critical_naming_it_then_one_recovery(guardrail: LocalGuardrail, rule: str) -> None:
    events().disable_rule(Name=rule)
    blind = emails(beats(guardrail))
    assert len(blind) == 1
    short = rule.removeprefix("account-guardrail-")
    assert blind[0]["subject"].startswith(f"[CRITICAL] Guardrail partly blind: {short} disabled in {REGION}")
    assert f"rule {rule} in {REGION} is DISABLED" in blind[0]["message"]
    assert f"aws events enable-rule --name {rule} --region {REGION}" in blind[0]["message"]
    events().enable_rule(Name=rule)
    back = emails(beats(guardrail))
    assert len(back) == 1 and back[0]["subject"].startswith("[INFO]")


def test_a_disabled_forwarding_rule_in_another_region(guardrail: LocalGuardrail) -> None:
    rule = "account-guardrail-signin-without-mfa"
    events("ap-southeast-2").disable_rule(Name=rule)
    blind = emails(beats(guardrail))
    assert len(blind) == 1
    assert blind[0]["subject"].startswith(
        "[CRITICAL] Guardrail partly blind: signin-without-mfa disabled in ap-southeast-2")
    assert ("events recorded in ap-southeast-2 no longer reach the guardrail" in blind[0]["message"])
    events("ap-southeast-2").enable_rule(Name=rule)
    assert [e["subject"][:6] for e in emails(beats(guardrail))] == ["[INFO]"]


def test_a_forwarding_rule_sent_elsewhere_or_a_region_emptied(guardrail: LocalGuardrail) -> None:
    events("eu-north-1").put_targets(Rule="account-guardrail-root-signin", Targets=[
        {"Id": "guardrail-home-region", "Arn": "arn:aws:events:eu-north-1:999999999999:event-bus/default"}])
    for name in [r["Name"] for r in events("ap-southeast-2").list_rules()["Rules"]]:
        ids = [t["Id"] for t in events("ap-southeast-2").list_targets_by_rule(Rule=name)["Targets"]]
        events("ap-southeast-2").remove_targets(Rule=name, Ids=ids)
        events("ap-southeast-2").delete_rule(Name=name)
    (blind,) = emails(beats(guardrail, 2))
    assert "rule account-guardrail-root-signin in eu-north-1 no longer forwards to " \
           "arn:aws:events:us-east-1:123456789012:event-bus/default" in blind["message"]
    assert blind["message"].count("in ap-southeast-2 is missing") == 7


def test_a_default_deployment_watches_all_16_forwarded_regions() -> None:
    with baseline_account(forwarding=True) as local:
        (run,) = beats(local, 1)
        assert run.result["problems"] == {} and run.notifications == []
        described = {(c.params["Name"], c.region) for c in run.calls if c.name == "events:DescribeRule"}
        assert len({region for _, region in described}) == 17  # home + 16 enabled-by-default regions
        assert len(described) == 3 + 7 * 17  # the home-only IAM rules, and the forwarded ones everywhere


def test_root_rule_without_read_only_events_is_a_blind_spot(guardrail: LocalGuardrail) -> None:
    name = "account-guardrail-root-api-call"
    events().put_rule(Name=name, EventPattern=events().describe_rule(Name=name)["EventPattern"], State="ENABLED")
    blind = emails(beats(guardrail, 2))
    assert len(blind) == 1 and "read-only events" in blind[0]["message"]


def test_a_rule_deleted_or_without_target(guardrail: LocalGuardrail) -> None:
    events().remove_targets(Rule="account-guardrail-trail-tamper", Ids=["TrailGuardFunction"])
    events().remove_targets(Rule="account-guardrail-root-signin", Ids=["RootActivityFunction"])
    events().delete_rule(Name="account-guardrail-root-signin")
    (blind,) = emails(beats(guardrail, 2))
    assert "rule account-guardrail-trail-tamper in us-east-1 has no target" in blind["message"]
    assert "rule account-guardrail-root-signin in us-east-1 is missing" in blind["message"]


def test_a_second_blind_state_is_alerted_once_more_and_one_recovery_ends_both(guardrail: LocalGuardrail) -> None:
    cloudtrail().stop_logging(Name=TRAIL)
    first = emails(beats(guardrail, 2))
    events().disable_rule(Name="account-guardrail-mfa-change")
    second = emails(beats(guardrail, 2))
    assert len(first) == 1 and len(second) == 1
    assert "mfa-change" in second[0]["message"] and "mfa-change" not in first[0]["message"]
    cloudtrail().start_logging(Name=TRAIL)
    assert emails(beats(guardrail, 2)) == []  # still partly blind: no recovery yet
    events().enable_rule(Name="account-guardrail-mfa-change")
    back = emails(beats(guardrail, 2))
    assert len(back) == 1 and back[0]["subject"].startswith("[INFO]")


def test_a_check_refused_a_permission_is_a_problem_not_a_healthy_account(guardrail: LocalGuardrail) -> None:
    with inject_errors({"DescribeTrails": "AccessDeniedException"}):
        blind = emails(beats(guardrail, 2))
    assert len(blind) == 1 and "could not run check_trails (AccessDeniedException" in blind[0]["message"]


def test_a_failed_publish_is_tried_again_next_run(guardrail: LocalGuardrail) -> None:
    cloudtrail().stop_logging(Name=TRAIL)
    with inject_errors({"Publish": "InternalError"}):
        failed = guardrail.invoke(FUNCTION, {})
    assert failed.error and "AlertDeliveryError" in failed.error
    assert len(emails(beats(guardrail, 2))) == 1  # the state was not saved: the alert comes next run, once


# --- the pure parts -----------------------------------------------------------------------------


def trail(name: str, *, logging: bool = True, cover: Coverage | None = FULL, multi: bool = True,
          organization: bool = False, problem: str = "") -> TrailState:
    return TrailState(name=name, arn=f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{name}", home_region=REGION,
                      multi_region=multi, global_events=True, organization=organization, logging=logging,
                      cover=cover, problem=problem)


def test_an_organization_trail_whose_selectors_a_member_cannot_read_still_covers() -> None:
    org = trail("org-trail", cover=None, organization=True, problem="GetEventSelectors: AccessDeniedException")
    assert trail_problems([org]).problems == []
    assert "organization trail org-trail" in trail_problems([org]).fine[0]


def test_writes_are_what_count_reads_alone_do_not_cover() -> None:
    reads_only = trail("reads", cover=Coverage(reads=True, writes=False))
    assert [p.key for p in trail_problems([reads_only]).problems] == ["trails"]
    assert trail_problems([reads_only, trail("full")]).problems == []


def test_decide_unknown_previous_state_alerts_when_blind_and_stays_quiet_when_well() -> None:
    blind = [CheckResult("trails", [Problem("trails", "no trail")])]
    assert [f.severity for f in decide(None, blind, SETTINGS, CONFIG, NOW)] == [Severity.CRITICAL]
    assert decide(None, [CheckResult("trails")], SETTINGS, CONFIG, NOW) == []
    assert decide({"trails": "no trail"}, blind, SETTINGS, CONFIG, NOW) == []
    assert [f.id for f in decide({"trails": "no trail"}, [CheckResult("trails")], SETTINGS, CONFIG, NOW)] == [
        "guardrail-sees-again"]


def test_config_from_the_template_environment() -> None:
    env = {"FORWARDED_REGIONS": "us-east-2, ap-southeast-2,us-east-1",
           "WATCHED_RULES": "a,b=ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS", "HOME_RULES": "c"}
    config = HeartbeatConfig.from_env(SETTINGS, env)
    assert config.regions == (REGION, "us-east-2", "ap-southeast-2")  # the home region once
    assert config.needed_state("b") == heartbeat.ALL_MANAGEMENT and config.needed_state("c") == "ENABLED"
    assert sorted(config.expected()) == sorted([(REGION, "a"), (REGION, "b"), (REGION, "c"),
                                                ("us-east-2", "a"), ("us-east-2", "b"),
                                                ("ap-southeast-2", "a"), ("ap-southeast-2", "b")])
