"""Setup function: converge the IAM baseline (custom resource, or direct invocation).

Direct invocation: {"dry_run": true} returns the plan without changing anything; {} converges.
"""

from __future__ import annotations

from typing import Any

from guardrail_core import setup
from guardrail_core.alerts import publish
from guardrail_core.aws import client
from guardrail_core.config import load_settings
from guardrail_core.runtime import logger, metrics


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    settings = load_settings()

    def work() -> setup.SetupResult:
        dry_run = bool(event.get("dry_run")) if isinstance(event, dict) else False
        result = setup.converge(settings, dry_run=dry_run)
        logger.info("baseline converged", extra={"result": result.to_dict()})
        if not dry_run and (result.actions or not result.trail_ok or result.admin_grants):
            try:
                publish(client("sns"), settings.alert_topic_arn, setup.setup_finding(settings, result))
            except Exception:  # the email informs; failing it must not fail the setup
                logger.exception("setup summary email not sent")
        return result

    if setup.is_custom_resource_event(event):
        return setup.handle_custom_resource(event, context.get_remaining_time_in_millis, work)
    return work().to_dict()
