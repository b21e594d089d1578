"""MFA detector: IAM users signing in without MFA, left without MFA, or given console access.

Sign-in events arrive in the region of the sign-in endpoint used, so they are judged from any
region; IAM events are recorded in us-east-1 only, and judged only there.
"""

from __future__ import annotations

from typing import Any

from guardrail_core.config import IAM_HOME_REGION
from guardrail_core.mfa import judge
from guardrail_core.runtime import make_handler

_signin_handler = make_handler(judge)
_iam_handler = make_handler(judge, regions={IAM_HOME_REGION})


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    is_signin = isinstance(event, dict) and event.get("source") == "aws.signin"
    return (_signin_handler if is_signin else _iam_handler)(event, context)
