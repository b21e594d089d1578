"""Forwarding from every covered region: the StackSet, its regional template, one definition of each pattern."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guardrail_cli import regional
from guardrail_cli.template import TEMPLATE_PATH, Stack

STACK = Stack()
# Regions launched before 2019-03-20 are enabled in every account (AWS Account Management Reference
# Guide, "Enable or disable AWS Regions in your account"); the stack's own region is the home.
DEFAULT_REGIONS = {"us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "sa-east-1", "eu-west-1",
                   "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "ap-south-1", "ap-northeast-1",
                   "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2"}
OPT_IN_EXAMPLES = {"af-south-1", "ap-east-1", "me-south-1", "eu-south-1", "ca-west-1", "il-central-1"}


def stackset(stack: Stack = STACK) -> dict[str, Any]:
    return dict(stack.resolve(stack.resources[regional.STACKSET]["Properties"]))


def test_the_generated_regional_template_is_up_to_date() -> None:
    """One definition: the TemplateBody is generated from the home rules; `make regional` regenerates it."""
    text = TEMPLATE_PATH.read_text()
    assert regional.current_body(text) == regional.template_body(STACK.template), \
        "the forwarded rules differ from the home rules: run `make regional`"


def test_forwarded_rules_have_the_home_rules_names_patterns_and_states() -> None:
    forwarded = regional.resolved_regional_template(STACK)["Resources"]
    home = {rule.logical_id: rule for rule in STACK.rules()}
    assert list(forwarded) == ["ConsoleSignInWithoutMfa", "RootSignIn", "RootApiCall", "TrailTamper",
                               "GuardrailTamper", "GuardrailTamperWatch", "GuardrailTamperInfra"]
    for logical_id, resource in forwarded.items():
        props = resource["Properties"]
        assert resource["Type"] == "AWS::Events::Rule"
        assert props["EventPattern"] == home[logical_id].pattern, logical_id
        assert props["Name"] == home[logical_id].name
        assert props["State"] == home[logical_id].state
        assert props["Targets"] == [{
            "Id": "guardrail-home-region", "Arn": "arn:aws:events:us-east-1:123456789012:event-bus/default",
            "RoleArn": STACK.get_att("EventForwardingRole", "Arn")}]
    assert forwarded["RootApiCall"]["Properties"]["State"] == "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"


def test_a_changed_home_pattern_makes_the_up_to_date_check_fail(tmp_path: Path) -> None:
    text = TEMPLATE_PATH.read_text().replace("eventName: [ConsoleLogin]", "eventName: [ConsoleLogin, CheckMfa]", 1)
    changed = tmp_path / "template.yaml"
    changed.write_text(text)
    stack = Stack(path=changed)
    assert regional.current_body(text) != regional.template_body(stack.template)
    assert regional.write(changed) is True and regional.write(changed) is False
    forwarded = regional.resolved_regional_template(Stack(path=changed))["Resources"]
    assert forwarded["ConsoleSignInWithoutMfa"]["Properties"]["EventPattern"]["detail"]["eventName"] == [
        "ConsoleLogin", "CheckMfa"]


def test_iam_events_are_not_forwarded_they_are_recorded_in_us_east_1_only() -> None:
    forwarded = regional.resolved_regional_template(STACK)["Resources"]
    for resource in forwarded.values():
        sources = resource["Properties"]["EventPattern"].get("source", [])
        assert sources != ["aws.iam"]
    assert {"AdminAccessChange", "MfaChange", "RootMfaChange"}.isdisjoint(forwarded)


def test_the_regional_template_passes_cfn_lint(tmp_path: Path) -> None:
    from cfnlint.api import lint_all

    body = tmp_path / "regional.json"
    body.write_text(json.dumps(regional.resolved_regional_template(STACK), indent=1))
    problems = [p for p in lint_all(body.read_text()) if p.rule.id[0] in "EW"]  # as `cfn-lint` reports
    assert problems == [], [str(p) for p in problems]
    # cfn-lint knows EventBridge's rule states: a wrong one is caught, so the check can fail.
    broken = regional.resolved_regional_template(STACK)
    broken["Resources"]["RootApiCall"]["Properties"]["State"] = "ENABLED_WITH_READS"
    assert any("ENABLED_WITH_READS" in str(p) for p in lint_all(json.dumps(broken)))


def test_the_stackset_covers_exactly_the_regions_of_the_parameters() -> None:
    props = stackset()
    assert props["PermissionModel"] == "SELF_MANAGED"
    (group,) = props["StackInstancesGroup"]
    assert group["DeploymentTargets"] == {"Accounts": ["123456789012"]}
    assert set(group["Regions"]) == DEFAULT_REGIONS - {"us-east-1"} and len(group["Regions"]) == 16
    assert regional.stack_instance_regions(STACK) == group["Regions"]
    assert set(STACK.functions()["HeartbeatFunction"].environment["FORWARDED_REGIONS"].strip(",").split(",")) == \
        set(group["Regions"])
    assert not OPT_IN_EXAMPLES & set(group["Regions"])


@pytest.mark.parametrize(("default", "opt_in", "expected"), [
    ("eu-west-1", "", ["eu-west-1"]),
    ("eu-west-1,ap-southeast-2", "af-south-1", ["eu-west-1", "ap-southeast-2", "af-south-1"]),
    ("", "me-south-1", ["me-south-1"]),
    ("", "", []),
])
def test_the_parameters_decide_the_regions(default: str, opt_in: str, expected: list[str]) -> None:
    stack = Stack(parameters={"ForwardedRegions": default, "ForwardedOptInRegions": opt_in})
    assert regional.stack_instance_regions(stack) == expected
    env = stack.functions()["MfaDriftFunction"].environment["FORWARDED_REGIONS"]
    assert [r for r in env.split(",") if r] == expected
    trust = stack.resolve(stack.resources["StackSetAdministrationRole"]["Properties"]["AssumeRolePolicyDocument"])
    principals = trust["Statement"][0]["Principal"]["Service"]
    # Opt-in regions need their regional CloudFormation principal (CloudFormation User Guide,
    # "Grant self-managed permissions"); default regions only the global one.
    wanted = ["cloudformation.amazonaws.com"] + [f"cloudformation.{r}.amazonaws.com" for r in opt_in.split(",") if r]
    assert (principals if isinstance(principals, list) else [principals]) == wanted


def test_the_home_region_cannot_be_forwarded_to_itself() -> None:
    rule = STACK.template["Rules"]["HomeRegionIsNotForwarded"]["Assertions"]
    assert rule[0]["Assert"] == {"Fn::Not": [{"Fn::Contains": [{"Ref": "ForwardedRegions"}, {"Ref": "AWS::Region"}]}]}
    assert rule[1]["Assert"] == {"Fn::Not": [{"Fn::Contains": [{"Ref": "ForwardedOptInRegions"},
                                                                {"Ref": "AWS::Region"}]}]}


def test_stackset_roles_are_scoped_to_this_account_and_these_rules() -> None:
    resources = STACK.resources
    admin = STACK.resolve(resources["StackSetAdministrationRole"]["Properties"])
    (assume,) = admin["Policies"][0]["PolicyDocument"]["Statement"]
    assert assume["Action"] == "sts:AssumeRole"
    assert assume["Resource"] == "arn:aws:iam::123456789012:role/account-guardrail-stackset-execution"
    assert admin["AssumeRolePolicyDocument"]["Statement"][0]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": "123456789012"}}
    execution = STACK.resolve(resources["StackSetExecutionRole"]["Properties"])
    assert execution["Path"] == "/"  # StackSets assumes role/<ExecutionRoleName>
    assert execution["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "AWS": STACK.get_att("StackSetAdministrationRole", "Arn")}
    statements = {st["Sid"]: st for st in execution["Policies"][0]["PolicyDocument"]["Statement"]}
    assert statements["TheForwardingRules"]["Resource"] == "arn:aws:events:*:123456789012:rule/account-guardrail-*"
    assert statements["TheStackInstances"]["Resource"] == (
        "arn:aws:cloudformation:*:123456789012:stack/StackSet-account-guardrail-forwarding-*/*")
    assert statements["PassOnlyTheForwardingRole"]["Resource"] == STACK.get_att("EventForwardingRole", "Arn")
    assert stackset()["ExecutionRoleName"] == "account-guardrail-stackset-execution"
    assert stackset()["AdministrationRoleARN"] == STACK.get_att("StackSetAdministrationRole", "Arn")
    forward = STACK.resolve(resources["EventForwardingRole"]["Properties"])
    (put,) = forward["Policies"][0]["PolicyDocument"]["Statement"]
    assert put == {"Sid": "ForwardToTheHomeBus", "Effect": "Allow", "Action": "events:PutEvents",
                   "Resource": "arn:aws:events:us-east-1:123456789012:event-bus/default"}


def test_forwarding_rule_names_are_the_stacks_so_self_protection_and_the_heartbeat_see_them() -> None:
    names = {r["Properties"]["Name"] for r in regional.resolved_regional_template(STACK)["Resources"].values()}
    watched = STACK.functions()["HeartbeatFunction"].environment["WATCHED_RULES"]
    assert names == {item.split("=")[0] for item in watched.split(",")}
    assert all(name.startswith("account-guardrail-") for name in names)
