"""Self-protection: changes to the guardrail's own resources, by anyone but CloudFormation.

The resources come from template.yaml itself (every function, rule, schedule, role, managed
policy, the topic, queue, table, alarms and log groups), so a resource added to the template
without a pattern that watches it fails here. Each change goes through the template's rules
(moto's EventBridge matcher) and the real handler; the same change made by CloudFormation
must not alert.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, corpus_records, envelope, load_event, retarget
from guardrail_core import self_protect
from guardrail_core.config import load_settings
from guardrail_core.events import parse_event
from guardrail_core.self_protect import function_name, lambda_event, touched
from guardrail_core.triage import Triage, Verdict

FUNCTION = "SelfProtectFunction"
STACK = Stack()
CFN = "cloudformation.amazonaws.com"
SELF_RULES = {"GuardrailTamper", "GuardrailTamperWatch", "GuardrailTamperInfra"}


@pytest.fixture(scope="module")
def stack() -> LocalGuardrail:
    return LocalGuardrail(STACK)


def tamper(service: str, event_name: str, params: dict[str, Any] | None, *, region: str = REGION,
           error: str = "") -> dict[str, Any]:
    """A real-shaped CloudTrail event (events/tamper-rule-disabled.json) for another call by phoebe."""
    event = load_event(EVENTS_DIR / "tamper-rule-disabled.json")
    detail = event["detail"]
    detail.update(eventSource=f"{service}.amazonaws.com", eventName=event_name, requestParameters=params,
                  awsRegion=region)
    digest = hashlib.sha256(json.dumps([service, event_name, params, region, error], sort_keys=True).encode())
    detail["eventID"] = f"{service}-{event_name}-{digest.hexdigest()[:16]}"
    event.update(source=f"aws.{service}", region=region, id=f"eb-{detail['eventID']}")
    if error:
        detail.update(errorCode=error, errorMessage="User: phoebe is not authorized")
    return event


def by_cloudformation(event: dict[str, Any]) -> dict[str, Any]:
    """The same call made by CloudFormation deploying the stack (as CloudTrail records it)."""
    out = copy.deepcopy(event)
    out["id"] += "-cfn"
    out["detail"].update(sourceIPAddress=CFN, userAgent=CFN)
    out["detail"]["userIdentity"]["invokedBy"] = CFN
    return out


def rules_for(stack: LocalGuardrail, event: dict[str, Any]) -> set[str]:
    return {r.logical_id for r in stack.route(event) if r.function == FUNCTION}


def found(inv: Invocation) -> list[tuple[str, str]]:
    return [(f["id"], f["severity"]) for f in inv.findings]


def aws_calls(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.kind != "idempotency"]


# --- every resource the template creates ------------------------------------------------------


def resolved(logical_id: str, key: str) -> str:
    return str(STACK.resolve(STACK.resources[logical_id]["Properties"][key]))


def own_changes() -> list[tuple[str, dict[str, Any]]]:
    """(what, event) for one tampering call on each of the guardrail's own resources."""
    out: list[tuple[str, dict[str, Any]]] = []
    for logical_id, resource in STACK.resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::Serverless::Function":
            name = STACK._name_of(logical_id)
            arn = STACK.get_att(logical_id, "Arn")
            out += [(f"{logical_id} code", tamper("lambda", "UpdateFunctionCode20150331v2", {"functionName": arn})),
                    (f"{logical_id} concurrency 0", tamper("lambda", "PutFunctionConcurrency20171031",
                                                           {"functionName": name, "reservedConcurrentExecutions": 0})),
                    (f"{logical_id} deleted", tamper("lambda", "DeleteFunction20150331", {"functionName": name})),
                    (f"{logical_id} invoke permission", tamper("lambda", "RemovePermission20150331v2",
                                                               {"functionName": name, "statementId": "x"}))]
            for event_id, spec in props.get("Events", {}).items():
                rule = spec.get("Properties", {}).get("RuleName") or spec.get("Properties", {}).get("Name")
                if not rule:
                    continue
                if spec["Type"] == "ScheduleV2":
                    out.append((f"{event_id} schedule", tamper("scheduler", "DeleteSchedule", {"name":
                                                                                               STACK.resolve(rule)})))
                    continue
                name = str(STACK.resolve(rule))
                out += [(f"{event_id} disabled", tamper("events", "DisableRule", {"name": name})),
                        (f"{event_id} retargeted", tamper("events", "PutTargets", {"rule": name, "targets": []})),
                        (f"{event_id} deleted", tamper("events", "DeleteRule", {"name": name, "force": False}))]
        elif kind == "AWS::IAM::Role":
            role = STACK._name_of(logical_id)
            out += [(f"{logical_id} trust", tamper("iam", "UpdateAssumeRolePolicy", {"roleName": role})),
                    (f"{logical_id} inline (other case)", tamper("iam", "PutRolePolicy",
                                                                 {"roleName": role.upper(), "policyName": "p"}))]
        elif kind == "AWS::IAM::ManagedPolicy":
            out.append((logical_id, tamper("iam", "CreatePolicyVersion", {"policyArn": STACK.ref(logical_id),
                                                                          "setAsDefault": True})))
        elif kind == "AWS::SNS::Topic":
            topic = STACK.ref(logical_id)
            out += [("topic deleted", tamper("sns", "DeleteTopic", {"topicArn": topic})),
                    ("topic policy", tamper("sns", "SetTopicAttributes", {"topicArn": topic,
                                                                          "attributeName": "Policy"})),
                    ("email unsubscribed", tamper("sns", "Unsubscribe", {"subscriptionArn": f"{topic}:0f1e2d3c"}))]
        elif kind == "AWS::SQS::Queue":
            out.append((logical_id, tamper("sqs", "PurgeQueue", {"queueUrl": STACK.ref(logical_id)})))
        elif kind == "AWS::DynamoDB::Table":
            out.append((logical_id, tamper("dynamodb", "DeleteTable", {"tableName": STACK._name_of(logical_id)})))
        elif kind == "AWS::CloudWatch::Alarm":
            out += [(f"{logical_id} off", tamper("monitoring", "DisableAlarmActions",
                                                 {"alarmNames": ["someone-else", resolved(logical_id, "AlarmName")]})),
                    (f"{logical_id} rewritten", tamper("monitoring", "PutMetricAlarm",
                                                       {"alarmName": resolved(logical_id, "AlarmName")}))]
        elif kind == "AWS::Logs::LogGroup":
            out.append((logical_id, tamper("logs", "DeleteLogGroup", {"logGroupName": STACK._name_of(logical_id)})))
    out.append(("stack deleted", tamper("cloudformation", "DeleteStack", {"stackName": STACK.stack_name})))
    return out


