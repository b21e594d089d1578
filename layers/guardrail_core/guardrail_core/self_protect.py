"""Self-protection: anyone but CloudFormation changing the guardrail's own resources.

The guardrail's resources are named `<stack name>-...` (functions, rules, schedule, topic,
roles, managed policies, queue, table, alarms, log groups /aws/lambda/<stack>-...). A change
to one of them by anyone other than CloudFormation acting on a stack (`invokedBy` or
`sourceIPAddress` cloudformation.amazonaws.com, both set by AWS, not by the caller) is CRITICAL:
switching a guardrail off quietly is what an attacker does first. Stack operations on the
guardrail's own stack are reported too (DeleteStack CRITICAL; an update MEDIUM, since an
update can set KillSwitch=on and CloudFormation then makes the changes).

No AWS call but the alert: the event itself names the resource and who changed it; there is
nothing to re-read that would change the verdict. Nothing is undone automatically (the
guardrail's roles hold no rights over its own resources - by design, so a compromised
function cannot rewrite the others).

Silencing is CRITICAL: every change to the alert topic (deleted, attributes or data-protection
policy set), to its subscriptions (a filter policy set, one removed or added), and to its KMS
key (disabled, scheduled for deletion, key policy replaced). The owner's subscription is also
repaired by `guardrail_core.subscription` (the setup function: every deploy and its daily run).

Borrowing a guardrail role is CRITICAL: a Lambda function created or reconfigured with one of
the guardrail's roles (iam:PassRole is not itself recorded; CreateFunction and
UpdateFunctionConfiguration carry the role). Its calls are judged like anyone's (triage).

Limits (also in the README): an alert about the alert topic's deletion, its KMS key, or its
last subscription cannot be delivered through that topic; each self-protection rule is
watched by another, so switching them off takes two calls and the first is reported;
deleting or throttling this function itself shows up only as the failure-queue and
function-error alarms; a change made through CloudFormation (including by a rogue stack, or
by an update of this stack) is trusted except for the stack operation itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardrail_core.alerts import cloudtrail_link
from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent
from guardrail_core.findings import Actor, Finding, Severity, who
from guardrail_core.runtime import attempt_finding, logger
from guardrail_core.triage import Triage, Verdict

CLOUDFORMATION = "cloudformation.amazonaws.com"

# No AWS call but sns:Publish (runtime's): the least-privilege test expects these empty.
READ_ACTIONS: frozenset[str] = frozenset()
WRITE_ACTIONS: frozenset[str] = frozenset()

# eventSource -> eventNames (Lambda's carry API-version suffixes: matched by prefix).
LAMBDA_EVENTS = ("DeleteFunction", "UpdateFunctionCode", "UpdateFunctionConfiguration", "PutFunctionConcurrency",
                 "DeleteFunctionConcurrency", "PutFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
                 "DeleteFunctionEventInvokeConfig", "RemovePermission")
EVENTS = {
    "events.amazonaws.com": frozenset({"DisableRule", "DeleteRule", "PutRule", "RemoveTargets", "PutTargets"}),
    "scheduler.amazonaws.com": frozenset({"DeleteSchedule", "UpdateSchedule"}),
    "sns.amazonaws.com": frozenset({"DeleteTopic", "SetTopicAttributes", "RemovePermission", "Unsubscribe",
                                    "PutDataProtectionPolicy", "SetSubscriptionAttributes", "Subscribe"}),
    "kms.amazonaws.com": frozenset({"DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy"}),
    "iam.amazonaws.com": frozenset({"UpdateAssumeRolePolicy", "AttachRolePolicy", "DetachRolePolicy", "PutRolePolicy",
                                    "DeleteRolePolicy", "DeleteRole", "PutRolePermissionsBoundary", "UpdateRole",
                                    "CreatePolicyVersion", "SetDefaultPolicyVersion", "DeletePolicyVersion",
                                    "DeletePolicy"}),
    "sqs.amazonaws.com": frozenset({"DeleteQueue", "SetQueueAttributes", "PurgeQueue"}),
    "dynamodb.amazonaws.com": frozenset({"DeleteTable", "UpdateTable", "UpdateTimeToLive"}),
    "monitoring.amazonaws.com": frozenset({"DeleteAlarms", "DisableAlarmActions", "PutMetricAlarm"}),
    "logs.amazonaws.com": frozenset({"DeleteLogGroup"}),
    "cloudformation.amazonaws.com": frozenset({"DeleteStack", "UpdateStack", "ExecuteChangeSet",
                                               "UpdateTerminationProtection", "SetStackPolicy"}),
}
GLOBAL_SOURCES = frozenset({"iam.amazonaws.com"})
# Lambda calls that name the function's execution role (requestParameters.role).
ROLE_EVENTS = ("CreateFunction", "UpdateFunctionConfiguration")  # every other resource lives in the stack's region


@dataclass(frozen=True)
class Touched:
    """One of the guardrail's own resources, as the event names it."""

    kind: str  # "function", "rule", ...
    name: str


