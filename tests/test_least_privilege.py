"""Least privilege, proven: each function's role grants exactly what its code declares it calls,
on exact ARNs wherever IAM allows; notify modes and the kill switch grant no write; every call
recorded while handling real events is one the code declared; checkov and cfn-lint are clean,
and every checkov suppression says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from guardrail_cli.faults import DETECTOR_MODULES, REMEDIATIONS, calls_outside, declared_actions, function_landed
from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation
from guardrail_cli.template import REPO_ROOT, TEMPLATE_PATH, Stack
from guardrail_cli.testing import baseline_account, corpus_records, envelope, retarget
from guardrail_core.config import ADMINISTRATOR_ACCESS_ARN

# The parameter sets that change what a role may do.
PARAMETER_SETS = {
    "defaults": {},
    "everything-on": {"AdminDriftMode": "remediate", "DetachOtherAdminGrants": "true", "MfaMode": "quarantine",
                      "TrailMode": "remediate"},
    "notify": {"AdminDriftMode": "notify", "MfaMode": "notify", "TrailMode": "notify"},
    "kill-switch": {"KillSwitch": "on", "DetachOtherAdminGrants": "true", "MfaMode": "quarantine"},
    "security-hub": {"SecurityHubFindings": "true"},
}
# Actions that support no resource narrower than "*" (IAM's Service Authorization Reference).
NO_RESOURCE_ACTIONS = frozenset({
    "iam:ListGroups", "iam:ListRoles", "iam:ListUsers", "iam:ListPolicies", "iam:ListAccountAliases",
    "iam:GenerateCredentialReport", "iam:GetCredentialReport", "iam:GetAccountSummary",
    "iam:GetAccountPasswordPolicy", "iam:ListVirtualMFADevices", "iam:GetAccountAuthorizationDetails",
    "cloudtrail:DescribeTrails", "cloudtrail:ListTrails", "cloudtrail:LookupEvents",
    "sns:GetSubscriptionAttributes", "sns:SetSubscriptionAttributes",
})
READ_VERBS = ("Get", "List", "Describe", "Generate", "Lookup")


def stack(name: str) -> Stack:
    return Stack(parameters=PARAMETER_SETS[name])


def functions() -> list[str]:
    return [f for f in Stack().functions() if f == "SetupFunction" or function_landed(f)]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def granted(s: Stack, function: str) -> dict[str, list[dict[str, Any]]]:
    """action -> the statements granting it, for the function's role."""
    out: dict[str, list[dict[str, Any]]] = {}
    for statement in s.role_statements(s.functions()[function].role):
        if statement["Effect"] == "Deny":  # only takes away: the guardrail's own roles kept out of
            # DetachOtherAdminGrants (unconditional), or only-from-its-function (tests/test_self_protection.py)
            assert "NotAction" not in statement and "NotResource" not in statement
            only_own_function = {"lambda:SourceFunctionArn": "false"}
            assert "Condition" not in statement or statement["Condition"]["Null"] == only_own_function
            continue
        assert statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, f"{function}: wildcard action {action}"
            out.setdefault(action, []).append(statement)
    return out


def is_write(action: str) -> bool:
    service, name = action.split(":")
    return service in ("iam", "cloudtrail") and not name.startswith(READ_VERBS)


# --- exactly what the code declares ------------------------------------------------------------


@pytest.mark.parametrize("params", PARAMETER_SETS)
@pytest.mark.parametrize("function", functions())
def test_role_grants_exactly_the_declared_actions(function: str, params: str) -> None:
    s = stack(params)
    actions = set(granted(s, function))
    expected = declared_actions(function, s)
    assert actions - expected == set(), f"{function}: granted but never called"
    assert expected - actions == set(), f"{function}: called but not granted"


@pytest.mark.parametrize("params", ["notify", "kill-switch"])
@pytest.mark.parametrize("function", [f for f in functions() if f != "SetupFunction"])
def test_notify_modes_and_the_kill_switch_grant_no_write(function: str, params: str) -> None:
    writes = sorted(a for a in granted(stack(params), function) if is_write(a))
    assert writes == []


