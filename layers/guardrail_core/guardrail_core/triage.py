"""The questions every detector asks before it looks at what an event means.

Pure: no AWS calls, so tests call it directly with real corpus records.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent


class Verdict(StrEnum):
    ACT = "act"  # judge the event; remediate if the mode allows
    NOTIFY_ONLY = "notify_only"  # judge and alert, never write (exempt principal)
    ATTEMPT = "attempt"  # the call failed: nothing changed, at most a LOW note
    IGNORE = "ignore"  # not ours to judge; the reason is logged


@dataclass(frozen=True)
class Triage:
    verdict: Verdict
    reason: str

    @property
    def ignored(self) -> bool:
        return self.verdict is Verdict.IGNORE


def triage(
    event: CloudTrailEvent,
    settings: Settings,
    *,
    regions: Collection[str] | None = None,
) -> Triage:
    """Decide whether a detector should judge this event, and how far it may go.

    `regions`: where this kind of event is recorded (IAM: us-east-1 only); None accepts any region
    (sign-in, root and trail events: recorded in the region that served them, forwarded here from
    every covered region). Decisions use the region the record names, never the bus it reached.
    """
    if settings.account_id and event.event_account != settings.account_id:
        return Triage(Verdict.IGNORE,
                      f"event is for account {event.event_account}, not {settings.account_id}")
    recorded = event.aws_region or event.region
    # An event forwarded from another region's bus keeps its envelope (region = where it was
    # recorded). Should the envelope ever name the bus it reached instead, the record still says
    # where it happened: accepted when that is a region the stack forwards from.
    forwarded = event.region == settings.region and recorded in settings.forwarded_regions
    if event.aws_region and event.region != event.aws_region and not forwarded:
        return Triage(Verdict.IGNORE,
                      f"envelope region {event.region} disagrees with awsRegion {event.aws_region}")
    if regions is not None and recorded not in regions:
        return Triage(Verdict.IGNORE,
                      f"{event.event_name} in {recorded}: this event is only recorded in {sorted(regions)}")
    ident = event.identity
    if settings.is_guardrail(ident.session_issuer_arn, ident.arn):
        own = ident.session_issuer_arn or ident.arn
        return Triage(Verdict.IGNORE, f"made by the guardrail's own role {own} (no loops)")
    if event.failed:
        return Triage(Verdict.ATTEMPT, f"call failed with {event.error_code}: nothing changed")
    if settings.is_exempt(ident.arn, ident.session_issuer_arn):
        return Triage(Verdict.NOTIFY_ONLY, f"made by exempt principal {ident.display}: alert only, never undone")
    return Triage(Verdict.ACT, "judge")