# --- pure decisions ---------------------------------------------------------------------------


def _param(request: Mapping[str, Any], *keys: str) -> str:
    """A string request parameter under any of `keys` (case-insensitive: services spell them differently)."""
    if not isinstance(request, Mapping):
        return ""
    lowered = {str(k).lower(): v for k, v in request.items()}
    for key in keys:
        value = lowered.get(key.lower())
        if isinstance(value, str) and value.strip():
            return value.strip()[:512]
    return ""


def _arn_account_ok(value: str, settings: Settings) -> bool:
    """An ARN names this account (or the value is a bare name)."""
    parts = value.split(":")
    if value.startswith("arn:") and len(parts) > 4 and parts[4] and settings.account_id:
        return parts[4] == settings.account_id
    return True


def lambda_event(event_name: str) -> str:
    """'UpdateFunctionConfiguration20150331v2' -> 'UpdateFunctionConfiguration'; '' when not watched."""
    return next((name for name in LAMBDA_EVENTS if re.fullmatch(rf"{name}(\d{{8}}(v\d+)?)?", event_name)), "")


def role_event(event_name: str) -> str:
    """'CreateFunction20150331' -> 'CreateFunction'; '' when the event does not name a role."""
    return next((name for name in ROLE_EVENTS if re.fullmatch(rf"{name}(\d{{8}}(v\d+)?)?", event_name)), "")


def is_alert_key(event: CloudTrailEvent, settings: Settings) -> bool:
    """The call acted on the alert topic's key: its ARN among the record's resources, or its ARN
    or id as requestParameters.keyId (KMS records carry both)."""
    key = settings.alert_key_arn.lower()
    if not key:
        return False
    key_id = key.rsplit("/", 1)[-1]
    given = _param(event.request, "keyId").lower()
    if given and given in (key, key_id):
        return True
    resources = event.resources
    return any(isinstance(r, Mapping) and str(r.get("ARN", "")).lower() == key for r in resources)


def function_name(value: str) -> str:
    """Name, ARN, or partial ARN (with or without qualifier) -> the function's name."""
    match = re.search(r"(?:^|:)function:([^:]+)", value)
    if match:
        return match.group(1)
    return value.split(":")[0] if ":" in value and not value.startswith("arn:") else value


def _names(request: Mapping[str, Any], key: str) -> list[str]:
    """A list-of-names parameter (CloudWatch alarmNames), or a single name under the singular key."""
    value = request.get(key) if isinstance(request, Mapping) else None
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    single = _param(request, key.rstrip("s"))
    return [single] if single else []


def touched(event: CloudTrailEvent, settings: Settings) -> Touched | None:
    """The guardrail resource this event changed, or None when it is not one of ours."""
    prefix = f"{settings.stack_name}-".lower()
    request = event.request
    source, name_ = event.event_source, event.event_name

    def ours(name: str) -> bool:
        return name.lower().startswith(prefix)

    if source == "lambda.amazonaws.com":
        given = _param(request, "functionName")
        name = function_name(given)
        role = _param(request, "role")
        if role_event(name_) and role and settings.is_guardrail_role_name(role):
            return Touched("function given a guardrail role", f"{name or '(unnamed)'}, role {role.rsplit('/', 1)[-1]}")
        return Touched("function", name) if lambda_event(name_) and ours(name) and _arn_account_ok(
            given, settings) else None
    if name_ not in EVENTS.get(source, frozenset()):
        return None
    if source == "events.amazonaws.com":
        bus = _param(request, "eventBusName")
        if bus and bus != "default" and not bus.endswith(":event-bus/default"):
            return None
        name = _param(request, "name", "rule")
        return Touched("rule", name) if ours(name) else None
    if source == "scheduler.amazonaws.com":
        group = _param(request, "groupName")
        name = _param(request, "name")
        return Touched("schedule", name) if ours(name) and group in ("", "default") else None
    if source == "sns.amazonaws.com":
        arn = _param(request, "topicArn", "resourceArn", "subscriptionArn")
        parts = arn.split(":")
        topic = parts[5] if arn.startswith("arn:") and len(parts) > 5 else ""
        return Touched("alert topic", arn) if ours(topic) and _arn_account_ok(arn, settings) else None
    if source == "kms.amazonaws.com":
        return Touched("alert key", settings.alert_key_arn) if is_alert_key(event, settings) else None
    if source == "iam.amazonaws.com":
        role = _param(request, "roleName")
        if role:
            return Touched("role", role) if ours(role) else None
        arn = _param(request, "policyArn")
        policy = arn.rsplit("/", 1)[-1] if ":policy/" in arn else ""
        return Touched("managed policy", arn) if ours(policy) and _arn_account_ok(arn, settings) else None
    if source == "sqs.amazonaws.com":
        url = _param(request, "queueUrl")
        queue = url.rstrip("/").rsplit("/", 1)[-1]
        return Touched("failure queue", url) if url and ours(queue) else None
    if source == "dynamodb.amazonaws.com":
        given = _param(request, "tableName")
        table = given.rsplit("table/", 1)[-1]
        return Touched("idempotency table", table) if ours(table) and _arn_account_ok(given, settings) else None
    if source == "monitoring.amazonaws.com":
        alarms = [a for a in _names(request, "alarmNames") if ours(a)]
        return Touched("alarm", ", ".join(alarms)) if alarms else None
    if source == "logs.amazonaws.com":
        group = _param(request, "logGroupName")
        return Touched("log group", group) if ours(group.removeprefix("/aws/lambda/")) else None
    if source == "cloudformation.amazonaws.com":
        given = _param(request, "stackName")
        match = re.search(r":stack/([^/]+)/", given)
        stack = match.group(1) if match else given
        return Touched("stack", stack) if stack.lower() == settings.stack_name.lower() else None
    return None


