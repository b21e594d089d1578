"""Heartbeat: on a schedule, checks that the guardrail can still see the account (trails logging,
rules enabled in every covered region); one CRITICAL email when it is blind, one when it sees again.

Not a CloudTrail event, so not runtime.make_handler: it reads the account's state whatever the
input, and must not depend on CloudTrail events to notice that none arrive.
"""

from __future__ import annotations

from typing import Any

from guardrail_core import heartbeat
from guardrail_core.runtime import logger, metrics, settings


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return heartbeat.handle(event, settings())
