"""What the stack's policies allow, evaluated as IAM does: case-sensitively, with paths.

moto does not evaluate the template's policies, and treats names loosely. Here every call a
function makes on the local account (setup, and each detector on the events it remediates) is
authorized against that function's role, from the template, on the ARN IAM would authorize it
on: the entity as the account stores it (its path, its name's case). Accounts that already hold
an `Administrators` group, an `ADMIN-MFA` role, an `Assume-Admin-Role` policy or a group under
the path `/team/` either get every call allowed once the stack names them as setup asks, or
setup stops first with its one-line message and changes nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from guardrail_cli.apply import APPLIED, apply_recorded_call
from guardrail_cli.iam_policy import Decision, Request, evaluate, matches_arn, request_for
from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail, deploy_stack_resources, local_aws
from guardrail_cli.seed import ADMINISTRATOR_ACCESS, add_user, create_seed_account
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, load_event

# --- the evaluator itself ------------------------------------------------------------------------

GROUP = f"arn:aws:iam::{ACCOUNT_ID}:group/administrators"
ALLOW_GROUP = {"Effect": "Allow", "Action": "iam:AttachGroupPolicy", "Resource": GROUP}


@pytest.mark.parametrize(("statements", "request_", "decision"), [
    ([ALLOW_GROUP], Request("iam:AttachGroupPolicy", GROUP), Decision.ALLOWED),
    ([ALLOW_GROUP], Request("IAM:attachgrouppolicy", GROUP), Decision.ALLOWED),  # actions ignore case
    ([ALLOW_GROUP], Request("iam:AttachGroupPolicy", GROUP.replace("administrators", "Administrators")),
     Decision.IMPLICIT_DENY),  # resources do not
    ([ALLOW_GROUP], Request("iam:AttachGroupPolicy", GROUP.replace("group/", "group/team/")),
     Decision.IMPLICIT_DENY),  # the path is part of the ARN
    ([{**ALLOW_GROUP, "Resource": f"arn:aws:iam::{ACCOUNT_ID}:group/*/administrators"}],
     Request("iam:AttachGroupPolicy", GROUP.replace("group/", "group/team/")), Decision.ALLOWED),
    ([{**ALLOW_GROUP, "Resource": f"arn:aws:iam::{ACCOUNT_ID}:group/*/administrators"}],
     Request("iam:AttachGroupPolicy", GROUP.replace("administrators", "team/not-administrators")),
     Decision.IMPLICIT_DENY),
    ([ALLOW_GROUP], Request("iam:DetachGroupPolicy", GROUP), Decision.IMPLICIT_DENY),
    ([ALLOW_GROUP, {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}],
     Request("iam:AttachGroupPolicy", GROUP), Decision.EXPLICIT_DENY),
    ([{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}], Request("iam:AttachGroupPolicy", GROUP),
     Decision.IMPLICIT_DENY),
    ([{"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "*",
       "Condition": {"ArnEquals": {"iam:PolicyARN": ADMINISTRATOR_ACCESS}}}],
     Request("iam:AttachRolePolicy", "arn:aws:iam::1:role/x", {"iam:PolicyARN": ADMINISTRATOR_ACCESS}),
     Decision.ALLOWED),
    ([{"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "*",
       "Condition": {"ArnEquals": {"iam:PolicyARN": ADMINISTRATOR_ACCESS}}}],
     Request("iam:AttachRolePolicy", "arn:aws:iam::1:role/x",
             {"iam:PolicyARN": "arn:aws:iam::aws:policy/IAMFullAccess"}),
     Decision.IMPLICIT_DENY),
    ([{"Effect": "Allow", "Action": "iam:AttachRolePolicy", "Resource": "*",
       "Condition": {"ArnEquals": {"iam:PolicyARN": ADMINISTRATOR_ACCESS}}}],
     Request("iam:AttachRolePolicy", "arn:aws:iam::1:role/x"), Decision.IMPLICIT_DENY),  # key absent
])
def test_the_evaluator_decides_as_iam_does(statements: list[dict[str, Any]], request_: Request,
                                           decision: Decision) -> None:
    assert evaluate(statements, request_) is decision


def test_arn_wildcards_stay_within_their_segment() -> None:
    assert matches_arn("arn:aws:iam::*:group/x", f"arn:aws:iam::{ACCOUNT_ID}:group/x")
    assert not matches_arn("arn:aws:iam::*:group/x", "arn:aws:iam::1:2:group/x")  # * is the account only
    assert matches_arn("arn:aws:logs:us-east-1:1:log-group:/aws/lambda/g-*:*",
                       "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/g-setup:log-stream:abc")
    assert matches_arn("arn:aws:iam::1:user/???", "arn:aws:iam::1:user/bob")
    assert not matches_arn("arn:aws:iam::1:user/???", "arn:aws:iam::1:user/phoebe")


def test_an_unknown_condition_operator_is_never_ignored() -> None:
    statement = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateGreaterThan": {"x": "1"}}}
    with pytest.raises(NotImplementedError, match="DateGreaterThan"):
        evaluate([statement], Request("iam:GetUser", "*"))


# --- the accounts an owner may already have -----------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """An account that already holds baseline entities under other spellings or paths."""

    prepare: Callable[[Any], None]  # builds the account (moto active)
    parameters: dict[str, str]  # what the owner sets, as setup's message says
    group: str = "administrators"
    role: str = "admin-mfa"
    policy: str = "assume-admin-role"
    refused: str = ""  # setup's message with the default parameters
    needs: tuple[str, ...] = ()  # template resources without which the calls are refused


def capitalised_group(iam: Any) -> None:
    iam.create_group(GroupName="Administrators")
    iam.attach_group_policy(GroupName="Administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    add_user(iam, "phoebe", mfa=True, group="Administrators")


def upper_case_role(iam: Any) -> None:
    create_seed_account()
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}
    iam.create_role(RoleName="ADMIN-MFA", AssumeRolePolicyDocument=json.dumps(trust))


def capitalised_policy(iam: Any) -> None:
    create_seed_account()
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Resource": f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa"}]}
    iam.create_policy(PolicyName="Assume-Admin-Role", PolicyDocument=json.dumps(document))


def group_under_a_path(iam: Any) -> None:
    iam.create_group(GroupName="administrators", Path="/team/")
    iam.attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    add_user(iam, "phoebe", mfa=True, group="administrators")


def role_under_a_path(iam: Any) -> None:
    create_seed_account()
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}}]}
    iam.create_role(RoleName="admin-mfa", Path="/people/", AssumeRolePolicyDocument=json.dumps(trust))


VARIANTS = {
    "the walk-through's account": Variant(lambda iam: create_seed_account(), {}),
    "group Administrators": Variant(
        capitalised_group, {"AdminGroupName": "Administrators"}, group="Administrators",
        refused="group Administrators exists but the stack says administrators (IAM policies match names "
                "case-sensitively): set AdminGroupName=Administrators"),
    "role ADMIN-MFA": Variant(
        upper_case_role, {"AdminRoleName": "ADMIN-MFA"}, role="ADMIN-MFA",
        refused="role ADMIN-MFA exists but the stack says admin-mfa (IAM policies match names "
                "case-sensitively): set AdminRoleName=ADMIN-MFA"),
    "policy Assume-Admin-Role": Variant(
        capitalised_policy, {"AssumeRolePolicyName": "Assume-Admin-Role"}, policy="Assume-Admin-Role",
        refused="policy Assume-Admin-Role exists but the stack says assume-admin-role (IAM policies match names "
                "case-sensitively): set AssumeRolePolicyName=Assume-Admin-Role"),
    "group under path /team/": Variant(group_under_a_path, {}, needs=("group/*/administrators",)),
    "role under path /people/": Variant(
        role_under_a_path, {"AdminRoleName": "admin-mfa-2"}, role="admin-mfa-2",
        refused="role admin-mfa exists under path /people/, which the baseline's ARN role/admin-mfa does not "
                "match: set AdminRoleName to a name not in use (setup creates it at path /)"),
}


@dataclass
class Denied:
    function: str
    call: str
    resource: str
    decision: Decision


@dataclass
class Run:
    stack: Stack
    invocations: list[Invocation] = field(default_factory=list)
    requests: list[tuple[str, Request]] = field(default_factory=list)  # (function, request), in order

    def add(self, invocation: Invocation) -> Invocation:
        assert invocation.error is None, invocation.error
        self.invocations.append(invocation)
        self.requests += [(invocation.function, request_for(c.service, c.operation, c.params, ACCOUNT_ID, REGION))
                          for c in invocation.calls]
        return invocation

    def denied(self, stack: Stack | None = None,
               keep: Callable[[dict[str, Any]], dict[str, Any]] = lambda s: s) -> list[Denied]:
        """Every recorded call the functions' roles (from `stack`, default the one that ran) refuse."""
        stack = stack or self.stack
        out = []
        for function, request in self.requests:
            statements = [keep(s) for s in stack.role_statements(stack.functions()[function].role)]
            decision = evaluate(statements, request)
            if decision is not Decision.ALLOWED:
                out.append(Denied(function, request.action, request.resource, decision))
        return out


