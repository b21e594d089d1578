"""The local account routes like AWS: by the region an event was recorded in, through the forwarding
rules, honouring each rule's state, with a pattern engine validated against EventBridge."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from guardrail_cli import regional
from guardrail_cli.local import ALL_MANAGEMENT, LocalGuardrail, delivers
from guardrail_cli.matcher import Pattern, moto_matches
from guardrail_cli.replay import load_event_file, replay_each
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, baseline_account, corpus_records, envelope, load_event, retarget
from guardrail_core.config import load_settings
from guardrail_core.events import parse_event
from guardrail_core.triage import Verdict, triage

BOB_SYDNEY = EVENTS_DIR / "signin-iam-user-without-mfa-ap-southeast-2.json"
ROOT_READ = EVENTS_DIR / "root-access-key-read.json"


def moved(event: dict[str, Any], region: str) -> dict[str, Any]:
    """The same event as if recorded in another region (envelope and record agree, as AWS sends them)."""
    out = copy.deepcopy(event)
    out["region"] = region
    out["detail"]["awsRegion"] = region
    return out


@pytest.fixture(scope="module")
def router() -> LocalGuardrail:
    return LocalGuardrail(Stack())


# --- the AWS-validated matcher ---------------------------------------------------------------------


def every_pattern() -> list[tuple[str, dict[str, Any]]]:
    stack = Stack()
    out = [(rule.logical_id, rule.pattern) for rule in stack.rules()]
    forwarded = regional.resolved_regional_template(stack)["Resources"]
    out += [(f"forwarded {name}", r["Properties"]["EventPattern"]) for name, r in forwarded.items()]
    return out


def every_event() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, record in corpus_records():
        out += [(name, envelope(record)), (f"{name} (local account)", envelope(retarget(record)))]
    out += [(path.name, load_event(path)) for path in sorted(EVENTS_DIR.glob("*.json"))]
    return out


def test_the_aws_validated_engine_and_moto_agree_on_every_pattern_and_record() -> None:
    """LocalStack's EventRuleEngine decides the local routing; moto's matcher gives the same answer on
    every template pattern (home and forwarded) x every corpus record and every file in events/."""
    patterns, events = every_pattern(), every_event()
    assert len(patterns) == 17 and len(events) >= 450
    disagreements, matches = [], 0
    for name, pattern in patterns:
        engine = Pattern(pattern)
        for event_name, event in events:
            ours, theirs = engine.matches(event), moto_matches(pattern, event)
            matches += ours
            if ours != theirs:
                disagreements.append((name, event_name, ours, theirs))
    assert disagreements == []
    assert matches >= 150  # the patterns do match real records: the agreement is not all "no"


@pytest.mark.parametrize(("pattern", "event", "expected"), [
    ({"detail": {"x": [{"anything-but": {"equals-ignore-case": "yes"}}]}}, {"detail": {"x": "YES"}}, False),
    ({"detail": {"x": [{"anything-but": {"equals-ignore-case": "yes"}}]}}, {"detail": {"x": "No"}}, True),
    ({"detail": {"n": [{"wildcard": "*:function:guard-*"}]}}, {"detail": {"n": "arn:x:function:guard-a"}}, True),
    ({"detail": {"n": [{"prefix": {"equals-ignore-case": "GUARD-"}}]}}, {"detail": {"n": "guard-x"}}, True),
    ({"detail": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}, {"detail": {"b": "2"}}, True),
    ({"detail": {"k": [{"exists": False}]}}, {"detail": {"k": None}}, False),  # null is a value
])
def test_the_engine_answers_as_the_eventbridge_user_guide_documents(
        pattern: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    assert Pattern(pattern).matches(event) is expected


# --- region -----------------------------------------------------------------------------------


def test_the_sydney_sign_in_without_mfa_is_alerted_through_the_forwarding_path() -> None:
    (replay,) = replay_each([(BOB_SYDNEY.name, load_event_file(BOB_SYDNEY))])
    assert replay.event["region"] == "ap-southeast-2"
    assert replay.routing is not None and replay.routing.path == "forwarded"
    assert replay.routing.forwarded_by == ["account-guardrail-signin-without-mfa"]
    assert [r.logical_id for r in replay.rules] == ["ConsoleSignInWithoutMfa"]
    (invocation,) = replay.invocations
    assert [f["id"] for f in invocation.findings] == ["console-signin-without-mfa"]
    (email,) = invocation.notifications
    assert "IAM user bob signed in to the console without MFA" in email["subject"]
    assert "Region:     ap-southeast-2" in email["message"]
    assert replay.to_json()["routing"]["note"] == (
        "forwarded from ap-southeast-2 to us-east-1 by account-guardrail-signin-without-mfa")


@pytest.mark.parametrize("region", ["af-south-1", "me-central-1"])
def test_the_same_sign_in_in_a_region_not_covered_reaches_nothing_and_replay_says_why(region: str) -> None:
    event = moved(load_event_file(BOB_SYDNEY), region)
    (replay,) = replay_each([("elsewhere.json", event)])
    assert replay.rules == [] and replay.invocations == []
    assert replay.routing is not None and replay.routing.path == "not covered"
    assert f"recorded in {region}, a region the stack does not cover" in replay.routing.note
    assert "ForwardedOptInRegions" in replay.routing.note


def test_covering_an_opt_in_region_is_a_parameter() -> None:
    event = moved(load_event_file(BOB_SYDNEY), "af-south-1")
    (replay,) = replay_each([("cape-town.json", event)], parameters={"ForwardedOptInRegions": "af-south-1"})
    assert replay.routing is not None and replay.routing.path == "forwarded"
    assert [f["id"] for inv in replay.invocations for f in inv.findings] == ["console-signin-without-mfa"]


def test_a_region_removed_from_the_parameter_is_no_longer_covered() -> None:
    (replay,) = replay_each([(BOB_SYDNEY.name, load_event_file(BOB_SYDNEY))],
                            parameters={"ForwardedRegions": "us-east-2,eu-north-1"})
    assert replay.routing is not None and replay.routing.path == "not covered" and replay.invocations == []


def test_iam_events_exist_only_in_us_east_1(router: LocalGuardrail) -> None:
    attach = load_event(EVENTS_DIR / "admin-policy-attached-to-group.json")
    assert [r.logical_id for r in router.route(attach)] == ["AdminAccessChange"]
    # The same record seen in another region (it never is): no forwarding rule carries IAM events.
    routing = router.routing(moved(attach, "eu-west-1"))
    assert routing.rules == [] and "no forwarding rule in eu-west-1 matches it" in routing.note


def test_a_trail_stopped_in_a_covered_region_reaches_the_trail_guard(router: LocalGuardrail) -> None:
    stopped = moved(load_event(EVENTS_DIR / "trail-stopped.json"), "eu-central-1")
    routing = router.routing(stopped)
    assert routing.path == "forwarded" and [r.function for r in routing.rules] == ["TrailGuardFunction"]


# --- rule state: read-only events ------------------------------------------------------------------


def test_the_root_rule_and_only_it_receives_read_only_events() -> None:
    states = {rule.logical_id: rule.state for rule in Stack().rules()}
    assert states.pop("RootApiCall") == ALL_MANAGEMENT
    assert set(states.values()) == {"ENABLED"}


def test_a_root_access_key_read_is_routed_home_and_forwarded(router: LocalGuardrail) -> None:
    read = load_event(ROOT_READ)
    assert read["detail"]["readOnly"] is True and read["detail"]["userIdentity"]["accessKeyId"].startswith("AKIA")
    forwarded = router.routing(read)
    assert forwarded.path == "forwarded" and forwarded.forwarded_by == ["account-guardrail-root-api-call"]
    assert [r.logical_id for r in forwarded.rules] == ["RootApiCall"]
    home = router.routing(moved(read, "us-east-1"))
    assert home.path == "home" and [r.logical_id for r in home.rules] == ["RootApiCall"]


def test_the_root_read_alerts_on_the_local_account() -> None:
    (replay,) = replay_each([(ROOT_READ.name, load_event_file(ROOT_READ))])
    (invocation,) = replay.invocations
    assert invocation.function == "RootActivityFunction" and invocation.error is None
    (finding,) = invocation.findings
    assert finding["severity"] in ("HIGH", "CRITICAL")
    assert "DescribeInstances" in invocation.notifications[0]["message"]


def test_read_only_events_skip_rules_without_the_state(router: LocalGuardrail) -> None:
    read = moved(load_event(ROOT_READ), "us-east-1")
    assert delivers(ALL_MANAGEMENT, read) and not delivers("ENABLED", read) and not delivers("DISABLED", read)
    write = load_event(EVENTS_DIR / "trail-stopped.json")
    assert delivers("ENABLED", write) and delivers(ALL_MANAGEMENT, write) and not delivers("DISABLED", write)
    # Were the root rule only ENABLED, EventBridge would never offer it the read.
    stack = Stack()
    for rule in stack.rules():
        if rule.logical_id == "RootApiCall":
            assert Pattern(rule.pattern).matches(read) and not delivers("ENABLED", read)


def test_a_root_console_read_is_not_alerted_the_sign_in_was(router: LocalGuardrail) -> None:
    read = moved(load_event(ROOT_READ), "us-east-1")
    read["detail"]["userIdentity"]["accessKeyId"] = "ASIAEXAMPLEROOTSESS1"
    assert router.route(read) == []


# --- handlers judge by the recorded region ------------------------------------------------------------


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ACCOUNT_ID", "123456789012")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("FORWARDED_REGIONS", "ap-southeast-2,eu-north-1")
    yield


def test_triage_judges_a_forwarded_event_by_its_recorded_region(settings_env: None) -> None:
    settings = load_settings()
    bob = load_event(BOB_SYDNEY)
    assert triage(parse_event(bob), settings).verdict is Verdict.ACT
    # Were the envelope ever to name the bus it reached, the record still says where it happened.
    rewritten = copy.deepcopy(bob)
    rewritten["region"] = "us-east-1"
    assert triage(parse_event(rewritten), settings).verdict is Verdict.ACT
    # ... but a record from a region the stack does not forward is still refused when they disagree.
    odd = moved(bob, "af-south-1")
    odd["region"] = "us-east-1"
    assert triage(parse_event(odd), settings).ignored
    # IAM events: judged only as recorded in us-east-1.
    attach = load_event(EVENTS_DIR / "admin-policy-attached-to-group.json")
    assert triage(parse_event(moved(attach, "eu-north-1")), settings, regions={"us-east-1"}).ignored
    assert triage(parse_event(attach), settings, regions={"us-east-1"}).verdict is Verdict.ACT


def test_a_forwarding_rule_disabled_in_another_region_is_tamper(settings_env: None) -> None:
    with baseline_account() as local:
        disable = json.loads((EVENTS_DIR / "tamper-rule-disabled.json").read_text())
        disable = moved(disable, "ap-southeast-2")
        (invocation,) = local.dispatch(disable)[1]
        (finding,) = invocation.findings
        assert finding["severity"] == "CRITICAL"
        assert "--region ap-southeast-2" in invocation.notifications[0]["message"]
