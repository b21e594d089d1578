"""What a detector found and what it did about it: the one shape every alert is made from."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from guardrail_core.events import CloudTrailEvent


class Severity(StrEnum):
    INFO = "INFO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # deliberately not done (notify mode, exempt, lockout guard, kill switch)


@dataclass(frozen=True)
class Action:
    """One change the guardrail made, tried, or chose not to make."""

    name: str
    target: str
    status: Status
    detail: str = ""
    undo: str = ""  # how the owner reverses it, when it was done
    at: str = ""  # UTC time the change was made


@dataclass(frozen=True)
class Actor:
    arn: str
    type: str
    source_ip: str = ""
    user_agent: str = ""
    mfa: str = ""  # "yes", "no", or "" when the record does not say

    @classmethod
    def from_event(cls, event: CloudTrailEvent) -> Actor:
        ident = event.identity
        mfa = event.additional_value("MFAUsed").lower()
        if not mfa and ident.type in ("IAMUser", "AssumedRole", "Root"):
            mfa = "yes" if ident.mfa_authenticated else "no"
        return cls(
            arn=ident.display,
            type=ident.type or "unknown",
            source_ip=event.source_ip,
            user_agent=event.user_agent,
            mfa=mfa,
        )


@dataclass
class Finding:
    """A drift or a notable event, ready to be rendered as an email and as JSON."""

    id: str  # finding type, e.g. "admin-group-policy-attached"
    severity: Severity
    summary: str  # one line: what happened
    account_id: str
    region: str = ""
    what_happened: str = ""
    actor: Actor | None = None
    event_name: str = ""
    event_time: str = ""
    event_id: str = ""  # CloudTrail event ID, for lookup in the console
    actions: list[Action] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mode: str = ""
    items: list[str] = field(default_factory=list)  # digest lines (sweeps)

    @classmethod
    def for_event(cls, event: CloudTrailEvent, **kwargs: Any) -> Finding:
        kwargs.setdefault("account_id", event.event_account)
        kwargs.setdefault("region", event.aws_region or event.region)
        return cls(
            actor=Actor.from_event(event),
            event_name=event.event_name,
            event_time=event.event_time,
            event_id=event.event_id,
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        data["actions"] = [{**asdict(a), "status": a.status.value} for a in self.actions]
        return data