OWN_CHANGES = own_changes()


def test_every_kind_of_resource_is_covered() -> None:
    kinds = {STACK.resources[lid]["Type"] for lid in STACK.resources}
    watched = {"AWS::Serverless::Function", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::SNS::Topic",
               "AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::CloudWatch::Alarm", "AWS::Logs::LogGroup"}
    # Not watched here, on purpose: the layer (a deleted version does not affect the functions using it),
    # the KMS key (watched by the silencing patterns, tests/test_self_protection.py), the policies of the
    # topic and queue (changes show as SetTopicAttributes/SetQueueAttributes), the custom resource, and the
    # forwarding StackSet (what it deploys, the regional rules, is checked by the heartbeat every run).
    assert kinds - watched <= {"AWS::Serverless::LayerVersion", "AWS::KMS::Key", "AWS::SNS::TopicPolicy",
                               "AWS::SQS::QueuePolicy", "Custom::Baseline", "AWS::CloudFormation::StackSet"}
    assert len(OWN_CHANGES) > 60


@pytest.mark.parametrize(("what", "event"), OWN_CHANGES, ids=[w for w, _ in OWN_CHANGES])
def test_change_to_an_own_resource_is_routed_and_judged(stack: LocalGuardrail, what: str,
                                                        event: dict[str, Any]) -> None:
    assert rules_for(stack, event), f"no rule sees: {what}"
    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID, "STACK_NAME": STACK.stack_name, "AWS_REGION": REGION})
    findings = self_protect.judge(parse_event(event), settings, Triage(Verdict.ACT, "judge"))
    expected = "CRITICAL"
    assert [f.severity.value for f in findings] == [expected], what
    # The same call made by CloudFormation for the stack: no rule, and the judge agrees.
    cfn = by_cloudformation(event)
    assert rules_for(stack, cfn) == set()
    assert self_protect.judge(parse_event(cfn), settings, Triage(Verdict.ACT, "judge")) == []


def test_each_self_protection_rule_is_watched_by_another(stack: LocalGuardrail) -> None:
    """Switching one self-protection rule off is seen by a rule that is still on."""
    names = {eid: str(STACK.resolve(spec["Properties"]["RuleName"]))
             for eid, spec in STACK.resources[FUNCTION]["Properties"]["Events"].items()}
    assert set(names) == SELF_RULES
    for event_id, name in names.items():
        for call, params in (("DisableRule", {"name": name}), ("DeleteRule", {"name": name}),
                             ("RemoveTargets", {"rule": name, "ids": ["x"]})):
            assert rules_for(stack, tamper("events", call, params)) - {event_id}, (event_id, call)


