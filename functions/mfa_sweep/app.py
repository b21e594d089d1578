"""MFA sweep: on a schedule, one digest of console users without MFA, root MFA and root access keys.

Not a CloudTrail event, so not runtime.make_handler: the sweep reads the account's state,
whatever the input. Each scheduled run is handled once (the schedule's input carries an id):
its writes once per user, its digest once (mfa_sweep.handle).
"""

from __future__ import annotations

from typing import Any

from guardrail_core import mfa_sweep
from guardrail_core.runtime import logger, metrics, settings


@metrics.log_metrics
@logger.inject_lambda_context(correlation_id_path="id", clear_state=True)
def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    return mfa_sweep.handle(event, settings(), context.get_remaining_time_in_millis, context=context)
