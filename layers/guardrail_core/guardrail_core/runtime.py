"""The plumbing every detector shares: parse, triage, de-duplicate, judge, alert, report.

A detector supplies one function, `judge(event, settings, verdict) -> list[Finding]`,
that decides and acts through adapters. This module turns it into a Lambda handler that:

- never raises for input that retrying cannot fix (it logs why, counts it, and returns);
- acts at most once per EventBridge event id and emails at most once per finding
  (powertools idempotency, DynamoDB), and keeps working, louder in the log, when the
  table is unavailable;
- raises after acting when an alert could not be published, so Lambda retries and then
  sends the event to the failure queue; a retry re-sends only the undelivered alerts and
  never repeats the remediation.

Two idempotency stages, both keyed on the CloudTrail record (account and detail.eventID;
the EventBridge envelope id when a record has none), so a record is judged once however
many envelopes carry it (redelivery, forwarding between buses or regions):
  act   - triage's survivors go through `judge` once; the record keeps the result AND the
          rendered alerts, so a retry can re-send them without judging again (re-judging
          would find the account already fixed and the email about the fix would be lost);
  alert - each rendered alert is published once ("<record key>#<hash of the message>"); a
          failed publish clears its record, so only that alert is tried again.

One critical path (issue 16): the act record is written WHILE the judge reads, and so is an
"intent" record (what the event did, and that this run is judging it); the judge's first AWS
write waits at a gate (aws.WriteGate) until both are saved, and is refused if the act record
shows a duplicate. A run killed after its write leaves the intent behind: the retry, finding
the account compliant, learns from `previous_attempt()` that an earlier run was acting.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ParamValidationError

from guardrail_core import alerts, security_hub
from guardrail_core.aws import (
    WriteGate,
    WritesRefusedError,
    client,
    error_code,
    gated,
    is_access_denied,
    is_transient,
)
from guardrail_core.config import Settings, load_settings
from guardrail_core.events import CloudTrailEvent, MalformedEvent, parse_event
from guardrail_core.findings import Finding, Severity, Status, who
from guardrail_core.triage import Triage, Verdict, triage

SERVICE = "account-guardrail"
NAMESPACE = "AccountGuardrail"
IDEMPOTENCY_SECONDS = 2 * 24 * 3600  # EventBridge retries for up to 24 h, Lambda for up to 6 h more

# What the shared plumbing itself calls, for the least-privilege test (every detector's role
# needs these besides its own adapters' actions). The setup function publishes only.
PUBLISH_ACTIONS = frozenset({"sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"})
LOG_ACTIONS = frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})
IDEMPOTENCY_ACTIONS = frozenset({"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                 "dynamodb:DeleteItem"})
ON_FAILURE_ACTIONS = frozenset({"sqs:SendMessage"})  # Lambda sends failed async events with the function's role

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))

Judge = Callable[[CloudTrailEvent, Settings, Triage], list[Finding]]


class AlertDeliveryError(RuntimeError):
    """Acting succeeded but an alert could not be published: retry/DLQ/alarm territory."""


class DuplicateInProgress(RuntimeError):
    """Another invocation is handling the same event right now: fail, so Lambda retries later."""


@dataclass
class Outcome:
    status: str  # "handled", "ignored", "malformed", "failed"
    reason: str = ""
    findings: list[Finding] = field(default_factory=list)
    published: list[str] = field(default_factory=list)  # SNS message ids

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "findings": [
                {"id": f.id, "severity": f.severity.value, "summary": f.summary} for f in self.findings
            ],
            "actions": [
                {"name": a.name, "target": a.target, "status": a.status.value, "detail": a.detail}
                for f in self.findings for a in f.actions
            ],
            "published": self.published,
        }


@cache
def settings() -> Settings:
    return load_settings()


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


# --- alerts ---------------------------------------------------------------------------------


SNS_MESSAGE_LIMIT = 256 * 1024  # bytes; SNS refuses longer messages
_ROOM = 200_000  # characters of email kept at most when clipping


def _fit(message: dict[str, str], finding: Finding) -> dict[str, str]:
    """An alert echoing hostile input (huge parameters) must still fit SNS: clip it, say so."""
    if len(message["Message"].encode()) <= SNS_MESSAGE_LIMIT - 1024:
        return message
    logger.warning("alert too long for SNS: clipped", extra={"finding": finding.id, "bytes": len(message["Message"])})
    original = json.loads(message["Message"])
    email, chat = original["email"], original.get("https", "")  # the chat card is bounded: kept whole
    note = "\n\n[... clipped: this alert was too long for SNS; the function's log has the whole finding]"
    brief = {"id": finding.id, "severity": finding.severity.value, "summary": finding.summary[:1000],
             "account_id": finding.account_id, "event_id": finding.event_id[:200], "clipped": True}
    room = _ROOM
    while True:  # JSON escapes non-ASCII (up to 12 bytes a character): measure what is sent
        body = json.dumps({"default": json.dumps({"schema_version": alerts.SCHEMA_VERSION, "guardrail_finding": brief},
                                                 sort_keys=True),
                           "email": email[:room] + note, **({"https": chat} if chat else {})})
        if len(body.encode()) <= SNS_MESSAGE_LIMIT - 1024:
            return {**message, "Message": body}
        room //= 2


def render_alerts(findings: list[Finding], cfg: Settings) -> list[dict[str, str]]:
    """The sns.publish arguments for each finding (stored, so a retry re-sends the same email)."""
    for finding in findings:
        finding.mode = finding.mode or ("kill switch on: notify only" if cfg.kill_switch else cfg.mode)
    return [_fit(alerts.sns_message(finding), finding) for finding in findings]


def _digest(message: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()[:32]


def deliver_alerts(messages: list[dict[str, str]], cfg: Settings, *, key: str = "", context: Any = None) -> list[str]:
    """Publish each message (once per event `key` and message content, when a key is given); returns ids.

    Tries every message, then raises AlertDeliveryError if any failed: the caller has
    already acted, and the raise is what makes Lambda retry and, at last, queue the event.
    """
    ids: list[str] = []
    failures: list[str] = []
    for message in messages:
        def publish(message: dict[str, str] = message) -> dict[str, str]:
            response = client("sns").publish(TopicArn=cfg.alert_topic_arn, **message)
            return {"message_id": str(response.get("MessageId", ""))}

        try:
            sent, _ = at_most_once("alert", f"{key}#{_digest(message)}" if key else "", publish, cfg, context)
            ids.append(str(sent.get("message_id", "")))
        except DuplicateInProgress:  # a concurrent duplicate is sending it (and retries if that fails)
            continue
        except Exception as exc:  # any failure: the remediation already happened, keep going
            logger.exception("alert publish failed", extra={"subject": message.get("Subject", "")})
            _count("AlertPublishFailed")
            failures.append(f"{message.get('Subject', '')!r}: {error_code(exc)}: {exc}")
    security_hub.import_alerts(messages, cfg, _count)  # SecurityHubFindings=true only; never raises
    if failures:
        raise AlertDeliveryError(f"{len(failures)} of {len(messages)} alert(s) not published: " + "; ".join(failures))
    return ids


def publish_findings(findings: list[Finding], cfg: Settings) -> list[str]:
    """Publish each finding; returns message ids. Raises AlertDeliveryError after trying all."""
    return deliver_alerts(render_alerts(findings, cfg), cfg)


def _record_metrics(findings: list[Finding]) -> None:
    for finding in findings:
        _count("Findings")
        for action in finding.actions:
            if action.status is Status.SUCCEEDED:
                _count("Remediations")
            elif action.status is Status.FAILED:
                _count("RemediationsFailed")


def _by_hand(findings: list[Finding]) -> None:
    """Every failed remediation tells the owner what is left to do by hand."""
    for finding in findings:
        failed = [a for a in finding.actions if a.status is Status.FAILED]
        if not failed:
            continue
        what = "; ".join(f"{a.name} ({a.target})" for a in failed)
        finding.next_steps.insert(0, (
            f"The guardrail could not finish: {what}. Make that change by hand (why it failed is shown "
            "under FAILED above); until then the account stays as the event left it."
        ))


# --- one event ------------------------------------------------------------------------------


def screen(raw: Any, cfg: Settings, regions: Collection[str] | None = None) -> tuple[CloudTrailEvent, Triage] | Outcome:
    """Parse and triage (pure, cheap): the event to judge, or the Outcome of not judging it."""
    try:
        event = parse_event(raw)
    except MalformedEvent as exc:
        logger.warning("malformed event ignored", extra={"reason": str(exc)})
        _count("MalformedEvents")
        return Outcome("malformed", str(exc))
    logger.append_keys(event_name=event.event_name, cloudtrail_event_id=event.event_id)
    verdict = triage(event, cfg, regions=regions)
    if verdict.ignored:
        logger.info("event ignored", extra={"reason": verdict.reason})
        _count("IgnoredEvents")
        return Outcome("ignored", verdict.reason)
    if verdict.verdict is not Verdict.ACT:
        logger.info("event judged without remediation", extra={"reason": verdict.reason})
    return event, verdict


def _failure_finding(event: CloudTrailEvent, exc: BaseException) -> Finding:
    """The email for an event the guardrail could not judge, so a bug or a missing permission is not silent."""
    code = error_code(exc)
    if is_access_denied(exc):
        why = (f"AWS refused the guardrail a call it needs ({code}: {exc}). The guardrail lacks a permission: "
               "redeploy the stack's template, or check its roles' policies were not changed.")
        finding_id = "guardrail-permission-missing"
        summary = f"Guardrail lacks a permission to judge {event.event_name}"
    else:
        why = f"The guardrail failed while judging this event ({code}: {exc}). This is a bug; please report it."
        finding_id, summary = "guardrail-error", f"Guardrail could not judge {event.event_name}"
    return Finding.for_event(
        event, id=finding_id, severity=Severity.HIGH, summary=summary,
        what_happened=f"{who(event)} called {event.event_name}. {why}",
        next_steps=[f"Look up CloudTrail event {event.event_id or event.id} and check by hand whether it changed "
                    "anything the guardrail protects; invoke the setup function with {\"dry_run\": true} to see "
                    "any drift from the baseline."],
        links=[alerts.cloudtrail_link(event.aws_region or event.region, event.event_id)] if event.event_id else [],
    )


def act(event: CloudTrailEvent, verdict: Triage, judge: Judge, cfg: Settings) -> dict[str, Any]:
    """Judge once: the outcome, and the alerts rendered from it (what the act record keeps).

    Transient AWS errors (throttling past the client's retries, 5xx, timeouts) are raised:
    Lambda retries the event later. Anything else (AccessDenied, a bug, input the judge did
    not expect) cannot be fixed by retrying: it becomes an alert instead.
    """
    status = "handled"
    try:
        findings = judge(event, cfg, verdict)
    except ParamValidationError as exc:  # input IAM would refuse (a name or ARN of the wrong shape)
        logger.warning("malformed event ignored", extra={"reason": f"a request parameter IAM would refuse: {exc}"})
        _count("MalformedEvents")
        return {"outcome": Outcome("malformed", f"a request parameter IAM would refuse: {exc}").to_dict(),
                "alerts": []}
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, WritesRefusedError):
            raise
        logger.exception("judge failed")
        _count("JudgeFailed")
        findings, status = [_failure_finding(event, exc)], "failed"
    _by_hand(findings)
    _record_metrics(findings)
    for finding in findings:
        logger.info("finding", extra={"finding": finding.to_dict()})
    return {"outcome": Outcome(status, verdict.reason, findings).to_dict(), "alerts": render_alerts(findings, cfg)}


def process_event(
    raw: Any,
    judge: Judge,
    *,
    regions: Collection[str] | None = None,
    cfg: Settings | None = None,
    context: Any = None,
) -> dict[str, Any]:
    """Screen, judge (once per event id) and alert (once per finding); the handler's result."""
    cfg = cfg or settings()
    screened = screen(raw, cfg, regions)
    if isinstance(screened, Outcome):
        return screened.to_dict()
    event, verdict = screened
    key = record_key(event)
    early: list[Future[list[str]]] = []
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alert")

    def send_early(result: Mapping[str, Any]) -> None:
        """The judgement is done: its alerts go out while the act record is being completed."""
        early.append(sender.submit(contextvars.copy_context().run, deliver_alerts, list(result["alerts"]), cfg,
                                   key=key, context=context))

    try:
        acted, how = act_once(key, event, verdict, judge, cfg, context, on_judged=send_early)
    finally:
        sender.shutdown(wait=True)  # never leave a publish running past the handler
    if how == REPLAYED:
        logger.info("duplicate delivery: already judged, remediation not repeated")
        _count("DuplicateEvents")
    outcome: dict[str, Any] = dict(acted["outcome"])
    outcome["published"] = early[0].result() if early else deliver_alerts(list(acted["alerts"]), cfg, key=key,
                                                                          context=context)
    if how == REPLAYED:
        outcome["duplicate"] = True
    return outcome


# --- one record, one judgement: the act stage, overlapped with the judge's reads -------------


def record_key(event: CloudTrailEvent) -> str:
    """The duplicate-protection key: the CloudTrail record, else the envelope id.

    A record is its account and `eventID` (a GUID CloudTrail gives each event: "eventID", CloudTrail
    record contents, AWS CloudTrail User Guide), with its name and time, which a copy delivered in
    another envelope (forwarded between buses, redelivered) keeps, and which keep records told apart
    whose eventID was anonymised or reused by whoever published them.
    """
    if not event.event_id:
        return event.id
    return f"{event.event_account}:{event.event_id}:{event.event_name}:{event.event_time}"


INTENT_PREFIX = f"{__name__}.intent"
_PREVIOUS: contextvars.ContextVar[Future[dict[str, Any] | None] | None] = contextvars.ContextVar(
    "previous_attempt", default=None)


def previous_attempt() -> dict[str, Any] | None:
    """The intent an earlier attempt of this invocation's record left ({'started': ISO time, ...}), or None.

    Call it only when deciding what to report (it waits for the intent record's write, which ran
    concurrently with the judge's reads). None outside a protected run, or when the table failed.
    """
    future = _PREVIOUS.get()
    return future.result() if future is not None else None


def _write_intent(table: str, key: str, event: CloudTrailEvent) -> dict[str, Any] | None:
    """Save 'this run is judging <record>' and return what an earlier attempt saved (ALL_OLD), if any."""
    now = time.time()
    item = {
        "id": {"S": f"{INTENT_PREFIX}#{key}"},
        "expiration": {"N": str(int(now) + IDEMPOTENCY_SECONDS)},
        "started": {"S": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))},
        "event": {"S": f"{event.event_name} by {event.identity.display} at {event.event_time}"[:1000]},
    }
    try:
        old = client("dynamodb").put_item(TableName=table, Item=item, ReturnValues="ALL_OLD").get("Attributes")
    except Exception as exc:  # the intent informs a retry; its loss must not stop the remediation
        logger.warning("intent record not saved", extra={"error": f"{error_code(exc)}: {exc}"})
        _count("IntentUnavailable")
        return None
    if not old:
        return None
    return {name: next(iter(value.values())) for name, value in old.items()}


