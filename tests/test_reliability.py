"""Nothing lost, nothing twice: duplicates, DynamoDB and SNS failures, throttling, refused calls,
and the template settings that catch whatever the code cannot (retries, failure queue, alarms).

Every scenario is a real drift in the local account, announced by its event, through the real
handler; calls are counted with the recorder, metrics read from the handler's own output.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto.dynamodb.models import dynamodb_backends

from guardrail_cli.faults import (
    REMEDIATIONS,
    Remediation,
    function_landed,
    http_errors,
    iam_event,
    log_lines,
    metrics,
    no_backoff,
    publishes,
    remediation,
    writes,
)
from guardrail_cli.local import ACCOUNT_ID, REGION, LocalGuardrail, local_aws
from guardrail_cli.seed import ADMINISTRATOR_ACCESS
from guardrail_cli.template import Stack
from guardrail_cli.testing import baseline_account, inject_errors
from guardrail_core import aws, runtime
from guardrail_core.config import load_settings
from guardrail_core.events import parse_event
from guardrail_core.findings import Action, Finding, Severity, Status
from guardrail_core.triage import triage

TABLE = "account-guardrail-idempotency"
STACK = Stack()


def landed(r: Remediation) -> Any:
    return pytest.param(r, id=r.name, marks=pytest.mark.skipif(
        not function_landed(r.function), reason=f"{r.function} not written yet"))


SCENARIOS = [landed(r) for r in REMEDIATIONS]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(*no_backoff())


@pytest.fixture
def account(request: pytest.FixtureRequest) -> Iterator[tuple[LocalGuardrail, Remediation]]:
    scenario: Remediation = request.param
    with baseline_account(scenario.parameters) as local:
        yield local, scenario


# --- 1. duplicates: one remediation, one email --------------------------------------------------


@pytest.mark.parametrize("account", SCENARIOS, indirect=True)
def test_five_deliveries_of_one_event_remediate_once_and_email_once(
        account: tuple[LocalGuardrail, Remediation]) -> None:
    local, scenario = account
    event = scenario.drift()
    deliveries = [local.invoke(scenario.function, event) for _ in range(5)]

    assert [inv.error for inv in deliveries] == [None] * 5
    assert [writes(inv) for inv in deliveries] == [[scenario.write], [], [], [], []]
    assert [publishes(inv) for inv in deliveries] == [1, 0, 0, 0, 0]
    assert scenario.fixed()
    # The duplicates answer like the first delivery, and say they are duplicates.
    first = deliveries[0].result
    for dup in deliveries[1:]:
        assert dup.result["duplicate"] is True
        assert dup.result["actions"] == first["actions"] and dup.result["published"] == first["published"]
        assert metrics(dup)["DuplicateEvents"] == 1
        # A duplicate's judgement started while its record was checked (one critical path): its reads
        # are dropped, it writes nothing and sends nothing.
        assert [c.name for c in dup.calls if c.kind in ("write", "publish")] == []


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
def test_idempotency_records_expire_after_two_days(account: tuple[LocalGuardrail, Remediation]) -> None:
    local, scenario = account
    before = time.time()
    local.invoke(scenario.function, scenario.drift())
    items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
    stages = sorted(item["id"]["S"].split("#")[0].rsplit(".", 1)[1] for item in items)
    assert stages == ["act_once", "alert_once", "intent"]  # acting, each email, and what the run was doing
    for item in items:
        if item["id"]["S"].startswith(runtime.INTENT_PREFIX):
            assert before + 24 * 3600 < int(item["expiration"]["N"]) <= time.time() + 2 * 24 * 3600 + 1
            continue
        assert item["status"]["S"] == "COMPLETED"
        expires = int(item["expiration"]["N"])  # the table's TTL attribute (template: TimeToLiveSpecification)
        assert before + 24 * 3600 < expires <= time.time() + 2 * 24 * 3600 + 1
        # A run that dies mid-way (timeout) leaves a record that lapses with the function's timeout.
        assert int(item["in_progress_expiration"]["N"]) <= (time.time() + 60) * 1000


def test_idempotency_table_has_ttl_encryption_and_the_key_powertools_uses() -> None:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    table = STACK.resources["IdempotencyTable"]["Properties"]
    layer = DynamoDBPersistenceLayer(table_name="t", boto3_client=object())  # type: ignore[arg-type]
    assert table["TimeToLiveSpecification"] == {"AttributeName": layer.expiry_attr, "Enabled": True}
    assert table["KeySchema"] == [{"AttributeName": layer.key_attr, "KeyType": "HASH"}]
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    env = STACK.functions()["AdminDriftFunction"].environment
    assert env["IDEMPOTENCY_TABLE"] == STACK.resolve(table["TableName"])


@pytest.mark.parametrize("account", SCENARIOS, indirect=True)
def test_table_gone_still_remediates_and_says_so(account: tuple[LocalGuardrail, Remediation]) -> None:
    local, scenario = account
    boto3.client("dynamodb").delete_table(TableName=TABLE)
    inv = local.invoke(scenario.function, scenario.drift())

    assert inv.error is None
    assert writes(inv) == [scenario.write] and publishes(inv) == 1 and scenario.fixed()
    assert metrics(inv)["IdempotencyUnavailable"] == 2  # the act record and the email record
    warnings = [line["message"] for line in log_lines(inv, "WARNING")]
    assert "idempotency table unavailable: acting without duplicate protection" in warnings


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "InternalServerError",
                                  "AccessDeniedException"])
def test_dynamodb_refusing_still_remediates(account: tuple[LocalGuardrail, Remediation], code: str) -> None:
    local, scenario = account
    event = scenario.drift()
    with inject_errors({"PutItem": code}):
        inv = local.invoke(scenario.function, event)
    assert inv.error is None
    assert writes(inv) == [scenario.write] and publishes(inv) == 1 and scenario.fixed()
    assert metrics(inv)["IdempotencyUnavailable"] == 2


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
def test_record_not_saved_after_acting_never_acts_twice(account: tuple[LocalGuardrail, Remediation]) -> None:
    local, scenario = account
    event = scenario.drift()
    # Acting done, its record's "completed" not saved (the alert records, written meanwhile, are saved).
    with inject_errors({"UpdateItem": "InternalServerError"}, times=1,
                       when=lambda params: ".act_once#" in json.dumps(params.get("Key", {}))):
        first = local.invoke(scenario.function, event)
    assert first.error is None and writes(first) == [scenario.write] and publishes(first) == 1
    assert "idempotency record not saved after acting: a duplicate would be handled again" in [
        line["message"] for line in log_lines(first, "WARNING")]
    assert metrics(first)["IdempotencyUnavailable"] == 1

    # A duplicate meanwhile finds the record still "in progress": it fails, so Lambda retries it later.
    second = local.invoke(scenario.function, event)
    assert second.error is not None and second.error.startswith("DuplicateInProgress")
    assert writes(second) == [] and publishes(second) == 0

    # Once the in-progress record lapses (the function's timeout), the retry judges again: the account
    # is already back in the baseline, so it writes nothing.
    table = dynamodb_backends[ACCOUNT_ID][REGION].get_table(TABLE)
    for item in table.all_items():
        if "in_progress_expiration" in item.attrs:
            item.attrs["in_progress_expiration"].value = "0"
    third = local.invoke(scenario.function, event)
    assert third.error is None and writes(third) == [] and scenario.fixed()


# --- 2 and 4. alerts that cannot be published --------------------------------------------------


@pytest.mark.parametrize("account", SCENARIOS, indirect=True)
def test_publish_failure_keeps_the_fix_fails_the_run_and_the_retry_sends_only_the_email(
        account: tuple[LocalGuardrail, Remediation]) -> None:
    local, scenario = account
    event = scenario.drift()
    with inject_errors({"Publish": "InternalError"}):
        first = local.invoke(scenario.function, event)

    # The remediation happened; the run fails AFTER acting, so Lambda retries and then queues it.
    assert scenario.fixed() and writes(first) == [scenario.write]
    assert first.error is not None and first.error.startswith("AlertDeliveryError")
    assert metrics(first)["AlertPublishFailed"] == 1 and metrics(first)["Remediations"] >= 1
    assert "alert publish failed" in [line["message"] for line in log_lines(first, "ERROR")]
    lost = [c.params for c in first.calls if c.name == "sns:Publish"]

    # Lambda's retry: no second remediation, and the very email that was lost is sent.
    retry = local.invoke(scenario.function, event)
    assert retry.error is None and writes(retry) == []
    sent = [c.params for c in retry.calls if c.name == "sns:Publish"]
    assert sent == lost and "[DONE]" in retry.notifications[0]["message"]

    # Later duplicates: nothing at all.
    again = local.invoke(scenario.function, event)
    assert again.error is None and writes(again) == [] and publishes(again) == 0


def _two_findings(event: Any, settings: Any, verdict: Any) -> list[Finding]:
    done = Action("Detach AdministratorAccess", "group administrators", Status.SUCCEEDED, undo="aws iam ...")
    return [Finding.for_event(event, id=f"finding-{n}", severity=Severity.HIGH, summary=f"Finding {n}",
                              actions=[done]) for n in (1, 2)]


def test_only_the_alert_that_failed_is_sent_again() -> None:
    """Two findings, the first publish fails: the retry sends the first only, the second never twice."""
    with baseline_account() as local:
        function = local.functions["AdminDriftFunction"]
        handler = runtime.make_handler(_two_findings)
        event = iam_event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMINISTRATOR_ACCESS})
        with local.environment(function):
            runtime.settings.cache_clear()
            runtime._idempotent.cache_clear()
            aws.client.cache_clear()
            with inject_errors({"Publish": "InternalError"}, times=1) as failed, \
                    pytest.raises(runtime.AlertDeliveryError, match="1 of 2 alert"):
                handler(event, local.context("AdminDriftFunction"))
            assert failed == ["Publish"]
            from guardrail_cli.recorder import record_calls
            with record_calls() as calls:
                result = handler(event, local.context("AdminDriftFunction"))
            subjects = [c.params["Subject"] for c in calls.of("sns:Publish")]
            assert subjects == ["[HIGH] Finding 1 by bob - 123456789012"]
            assert len(result["published"]) == 2 and result["duplicate"] is True
            runtime.settings.cache_clear()


# --- 2. a remediation that fails says what failed and what to do --------------------------------


@pytest.mark.parametrize("account", SCENARIOS, indirect=True)
def test_refused_remediation_emails_the_missing_permission_and_the_manual_step(
        account: tuple[LocalGuardrail, Remediation]) -> None:
    local, scenario = account
    event = scenario.drift()
    operation = scenario.write.split(":")[1]
    with inject_errors({operation: "AccessDenied"}):
        inv = local.invoke(scenario.function, event)

    assert inv.error is None  # retrying cannot grant a permission: alert, do not crash-loop
    assert not scenario.fixed()
    assert [a["status"] for a in inv.actions if a["status"] != "skipped"] == ["failed"]
    assert metrics(inv)["RemediationsFailed"] == 1
    email = " ".join(inv.notifications[0]["message"].split())
    assert "[FAILED]" in email
    assert "the guardrail lacks" in email and operation in email  # what failed, and why
    assert "by hand" in email  # what the owner does instead


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
def test_a_read_refused_inside_the_judge_becomes_an_alert_not_a_crash(
        account: tuple[LocalGuardrail, Remediation]) -> None:
    local, scenario = account
    event = scenario.drift()
    with inject_errors({"ListAttachedGroupPolicies": "AccessDenied", "GetGroup": "AccessDenied",
                        "ListGroupPolicies": "AccessDenied"}):
        inv = local.invoke(scenario.function, event)
    assert inv.error is None and writes(inv) == []
    assert publishes(inv) == 1
    email = " ".join(inv.notifications[0]["message"].split())
    assert "lacks" in email and "permission" in email


# --- 4. throttling and already-fixed ----------------------------------------------------------


def test_clients_use_standard_retries() -> None:
    with local_aws():
        aws.client.cache_clear()
        for service in ("iam", "sns", "cloudtrail", "dynamodb"):
            # botocore counts the first attempt too: 5 retries = 6 attempts.
            assert aws.client(service).meta.config.retries == {"mode": "standard", "total_max_attempts": 6}
        aws.client.cache_clear()


@pytest.mark.parametrize("account", SCENARIOS, indirect=True)
def test_throttled_write_is_retried_and_remediates(account: tuple[LocalGuardrail, Remediation],
                                                   fast_retries: None) -> None:
    local, scenario = account
    event = scenario.drift()
    service, operation = scenario.write.split(":")
    with http_errors({f"{service}.{operation}": ("Throttling" if service == "iam" else "ThrottlingException", 400)},
                     times=2) as throttled:
        inv = local.invoke(scenario.function, event)
    assert throttled == [f"{service}.{operation}"] * 2  # refused twice on the wire...
    assert inv.error is None and scenario.fixed()  # ...and done on the third attempt
    assert writes(inv) == [scenario.write]  # one call from the code's point of view
    assert [a["status"] for a in inv.actions if a["status"] != "skipped"] == ["succeeded"]


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
def test_throttling_past_the_retries_fails_the_run_and_the_retry_remediates(
        account: tuple[LocalGuardrail, Remediation], fast_retries: None) -> None:
    local, scenario = account
    event = scenario.drift()
    read = "iam.ListAttachedGroupPolicies"
    with http_errors({read: ("Throttling", 400)}, times=6):
        first = local.invoke(scenario.function, event)
    assert first.error is not None and "Throttling" in first.error  # Lambda retries it (then the queue)
    assert writes(first) == [] and publishes(first) == 0
    retry = local.invoke(scenario.function, event)  # the act record was cleared: judged afresh
    assert retry.error is None and writes(retry) == [scenario.write] and scenario.fixed()


@contextlib.contextmanager
def after_the_call(operation: str, then: BaseException) -> Iterator[None]:
    """`operation` is made (the account changes), then `then` is raised in its place: what an answer
    lost on the way back, or a run killed right after the call, looks like to the code."""
    from botocore.client import BaseClient

    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def made_then_raised(self: Any, op: str, params: dict[str, Any]) -> Any:
        answer = original(self, op, params)
        if op == operation:
            raise then
        return answer

    BaseClient._make_api_call = made_then_raised  # type: ignore[method-assign,attr-defined]
    try:
        yield
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign,attr-defined]


def detached_by_someone_else_first() -> contextlib.AbstractContextManager[None]:
    """DetachGroupPolicy answers NoSuchEntity because someone detached the policy a moment before."""
    from botocore.exceptions import ClientError

    return after_the_call("DetachGroupPolicy", ClientError(
        {"Error": {"Code": "NoSuchEntity", "Message": "not attached"}}, "DetachGroupPolicy"))


def test_policy_already_detached_is_success_without_a_false_alarm() -> None:
    scenario = remediation("admin-policy-on-group")
    with baseline_account() as local:
        event = scenario.drift()
        with detached_by_someone_else_first():
            inv = local.invoke(scenario.function, event)
        assert scenario.fixed()
    assert inv.error is None
    assert [a["status"] for a in inv.actions if a["status"] != "skipped"] == ["succeeded"]
    assert metrics(inv)["RemediationsFailed"] == 0
    email = inv.notifications[0]["message"]
    assert "[FAILED]" not in email and "lacks" not in email and "already gone" in email


def test_an_inconsistent_no_such_entity_is_re_read_never_reported_undone() -> None:
    """Issue 13 (10): IAM answers NoSuchEntity (eventual consistency) while the policy is still attached.
    Before: "[HIGH] Undone" with AdministratorAccess still on the group. Now the run fails (Lambda retries),
    no email claims anything, and the retry removes it."""
    scenario = remediation("admin-policy-on-group")
    with baseline_account() as local:
        event = scenario.drift()
        with inject_errors({"DetachGroupPolicy": "NoSuchEntity"}, times=1):
            first = local.invoke(scenario.function, event)
        assert first.error is not None and "RaceError" in first.error
        assert publishes(first) == 0 and not scenario.fixed()
        retry = local.invoke(scenario.function, event)
        assert retry.error is None and scenario.fixed()
        assert retry.notifications[0]["subject"].startswith("[HIGH] Undone")


@pytest.mark.parametrize("filler", ["x", "\U0001f525"])
def test_an_alert_echoing_huge_input_is_clipped_to_fit_sns(filler: str) -> None:
    """A finding quoting a 400,000-character request parameter is still delivered (clipped)."""
    def echo(event: Any, settings: Any, verdict: Any) -> list[Finding]:
        return [Finding.for_event(event, id="echo", severity=Severity.HIGH, summary="Echo",
                                  what_happened=event.param("description"))]

    with baseline_account() as local:
        function = local.functions["AdminDriftFunction"]
        # A parameter parse_event does not check (a policyName this long is refused as malformed: IAM's is 1-128).
        event = iam_event("PutGroupPolicy", {"groupName": "administrators", "policyName": "echo",
                                             "description": filler * 400_000})
        with local.environment(function):
            runtime.settings.cache_clear()
            aws.client.cache_clear()
            from guardrail_cli.recorder import record_calls
            with record_calls() as calls:
                result = runtime.make_handler(echo)(event, local.context("AdminDriftFunction"))
            runtime.settings.cache_clear()
    (publish,) = calls.of("sns:Publish")
    assert len(result["published"]) == 1
    assert len(publish.params["Message"].encode()) <= runtime.SNS_MESSAGE_LIMIT
    body = json.loads(publish.params["Message"])
    assert body["email"].endswith("the function's log has the whole finding]")
    assert json.loads(body["default"])["guardrail_finding"]["clipped"] is True


def test_a_bug_in_a_judge_is_an_alert_not_a_crash_loop() -> None:
    def broken(event: Any, settings: Any, verdict: Any) -> list[Finding]:
        raise KeyError("requestParameters")

    with local_aws():
        cfg = load_settings({"ACCOUNT_ID": ACCOUNT_ID, "ALERT_TOPIC_ARN": ""})
        event = iam_event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMINISTRATOR_ACCESS})
        parsed = parse_event(event)
        acted = runtime.act(parsed, triage(parsed, cfg), broken, cfg)
    assert acted["outcome"]["status"] == "failed"
    assert acted["outcome"]["findings"][0]["id"] == "guardrail-error"
    assert "check by hand" in acted["alerts"][0]["Message"]


# --- 2. the template: retries, failure queue, alarms -------------------------------------------


def _events(function: str) -> dict[str, Any]:
    return dict(STACK.resources[function]["Properties"].get("Events", {}))


DETECTORS = [f for f in STACK.functions() if f != "SetupFunction"]
QUEUE_ARN = STACK.get_att("FailureQueue", "Arn")


@pytest.mark.parametrize("function", DETECTORS)
def test_every_rule_retries_for_a_day_then_dead_letters(function: str) -> None:
    events = _events(function)
    assert events, f"{function} has no trigger"
    for name, event in events.items():
        props = STACK.resolve(event["Properties"])
        assert event["Type"] in ("EventBridgeRule", "ScheduleV2"), name
        retry = props["RetryPolicy"]
        assert retry["MaximumRetryAttempts"] >= 3, name
        assert retry["MaximumEventAgeInSeconds"] >= 3600, name
        assert props["DeadLetterConfig"] == {"Arn": QUEUE_ARN}, name
        if event["Type"] == "EventBridgeRule":
            assert retry["MaximumEventAgeInSeconds"] == 86400, name  # EventBridge's longest
            # The queue policy lets exactly our rules dead-letter into it.
            assert props["RuleName"].startswith(f"{STACK.stack_name}-")


@pytest.mark.parametrize("function", DETECTORS)
def test_every_detector_retries_async_failures_then_queues_them(function: str) -> None:
    config = STACK.resolve(STACK.resources[function]["Properties"]["EventInvokeConfig"])
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] >= 3600
    assert config["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": QUEUE_ARN}


def test_failure_queue_is_encrypted_keeps_14_days_and_accepts_only_our_rules() -> None:
    queue = STACK.resources["FailureQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in queue
    (statement,) = STACK.resolve(STACK.resources["FailureQueuePolicy"]["Properties"]["PolicyDocument"])["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and statement["Resource"] == QUEUE_ARN
    assert statement["Condition"]["ArnLike"]["aws:SourceArn"] == (
        f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{STACK.stack_name}-*")


def _alarms() -> dict[str, dict[str, Any]]:
    return {k: STACK.resolve(r["Properties"]) for k, r in STACK.resources.items()
            if r["Type"] == "AWS::CloudWatch::Alarm"}


def _watched(alarm: dict[str, Any]) -> set[tuple[str, str]]:
    """(metric name, function name) pairs an alarm watches."""
    stats = [m["MetricStat"]["Metric"] for m in alarm.get("Metrics", []) if "MetricStat" in m]
    if "MetricName" in alarm:
        stats.append({"MetricName": alarm["MetricName"], "Dimensions": alarm.get("Dimensions", [])})
    return {(s["MetricName"], d["Value"]) for s in stats for d in s.get("Dimensions", [])
            if d["Name"] == "FunctionName"}


def test_alarms_watch_every_function_and_the_queue_and_notify_the_topic() -> None:
    alarms = _alarms()
    topic = STACK.ref("AlertTopic")
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [topic], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", name
        # CloudWatch's limits per alarm: 20 queries, of which at most 10 read a metric.
        assert len(alarm.get("Metrics", [])) <= 20, name
        assert sum("MetricStat" in m for m in alarm.get("Metrics", [])) <= 10, name
    watched = set().union(*(_watched(a) for a in alarms.values()))
    for function in STACK.functions().values():
        assert ("Errors", function.name) in watched, function.logical_id
        assert ("Throttles", function.name) in watched, function.logical_id
    queue_alarms = [a for a in alarms.values() if a.get("Namespace") == "AWS/SQS"]
    assert [a["MetricName"] for a in queue_alarms] == ["ApproximateNumberOfMessagesVisible"]
    assert queue_alarms[0]["Dimensions"] == [{"Name": "QueueName", "Value": STACK.get_att("FailureQueue", "QueueName")}]
    own = {a["MetricName"] for a in alarms.values() if a.get("Namespace") == runtime.NAMESPACE}
    assert {"AlertPublishFailed", "IdempotencyUnavailable"} <= own
    for alarm in alarms.values():
        if alarm.get("Namespace") == runtime.NAMESPACE:  # powertools' default dimension
            assert alarm["Dimensions"] == [{"Name": "service", "Value": runtime.SERVICE}]


def test_the_alerts_topic_lets_alarms_publish() -> None:
    (statement,) = STACK.resolve(STACK.resources["AlertTopicPolicy"]["Properties"]["PolicyDocument"])["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and statement["Action"] == "sns:Publish"
    key = STACK.resolve(STACK.resources["AlertKey"]["Properties"]["KeyPolicy"])["Statement"]
    assert any(s["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and "kms:Decrypt" in s["Action"] for s in key)



# --- 5. a transient refusal of a WRITE fails the run; findings survive the run that made them ----


@pytest.mark.parametrize("account", SCENARIOS, indirect=True)
def test_write_throttled_past_the_retries_fails_the_run_never_reports_failed(
        account: tuple[LocalGuardrail, Remediation], fast_retries: None) -> None:
    """Issue 13, item 2: throttling or a 5xx on the remediation write is retried by Lambda, like a read."""
    local, scenario = account
    event = scenario.drift()
    service, operation = scenario.write.split(":")
    for code, status in (("Throttling" if service == "iam" else "ThrottlingException", 400),
                         ("ServiceUnavailable", 503)):
        with http_errors({f"{service}.{operation}": (code, status)}, times=6):
            first = local.invoke(scenario.function, event)
        assert first.error is not None and not scenario.fixed()  # the run fails: Lambda retries it
        assert publishes(first) == 0  # no "[FAILED]" email for what a retry can fix
    retry = local.invoke(scenario.function, event)
    assert retry.error is None and writes(retry) == [scenario.write] and scenario.fixed()
    assert [a["status"] for a in retry.actions if a["status"] != "skipped"] == ["succeeded"]


class Killed(BaseException):
    """Lambda's timeout: the process stops, nothing after the write runs (no except clause sees it)."""


