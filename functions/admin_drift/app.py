"""Admin-access drift detector: undoes admin rights granted outside the MFA-protected role.

IAM events are recorded in us-east-1 only, so they are judged only there.
"""

from __future__ import annotations

from guardrail_core.admin_principals import judge
from guardrail_core.config import IAM_HOME_REGION
from guardrail_core.runtime import make_handler

lambda_handler = make_handler(judge, regions={IAM_HOME_REGION})
