"""Setup function: converge the IAM baseline (custom resource, or direct invocation).

Direct invocation: {"dry_run": true} returns the plan without changing anything; {} converges;
the daily schedule's {"converge": "scheduled"} converges when remediation is on.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from guardrail_core import security_hub, setup
from guardrail_core.alerts import publish
from guardrail_core.aws import client
from guardrail_core.config import load_settings
from guardrail_core.findings import now_iso
from guardrail_core.runtime import logger, metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    settings = load_settings()

    def work() -> setup.SetupResult:
        request = setup.request_of(event, settings)
        result = setup.converge(settings, dry_run=request.dry_run, why_not=request.why_not)
        logger.info("baseline converged", extra={"result": result.to_dict(), "scheduled": request.scheduled})
        findings = []
        if request.worth_an_email(result):
            findings.append(setup.setup_finding(settings, result, scheduled=request.scheduled))
        check = result.subscription
        if check and check.status in ("repaired", "failed") and not request.dry_run:
            # Said through every channel still subscribed (chat, another address) and the log; a
            # pending confirmation is in the setup email's steps instead.
            logger.warning("alert subscription", extra={"status": check.status, "detail": check.detail})
            found = check.finding(settings, now_iso())
            findings += [found] if found else []
        for finding in findings:
            try:
                publish(client("sns"), settings.alert_topic_arn, finding)
            except Exception:  # the email informs; failing it must not fail the setup
                logger.exception("setup email not sent", extra={"finding": finding.id})
        if settings.security_hub:  # SecurityHubFindings=true; best effort, never raises
            security_hub.import_records([security_hub.asff(f, settings) for f in findings], settings)
        return result

    if setup.is_custom_resource_event(event):
        problem = setup.custom_resource_problem(event)
        if problem:
            return refuse_custom_resource(event, problem)
        return setup.handle_custom_resource(event, context.get_remaining_time_in_millis, work)
    return work().to_dict()


def refuse_custom_resource(event: Any, problem: str) -> dict[str, Any]:
    """A malformed custom-resource request: not converged, logged and counted, answered FAILED when
    its ResponseURL can be used (so a stack waiting on it fails at once instead of after an hour).
    Never raises: retrying cannot fix the request."""
    logger.error("malformed custom-resource request: nothing converged", extra={"reason": problem})
    metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
    url = setup.response_url(event)
    if url:
        physical_id = str(event.get("PhysicalResourceId") or "baseline-Baseline")[:1024]
        try:
            setup.send_cfn_response(setup.malformed_response_event(event), "FAILED",
                                    f"Malformed custom-resource request: {problem}", {}, physical_id)
        except Exception:  # the log line above is the record; the request cannot be answered
            logger.exception("FAILED response to the malformed request not sent")
    return {"status": "FAILED", "reason": f"malformed custom-resource request: {problem}"}
