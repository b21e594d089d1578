"""template.yaml keeps the promises the README makes about it."""

from __future__ import annotations

from typing import Any

import pytest

from guardrail_cli.template import Stack

STACK = Stack()
TEMPLATE = STACK.template


def test_every_parameter_is_constrained_explained_and_grouped() -> None:
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = {p for g in groups for p in g["Parameters"]}
    for name, spec in TEMPLATE["Parameters"].items():
        constrained = "AllowedPattern" in spec or "AllowedValues" in spec or ("MinValue" in spec and "MaxValue" in spec)
        assert constrained, name
        assert spec.get("ConstraintDescription"), name
        assert name in grouped, name
    for required in ("AlertEmail", "AdminGroupName", "AdminRoleName", "AssumeRolePolicyName",
                     "AdminSessionSeconds", "ExemptPrincipalArns"):
        assert required in TEMPLATE["Parameters"]
    assert TEMPLATE["Parameters"]["AdminSessionSeconds"]["Default"] == 3600


@pytest.mark.parametrize(("value", "ok"), [
    ("", True),
    ("arn:aws:iam::123456789012:user/breakglass", True),
    ("arn:aws:iam::123456789012:role/BreakGlass,arn:aws:sts::123456789012:assumed-role/x/y", True),
    ("arn:aws:iam::123456789012:user/a, arn:aws:iam::123456789012:user/b", False),  # no spaces
    ("breakglass", False),
])
def test_exempt_principals_must_be_arns(value: str, ok: bool) -> None:
    if ok:
        Stack(parameters={"ExemptPrincipalArns": value})
    else:
        with pytest.raises(ValueError, match="ExemptPrincipalArns"):
            Stack(parameters={"ExemptPrincipalArns": value})


def test_deploying_outside_us_east_1_fails_early_unless_events_are_forwarded() -> None:
    rule = TEMPLATE["Rules"]["DeployInUsEast1"]
    assert rule["Assertions"][0]["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
    assert "us-east-1" in rule["Assertions"][0]["AssertDescription"]
    assert Stack(region="eu-west-1").resolve(rule["RuleCondition"]) is True
    forwarded = Stack(region="eu-west-1", parameters={"EventsForwardedFromOtherRegions": "true"})
    assert forwarded.resolve(rule["RuleCondition"]) is False


def test_functions_run_python313_on_arm64_with_the_shared_layer_and_own_role() -> None:
    globals_ = TEMPLATE["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert {"Ref": "SharedLayer"} in globals_["Layers"]
    resources = STACK.resources
    for logical_id, function in STACK.functions().items():
        props = resources[logical_id]["Properties"]
        assert function.module_path.is_file(), function.module_path
        assert resources[function.role]["Type"] == "AWS::IAM::Role"
        log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[log_group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert STACK.resolve(resources[log_group]["Properties"]["LogGroupName"]) == f"/aws/lambda/{function.name}"


def test_alerts_topic_is_encrypted_and_subscribes_the_owner() -> None:
    topic = STACK.resources["AlertTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlertKey"}
    assert topic["Subscription"] == [{"Protocol": "email", "Endpoint": {"Ref": "AlertEmail"}}]
    assert STACK.resources["AlertKey"]["Properties"]["EnableKeyRotation"] is True


def sam_generated(logical_id: str, resource: dict[str, Any]) -> set[str]:
    """Logical ids SAM's transform adds for a function (rules, permissions, invoke config, schedules)."""
    props = resource.get("Properties", {})
    out = {f"{logical_id}EventInvokeConfig"} if "EventInvokeConfig" in props else set()
    for event_id, event in props.get("Events", {}).items():
        if event["Type"] in ("EventBridgeRule", "CloudWatchEvent"):
            out |= {f"{logical_id}{event_id}", f"{logical_id}{event_id}Permission"}
        elif event["Type"] == "ScheduleV2":
            out |= {f"{logical_id}{event_id}", f"{logical_id}{event_id}Role"}
    return out


def test_setup_is_a_custom_resource_created_after_everything_else() -> None:
    """If the deployer's admin rights come from the group, setup removes them: nothing of the
    stack may still be waiting to be created when it does."""
    baseline = STACK.resources["Baseline"]
    assert baseline["Type"] == "Custom::Baseline"
    assert baseline["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["SetupFunction", "Arn"]}
    expected = set()
    for logical_id, resource in STACK.resources.items():
        if logical_id in ("Baseline", "SetupFunction", "SharedLayer"):  # ServiceToken / hashed id: implicit
            continue
        expected.add(logical_id)
        if resource["Type"] == "AWS::Serverless::Function":
            expected |= sam_generated(logical_id, resource)
    assert set(baseline["DependsOn"]) == expected


def test_outputs_tell_the_owner_where_things_are() -> None:
    outputs = {k: STACK.resolve(v["Value"]) for k, v in TEMPLATE["Outputs"].items()}
    assert outputs["AlertTopicArn"] == "arn:aws:sns:us-east-1:123456789012:account-guardrail-alerts"
    assert outputs["AdminRoleArn"] == "arn:aws:iam::123456789012:role/admin-mfa"
    assert outputs["SwitchRoleUrl"].startswith("https://signin.aws.amazon.com/switchrole?roleName=admin-mfa&account=123456789012")