def made_by_cloudformation(event: CloudTrailEvent) -> bool:
    """CloudFormation made the call (deploying a stack): AWS sets both fields, the caller cannot."""
    return CLOUDFORMATION in (event.identity.invoked_by, event.source_ip)


def severity(event: CloudTrailEvent, thing: Touched) -> Severity:
    if thing.kind == "stack" and event.event_name != "DeleteStack":
        return Severity.MEDIUM
    return Severity.CRITICAL


_WHY = {
    "function": "a guardrail function changed or removed stops judging its events, or judges them with other code",
    "rule": "a rule disabled, deleted or retargeted means its events never reach the guardrail",
    "schedule": "the daily MFA sweep stops running",
    "alert topic": "alerts may stop reaching you (this one may not arrive either)",
    "alert key": "every alert is encrypted with this key: disabled, deleted or locked away, SNS can deliver no alert "
                 "at all (this one may not arrive either)",
    "function given a guardrail role": "code running with a guardrail role acts with the guardrail's rights; "
                                          "before this change it would have passed for the guardrail itself",
    "role": "a guardrail role changed can stop a function from acting, or give it rights it should not have",
    "managed policy": "the shared permissions or the MFA quarantine policy no longer say what the stack says",
    "failure queue": "events the guardrail failed to handle can be lost or purged before anyone looks",
    "idempotency table": "duplicate deliveries are no longer recognised (the guardrail keeps acting, maybe twice)",
    "alarm": "failures of the guardrail would no longer be announced",
    "log group": "the guardrail's own record of what it did is gone",
    "stack": "the guardrail's configuration (modes, kill switch) or the guardrail itself is being changed",
}


def _fix(event: CloudTrailEvent, thing: Touched, settings: Settings) -> list[str]:
    steps = []
    if event.event_name == "DisableRule":
        region = event.aws_region or event.region or settings.region  # a forwarding rule lives in its own region
        steps.append(f"Enable the rule again: aws events enable-rule --name {thing.name} --region {region}")
    elif thing.kind == "alert key":
        steps.append(f"Put the key back: aws kms enable-key --key-id {thing.name} ; aws kms cancel-key-deletion "
                     f"--key-id {thing.name} (then enable it again) ; a replaced key policy is restored by redeploying "
                     "the stack.")
    elif thing.kind == "function given a guardrail role":
        steps.append("Find the function in the Lambda console (or aws lambda list-functions), look at what it did "
                     "in CloudTrail (its calls are judged like anyone's), then delete it or give it its own role. "
                     "The role's only-from-its-function policy denies calls from any other function's code.")
    elif event.event_source == "sns.amazonaws.com" and event.event_name in (
            "Unsubscribe", "SetSubscriptionAttributes", "Subscribe"):
        steps.append("The guardrail checks your subscription on every deploy and once a day: a removed one is "
                     "subscribed again (confirm the new email from AWS Notifications), a filter policy is removed. "
                     "Check the topic's subscriptions: aws sns list-subscriptions-by-topic --topic-arn <the topic>; "
                     "remove one you did not add: aws sns unsubscribe --subscription-arn <its ARN>.")
    elif lambda_event(event.event_name) == "PutFunctionConcurrency":
        steps.append("Check the function's reserved concurrency: the stack reserves none unless its "
                     "ReservedConcurrency parameter is set. Remove a limit you did not set: aws lambda "
                     "delete-function-concurrency "
                     f"--function-name {thing.name} (or redeploy the stack).")
    if thing.kind == "stack":
        steps.append("If this was your own deployment (sam deploy / sam delete), nothing to do.")
    else:
        steps.append(f"See everything changed outside CloudFormation: aws cloudformation detect-stack-drift "
                     f"--stack-name {settings.stack_name}, then describe-stack-resource-drifts. Put it back by hand, "
                     "or redeploy (CloudFormation only rewrites resources whose template changed; a deleted "
                     "resource may need the stack recreated).")
    steps.append(f"Find out why {Actor.from_event(event).inline} did this; if you do not know, treat their "
                 "credentials as compromised and look for other changes they made in CloudTrail.")
    return steps


