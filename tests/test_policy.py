"""The policy analyzer: a table of documents with their verdicts, real ones included, and properties.

Each row is a document a person or an attacker could write, and the verdict IAM's semantics give
it (IAM JSON policy reference: Action/NotAction, Resource/NotResource, wildcards, explicit Deny).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardrail_cli.template import Stack
from guardrail_cli.testing import corpus_records
from guardrail_core import policy
from guardrail_core.policy import ADMIN, DENY_ONLY, ESCALATION, ORDINARY, analyze

MANAGED_DIR = Path(__file__).parent / "corpus" / "managed-policies"


def doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: Any = None, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    stmt: dict[str, Any] = {"Effect": "Allow"}
    if action is not None:
        stmt["Action"] = action
    if resource is not None:
        stmt["Resource"] = resource
    return {**stmt, **extra}


def deny(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


MFA = {"Bool": {"aws:MultiFactorAuthPresent": "true"}}

TABLE: list[tuple[str, Any, str]] = [
    # admin: every action on every resource, however written
    ("star on star", doc(allow("*")), ADMIN),
    ("star-colon-star", doc(allow("*:*")), ADMIN),
    ("list with star", doc(allow(["s3:GetObject", "*"], ["arn:aws:s3:::b", "*"])), ADMIN),
    ("single statement object", {"Version": "2012-10-17", "Statement": allow("*")}, ADMIN),
    ("effect in lower case", doc({"Effect": "allow", "Action": "*", "Resource": "*"}), ADMIN),
    ("NotResource leaves everything but one bucket", doc(allow("*", None, NotResource="arn:aws:s3:::x")), ADMIN),
    ("NotAction of a made-up action", doc(allow(None, NotAction="foo:Bar")), ADMIN),
    ("question-mark wildcards", doc(allow("*?")), ADMIN),
    ("wildcard ARN resource", doc(allow("*", "arn:*:*:*:*:*")), ADMIN),
    ("admin with a condition is still admin", doc(allow("*", Condition={"IpAddress": {"aws:SourceIp": "1.2.3.4"}})),
     ADMIN),
    ("deny with a condition does not take admin away", doc(allow("*"), deny(Condition={
        "BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}})), ADMIN),
    # escalation: ways to take admin
    ("iam:*", doc(allow("iam:*")), ESCALATION),
    ("iam:Put*", doc(allow("iam:Put*")), ESCALATION),
    ("iam:Attach*", doc(allow("iam:Attach*")), ESCALATION),
    ("action in odd case", doc(allow("IAM:attachUSERpolicy")), ESCALATION),
    ("iam:?ttachUserPolicy", doc(allow("iam:?ttachUserPolicy")), ESCALATION),
    ("CreatePolicyVersion", doc(allow("iam:CreatePolicyVersion")), ESCALATION),
    ("AddUserToGroup", doc(allow("iam:AddUserToGroup")), ESCALATION),
    ("access keys for others", doc(allow("iam:CreateAccessKey", "arn:aws:iam::123456789012:user/*")), ESCALATION),
    ("login profile", doc(allow("iam:UpdateLoginProfile")), ESCALATION),
    ("trust rewrite then assume", doc(allow(["iam:UpdateAssumeRolePolicy", "sts:AssumeRole"])), ESCALATION),
    ("PassRole with Lambda", doc(allow("iam:PassRole"), allow(["lambda:CreateFunction", "lambda:InvokeFunction"])),
     ESCALATION),
    ("PassRole with EC2", doc(allow(["iam:PassRole", "ec2:RunInstances"])), ESCALATION),
    ("NotAction of s3 only: everything else", doc(allow(None, NotAction="s3:*")), ESCALATION),
    ("Allow all, Deny s3 without condition", doc(allow("*"), deny("s3:*")), ESCALATION),
    ("escalation with a condition is still reported", doc(allow("iam:AttachUserPolicy", Condition=MFA)), ESCALATION),
    ("boundary lifted", doc(allow("iam:DeleteRolePermissionsBoundary")), ESCALATION),
    # deny-only
    ("deny all", doc(deny()), DENY_ONLY),
    ("deny list", doc(deny(["iam:*", "organizations:*"])), DENY_ONLY),
    ("effect in capitals, deny", doc({"Effect": "DENY", "Action": "*", "Resource": "*"}), DENY_ONLY),
    # ordinary
    ("read-only s3", doc(allow("s3:GetObject")), ORDINARY),
    ("iam reads", doc(allow(["iam:Get*", "iam:List*"])), ORDINARY),
    ("assume one role", doc(allow("sts:AssumeRole", "arn:aws:iam::123456789012:role/admin-mfa")), ORDINARY),
    ("admin on one bucket", doc(allow("*", "arn:aws:s3:::bucket/*")), ORDINARY),
    ("policy writes on one named user", doc(allow("iam:AttachUserPolicy", "arn:aws:iam::123456789012:user/ci")),
     ORDINARY),
    ("PassRole of a prefix of roles", doc(allow(["iam:PassRole", "lambda:CreateFunction", "lambda:InvokeFunction"],
                                                "arn:aws:iam::123456789012:role/app-*")), ORDINARY),
    ("PassRole alone", doc(allow("iam:PassRole")), ORDINARY),
    ("UpdateAssumeRolePolicy without AssumeRole", doc(allow("iam:UpdateAssumeRolePolicy")), ORDINARY),
    ("Allow all, Deny iam without condition", doc(allow("*"), deny("iam:*")), ORDINARY),
    ("Allow all, Deny all", doc(allow("*"), deny()), ORDINARY),
    ("no statement", {"Version": "2012-10-17"}, ORDINARY),
    ("empty", {}, ORDINARY),
    ("unknown effect", doc({"Effect": "Maybe", "Action": "*", "Resource": "*"}), ORDINARY),
    ("no resource", doc(allow("*", None)), ORDINARY),
    ("not JSON", "not json", ORDINARY),
    ("a list", "[1, 2]", ORDINARY),
    ("a number", 5, ORDINARY),
    ("statement of odd types", doc(allow(5, {"x": 1})), ORDINARY),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("name", "document", "kind"), TABLE, ids=[t[0] for t in TABLE])
def test_the_verdict_table(name: str, document: Any, kind: str) -> None:
    assert analyze(document).kind == kind, name


def test_the_deciding_statement_and_its_condition_are_given() -> None:
    verdict = analyze(doc(allow("s3:*"), {"Sid": "Escalate", **allow("iam:PutUserPolicy", Condition=MFA)}))
    assert verdict.kind == ESCALATION
    assert verdict.sid == "Escalate"
    assert json.loads(verdict.condition) == MFA
    assert verdict.methods == ("PutUserPolicy",)
    assert "write any inline policy on a user" in verdict.describe()
    assert "aws:MultiFactorAuthPresent" in verdict.describe()
    assert '"iam:PutUserPolicy"' in verdict.quote()


def test_an_unconditional_statement_decides_before_a_conditional_one() -> None:
    verdict = analyze(doc({"Sid": "Cond", **allow("*", Condition=MFA)}, {"Sid": "Plain", **allow("*")}))
    assert (verdict.kind, verdict.sid, verdict.condition) == (ADMIN, "Plain", "")


def test_severity_follows_how_direct_the_escalation_is() -> None:
    assert analyze(doc(allow("iam:AttachUserPolicy"))).direct
    assert not analyze(doc(allow(["iam:PassRole", "ec2:RunInstances"]))).direct
    assert analyze(doc(allow("*"))).direct


@pytest.mark.parametrize("depth", [33, 5_000])
def test_hostile_nesting_is_refused_not_recursed(depth: int) -> None:
    nested = '{"Statement": [' + '{"a": [' * depth + "1" + "]}" * depth + "]}"
    verdict = analyze(nested)
    assert (verdict.kind, "nested more than" in verdict.error) == (ORDINARY, True)
    as_dict: dict[str, Any] = {"Statement": []}
    inner = as_dict["Statement"]
    for _ in range(min(depth, 200)):
        inner.append({"Condition": {}})
        inner = inner[0]["Condition"].setdefault("k", [])
    assert analyze(as_dict).error


def test_huge_documents_are_refused() -> None:
    verdict = analyze(json.dumps(doc(allow("*"))) + " " * policy.MAX_CHARS)
    assert verdict.kind == ORDINARY and "characters" in verdict.error


def test_url_encoded_documents_as_get_user_policy_returns_them() -> None:
    text = quote(json.dumps(doc(allow("iam:*"))))
    assert text.startswith("%7B")
    assert analyze(text).kind == ESCALATION


# --- real documents --------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(MANAGED_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_aws_managed_documents_match_the_managed_list(path: Path) -> None:
    verdict = analyze(path.read_text())
    assert not verdict.error
    expected = policy.AWS_MANAGED_GRANTS.get(path.stem, ORDINARY)
    assert verdict.kind == expected, path.stem
    listed = policy.managed_policy_verdict(f"arn:aws:iam::aws:policy/{path.stem}")
    assert (listed.kind, listed.methods, listed.direct) == (verdict.kind, verdict.methods, verdict.direct)


def test_every_listed_managed_policy_has_its_document_here() -> None:
    assert set(policy.AWS_MANAGED_GRANTS) <= {p.stem for p in MANAGED_DIR.glob("*.json")}


def test_power_user_access_is_ordinary_for_the_reason_its_document_gives() -> None:
    power = analyze((MANAGED_DIR / "PowerUserAccess.json").read_text())
    assert power.kind == ORDINARY
    lambda_full = analyze((MANAGED_DIR / "AWSLambda_FullAccess.json").read_text())
    assert lambda_full.methods == ("PassExistingRoleToNewLambdaThenInvoke",
                                   "PassExistingRoleToNewLambdaThenTriggerWithExistingDynamo")
    assert "lambda.amazonaws.com" in lambda_full.condition


def test_managed_verdict_by_arn() -> None:
    assert policy.managed_verdict("arn:aws:iam::aws:policy/administratoraccess") == ADMIN
    assert policy.managed_verdict("arn:aws-us-gov:iam::aws:policy/IAMFullAccess") == ESCALATION
    assert policy.managed_verdict("arn:aws:iam::aws:policy/ReadOnlyAccess") is None
    assert policy.managed_verdict("arn:aws:iam::123456789012:policy/AdministratorAccess") is None


def test_the_template_routes_exactly_the_listed_managed_policies() -> None:
    """One list: the code's AWS_MANAGED_GRANTS and the AdminAccessChange pattern's managed ARNs."""
    (rule,) = [r for r in Stack().rules() if r.logical_id == "AdminAccessChange"]
    text = json.dumps(rule.pattern)
    routed = set(re.findall(r"arn:aws:iam::aws:policy/([A-Za-z0-9_+=,.@-]+)", text))
    assert routed == set(policy.AWS_MANAGED_GRANTS)


# Corpus records carrying a policy document, with the verdict of the document they carry.
CORPUS_DOCUMENTS = {
    "raw/panther-analysis/PutUserPolicy-1.json": DENY_ONLY,  # Deny of a list of risky actions
    "raw/panther-analysis/PutUserPolicy-2.json": DENY_ONLY,  # TestUserDenyAll
    "raw/panther-analysis/PutUserPolicy-4.json": None,
    "raw/panther-analysis/PutUserPolicy-3.json": None,
}


@pytest.mark.parametrize("path", sorted(CORPUS_DOCUMENTS))
def test_real_documents_in_the_corpus(path: str) -> None:
    records = dict(corpus_records(path.rsplit("/", 1)[-1].rsplit("-", 1)[0]))
    params = records[path].get("requestParameters") or {}
    document = params.get("policyDocument")
    expected = CORPUS_DOCUMENTS[path]
    if expected is None:
        assert document is None or analyze(document).kind in (ORDINARY, DENY_ONLY)
        return
    assert analyze(document).kind == expected


# --- properties: what must never change a verdict ----------------------------------------------

ACTIONS = st.sampled_from(["*", "iam:*", "iam:Put*", "iam:AttachUserPolicy", "iam:PassRole", "ec2:RunInstances",
                           "lambda:CreateFunction", "lambda:InvokeFunction", "s3:GetObject", "s3:*",
                           "sts:AssumeRole", "iam:UpdateAssumeRolePolicy", "iam:Get*", "iam:?ddUserToGroup"])
RESOURCES = st.sampled_from(["*", "arn:aws:s3:::b", "arn:aws:iam::123456789012:user/*",
                             "arn:aws:iam::123456789012:role/app-*"])
CONDITIONS = st.sampled_from([None, MFA, {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}])


@st.composite
def statement(draw: st.DrawFn) -> dict[str, Any]:
    stmt: dict[str, Any] = {"Effect": draw(st.sampled_from(["Allow", "Allow", "Deny"]))}
    key = draw(st.sampled_from(["Action", "Action", "NotAction"]))
    actions = draw(st.lists(ACTIONS, min_size=1, max_size=4))
    stmt[key] = actions[0] if len(actions) == 1 and draw(st.booleans()) else actions
    rkey = draw(st.sampled_from(["Resource", "Resource", "Resource", "NotResource"]))
    resources = draw(st.lists(RESOURCES, min_size=1, max_size=3))
    stmt[rkey] = resources if len(resources) > 1 else resources[0]
    condition = draw(CONDITIONS)
    if condition:
        stmt["Condition"] = condition
    return stmt


DOCUMENTS = st.lists(statement(), min_size=1, max_size=5).map(lambda s: doc(*s))


def _flip(value: str, upper: bool) -> str:
    return value.upper() if upper else value.lower()


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS, st.randoms(use_true_random=False))
def test_reordering_statements_and_lists_never_changes_the_verdict(document: dict[str, Any], rnd: Any) -> None:
    shuffled = json.loads(json.dumps(document))
    rnd.shuffle(shuffled["Statement"])
    for stmt in shuffled["Statement"]:
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            if isinstance(stmt.get(key), list):
                rnd.shuffle(stmt[key])
    assert analyze(shuffled).kind == analyze(document).kind


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS, st.booleans())
def test_case_of_effect_and_action_names_never_changes_the_verdict(document: dict[str, Any], upper: bool) -> None:
    changed = json.loads(json.dumps(document))
    for stmt in changed["Statement"]:
        stmt["Effect"] = _flip(stmt["Effect"], upper)
        for key in ("Action", "NotAction"):
            if key in stmt:
                value = stmt[key]
                stmt[key] = [_flip(a, upper) for a in value] if isinstance(value, list) else _flip(value, upper)
    assert analyze(changed).kind == analyze(document).kind


@settings(max_examples=300, deadline=None)
@given(DOCUMENTS)
def test_json_text_and_url_encoding_never_change_the_verdict(document: dict[str, Any]) -> None:
    kind = analyze(document).kind
    text = json.dumps(document, indent=2)
    assert analyze(text).kind == kind
    assert analyze(quote(json.dumps(document))).kind == kind
    assert analyze(quote(text, safe="")).kind == kind


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS)
def test_adding_an_allow_never_lowers_and_a_plain_deny_of_everything_removes_all(document: dict[str, Any]) -> None:
    rank = {ADMIN: 3, ESCALATION: 2, ORDINARY: 1, DENY_ONLY: 0}
    before = analyze(document).kind
    widened = doc(*document["Statement"], allow("iam:AttachUserPolicy"))
    assert rank[analyze(widened).kind] >= rank[before]
    assert not analyze(doc(*document["Statement"], deny())).grants


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=30))
def test_any_json_value_gives_a_verdict_never_an_exception(value: Any) -> None:
    assert analyze(value).kind in (ADMIN, ESCALATION, ORDINARY, DENY_ONLY)
    assert analyze({"Statement": value}).kind in (ADMIN, ESCALATION, ORDINARY, DENY_ONLY)
