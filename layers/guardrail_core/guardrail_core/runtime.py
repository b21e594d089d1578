"""The plumbing every detector shares: parse, triage, de-duplicate, judge, alert, report.

A detector supplies one function, `judge(event, settings, verdict) -> list[Finding]`,
that decides and acts through adapters. This module turns it into a Lambda handler that:

- never raises for input that retrying cannot fix (it logs why and returns);
- handles each EventBridge event id once (powertools idempotency, DynamoDB), and keeps
  working, louder in the log, when that table is unavailable;
- publishes one SNS message per finding, and raises after acting if a publish failed,
  so the event reaches the on-failure destination and an alarm fires.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from guardrail_core import alerts
from guardrail_core.aws import client
from guardrail_core.config import Settings, load_settings
from guardrail_core.events import CloudTrailEvent, MalformedEvent, parse_event
from guardrail_core.findings import Finding, Severity, Status
from guardrail_core.triage import Triage, Verdict, triage

SERVICE = "account-guardrail"
NAMESPACE = "AccountGuardrail"

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))

Judge = Callable[[CloudTrailEvent, Settings, Triage], list[Finding]]


class AlertDeliveryError(RuntimeError):
    """Acting succeeded but an alert could not be published: retry/DLQ/alarm territory."""


@dataclass
class Outcome:
    status: str  # "handled", "ignored", "malformed"
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


def publish_findings(findings: list[Finding], cfg: Settings) -> list[str]:
    """Publish each finding; returns message ids. Raises AlertDeliveryError after trying all."""
    ids: list[str] = []
    failures: list[str] = []
    for finding in findings:
        finding.mode = finding.mode or ("kill switch on: notify only" if cfg.kill_switch else cfg.mode)
        try:
            ids.append(alerts.publish(client("sns"), cfg.alert_topic_arn, finding))
        except Exception as exc:  # any failure: the remediation already happened, keep going
            logger.exception("alert publish failed", extra={"finding": finding.id})
            metrics.add_metric(name="AlertPublishFailed", unit=MetricUnit.Count, value=1)
            failures.append(f"{finding.id}: {exc}")
    if failures:
        raise AlertDeliveryError("; ".join(failures))
    return ids


def _record_metrics(findings: list[Finding]) -> None:
    for finding in findings:
        metrics.add_metric(name="Findings", unit=MetricUnit.Count, value=1)
        for action in finding.actions:
            if action.status is Status.SUCCEEDED:
                metrics.add_metric(name="Remediations", unit=MetricUnit.Count, value=1)
            elif action.status is Status.FAILED:
                metrics.add_metric(name="RemediationsFailed", unit=MetricUnit.Count, value=1)


def process_event(
    raw: Any,
    judge: Judge,
    *,
    regions: Collection[str] | None = None,
    cfg: Settings | None = None,
) -> dict[str, Any]:
    """Parse, triage, judge and alert for one event; the result is what the handler returns."""
    cfg = cfg or settings()
    try:
        event = parse_event(raw)
    except MalformedEvent as exc:
        logger.warning("malformed event ignored", extra={"reason": str(exc)})
        metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
        return Outcome("malformed", str(exc)).to_dict()
    logger.append_keys(event_name=event.event_name, cloudtrail_event_id=event.event_id)
    verdict = triage(event, cfg, regions=regions)
    if verdict.ignored:
        logger.info("event ignored", extra={"reason": verdict.reason})
        metrics.add_metric(name="IgnoredEvents", unit=MetricUnit.Count, value=1)
        return Outcome("ignored", verdict.reason).to_dict()
    if verdict.verdict is not Verdict.ACT:
        logger.info("event judged without remediation", extra={"reason": verdict.reason})
    findings = judge(event, cfg, verdict)
    _record_metrics(findings)
    outcome = Outcome("handled", verdict.reason, findings)
    for finding in findings:
        logger.info("finding", extra={"finding": finding.to_dict()})
    outcome.published = publish_findings(findings, cfg)
    return outcome.to_dict()


# --- at-most-once per event id -----------------------------------------------------------


@cache
def _idempotent_runner(table: str) -> Callable[..., dict[str, Any]]:
    """powertools idempotency keyed on the EventBridge event id (imported only when used)."""
    from aws_lambda_powertools.utilities.idempotency import (
        DynamoDBPersistenceLayer,
        IdempotencyConfig,
        idempotent_function,
    )

    config = IdempotencyConfig(
        event_key_jmespath="id",
        raise_on_no_idempotency_key=False,
        expires_after_seconds=2 * 24 * 3600,  # EventBridge retries for up to 24 h
    )
    store = DynamoDBPersistenceLayer(table_name=table)

    @idempotent_function(data_keyword_argument="event", persistence_store=store, config=config)  # type: ignore[untyped-decorator]
    def run(*, event: dict[str, Any], work: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        return work(event)

    runner: Callable[..., dict[str, Any]] = run
    return runner


def once_per_event(raw: Any, work: Callable[[Any], dict[str, Any]], cfg: Settings) -> dict[str, Any]:
    """Run `work` at most once per event id; degrade to running it when the table fails."""
    if not cfg.idempotency_table or not isinstance(raw, Mapping) or not isinstance(raw.get("id"), str):
        return work(raw)
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyPersistenceLayerError

    ran: list[dict[str, Any]] = []

    def tracked(event: dict[str, Any]) -> dict[str, Any]:
        result = work(event)
        ran.append(result)
        return result

    try:
        return _idempotent_runner(cfg.idempotency_table)(event=dict(raw), work=tracked)
    except IdempotencyPersistenceLayerError as exc:
        metrics.add_metric(name="IdempotencyUnavailable", unit=MetricUnit.Count, value=1)
        if ran:  # the work is done; only recording it failed: do not act twice
            logger.warning("idempotency record not saved after acting", extra={"error": str(exc)})
            return ran[0]
        logger.warning("idempotency table unavailable: acting without duplicate protection",
                       extra={"error": str(exc)})
        return work(raw)


def make_handler(judge: Judge, *, regions: Collection[str] | None = None) -> Callable[[Any, Any], dict[str, Any]]:
    """The Lambda entry point for a detector."""

    @metrics.log_metrics
    @logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
    def handler(event: Any, context: Any) -> dict[str, Any]:
        cfg = settings()
        return once_per_event(event, lambda raw: process_event(raw, judge, regions=regions, cfg=cfg), cfg)

    return handler


def attempt_finding(event: CloudTrailEvent, what: str) -> Finding:
    """The LOW note for a failed call: somebody tried, nothing changed."""
    return Finding.for_event(
        event,
        id="attempt",
        severity=Severity.LOW,
        summary=f"Failed attempt: {event.event_name} by {event.identity.display}",
        what_happened=(f"{event.identity.display} tried {event.event_name} ({what}) and AWS refused it with "
                       f"{event.error_code}. Nothing changed; no action was needed."),
        next_steps=["If you do not recognise this principal, review its recent activity in CloudTrail."],
    )
