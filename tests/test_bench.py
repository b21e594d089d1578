"""The benchmark's pure helpers: call split, budgets, memory recommendation, rendering.

No timing here (that is `make bench`'s job, not a unit test's): these check that a broken
budget is reported as broken, by how much, and that what could not be measured is n/a.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.report import (  # noqa: E402
    ADMIN_SCENARIO,
    ROOT_SCENARIO,
    CallCounts,
    Check,
    Results,
    ScenarioRow,
    check_calls,
    check_max,
    recommend_memory,
    render,
    render_table,
)
from bench.run import state_of, targets, zipped_kb  # noqa: E402
from guardrail_cli.apply import APPLIED, FAILED, SKIPPED, Applied  # noqa: E402
from guardrail_cli.local import LocalGuardrail  # noqa: E402
from guardrail_cli.recorder import Call  # noqa: E402


def calls(*names: str) -> list[Call]:
    return [Call(name.split(":")[0], name.split(":")[1], {}) for name in names]


def row(scenario: str, counts: CallCounts, function: str = "AdminDriftFunction") -> ScenarioRow:
    return ScenarioRow(scenario, function, "ok", warm=counts)


def by_budget(checks: list[Check]) -> dict[str, Check]:
    return {c.budget: c for c in checks}


def test_calls_are_split_by_kind_and_idempotency_is_not_counted() -> None:
    counts = CallCounts.of(calls("iam:GetGroup", "iam:DetachGroupPolicy", "sns:Publish",
                                 "dynamodb:PutItem", "dynamodb:UpdateItem", "cloudtrail:GetTrailStatus"))
    assert (counts.read, counts.write, counts.publish, counts.idempotency) == (2, 1, 1, 2)
    assert counts.iam == 2
    assert counts.total == 4
    assert (counts + counts).total == 8


def test_admin_scenario_over_its_iam_budget_is_broken_by_the_excess() -> None:
    three_iam = CallCounts.of(calls("iam:ListAttachedGroupPolicies", "iam:GetGroup", "iam:DetachGroupPolicy",
                                    "sns:Publish"))
    check = by_budget(check_calls([row(ADMIN_SCENARIO, three_iam)]))["restore the admin group: calls"]
    assert check.ok is False
    assert "1 IAM call(s) over" in check.note

    two_iam = CallCounts.of(calls("iam:ListAttachedGroupPolicies", "iam:DetachGroupPolicy", "sns:Publish",
                                  "dynamodb:PutItem", "dynamodb:UpdateItem"))
    assert by_budget(check_calls([row(ADMIN_SCENARIO, two_iam)]))["restore the admin group: calls"].ok is True


def test_an_alert_is_required_not_just_allowed() -> None:
    silent = CallCounts.of(calls("iam:DetachGroupPolicy"))
    check = by_budget(check_calls([row(ADMIN_SCENARIO, silent)]))["restore the admin group: calls"]
    assert check.ok is False
    assert "0 publishes instead of 1" in check.note


def test_root_sign_in_may_not_call_iam() -> None:
    with_alias_lookup = CallCounts.of(calls("iam:ListAccountAliases", "sns:Publish"))
    checks = by_budget(check_calls([row(ROOT_SCENARIO, with_alias_lookup, "RootActivityFunction")]))
    assert checks["root sign-in alert (warm): calls"].ok is False
    just_publish = CallCounts.of(calls("sns:Publish", "dynamodb:PutItem", "dynamodb:UpdateItem"))
    checks = by_budget(check_calls([row(ROOT_SCENARIO, just_publish, "RootActivityFunction")]))
    assert checks["root sign-in alert (warm): calls"].ok is True


def test_missing_named_scenarios_are_not_applicable_not_passed() -> None:
    checks = by_budget(check_calls([ScenarioRow(ROOT_SCENARIO, "RootActivityFunction", "n/a: no code yet")]))
    assert checks["root sign-in alert (warm): calls"].ok is None
    assert checks["root sign-in alert (warm): calls"].note == "n/a: no code yet"
    assert checks["restore the admin group: calls"].ok is None
    assert "missing" in checks["restore the admin group: calls"].note


def test_every_scenario_budget_sums_the_functions_an_event_reaches() -> None:
    three = CallCounts.of(calls("iam:GetUser", "iam:ListMFADevices", "sns:Publish"))
    rows = [row("x.json", three, "A"), row("x.json", three, "B"), row("y.json", three)]
    checks = by_budget(check_calls(rows))
    assert checks["x.json: calls"].ok is False
    assert checks["x.json: calls"].measured == "6"
    assert checks["x.json: calls"].note == "1 over"
    assert checks["y.json: calls"].ok is True


def test_check_max_says_by_how_much() -> None:
    assert check_max("cold", 1.2, 1.5, "x").ok is True
    over = check_max("cold", 1.8, 1.5, "x")
    assert over.ok is False
    assert over.note.startswith("0.30x over")
    assert check_max("size", None, 256, " KB", "no code yet").ok is None


def test_memory_recommendation_keeps_headroom_and_lambda_minimum() -> None:
    assert recommend_memory(47.3) == 128  # 71 MB needed: the minimum size
    assert recommend_memory(100) == 192  # 150 MB needed -> next 64 MB step
    assert recommend_memory(200) == 320


def test_table_aligns_numbers_right_and_shows_missing_values_as_na() -> None:
    text = render_table(["name", "calls"], [["a", 3], ["bbb", 12], ["c", None]])
    lines = text.splitlines()
    assert lines[0].split() == ["name", "calls"]
    assert lines[2].endswith("    3")
    assert lines[3].endswith("   12")
    assert lines[4].endswith("n/a")


def test_report_ends_with_the_broken_budgets() -> None:
    admin = row(ADMIN_SCENARIO, CallCounts(read=1, write=1, publish=1, iam=2))
    results = Results(publish_ms=2.0, scenarios=[admin])
    results.scenarios[0].median_ms = 8.0
    results.checks = check_calls(results.scenarios)
    assert "all measured budgets met" in render(results)
    assert "4.00x" in render(results)  # warm time as a ratio to the bare publish
    results.checks.append(check_max("SharedLayer: zipped", 300.0, report.PACKAGE_MAX_KB, " KB"))
    text = render(results)
    assert "BROKEN" in text
    assert text.rstrip().endswith("1 budget(s) broken")
    assert results.to_json()["broken"][0]["budget"] == "SharedLayer: zipped"


def test_replay_state_tells_whether_each_run_met_real_drift() -> None:
    applied = Applied("iam:AttachGroupPolicy", APPLIED)
    assert state_of([applied, applied, applied]) == "drift"
    assert state_of([applied, Applied("iam:DeactivateMFADevice", FAILED, "NoSuchEntity")]) == "as-left"
    assert state_of([None, None]) == "no write"
    assert state_of([Applied("iam:CreateRole", FAILED, "not implemented")]) == "not applied"
    assert state_of([Applied("iam:AttachGroupPolicy", SKIPPED, "failed call")]) == "no write"


def test_a_schedule_reaches_the_scheduled_function_only() -> None:
    router = LocalGuardrail()
    scheduled = {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.scheduler",
                 "account": "123456789012", "region": "us-east-1", "time": "2026-11-29T08:00:00Z",
                 "resources": [], "detail": {}}
    assert targets(router, scheduled) == list(router.stack.schedules())
    assert "MfaSweepFunction" in targets(router, scheduled)


def test_package_size_counts_the_bytecode_the_layer_ships(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("x = 1\n" * 100)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-313.pyc").write_bytes(os.urandom(50_000))
    kb, files = zipped_kb(tmp_path)
    assert files == 2
    assert kb > 40  # 50 KB that does not deflate: it is uploaded, so it counts