def short_name(name: str, settings: Settings) -> str:
    """'arn:...:account-guardrail-alerts' -> 'alerts': room for the rest of the subject line."""
    last = re.split(r"[:/]", name.rstrip("/"))[-1] if name.startswith(("arn:", "https:")) else name
    prefix = f"{settings.stack_name}-"
    return last[len(prefix):] if last.lower().startswith(prefix.lower()) and len(last) > len(prefix) else last


def tamper_finding(event: CloudTrailEvent, settings: Settings, thing: Touched) -> Finding:
    action = lambda_event(event.event_name) or role_event(event.event_name) or event.event_name
    detail = ""
    attribute = _param(event.request, "attributeName")
    if attribute:
        detail = f" (attribute {attribute[:64]})"
    what = (f"{who(event)} called {action} on the guardrail's {thing.kind} {thing.name}{detail} at "
            f"{event.event_time or 'an unknown time'}, from {event.source_ip or 'an unknown address'}, outside "
            f"CloudFormation. Why it matters: {_WHY.get(thing.kind, 'the guardrail may stop working')}.")
    if thing.kind == "stack":
        summary = f"Guardrail stack {thing.name}: {action}"
    elif thing.kind == "function given a guardrail role":
        function, _, role = thing.name.partition(", role ")
        summary = f"Guardrail role {short_name(role, settings)} given to function {function}"
    elif thing.kind == "alert topic" and thing.name.count(":") >= 6:  # a subscription of the topic
        summary = f"Guardrail tampered: {action} on an alert subscription"
    elif thing.kind in ("alert topic", "alert key"):  # one of each: its name says nothing more
        summary = f"Guardrail tampered: {action} on the {thing.kind}"
    else:
        summary = f"Guardrail tampered: {action} on {thing.kind} {short_name(thing.name, settings)}"
    links = [f"https://{settings.region}.console.aws.amazon.com/cloudformation/home?region={settings.region}#/stacks"]
    if event.event_id:
        links.append(cloudtrail_link(event.aws_region or event.region, event.event_id))
    return Finding.for_event(
        event, id="guardrail-tampered" if thing.kind != "stack" else "guardrail-stack-changed",
        severity=severity(event, thing), summary=summary[:200], what_happened=what,
        next_steps=_fix(event, thing, settings), links=links,
    )


# --- the judge ----------------------------------------------------------------------------------


def judge(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """The self-protection detector: a CRITICAL alert for each out-of-band change to the guardrail."""
    if made_by_cloudformation(event):
        logger.info("change made by CloudFormation: a stack deployment, not tampering",
                    extra={"event": event.event_name})
        return []
    recorded = event.aws_region or event.region
    # The stack's resources live in its region, and its forwarding rules in every forwarded region.
    if event.event_source not in GLOBAL_SOURCES and settings.region and recorded != settings.region and not (
            event.event_source == "events.amazonaws.com" and recorded in settings.forwarded_regions):
        logger.info("resource in another region than the guardrail's: not ours", extra={"region": event.aws_region})
        return []
    thing = touched(event, settings)
    if thing is None:
        logger.info("not one of the guardrail's own resources", extra={"event": event.event_name})
        return []
    if verdict.verdict is Verdict.ATTEMPT:
        note = attempt_finding(event, f"the guardrail's {thing.kind} {thing.name}")
        note.severity = Severity.MEDIUM  # refused, but someone is trying to switch the guardrail off
        note.id = "guardrail-tamper-attempt"
        return [note]
    return [tamper_finding(event, settings, thing)]