def test_patterns_fit_eventbridges_default_size_for_long_stack_names() -> None:
    """2,048 characters is EventBridge's default pattern quota; function names cap the stack name near 45."""
    for stack_name in ("account-guardrail", "x" * 45):
        for rule in Stack(stack_name=stack_name).rules():
            assert len(json.dumps(rule.pattern, separators=(",", ":"))) <= 2048, (stack_name, rule.logical_id)


# --- through the handler ----------------------------------------------------------------------


def test_disabled_rule_alerts(guardrail: LocalGuardrail) -> None:
    event = load_event(EVENTS_DIR / "tamper-rule-disabled.json")
    assert rules_for(guardrail, event) == {"GuardrailTamper"}
    inv = guardrail.invoke(FUNCTION, event)
    assert inv.error is None and aws_calls(inv) == ["sns:Publish"]
    assert found(inv) == [("guardrail-tampered", "CRITICAL")]
    (note,) = inv.notifications
    assert note["subject"] == "[CRITICAL] Guardrail tampered: DisableRule on rule admin-drift by phoebe - 123456789012"
    text = " ".join(note["message"].split())
    for expected in ("IAM user phoebe called DisableRule on the guardrail's rule account-guardrail-admin-drift",
                     "outside CloudFormation", "aws events enable-rule --name account-guardrail-admin-drift",
                     "detect-stack-drift --stack-name account-guardrail", "198.51.100.23"):
        assert expected in text, expected


def test_retargeting_the_first_rule_reaches_the_function_twice_and_alerts_once(guardrail: LocalGuardrail) -> None:
    event = tamper("events", "PutTargets", {"rule": "account-guardrail-self-protect", "targets": []})
    assert rules_for(guardrail, event) == {"GuardrailTamper", "GuardrailTamperWatch"}
    _, invocations = guardrail.dispatch(event)
    assert [inv.error for inv in invocations] == [None, None]
    assert [aws_calls(inv) for inv in invocations] == [["sns:Publish"], []]  # the second is a duplicate
    assert found(invocations[0]) == [("guardrail-tampered", "CRITICAL")]


def test_function_configuration_changed_alerts(guardrail: LocalGuardrail) -> None:
    event = load_event(EVENTS_DIR / "tamper-function-config-changed.json")
    assert rules_for(guardrail, event) == {"GuardrailTamper"}
    inv = guardrail.invoke(FUNCTION, event)
    assert found(inv) == [("guardrail-tampered", "CRITICAL")] and aws_calls(inv) == ["sns:Publish"]
    assert "UpdateFunctionConfiguration on function admin-drift" in inv.notifications[0]["subject"]


def test_cloudformation_deploying_the_stack_alerts_nothing(guardrail: LocalGuardrail) -> None:
    for name in ("tamper-rule-disabled.json", "tamper-function-config-changed.json"):
        event = by_cloudformation(load_event(EVENTS_DIR / name))
        assert rules_for(guardrail, event) == set()
        inv = guardrail.invoke(FUNCTION, event)  # handed over anyway
        assert inv.findings == [] and aws_calls(inv) == []
    # invokedBy alone (a record without CloudFormation's source address) is enough.
    only_invoked_by = load_event(EVENTS_DIR / "tamper-rule-disabled.json")
    only_invoked_by["id"] += "-2"
    only_invoked_by["detail"]["userIdentity"]["invokedBy"] = CFN
    assert guardrail.invoke(FUNCTION, only_invoked_by).findings == []


def test_stack_update_is_a_notice_and_deletion_critical(guardrail: LocalGuardrail) -> None:
    arn = f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/account-guardrail/5d3c1a70-ad5e-11ef-9f1e-0a1b2c3d4e5f"
    update = tamper("cloudformation", "ExecuteChangeSet", {"changeSetName": "samcli-deploy1", "stackName": arn})
    assert rules_for(guardrail, update) == {"GuardrailTamperInfra"}
    inv = guardrail.invoke(FUNCTION, update)
    assert found(inv) == [("guardrail-stack-changed", "MEDIUM")]
    assert "If this was your own deployment" in " ".join(inv.notifications[0]["message"].split())
    delete = tamper("cloudformation", "DeleteStack", {"stackName": "account-guardrail"})
    assert found(guardrail.invoke(FUNCTION, delete)) == [("guardrail-stack-changed", "CRITICAL")]


