"""The guardrail cannot be borrowed, turned against its owner, or silenced (issue 14).

- Own calls are recognised narrowly: a guardrail role AND a session of one of the stack's functions.
- A function created or reconfigured with a guardrail role is CRITICAL; its calls are judged.
- The roles, evaluated as IAM would (tools/guardrail_cli/iam_eval.py, the template's own policies):
  attaching AdministratorAccess to the admin group is denied for every role, in every mode.
- Trust and policy-version writes carry only the baseline's own documents.
- Every silencing call is routed by the template's patterns and judged CRITICAL.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from guardrail_cli.iam_eval import Decision, Request, evaluate
from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail
from guardrail_cli.replay import replay_each
from guardrail_cli.template import Stack
from guardrail_cli.testing import EVENTS_DIR, baseline_account, load_event
from guardrail_core import baseline
from guardrail_core.config import ADMINISTRATOR_ACCESS_ARN, load_settings
from guardrail_core.events import parse_event
from guardrail_core.triage import Verdict, own_session, triage

STACK_NAME = "account-guardrail"
ROLE_PATH = f"arn:aws:iam::{ACCOUNT_ID}:role/account-guardrail/"
GROUP_ARN = f"arn:aws:iam::{ACCOUNT_ID}:group/administrators"
ASSUME_POLICY_ARN = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
ROLES = {"SetupRole": "setup", "AdminDriftRole": "admin-drift", "MfaDriftRole": "mfa-drift",
         "MfaSweepRole": "mfa-sweep", "RootActivityRole": "root-activity", "TrailGuardRole": "trail-guard",
         "SelfProtectRole": "self-protect", "HeartbeatRole": "heartbeat"}
PARAMETER_SETS = [
    {}, {"AdminDriftMode": "remediate", "DetachOtherAdminGrants": "true", "MfaMode": "quarantine"},
    {"AdminDriftMode": "notify", "MfaMode": "notify", "TrailMode": "notify"}, {"KillSwitch": "on"},
]


def role_session(role: str, session: str, *, mfa: bool = False) -> dict[str, Any]:
    """userIdentity of a call made with a guardrail role's credentials, in session `session`."""
    return {
        "type": "AssumedRole", "principalId": f"AROAEXAMPLEGUARDRAIL:{session}",
        "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{STACK_NAME}-{role}/{session}", "accountId": ACCOUNT_ID,
        "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"{ROLE_PATH}{STACK_NAME}-{role}",
                                             "userName": f"{STACK_NAME}-{role}"},
                           "attributes": {"mfaAuthenticated": str(mfa).lower()}},
    }


def settings_of(local: LocalGuardrail, function: str) -> Any:
    return load_settings(local.functions[function].environment | {"AWS_REGION": REGION})


# --- own calls, recognised narrowly -------------------------------------------------------------


def admin_attach_event(identity: dict[str, Any], event_id: str) -> dict[str, Any]:
    event = load_event(EVENTS_DIR / "admin-policy-attached-to-group.json")
    event["detail"]["userIdentity"] = identity
    event["id"] = event["detail"]["eventID"] = event_id
    return event


