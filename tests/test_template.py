"""template.yaml keeps the promises the README makes about it."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from guardrail_cli.local import patched_environ
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


# --- the template as CloudFormation receives it: after `sam package` and SAM's transform ----------


class _NoManagedPolicies:
    """SAM looks up AWS-managed policy names only for a function's `Policies`; ours use `Role`."""

    def load(self) -> dict[str, str]:
        return {}


def transformed(code: dict[str, str] | None = None, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CloudFormation template SAM's transform makes of template.yaml, as `sam deploy` sends it:
    each CodeUri/ContentUri an S3 object named after its content (`code`: logical id -> key)."""
    from samtranslator.translator.transform import transform

    source = copy.deepcopy(template if template is not None else TEMPLATE)
    for logical_id, resource in source["Resources"].items():
        key = (code or {}).get(logical_id, f"{logical_id}-unchanged")
        for prop in ("CodeUri", "ContentUri"):
            if prop in resource.get("Properties", {}):
                resource["Properties"][prop] = f"s3://deploy-bucket/{key}"
    with patched_environ({"AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}):
        return dict(transform(source, {}, _NoManagedPolicies()))


def references(node: Any) -> set[str]:
    """Logical ids a resource names through Ref, Fn::GetAtt and Fn::Sub (CloudFormation orders by them)."""
    found: set[str] = set()
    if isinstance(node, list):
        for item in node:
            found |= references(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else str(value).split(".")[0])
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                found |= references(value[1] if isinstance(value, list) else None)
            else:
                found |= references(value)
    return found


def created_before(resources: dict[str, Any], logical_id: str) -> set[str]:
    """Every resource CloudFormation must finish before it starts `logical_id` (DependsOn and
    references, transitively)."""
    seen: set[str] = set()
    todo = [logical_id]
    while todo:
        resource = resources[todo.pop()]
        depends = resource.get("DependsOn", [])
        for dep in ([depends] if isinstance(depends, str) else depends) + sorted(
                references(resource.get("Properties", {}))):
            if dep in resources and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


TRANSFORMED = transformed()


def test_setup_is_a_custom_resource_created_after_everything_else() -> None:
    """If the deployer's admin rights come from the group, setup removes them: nothing of the
    stack may still be waiting to be created when it does (judged on SAM's output, generated
    resources included)."""
    baseline = STACK.resources["Baseline"]
    assert baseline["Type"] == "Custom::Baseline"
    assert baseline["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["SetupFunction", "Arn"]}
    assert baseline["DependsOn"] == sorted(baseline["DependsOn"])
    resources = TRANSFORMED["Resources"]
    assert created_before(resources, "Baseline") == set(resources) - {"Baseline"}


# --- a brand-new account: no reserved concurrency, destinations allowed before their configs ----


def resolver(template: dict[str, Any], parameters: dict[str, str] | None = None) -> Stack:
    """Intrinsics of a transformed template evaluated for one parameter set."""
    stack = Stack(parameters=parameters or {})
    stack.template = template
    return stack


def lambda_functions(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, dict[str, Any]]:
    stack = resolver(template, parameters)
    return {k: stack.resolve(r["Properties"]) for k, r in template["Resources"].items()
            if r["Type"] == "AWS::Lambda::Function"}


def test_no_function_reserves_concurrency_by_default() -> None:
    """New accounts may have a concurrency quota of 10: any reservation by default can fail the
    first deploy (Lambda leaves at least the account's minimum unreserved)."""
    functions = lambda_functions(TRANSFORMED, {})
    assert len(functions) >= 7
    reserving = {k: f["ReservedConcurrentExecutions"] for k, f in functions.items()
                 if "ReservedConcurrentExecutions" in f}
    assert reserving == {}


def test_reserved_concurrency_is_the_owners_choice() -> None:
    functions = lambda_functions(TRANSFORMED, {"ReservedConcurrency": "3"})
    assert {f.get("ReservedConcurrentExecutions") for f in functions.values()} == {"3"}
    spec = TEMPLATE["Parameters"]["ReservedConcurrency"]
    assert spec["Default"] == 0 and spec["MinValue"] == 0


def statement_grants(statement: dict[str, Any], action: str, resource: Any) -> bool:
    def as_list(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    service = action.split(":")[0]
    return (statement.get("Effect") == "Allow"
            and any(a in (action, f"{service}:*", "*") for a in as_list(statement.get("Action", [])))
            and any(r in (resource, "*") for r in as_list(statement.get("Resource", []))))


def destination_problems(template: dict[str, Any]) -> list[str]:
    """Each on-failure/on-success destination whose permission is not granted to the function's
    role by a resource CloudFormation finishes before the EventInvokeConfig: Lambda checks the
    permission when it creates the config (Lambda Developer Guide, "Adding a destination")."""
    resources, stack = template["Resources"], resolver(template, {"MfaMode": "quarantine"})
    problems = []
    for config_id, config in resources.items():
        if config["Type"] != "AWS::Lambda::EventInvokeConfig":
            continue
        props = config["Properties"]
        function = resources[props["FunctionName"]["Ref"]]
        role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
        role = stack.resolve(resources[role_id]["Properties"])
        before = created_before(resources, config_id)
        for outcome, destination in props.get("DestinationConfig", {}).items():
            action = "sqs:SendMessage"  # the only destination type the template uses (an SQS queue)
            target = stack.resolve(destination["Destination"])
            grants = []
            if any(statement_grants(s, action, target)
                   for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]):
                grants.append(role_id)
            for policy_id, policy in resources.items():
                if policy["Type"] not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                    continue
                attached = {"Ref": role_id} in policy["Properties"].get("Roles", []) or \
                    stack.ref(policy_id) in role.get("ManagedPolicyArns", [])
                document = stack.resolve(policy["Properties"]["PolicyDocument"])
                if attached and any(statement_grants(s, action, target) for s in document["Statement"]):
                    grants.append(policy_id)
            if not grants:
                problems.append(f"{config_id}: {outcome} destination not granted to role {role_id}")
            elif not set(grants) & before:
                problems.append(f"{config_id}: {outcome} permission ({', '.join(grants)}) not ordered before it")
    return problems


def test_every_destination_is_allowed_before_its_invoke_config_exists() -> None:
    configs = [k for k, r in TRANSFORMED["Resources"].items() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert len(configs) >= 6
    assert destination_problems(TRANSFORMED) == []


def test_the_destination_check_fails_when_the_ordering_is_missing() -> None:
    unordered = copy.deepcopy(TEMPLATE)
    del unordered["Resources"]["MfaDriftFunction"]["DependsOn"]
    assert destination_problems(transformed(template=unordered)) == [
        "MfaDriftFunctionEventInvokeConfig: OnFailure permission (DeliveryPolicy) not ordered before it"]


# --- every deploy that changes code or parameters re-runs setup ----------------------------------


def baseline_properties(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"]["Baseline"]["Properties"])


def test_a_deploy_of_new_code_with_unchanged_parameters_re_runs_setup() -> None:
    """CloudFormation sends the custom resource an Update only when its properties change: new
    guardrail_core code, or a new setup handler, must change them; the same code must not."""
    again = transformed()
    new_layer = transformed({"SharedLayer": "core-v2"})
    new_handler = transformed({"SetupFunction": "setup-v2"})
    assert baseline_properties(again) == baseline_properties(TRANSFORMED)
    assert baseline_properties(new_layer) != baseline_properties(TRANSFORMED)
    assert baseline_properties(new_handler) != baseline_properties(TRANSFORMED)
    # The layer the functions run is the one the property names.
    layer = baseline_properties(new_layer)["CoreLayer"]
    assert layer in new_layer["Resources"]["SetupFunction"]["Properties"]["Layers"]


def other_value(spec: dict[str, Any]) -> str | None:
    """A valid value of the parameter other than its default."""
    default = str(spec.get("Default", ""))
    candidates = [str(v) for v in spec.get("AllowedValues", [])]
    if "MinValue" in spec:
        candidates += [str(spec["MinValue"]), str(spec["MaxValue"])]
    candidates += ["owner2@example.com", "admins-2", "rate(2 days)", "arn:aws:iam::123456789012:user/breakglass",
                   "us-east-2", "af-south-1", "rate(30 minutes)"]
    for value in candidates:
        if value != default and re.fullmatch(spec.get("AllowedPattern", ".*"), value):
            return value
    return None


@pytest.mark.parametrize("parameter", sorted(TEMPLATE["Parameters"]))
def test_a_parameter_setup_reads_re_runs_setup_when_it_changes(parameter: str) -> None:
    value = other_value(TEMPLATE["Parameters"][parameter])
    assert value is not None, f"no other valid value for {parameter}"
    before, after = Stack(), Stack(parameters={parameter: value})
    setup_env = [s.functions()["SetupFunction"].environment for s in (before, after)]
    properties = [s.resolve(s.resources["Baseline"]["Properties"]) for s in (before, after)]
    if setup_env[0] != setup_env[1]:
        assert properties[0] != properties[1]
    # Nothing else a parameter changes about setup: its environment is all it reads.
    assert (properties[0] != properties[1]) == (setup_env[0] != setup_env[1])


def test_setup_converges_daily_and_the_schedule_fails_visibly() -> None:
    events = STACK.resources["SetupFunction"]["Properties"]["Events"]
    (schedule,) = [e["Properties"] for e in events.values() if e["Type"] == "ScheduleV2"]
    assert schedule["ScheduleExpression"] == "rate(1 day)"
    assert json.loads(schedule["Input"]) == {"converge": "scheduled"}
    assert schedule["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["FailureQueue", "Arn"]}}


def test_outputs_tell_the_owner_where_things_are() -> None:
    outputs = {k: STACK.resolve(v["Value"]) for k, v in TEMPLATE["Outputs"].items()}
    assert outputs["AlertTopicArn"] == "arn:aws:sns:us-east-1:123456789012:account-guardrail-alerts"
    assert outputs["AdminRoleArn"] == "arn:aws:iam::123456789012:role/admin-mfa"
    assert outputs["SwitchRoleUrl"].startswith("https://signin.aws.amazon.com/switchrole?roleName=admin-mfa&account=123456789012")