def act_once(key: str, event: CloudTrailEvent, verdict: Triage, judge: Judge, cfg: Settings,
             context: Any = None, on_judged: Callable[[Mapping[str, Any]], None] | None = None) -> tuple[Any, str]:
    """`act` at most once per record, with the idempotency writes off the critical path.

    The judge starts at once, behind a write gate; meanwhile the act record (powertools) and the
    intent record are written. The gate opens when the act record is ours (or the table is down:
    act unprotected), and the first write also waits for the intent; on a duplicate it closes,
    and the judge's reads are dropped before anything is changed. `on_judged(result)` runs as soon
    as this run's judgement is done, before its act record is completed (the alerts go out
    meanwhile; a replayed duplicate never calls it).
    """
    if not cfg.idempotency_table:
        return act(event, verdict, judge, cfg), RAN
    gate = WriteGate()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="act")
    intent = pool.submit(_write_intent, cfg.idempotency_table, key, event)
    gate.also_wait_for(intent)

    def judged() -> dict[str, Any]:
        _PREVIOUS.set(intent)
        with gated(gate):
            return act(event, verdict, judge, cfg)

    judging = pool.submit(contextvars.copy_context().run, judged)

    def release() -> dict[str, Any]:
        gate.open()
        result = judging.result()
        if on_judged is not None:
            try:  # never let the alerts' start decide the act record: the remediation is done
                on_judged(result)
            except Exception:
                logger.exception("alerts not started early: sent after the act record instead")
        return result

    try:
        result, how = at_most_once("act", key, release, cfg, context)
    except BaseException:
        gate.close("the act record could not be taken (a duplicate in progress, or an error)")
        _drain(judging)
        pool.shutdown(wait=False)
        raise
    if how == REPLAYED:
        gate.close("duplicate delivery: already judged")
        _drain(judging)
    pool.shutdown(wait=False)
    return result, how


