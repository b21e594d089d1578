"""Hostile input: thousands of generated and mutated events per handler, from the real corpus records.

Invariant: the account is in the baseline (nothing has drifted), so whatever an event claims,
no handler raises, none makes an IAM or CloudTrail write (any write would be a wrong
remediation), none calls an API its function did not declare, and every event it does not
judge is logged with a reason and counted (MalformedEvents / IgnoredEvents).

One local account serves every example (set up once per module): hypothesis and
function-scoped fixtures do not mix, and a fresh account per example would be slow.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guardrail_cli.faults import calls_outside, function_landed, log_lines, metrics, writes
from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.seed import ADMINISTRATOR_ACCESS, TRAIL
from guardrail_cli.testing import EVENTS_DIR, baseline_account, corpus_records, envelope, retarget

EXAMPLES = 1000
HANDLERS = ["AdminDriftFunction", "MfaDriftFunction", "RootActivityFunction", "TrailGuardFunction",
            "SelfProtectFunction"]  # the CloudTrail handlers; the sweep has its own test below

# --- the seeds: real records, in the local account and as published --------------------------


def _seeds() -> list[dict[str, Any]]:
    seeds = []
    for _, record in corpus_records():
        seeds.append(envelope(retarget(record)))  # judged: the local account and region
        seeds.append(envelope(record))  # as published: another account, odd regions
    seeds += [json.loads(p.read_text()) for p in sorted(Path(EVENTS_DIR).glob("*.json"))]
    return seeds


SEEDS = _seeds()
EVENT_NAMES = sorted({str(s["detail"].get("eventName")) for s in SEEDS if isinstance(s.get("detail"), dict)})

# Values that steer the judges onto their interesting paths (real names, other cases, odd ARNs).
NAMES = st.sampled_from([
    "administrators", "Administrators", "ADMINISTRATORS", "admin-mfa", "Admin-MFA", "assume-admin-role", "bob",
    "phoebe", "aws root user", "root", TRAIL, "account-guardrail-admin-drift", "", " ", "*", "../x", "a" * 300,
])
ARNS = st.sampled_from([
    ADMINISTRATOR_ACCESS, ADMINISTRATOR_ACCESS.upper(), f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role",
    f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa", f"arn:aws:iam::{ACCOUNT_ID}:mfa/phoebe",
    f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{TRAIL}", "arn:aws:iam::aws:policy/ReadOnlyAccess",
    f"arn:aws:iam::{ACCOUNT_ID}:policy/account-guardrail-mfa-required", "arn:aws:iam::999999999999:policy/x",
    "not-an-arn", "arn:aws:iam::" + "9" * 5000,
])
DOCUMENTS = st.sampled_from([
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}',
    '{"Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}',
    '{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}', "{", "[]", "null",
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=30), NAMES, ARNS)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=10)
PARAM_KEYS = st.sampled_from([
    "groupName", "policyArn", "userName", "roleName", "policyName", "policyDocument", "name", "trailName",
    "serialNumber", "virtualMFADeviceName", "versionId", "setAsDefault", "functionName", "topicArn", "queueUrl",
])
PARAM_VALUES = st.one_of(NAMES, ARNS, DOCUMENTS, JSON)
REQUEST_PARAMETERS = st.one_of(st.dictionaries(PARAM_KEYS, PARAM_VALUES, max_size=5), JSON)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside an event."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from paths(value, (*prefix, i))


def _parent(event: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        event = event[step]
    return event


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any] | Any:
    event: Any = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    kept_id = False
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from([
            "drop", "null", "retype", "oversize", "detail-type", "source", "account", "region",
            "event-name", "request-parameters", "identity", "detail", "whole",
        ]))
        all_paths = list(paths(event)) if isinstance(event, dict) else []
        if kind in ("drop", "null", "retype", "oversize") and all_paths:
            path = draw(st.sampled_from(all_paths))
            parent = _parent(event, path)
            if kind == "drop":
                del parent[path[-1]]
            elif kind == "null":
                parent[path[-1]] = None
            elif kind == "retype":
                parent[path[-1]] = draw(JSON)
            else:
                parent[path[-1]] = draw(st.sampled_from(["A", "é", "\x00", "🔥", "%s"])) * draw(
                    st.sampled_from([3000, 70_000, 300_000]))
            kept_id = kept_id or path[0] == "id"
        elif not isinstance(event, dict):
            continue
        elif kind == "detail-type":
            event["detail-type"] = draw(st.one_of(st.sampled_from([
                "AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail", "Scheduled Event",
                "AWS Service Event via CloudTrail", "aws api call via cloudtrail"]), st.text(max_size=40), JSON))
        elif kind == "source":
            event["source"] = draw(st.one_of(st.sampled_from(
                ["aws.iam", "aws.signin", "aws.cloudtrail", "aws.sts", "aws.events", "custom.app"]), JSON))
        elif kind == "account":
            event["account"] = draw(st.one_of(st.from_regex(r"\A[0-9]{12}\Z"), st.just(ACCOUNT_ID), JSON))
        elif kind == "region":
            event["region"] = draw(st.one_of(st.sampled_from(["us-east-1", "eu-west-1", "eu-west-2r", ""]), JSON))
        elif kind == "event-name" and isinstance(event.get("detail"), dict):
            event["detail"]["eventName"] = draw(st.one_of(
                st.sampled_from(EVENT_NAMES), st.text(max_size=40), st.just("DetachGroupPolicyX"), JSON))
        elif kind == "request-parameters" and isinstance(event.get("detail"), dict):
            event["detail"]["requestParameters"] = draw(REQUEST_PARAMETERS)
        elif kind == "identity" and isinstance(event.get("detail"), dict):
            event["detail"]["userIdentity"] = draw(st.one_of(JSON, st.fixed_dictionaries({
                "type": st.sampled_from(["IAMUser", "Root", "AssumedRole", "AWSService", "FederatedUser", "x"]),
                "arn": ARNS, "userName": NAMES, "accountId": st.sampled_from([ACCOUNT_ID, "111111111111"]),
                "sessionContext": JSON})))
        elif kind == "detail":
            event["detail"] = draw(JSON)
        elif kind == "whole":
            event = draw(JSON)
            kept_id = True
    if isinstance(event, dict) and not kept_id:
        event["id"] = str(uuid.uuid4())  # a fresh event: judged, not replayed from the idempotency table
    return event


def _line_breaks() -> dict[str, Any]:
    """A real record whose names hold the characters str.splitlines() also breaks lines at."""
    event = copy.deepcopy(SEEDS[0])
    event["id"] = "line-breaks"
    event["detail"]["eventName"] = "\x85"
    event["detail"]["userIdentity"] = {"type": "IAMUser", "userName": "a\u2028b\x1c", "arn": "x\r\ny"}
    return dict(event)


def scheduled_events() -> st.SearchStrategy[Any]:
    """The sweep's input: the schedule's own event, mutated the same ways, or anything at all."""
    seed = json.loads((Path(EVENTS_DIR) / "mfa-sweep-scheduled.json").read_text())
    return st.one_of(
        st.builds(lambda i: {**seed, "id": i}, st.uuids().map(str)),
        st.builds(lambda key, value: {**seed, "id": str(uuid.uuid4()), key: value},
                  st.sampled_from(list(seed)), JSON),
        JSON, mutated_events())


# --- one account for the module -------------------------------------------------------------


@pytest.fixture(scope="module")
def account() -> Iterator[LocalGuardrail]:
    with baseline_account() as local:
        yield local


OUTCOMES: dict[str, Counter[str]] = {}


def check(local: LocalGuardrail, function: str, event: Any) -> Invocation:
    inv = local.invoke(function, event)
    assert inv.error is None, f"{function} raised {inv.error} for {json.dumps(event)[:2000]}"
    assert writes(inv) == [], f"{function} wrote {writes(inv)} for {json.dumps(event)[:2000]}"
    assert calls_outside(inv, local.stack) == []
    result = inv.result
    assert isinstance(result, dict) and isinstance(result.get("status"), str)
    assert result["status"] != "failed", f"{function} could not judge {json.dumps(event)[:2000]}: {result}"
    counted = metrics(inv)
    if result["status"] == "malformed":  # the reason is logged, the metric counted
        assert counted["MalformedEvents"] == 1 and result["reason"]
        assert any(line["message"] == "malformed event ignored" and line.get("reason") for line in
                   log_lines(inv, "WARNING"))
    if result["status"] == "ignored":
        assert counted["IgnoredEvents"] == 1 and result["reason"]
        assert any(line["message"] == "event ignored" and line.get("reason") for line in log_lines(inv, "INFO"))
    OUTCOMES.setdefault(function, Counter())[result["status"]] += 1
    return inv


# Locally every run explores new examples; in CI (CI=true) the examples are the same every run,
# so a submission's result does not depend on luck.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=bool(os.environ.get("CI")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])


@pytest.mark.parametrize("function", HANDLERS)
def test_no_event_makes_a_handler_crash_or_write(account: LocalGuardrail, function: str) -> None:
    if not function_landed(function):
        pytest.fail(f"{function} has no code")

    @FUZZ
    @given(event=mutated_events())
    @example(event=_line_breaks())  # found by this test: the log checks once split lines inside JSON
    def run(event: Any) -> None:
        check(account, function, event)

    run()
    seen = OUTCOMES[function]
    assert sum(seen.values()) >= EXAMPLES, seen
    # The examples reached every stage: rejected as malformed, ignored by triage, and judged.
    assert seen["malformed"] > 50 and seen["ignored"] > 50 and seen["handled"] > 50, seen


def test_no_input_makes_the_sweep_crash_or_write(account: LocalGuardrail) -> None:
    """Fewer examples here: the sweep reads the account whatever its input (only the id matters,
    for idempotency), and each run costs a full sweep (~35 ms locally)."""
    if not function_landed("MfaSweepFunction"):
        pytest.fail("MfaSweepFunction has no code")

    @settings(FUZZ, max_examples=300)
    @given(event=scheduled_events())
    def run(event: Any) -> None:
        inv = account.invoke("MfaSweepFunction", event)
        assert inv.error is None, inv.error
        assert writes(inv) == [] and calls_outside(inv, account.stack) == []

    run()


def test_the_account_is_still_the_baseline_after_the_fuzz(account: LocalGuardrail) -> None:
    setup = account.invoke("SetupFunction", {"dry_run": True})
    assert setup.result["plan"] == [] and setup.result["trail_ok"] is True
