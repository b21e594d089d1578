"""Root-activity detector: every root sign-in and root API call, emailed (notify only).

Sign-in events arrive in the region of the sign-in endpoint used and root API calls in the
region they were made in, so no region is excluded here (triage still requires the envelope
region to match the record's).
"""

from __future__ import annotations

from guardrail_core.root_activity import judge
from guardrail_core.runtime import make_handler

lambda_handler = make_handler(judge)