def test_a_guardrail_call_is_its_role_in_its_own_functions_session() -> None:
    local = LocalGuardrail(Stack())
    cfg = settings_of(local, "AdminDriftFunction")
    assert len(cfg.guardrail_functions) == len(ROLES) and len(cfg.guardrail_roles) == len(ROLES)
    own = parse_event(admin_attach_event(role_session("admin-drift", f"{STACK_NAME}-admin-drift"), "own"))
    assert own_session(own.identity, cfg) and triage(own, cfg).verdict is Verdict.IGNORE
    for session in ("evil-function", f"{STACK_NAME}-admin-drift-2", "i-0abc123", ""):
        other = parse_event(admin_attach_event(role_session("admin-drift", session), f"other-{session}"))
        verdict = triage(other, cfg)
        assert not own_session(other.identity, cfg) and verdict.verdict is Verdict.ACT, session
        assert session == "" or "guardrail role used outside the guardrail's functions" in verdict.reason
    # A function's session name under a role that is not the guardrail's: not the guardrail either.
    stranger = role_session("admin-drift", f"{STACK_NAME}-admin-drift")
    stranger["sessionContext"]["sessionIssuer"]["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/ops"
    assert triage(parse_event(admin_attach_event(stranger, "stranger")), cfg).verdict is Verdict.ACT


@pytest.fixture
def account() -> Iterator[LocalGuardrail]:
    with baseline_account() as local:
        yield local


def create_function_event(role_arn: str, *, name: str = "evil", call: str = "CreateFunction20150331",
                          source_ip: str = "198.51.100.7") -> dict[str, Any]:
    """A CreateFunction / UpdateFunctionConfiguration record by phoebe naming `role_arn` (iam:PassRole
    is not recorded: these are the events that carry the role)."""
    event = load_event(EVENTS_DIR / "tamper-function-config-changed.json")
    detail = event["detail"]
    detail.update(eventName=call, sourceIPAddress=source_ip,
                  requestParameters={"functionName": name, "role": role_arn, "runtime": "python3.13",
                                     "handler": "app.handler"})
    event["id"] = detail["eventID"] = f"{call}-{name}-{role_arn[-20:]}-{source_ip}"
    return event


def test_a_function_created_with_a_guardrail_role_is_critical_and_its_calls_are_judged(
        account: LocalGuardrail) -> None:
    for role in ROLES.values():
        for call in ("CreateFunction20150331", "UpdateFunctionConfiguration20150331v2"):
            event = create_function_event(f"{ROLE_PATH}{STACK_NAME}-{role}", call=call)
            assert {r.function for r in account.route(event)} == {"SelfProtectFunction"}, (role, call)
            inv = account.invoke("SelfProtectFunction", event)
            assert [(f["id"], f["severity"]) for f in inv.findings] == [("guardrail-tampered", "CRITICAL")]
            assert "function given a guardrail role" in inv.notifications[0]["message"]
    # Case-variant ARN (IAM names are case-insensitive): still seen.
    shouted = create_function_event(f"{ROLE_PATH.replace('account-guardrail/', 'ACCOUNT-GUARDRAIL/')}"
                                    f"{STACK_NAME.upper()}-SETUP", name="evil-2")
    assert {r.function for r in account.route(shouted)} == {"SelfProtectFunction"}
    assert [f["severity"] for f in account.invoke("SelfProtectFunction", shouted).findings] == ["CRITICAL"]
    # Another role, or CloudFormation deploying the stack's own function: nothing.
    other = create_function_event(f"arn:aws:iam::{ACCOUNT_ID}:role/service-role/my-fn-role", name="mine")
    assert account.route(other) == []
    deploy = create_function_event(f"{ROLE_PATH}{STACK_NAME}-setup", name=f"{STACK_NAME}-setup",
                                   source_ip="cloudformation.amazonaws.com")
    assert account.route(deploy) == []

    # The borrowed role's calls: "evil" (session name = function name) attaches AdministratorAccess
    # to the admin group with the admin-drift role. Judged and undone like anyone's.
    import boto3

    boto3.client("iam").attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS_ARN)
    borrowed = admin_attach_event(role_session("admin-drift", "evil"), "borrowed")
    inv = account.invoke("AdminDriftFunction", borrowed)
    assert inv.result["status"] == "handled", inv.result
    assert [f["severity"] for f in inv.findings] == ["HIGH"]
    assert ADMINISTRATOR_ACCESS_ARN not in [p["PolicyArn"] for p in boto3.client("iam").list_attached_group_policies(
        GroupName="administrators")["AttachedPolicies"]]


# --- the roles, evaluated as IAM would --------------------------------------------------------------


def role_documents(stack: Stack, role: str) -> list[dict[str, Any]]:
    return [{"Statement": stack.role_statements(role)}]


def own_function_context(stack: Stack, role: str) -> dict[str, str]:
    fn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{STACK_NAME}-{ROLES[role]}"
    return {"lambda:SourceFunctionArn": fn}


