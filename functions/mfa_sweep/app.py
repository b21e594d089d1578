"""MFA sweep: on a schedule, one digest of console users without MFA, root MFA and root access keys.

Not a CloudTrail event, so not runtime.make_handler: the sweep reads the account's state,
whatever the input. Each scheduled run is handled once (the schedule's input carries an id).
"""

from __future__ import annotations

from typing import Any

from guardrail_core import mfa_sweep
from guardrail_core.runtime import logger, metrics, once_per_event, settings


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    cfg = settings()
    return once_per_event(
        event, lambda raw: mfa_sweep.handle(raw, cfg, context.get_remaining_time_in_millis), cfg, context=context
    )