def killed_after(operation: str) -> contextlib.AbstractContextManager[None]:
    return after_the_call(operation, Killed(operation))


def _lapse_in_progress_records() -> None:
    """What the function's timeout does to a killed run's record: it lapses, so the retry judges afresh."""
    table = dynamodb_backends[ACCOUNT_ID][REGION].get_table(TABLE)
    for item in table.all_items():
        if "in_progress_expiration" in item.attrs:
            item.attrs["in_progress_expiration"].value = "0"


def _email(inv: Any) -> tuple[str, str]:
    (note,) = inv.notifications
    return note["subject"], " ".join(note["message"].split())


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
def test_a_run_killed_after_its_write_still_reports_who_did_what(
        account: tuple[LocalGuardrail, Remediation]) -> None:
    """Issue 13, item 3: the retry finds the account compliant and still tells the owner."""
    local, scenario = account
    event = scenario.drift()
    with killed_after("DetachGroupPolicy"), pytest.raises(Killed):
        local.invoke(scenario.function, event)
    assert scenario.fixed()  # the write took effect; nobody was told
    _lapse_in_progress_records()

    retry = local.invoke(scenario.function, event)

    assert retry.error is None and writes(retry) == []
    subject, text = _email(retry)
    assert subject.startswith("[HIGH] Undone:") and "by bob" in subject
    assert "AdministratorAccess" in subject
    assert "An earlier attempt of the guardrail started judging this event" in text
    assert "admin rights could be had without the MFA-protected role admin-mfa" in text


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
def test_a_drift_closed_before_it_is_judged_is_reported_with_its_window(
        account: tuple[LocalGuardrail, Remediation]) -> None:
    """Issue 13, item 4: attach, then detach before the guardrail reads: admin was open; say so."""
    local, scenario = account
    event = scenario.drift()
    boto3.client("iam").detach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)

    inv = local.invoke(scenario.function, event)

    assert inv.error is None and writes(inv) == []
    subject, text = _email(inv)
    assert subject.startswith("[HIGH] Closed before judged:") and "IAM user bob made this change" in text
    assert f"It was open from {event['detail']['eventTime']} until, at the latest," in text


@pytest.mark.parametrize("account", SCENARIOS[:1], indirect=True)
def test_two_drifts_of_one_group_in_quick_succession_name_both_actors(
        account: tuple[LocalGuardrail, Remediation]) -> None:
    """Issue 13, item 5: the first run fixes both; the second actor is still named, in its own email."""
    local, _ = account
    iam = boto3.client("iam")
    iam.attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    first_event = iam_event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMINISTRATOR_ACCESS},
                            actor="bob")
    iam.put_group_policy(GroupName="administrators", PolicyName="everything", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    second_event = iam_event("PutGroupPolicy", {"groupName": "administrators", "policyName": "everything",
                                                "policyDocument": "{}"}, actor="mallory")

    first = local.invoke("AdminDriftFunction", first_event)
    second = local.invoke("AdminDriftFunction", second_event)

    assert sorted(writes(first)) == ["iam:DeleteGroupPolicy", "iam:DetachGroupPolicy"]  # both fixed at once
    assert writes(second) == []
    assert "IAM user bob made this change" in _email(first)[1]
    subject, text = _email(second)
    assert "Closed before judged" in subject and "IAM user mallory made this change" in text