@pytest.mark.parametrize("params", PARAMETER_SETS, ids=["defaults", "everything-on", "notify", "kill-switch"])
def test_no_guardrail_role_may_attach_administrator_access_to_the_admin_group(params: dict[str, str]) -> None:
    stack = Stack(parameters=params)
    for role in ROLES:
        docs = role_documents(stack, role)
        context = own_function_context(stack, role)
        for policy in (ADMINISTRATOR_ACCESS_ARN, "arn:aws:iam::aws:policy/IAMFullAccess",
                       f"arn:aws:iam::{ACCOUNT_ID}:policy/anything-else", ASSUME_POLICY_ARN.upper()):
            request = Request("iam:AttachGroupPolicy", GROUP_ARN, context | {"iam:PolicyARN": policy})
            assert evaluate(docs, request) is not Decision.ALLOW, (role, policy)
        # Nor to any user, nor another policy on the admin role.
        assert evaluate(docs, Request("iam:AttachUserPolicy", f"arn:aws:iam::{ACCOUNT_ID}:user/bob",
                                      context | {"iam:PolicyARN": ADMINISTRATOR_ACCESS_ARN})) is not Decision.ALLOW
        assert evaluate(docs, Request("iam:AttachRolePolicy", f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa",
                                      context | {"iam:PolicyARN": "arn:aws:iam::aws:policy/IAMFullAccess"})
                        ) is not Decision.ALLOW


def test_the_baseline_attachments_are_still_allowed_where_the_code_needs_them() -> None:
    """The control: the narrowing leaves the one attachment the baseline needs (else the test above
    would pass for a role that can attach nothing at all)."""
    stack = Stack()
    for role in ("SetupRole", "AdminDriftRole"):
        context = own_function_context(stack, role) | {"iam:PolicyARN": ASSUME_POLICY_ARN}
        assert evaluate(role_documents(stack, role),
                        Request("iam:AttachGroupPolicy", GROUP_ARN, context)) is Decision.ALLOW, role


def test_each_role_refuses_calls_from_any_other_functions_code() -> None:
    """lambda:SourceFunctionArn (set by Lambda on calls from a function's code) of another function:
    explicit deny, whatever the call; absent (calls Lambda makes itself, e.g. the on-failure
    destination): the role's grants apply."""
    stack = Stack(parameters={"MfaMode": "quarantine"})
    topic = stack.ref("AlertTopic")
    for role, suffix in ROLES.items():
        docs = role_documents(stack, role)
        publish = Request("sns:Publish", topic, own_function_context(stack, role))
        assert evaluate(docs, publish) is Decision.ALLOW, role
        for other in (f"{STACK_NAME}-{suffix}-copy", "evil", f"{STACK_NAME}-{suffix}"):
            region = "us-west-2" if other == f"{STACK_NAME}-{suffix}" else REGION  # same name, other region
            fn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{other}"
            borrowed = Request("sns:Publish", topic, {"lambda:SourceFunctionArn": fn})
            assert evaluate(docs, borrowed) is Decision.EXPLICIT_DENY, (role, fn)
        qualified = own_function_context(stack, role)["lambda:SourceFunctionArn"] + ":$LATEST"
        assert evaluate(docs, Request("sns:Publish", topic, {"lambda:SourceFunctionArn": qualified})) is Decision.ALLOW
        assert evaluate(docs, Request("sns:Publish", topic, {})) is Decision.ALLOW


# --- trust and policy-version writes carry only the baseline's documents ------------------------------


DOCUMENT_WRITES = {"iam:UpdateAssumeRolePolicy": "PolicyDocument", "iam:CreateRole": "AssumeRolePolicyDocument",
                   "iam:CreatePolicy": "PolicyDocument", "iam:CreatePolicyVersion": "PolicyDocument"}


def test_the_code_writes_no_document_but_the_baselines_own() -> None:
    """Every trust and policy document the functions write, across setup from scratch and every
    event in events/ (replayed: the drift is made, then undone), is the baseline's own."""
    cfg = load_settings({"ACCOUNT_ID": ACCOUNT_ID})
    expected = {"trust": baseline.trust_policy(cfg), "policy": baseline.assume_policy_document(cfg)}
    invocations: list[Invocation] = []
    with baseline_account(converge=False) as local:
        invocations.append(local.invoke("SetupFunction", {}))
    events = [(str(p), load_event(p)) for p in sorted(Path(EVENTS_DIR).glob("*.json"))]
    for replay in replay_each(events, {"AdminDriftMode": "remediate", "DetachOtherAdminGrants": "true"}):
        invocations += replay.invocations
    written = [(c.name, c.params[DOCUMENT_WRITES[c.name]]) for inv in invocations for c in inv.calls
               if c.name in DOCUMENT_WRITES]
    assert {name for name, _ in written} >= {"iam:CreateRole", "iam:CreatePolicy", "iam:UpdateAssumeRolePolicy"}
    for name, document in written:
        kind = "trust" if name in ("iam:UpdateAssumeRolePolicy", "iam:CreateRole") else "policy"
        assert json.loads(document) == expected[kind], name