def drift_events(variant: Variant) -> list[dict[str, Any]]:
    """The remediation scenarios in events/, naming the variant's real group, role and policy."""
    names = {"groupName": variant.group, "roleName": variant.role}
    out = []
    for name in ("admin-policy-attached-to-group", "admin-inline-policy-put-on-group", "admin-assume-policy-detached",
                 "admin-role-mfa-removed", "admin-role-session-lengthened", "admin-assume-policy-rewritten",
                 "signin-iam-user-without-mfa", "mfa-device-deactivated"):
        event = load_event(EVENTS_DIR / f"{name}.json")
        params = event["detail"].get("requestParameters") or {}
        for key, value in names.items():
            if key in params:
                params[key] = value
        if "policyArn" in params:
            params["policyArn"] = params["policyArn"].replace("assume-admin-role", variant.policy)
        out.append(event)
    return out


@contextlib.contextmanager
def variant_account(variant: Variant, parameters: dict[str, str]) -> Iterator[LocalGuardrail]:
    with local_aws():
        local = LocalGuardrail(Stack(account_id=ACCOUNT_ID, region=REGION, parameters=parameters))
        deploy_stack_resources(local.stack)
        variant.prepare(boto3.client("iam"))
        yield local


def run_variant(variant: Variant) -> Run:
    """Setup, then every drift scenario, in the variant's account with the parameters it needs."""
    with variant_account(variant, variant.parameters) as local:
        run = Run(local.stack)
        setup = run.add(local.invoke("SetupFunction", {}))
        assert setup.result["compliant"] is True, setup.result
        for event in drift_events(variant):
            applied = apply_recorded_call(event, ACCOUNT_ID)
            assert applied is None or applied.status == APPLIED or event["detail"]["eventName"] == "ConsoleLogin", \
                applied
            _, invocations = local.dispatch(event)
            assert invocations, event["detail"]["eventName"]
            for invocation in invocations:
                run.add(invocation)
        return run


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant_run(request: pytest.FixtureRequest) -> tuple[Variant, Run]:
    variant = VARIANTS[request.param]
    return variant, run_variant(variant)