def test_setup_is_the_one_role_that_writes_whatever_the_modes() -> None:
    """Setup is the owner's own deliberate converge (at deploy, or invoked by hand with a dry run
    first): no mode or kill switch applies to it, and its writes are pinned to the baseline's ARNs
    (test below), plus the repair of the owner's alert subscription (subscribe only the owner's
    address, by email: tests/test_subscription.py)."""
    writes = {a for a in granted(stack("kill-switch"), "SetupFunction") if is_write(a)}
    from guardrail_core import iam_baseline, subscription

    assert writes == iam_baseline.WRITE_ACTIONS
    sns_writes = {a for a in granted(stack("kill-switch"), "SetupFunction") if a in subscription.WRITE_ACTIONS}
    assert sns_writes == subscription.WRITE_ACTIONS


def test_every_adapter_with_declarations_belongs_to_a_function() -> None:
    layer = REPO_ROOT / "layers" / "guardrail_core" / "guardrail_core"
    declaring = {p.stem for p in layer.glob("*.py") if re.search(r"^(READ|WRITE)_ACTIONS\b", p.read_text(), re.M)}
    # lockout.READ_ACTIONS are part of iam_baseline.READ_ACTIONS
    claimed = {module for module, _ in DETECTOR_MODULES.values()} | {"iam_baseline", "lockout", "subscription"}
    assert declaring <= claimed


# --- on exact ARNs --------------------------------------------------------------------------


def resources(statements: list[dict[str, Any]]) -> set[str]:
    return {r for st in statements for r in as_list(st["Resource"])}


