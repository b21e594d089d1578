"""Parse EventBridge envelopes that carry CloudTrail records into a typed, read-only view.

Input is hostile until proven otherwise: anything missing, mistyped or absurdly long
becomes a `MalformedEvent` with a reason a person can read in the log. Retrying such an
event cannot fix it, so handlers log it and return instead of raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API_CALL = "AWS API Call via CloudTrail"
CONSOLE_SIGN_IN = "AWS Console Sign In via CloudTrail"
SCHEDULED = "Scheduled Event"
KNOWN_DETAIL_TYPES = frozenset({API_CALL, CONSOLE_SIGN_IN})
MAX_FIELD_CHARS = 2048  # longer identity fields are truncated for display, never trusted for decisions


class MalformedEvent(ValueError):
    """The input is not an EventBridge CloudTrail event this guardrail can judge."""


@dataclass(frozen=True)
class Identity:
    type: str
    arn: str = ""
    account_id: str = ""
    principal_id: str = ""
    user_name: str = ""
    session_issuer_arn: str = ""
    session_issuer_type: str = ""
    invoked_by: str = ""
    mfa_authenticated: bool = False
    # A root session opened with sts:AssumeRoot from the organization's management account (or
    # IAM's delegated administrator): type Root, sessionContext.assumedRoot "true" (IAM User
    # Guide, "Track privileged tasks in AWS CloudTrail").
    assumed_root: bool = False
    access_key_id: str = ""
    source_identity: str = ""  # sessionContext.sourceIdentity: set by whoever opened the session

    @property
    def is_root(self) -> bool:
        return self.type == "Root"

    @property
    def display(self) -> str:
        if self.is_root:
            return f"root user ({self.arn or self.account_id})"
        return self.arn or self.session_issuer_arn or self.principal_id or self.type or "unknown"


@dataclass(frozen=True)
class CloudTrailEvent:
    """What the detectors need from one EventBridge event, nothing more."""

    id: str
    account: str
    region: str
    detail_type: str
    source: str
    event_name: str
    event_source: str
    event_time: str
    event_id: str
    aws_region: str
    identity: Identity
    source_ip: str = ""
    user_agent: str = ""
    error_code: str = ""
    error_message: str = ""
    recipient_account_id: str = ""
    request: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] = field(default_factory=dict)
    additional: Mapping[str, Any] = field(default_factory=dict)
    resources: tuple[Mapping[str, Any], ...] = ()  # detail.resources: what CloudTrail says was acted on

    @property
    def failed(self) -> bool:
        return bool(self.error_code)

    @property
    def event_account(self) -> str:
        """The account whose resources the call touched."""
        return self.recipient_account_id or self.account

    def param(self, name: str) -> str:
        """A string request parameter, '' when absent or not a string."""
        value = self.request.get(name) if isinstance(self.request, Mapping) else None
        return value if isinstance(value, str) else ""

    def additional_value(self, name: str) -> str:
        value = self.additional.get(name) if isinstance(self.additional, Mapping) else None
        return value if isinstance(value, str) else ""


def _text(value: Any, name: str, *, required: bool = False) -> str:
    if value is None:
        if required:
            raise MalformedEvent(f"missing field {name}")
        return ""
    if not isinstance(value, str):
        raise MalformedEvent(f"field {name} is {type(value).__name__}, expected a string")
    if required and not value:
        raise MalformedEvent(f"empty field {name}")
    return value[:MAX_FIELD_CHARS]


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"field {name} is {type(value).__name__}, expected an object")
    return value


def parse_identity(raw: Any) -> Identity:
    ui = _mapping(raw, "detail.userIdentity")
    context = _mapping(ui.get("sessionContext"), "userIdentity.sessionContext")
    issuer = _mapping(context.get("sessionIssuer"), "sessionContext.sessionIssuer")
    attributes = _mapping(context.get("attributes"), "sessionContext.attributes")
    mfa = attributes.get("mfaAuthenticated")
    return Identity(
        type=_text(ui.get("type"), "userIdentity.type"),
        arn=_text(ui.get("arn"), "userIdentity.arn"),
        account_id=_text(ui.get("accountId"), "userIdentity.accountId"),
        principal_id=_text(ui.get("principalId"), "userIdentity.principalId"),
        user_name=_text(ui.get("userName"), "userIdentity.userName"),
        session_issuer_arn=_text(issuer.get("arn"), "sessionIssuer.arn"),
        session_issuer_type=_text(issuer.get("type"), "sessionIssuer.type"),
        invoked_by=_text(ui.get("invokedBy"), "userIdentity.invokedBy"),
        mfa_authenticated=str(mfa).lower() == "true",
        assumed_root=str(context.get("assumedRoot")).lower() == "true",
        access_key_id=_text(ui.get("accessKeyId"), "userIdentity.accessKeyId")[:128],
        source_identity=_text(context.get("sourceIdentity"), "sessionContext.sourceIdentity")[:64],
    )


def parse_event(raw: Any) -> CloudTrailEvent:
    """Parse an EventBridge event whose detail is a CloudTrail record."""
    if not isinstance(raw, Mapping):
        raise MalformedEvent(f"event is {type(raw).__name__}, expected an object")
    detail_type = _text(raw.get("detail-type"), "detail-type", required=True)
    if detail_type not in KNOWN_DETAIL_TYPES:
        raise MalformedEvent(f"detail-type {detail_type!r} is not a CloudTrail event")
    detail = raw.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEvent("missing or non-object detail")
    return CloudTrailEvent(
        id=_text(raw.get("id"), "id", required=True),
        account=_text(raw.get("account"), "account", required=True),
        region=_text(raw.get("region"), "region", required=True),
        detail_type=detail_type,
        source=_text(raw.get("source"), "source", required=True),
        event_name=_text(detail.get("eventName"), "detail.eventName", required=True),
        event_source=_text(detail.get("eventSource"), "detail.eventSource", required=True),
        event_time=_text(detail.get("eventTime"), "detail.eventTime") or _text(raw.get("time"), "time"),
        event_id=_text(detail.get("eventID"), "detail.eventID"),
        aws_region=_text(detail.get("awsRegion"), "detail.awsRegion"),
        identity=parse_identity(detail.get("userIdentity")),
        source_ip=_text(detail.get("sourceIPAddress"), "detail.sourceIPAddress"),
        user_agent=_text(detail.get("userAgent"), "detail.userAgent"),
        error_code=_text(detail.get("errorCode"), "detail.errorCode"),
        error_message=_text(detail.get("errorMessage"), "detail.errorMessage"),
        recipient_account_id=_text(detail.get("recipientAccountId"), "detail.recipientAccountId"),
        request=_mapping(detail.get("requestParameters"), "detail.requestParameters"),
        response=_mapping(detail.get("responseElements"), "detail.responseElements"),
        additional=_mapping(detail.get("additionalEventData"), "detail.additionalEventData"),
        resources=_resources(detail.get("resources")),
    )


def _resources(value: Any) -> tuple[Mapping[str, Any], ...]:
    """detail.resources as CloudTrail gives it (a list of objects with ARN, type, accountId);
    anything else is treated as absent (it only ever narrows what an event is about)."""
    if not isinstance(value, list):
        return ()
    return tuple(r for r in value[:100] if isinstance(r, Mapping))