def test_every_call_setup_and_the_detectors_make_is_allowed_as_iam_would_decide(
        variant_run: tuple[Variant, Run]) -> None:
    _, run = variant_run
    functions = {f for f, _ in run.requests}
    assert {"SetupFunction", "AdminDriftFunction", "MfaDriftFunction"} <= functions
    writes = [r for _, r in run.requests if r.action.startswith("iam:") and not r.action.split(":")[1].startswith(
        ("Get", "List"))]
    assert len(writes) >= 8  # setup's converge and each remediation really wrote
    assert run.denied() == []


def test_the_same_calls_would_be_refused_without_what_makes_them_allowed(variant_run: tuple[Variant, Run]) -> None:
    """The check can fail: under the default parameters (or without the path wildcard), IAM would
    refuse the calls made on the adopted entities."""
    variant, run = variant_run
    if variant.parameters and variant.refused and variant.role != "admin-mfa-2":
        assert run.denied(Stack(account_id=ACCOUNT_ID, region=REGION)) != []
    for needed in variant.needs:
        def without(statement: dict[str, Any], needed: str = needed) -> dict[str, Any]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            return {**statement, "Resource": [r for r in resources if not r.endswith(needed)]}

        assert run.denied(keep=without) != []


def account_state() -> dict[str, Any]:
    details = dict(boto3.client("iam").get_account_authorization_details())
    details.pop("ResponseMetadata")
    return details


@pytest.mark.parametrize("name", [n for n in sorted(VARIANTS) if VARIANTS[n].refused])
def test_with_the_default_parameters_setup_stops_and_says_which_value_to_set(name: str) -> None:
    variant = VARIANTS[name]
    with variant_account(variant, {}) as local:
        iam_before = account_state()
        run = Run(local.stack)
        setup = run.add(local.invoke("SetupFunction", {}))

        assert setup.result["refused"] == variant.refused
        assert setup.result["compliant"] is False
        assert [c.name for c in setup.calls if c.kind == "write"] == []
        assert account_state() == iam_before
        # Its own reads are allowed under the very policies it finds wanting: it can always say why.
        assert run.denied() == []
        (email,) = setup.notifications
        assert email["subject"].startswith("[HIGH] Baseline setup stopped: a stack parameter must change")
        assert variant.refused in " ".join(email["message"].split())