@pytest.mark.parametrize("params", PARAMETER_SETS)
@pytest.mark.parametrize("function", functions())
def test_resources_are_exact_wherever_iam_allows(function: str, params: str) -> None:
    s = stack(params)
    group = f"arn:aws:iam::{ACCOUNT_ID}:group/administrators"
    groups = {group, f"arn:aws:iam::{ACCOUNT_ID}:group/*/administrators"}  # the one group, at any path
    role = f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa"
    policy = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
    quarantine = s.ref("MfaQuarantinePolicy")
    exact = {
        "sns:Publish": {s.ref("AlertTopic")},
        "kms:GenerateDataKey": {s.get_att("AlertKey", "Arn")}, "kms:Decrypt": {s.get_att("AlertKey", "Arn")},
        "sqs:SendMessage": {s.get_att("FailureQueue", "Arn")},
        **{a: {s.get_att("IdempotencyTable", "Arn")} for a in ("dynamodb:GetItem", "dynamodb:PutItem",
                                                             "dynamodb:UpdateItem", "dynamodb:DeleteItem")},
        **{a: {f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/lambda/account-guardrail-*:*"}
           for a in ("logs:CreateLogStream", "logs:PutLogEvents")},
        # The baseline's own writes: only on the baseline's own resources.
        **{a: {role} for a in ("iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
                               "iam:AttachRolePolicy")},
        **{a: {policy} for a in ("iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion")},
        **{a: groups for a in ("iam:CreateGroup", "iam:AttachGroupPolicy")},
        # SecurityHubFindings=true: the account's own product only (findings it imports for itself).
        "securityhub:BatchImportFindings": {f"arn:aws:securityhub:{REGION}:{ACCOUNT_ID}:product/{ACCOUNT_ID}/default"},
    }
    detach_elsewhere = function == "AdminDriftFunction" and s.conditions["DetachOtherAdmin"]
    if not detach_elsewhere:  # otherwise admin grants are removed from any user or group
        exact |= {a: groups for a in ("iam:DetachGroupPolicy", "iam:DeleteGroupPolicy")}
    for action, statements in granted(s, function).items():
        where = resources(statements)
        if action in exact:
            assert where == exact[action], f"{function}: {action} on {where}"
        if "*" in where:
            assert action in NO_RESOURCE_ACTIONS, f"{function}: {action} on *"
        for arn in where - {"*"}:
            if arn == "arn:aws:iam::aws:policy/*":  # AWS-managed documents, public: read only (lockout guard)
                assert action in ("iam:GetPolicy", "iam:GetPolicyVersion"), f"{function}: {action} on {arn}"
                continue
            assert arn.startswith((f"arn:aws:iam::{ACCOUNT_ID}:", f"arn:aws:cloudtrail:*:{ACCOUNT_ID}:",
                                   "arn:aws:cloudtrail:*:*:trail/",
                                   f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:",
                                   f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:", f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:",
                                   f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:", f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:",
                                   f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:",
                                   f"arn:aws:securityhub:{REGION}:{ACCOUNT_ID}:product/{ACCOUNT_ID}/",
                                   f"arn:aws:events:*:{ACCOUNT_ID}:rule/account-guardrail-")), \
            f"{function}: {action} on {arn}"
        # Attaching a policy is only ever the one policy the guardrail may attach.
        if action == "iam:AttachRolePolicy":
            only_admin = {"ArnEquals": {"iam:PolicyARN": ADMINISTRATOR_ACCESS_ARN}}
            assert all(st["Condition"] == only_admin for st in statements)
        if action == "iam:AttachGroupPolicy":
            only_assume = {"ArnEquals": {"iam:PolicyARN": policy}}
            assert all(st["Condition"] == only_assume for st in statements), function
        if action == "securityhub:BatchImportFindings":  # and only into this account
            only_here = {"StringEquals": {"securityhub:TargetAccount": ACCOUNT_ID}}
            assert all(st["Condition"] == only_here for st in statements), function
        if action == "iam:AttachUserPolicy":
            assert all(st["Condition"] == {"ArnEquals": {"iam:PolicyARN": quarantine}} for st in statements), function


def test_every_star_resource_carries_a_comment_in_the_template() -> None:
    """`Resource: "*"` only with a comment, on the line or in its statement, saying why."""
    lines = TEMPLATE_PATH.read_text().splitlines()
    roles = {f.role for f in Stack().functions().values()}
    in_role = False
    for n, line in enumerate(lines):
        header = re.match(r"^  (\w+):$", line)
        if header:
            in_role = header.group(1) in roles or header.group(1) in ("CommonPolicy", "DeliveryPolicy")
        if in_role and re.search(r'Resource: "\*"', line):
            start = max(i for i in range(n + 1) if re.match(r"^\s*- (Sid|Effect):", lines[i]))
            assert any("#" in lines[i] for i in range(start, n + 1)), f"template.yaml:{n + 1}: {line.strip()}"


# --- every call actually made was declared ----------------------------------------------------


@pytest.fixture(scope="module")
def corpus_runs() -> Iterator[list[Invocation]]:
    """Every real corpus record, moved into the local account, through every rule, in the
    mode that writes the most; plus each remediation scenario."""
    out: list[Invocation] = []
    with baseline_account(PARAMETER_SETS["everything-on"] | {"MfaGraceHours": "0"}) as local:
        for _, record in corpus_records():
            for event in (envelope(retarget(record)), envelope(record)):
                _, invocations = local.dispatch(event)
                out += [i for i in invocations if function_landed(i.function)]
    for scenario in REMEDIATIONS:
        if function_landed(scenario.function):
            with baseline_account(scenario.parameters) as local:
                out.append(local.invoke(scenario.function, scenario.drift()))
    yield out


def test_every_call_made_on_real_events_was_declared(corpus_runs: list[Invocation]) -> None:
    s = stack("everything-on")
    assert len(corpus_runs) >= 30  # the corpus reaches the detectors (else this proves little)
    undeclared = {(i.function, name) for i in corpus_runs for name in calls_outside(i, s)}
    assert undeclared == set()
    assert all(i.error is None for i in corpus_runs), [i.error for i in corpus_runs if i.error]


def test_setup_calls_only_what_it_declares() -> None:
    with baseline_account(converge=False) as local:
        inv = local.invoke("SetupFunction", {})
        assert inv.result["compliant"] is True and calls_outside(inv, local.stack) == []


# --- the scanners ---------------------------------------------------------------------------
# `make template` runs cfn-lint and checkov on template.yaml and fails on any finding; what it
# cannot check is that each suppression says why, so that is checked here.


def test_every_checkov_suppression_says_why() -> None:
    suppressions = []
    for logical_id, resource in Stack().template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            suppressions.append((logical_id, skip["id"]))
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (logical_id, skip)
            assert len(str(skip.get("comment", "")).split()) >= 5, f"{logical_id}: {skip['id']} needs a reason"
    assert ("IdempotencyTable", "CKV_AWS_119") in suppressions and ("FailureQueue", "CKV_AWS_27") in suppressions


def test_make_test_runs_cfn_lint_and_checkov_on_the_template() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    target = makefile[makefile.index("\ntemplate:"):]
    target = target[: target.index("\n\n")]
    assert "cfn-lint template.yaml" in target and "checkov" in target and "-f template.yaml" in target
    assert re.search(r"^test: .*\btemplate\b", makefile, re.M)