def test_refused_tampering_is_a_medium_note(guardrail: LocalGuardrail) -> None:
    event = tamper("events", "DisableRule", {"name": "account-guardrail-root-signin"}, error="AccessDeniedException")
    inv = guardrail.invoke(FUNCTION, event)
    assert found(inv) == [("guardrail-tamper-attempt", "MEDIUM")]


# --- not ours ----------------------------------------------------------------------------------


@pytest.mark.parametrize("event", [
    tamper("events", "DisableRule", {"name": "my-app-nightly"}),
    tamper("events", "DisableRule", {"name": "account-guardrail-admin-drift", "eventBusName": "orders"}),
    tamper("lambda", "DeleteFunction20150331", {"functionName": "my-account-guardrail-clone"}),
    tamper("lambda", "UpdateFunctionCode20150331v2",
           {"functionName": "arn:aws:lambda:us-east-1:999999999999:function:account-guardrail-admin-drift"}),
    tamper("lambda", "DeleteFunction20150331", {"functionName": "account-guardrail-admin-drift"}, region="eu-west-1"),
    tamper("sns", "DeleteTopic", {"topicArn": "arn:aws:sns:us-east-1:123456789012:orders"}),
    tamper("iam", "PutRolePolicy", {"roleName": "admin-mfa", "policyName": "x"}),
    tamper("cloudformation", "DeleteStack", {"stackName": "account-guardrail-test"}),
], ids=["other-rule", "other-bus", "similar-function", "other-account", "other-region", "other-topic",
        "baseline-role", "other-stack"])
def test_other_resources_are_not_ours(event: dict[str, Any]) -> None:
    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID, "STACK_NAME": "account-guardrail", "AWS_REGION": REGION})
    assert self_protect.judge(parse_event(event), settings, Triage(Verdict.ACT, "judge")) == []


def test_no_real_record_is_mistaken_for_tampering(stack: LocalGuardrail) -> None:
    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID, "STACK_NAME": "account-guardrail", "AWS_REGION": REGION})
    for name, record in corpus_records():
        assert rules_for(stack, envelope(record)) == set(), name
        event = parse_event(envelope(retarget(record)))
        assert self_protect.judge(event, settings, Triage(Verdict.ACT, "judge")) == [], name


@pytest.mark.parametrize("params", [None, {}, {"functionName": None}, {"functionName": 7},
                                    {"functionName": ["account-guardrail-x"]}, {"functionName": "x" * 5000}])
def test_bad_parameters_never_crash(params: Any) -> None:
    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID, "STACK_NAME": "account-guardrail", "AWS_REGION": REGION})
    event = parse_event(tamper("lambda", "UpdateFunctionCode20150331v2", params))
    assert self_protect.judge(event, settings, Triage(Verdict.ACT, "judge")) == []


def test_names_and_versions() -> None:
    assert lambda_event("UpdateFunctionConfiguration20150331v2") == "UpdateFunctionConfiguration"
    assert lambda_event("PutFunctionConcurrency20171031") == "PutFunctionConcurrency"
    assert lambda_event("DeleteFunction") == "DeleteFunction"
    assert lambda_event("UpdateFunctionUrlConfig20211031") == ""  # routed by the prefix, not judged
    assert function_name("arn:aws:lambda:us-east-1:1:function:account-guardrail-x:live") == "account-guardrail-x"
    assert function_name("123456789012:function:account-guardrail-x") == "account-guardrail-x"
    assert function_name("account-guardrail-x:live") == "account-guardrail-x"
    settings = load_settings({"ACCOUNT_ID": ACCOUNT_ID, "STACK_NAME": "Guard"})
    event = parse_event(tamper("iam", "DeleteRole", {"roleName": "GUARD-setup"}))
    assert touched(event, settings) is not None  # IAM names are case-insensitive


def test_the_role_holds_no_permission_of_its_own() -> None:
    """Only what every detector shares (logs, alerts, idempotency, failure queue): it reads nothing and
    can change none of the guardrail's resources."""
    from guardrail_core import runtime

    shared = runtime.LOG_ACTIONS | runtime.PUBLISH_ACTIONS | runtime.IDEMPOTENCY_ACTIONS | runtime.ON_FAILURE_ACTIONS
    for params in ({}, {"TrailMode": "remediate", "AdminDriftMode": "remediate", "MfaMode": "quarantine"}):
        granted = {a for st in Stack(parameters=params).role_statements("SelfProtectRole") if st["Effect"] == "Allow"
                   for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])}
        assert granted and granted <= shared


def test_generated_events_are_distinct() -> None:
    event_ids = [event["id"] for _, event in OWN_CHANGES]
    assert len(set(event_ids)) == len(event_ids)