def _drain(judging: Future[Any]) -> None:
    """Let a dropped judgement finish (its writes refused at the gate); nothing of it is used."""
    try:
        judging.result()
    except Exception as exc:
        logger.info("dropped judgement ended", extra={"reason": f"{type(exc).__name__}: {exc}"[:500]})


# --- at most once per key -------------------------------------------------------------------

RAN, REPLAYED, UNPROTECTED = "ran", "replayed", "unprotected"


@cache
def _idempotent(table: str, stage: str) -> tuple[Callable[..., Any], Any]:
    """A powertools-idempotent runner for one stage (its own key prefix), and its config."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    config = IdempotencyConfig(
        event_key_jmespath="id",
        raise_on_no_idempotency_key=False,
        expires_after_seconds=IDEMPOTENCY_SECONDS,  # the record's `expiration` (the table's TTL attribute)
    )
    store = DynamoDBPersistenceLayer(table_name=table, boto3_client=client("dynamodb"))

    def run(*, event: dict[str, Any], work: Callable[[], Any]) -> Any:
        return work()

    run.__qualname__ = f"{stage}_once"  # the key prefix: each stage has its own records
    runner: Callable[..., Any] = idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="event", persistence_store=store, config=config,
    )(run)
    return runner, config


def at_most_once(stage: str, key: str, work: Callable[[], Any], cfg: Settings, context: Any = None) -> tuple[Any, str]:
    """Run `work` at most once per (stage, key): (result, RAN | REPLAYED | UNPROTECTED).

    When the table fails, act anyway and say so: a missed remediation is worse than a
    duplicate one. Never run `work` twice in one invocation.
    """
    if not cfg.idempotency_table or not key:
        return work(), RAN
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyPersistenceLayerError,
    )

    started: list[bool] = []
    results: list[Any] = []
    errors: list[BaseException] = []

    def tracked() -> Any:
        started.append(True)
        try:
            result = work()
        except BaseException as exc:
            errors.append(exc)
            raise
        results.append(result)
        return result

    runner, config = _idempotent(cfg.idempotency_table, stage)
    if context is not None and callable(getattr(context, "get_remaining_time_in_millis", None)):
        config.register_lambda_context(context)  # a crashed run's record expires with its timeout
    try:
        result = runner(event={"id": key}, work=tracked)
    except IdempotencyAlreadyInProgressError as exc:
        logger.warning("same event is being handled by another invocation: failing so Lambda retries later",
                       extra={"stage": stage})
        _count("DuplicateInProgress")
        raise DuplicateInProgress(f"{stage} {key}: {exc}") from exc
    except IdempotencyPersistenceLayerError as exc:
        _count("IdempotencyUnavailable")
        if results:  # the work is done; only recording it failed: do not act twice
            logger.warning("idempotency record not saved after acting: a duplicate would be handled again",
                           extra={"stage": stage, "error": str(exc)})
            return results[0], UNPROTECTED
        if errors:  # the work failed and its record could not be cleared: report the work's own error
            logger.warning("idempotency record not cleared after a failure", extra={"stage": stage, "error": str(exc)})
            raise errors[0] from exc
        logger.warning("idempotency table unavailable: acting without duplicate protection",
                       extra={"stage": stage, "error": str(exc)})
        return work(), UNPROTECTED
    return result, (RAN if started else REPLAYED)


def make_handler(judge: Judge, *, regions: Collection[str] | None = None) -> Callable[[Any, Any], dict[str, Any]]:
    """The Lambda entry point for a detector."""

    @metrics.log_metrics
    @logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
    def handler(event: Any, context: Any) -> dict[str, Any]:
        return process_event(event, judge, regions=regions, cfg=settings(), context=context)

    return handler


def attempt_finding(event: CloudTrailEvent, what: str) -> Finding:
    """The LOW note for a failed call: somebody tried, nothing changed."""
    return Finding.for_event(
        event,
        id="attempt",
        severity=Severity.LOW,
        summary=f"Refused: {event.event_name} ({what})",
        what_happened=(f"{who(event)} tried {event.event_name} ({what}) and AWS refused it with "
                       f"{event.error_code}. Nothing changed; no action was needed."),
        next_steps=["If you do not recognise this principal, review its recent activity in CloudTrail."],
    )
