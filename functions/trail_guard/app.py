"""Trail guard: CloudTrail stopped, deleted or narrowed; restarts a stopped trail (TrailMode=remediate).

CloudTrail API events arrive in the region the call was made in (a trail's home region), so
no region is excluded; the judge calls CloudTrail in the trail's own region.
"""

from __future__ import annotations

from guardrail_core.runtime import make_handler
from guardrail_core.trail_guard import judge

lambda_handler = make_handler(judge)