# --- silencing ------------------------------------------------------------------------------------


def silencing_calls(stack: Stack) -> list[tuple[str, str, dict[str, Any]]]:
    topic = stack.ref("AlertTopic")
    subscription = f"{topic}:0b1e5a3c-6d2f-4a8e-9c71-2f5d8e3b4a90"
    key_arn, key_id = stack.get_att("AlertKey", "Arn"), stack.ref("AlertKey")
    return [
        ("sns", "SetSubscriptionAttributes", {"subscriptionArn": subscription, "attributeName": "FilterPolicy",
                                              "attributeValue": '{"severity": ["never"]}'}),
        ("sns", "Unsubscribe", {"subscriptionArn": subscription}),
        ("sns", "Subscribe", {"topicArn": topic, "protocol": "email", "endpoint": "someone@example.net"}),
        ("sns", "DeleteTopic", {"topicArn": topic}),
        ("sns", "SetTopicAttributes", {"topicArn": topic, "attributeName": "KmsMasterKeyId",
                                       "attributeValue": "alias/aws/sns"}),
        ("sns", "PutDataProtectionPolicy", {"resourceArn": topic, "dataProtectionPolicy": "{}"}),
        ("kms", "DisableKey", {"keyId": key_arn}),
        ("kms", "DisableKey", {"keyId": key_id}),
        ("kms", "ScheduleKeyDeletion", {"keyId": key_id, "pendingWindowInDays": 7}),
        ("kms", "PutKeyPolicy", {"keyId": key_arn, "policyName": "default", "policy": "{}"}),
    ]


def silencing_event(service: str, name: str, params: dict[str, Any], key_arn: str) -> dict[str, Any]:
    event = load_event(EVENTS_DIR / "tamper-rule-disabled.json")
    detail = event["detail"]
    detail.update(eventSource=f"{service}.amazonaws.com", eventName=name, requestParameters=params)
    if service == "kms":
        detail["resources"] = [{"accountId": ACCOUNT_ID, "type": "AWS::KMS::Key", "ARN": key_arn}]
    event.update(source=f"aws.{service}")
    event["id"] = detail["eventID"] = f"{service}-{name}-{json.dumps(params, sort_keys=True)[-40:]}"
    return event


def test_every_silencing_call_is_routed_and_critical(account: LocalGuardrail) -> None:
    key_arn = account.stack.get_att("AlertKey", "Arn")
    for service, name, params in silencing_calls(account.stack):
        event = silencing_event(service, name, params, key_arn)
        rules = {r.logical_id for r in account.route(event) if r.function == "SelfProtectFunction"}
        assert rules, (name, params)
        inv = account.invoke("SelfProtectFunction", event)
        assert [f["severity"] for f in inv.findings] == ["CRITICAL"], (name, inv.result, inv.logs[-500:])
        assert len(inv.notifications) == 1
    # Another topic, another key: not ours.
    other_topic = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:billing-alerts"
    for event in (silencing_event("sns", "DeleteTopic", {"topicArn": other_topic}, key_arn),
                  silencing_event("kms", "DisableKey", {"keyId": "1234abcd-0000-0000-0000-000000000000"},
                                  f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-0000-0000-0000-000000000000")):
        assert [r for r in account.route(event) if r.function == "SelfProtectFunction"] == []
        assert account.invoke("SelfProtectFunction", event).findings == []


def test_the_guardrails_own_resubscription_is_not_an_alert(account: LocalGuardrail) -> None:
    topic = account.stack.ref("AlertTopic")
    event = silencing_event("sns", "Subscribe", {"topicArn": topic, "protocol": "email",
                                                 "endpoint": "owner@example.com"}, "")
    event["detail"]["userIdentity"] = role_session("setup", f"{STACK_NAME}-setup")
    inv = account.invoke("SelfProtectFunction", copy.deepcopy(event))
    assert inv.result["status"] == "ignored" and inv.notifications == []
