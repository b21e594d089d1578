"""Self-protection: changes to the guardrail's own resources by anyone but CloudFormation (notify only)."""

from __future__ import annotations

from guardrail_core.runtime import make_handler
from guardrail_core.self_protect import judge

lambda_handler = make_handler(judge)
