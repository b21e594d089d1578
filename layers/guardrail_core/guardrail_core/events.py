"""Parse EventBridge envelopes that carry CloudTrail records into a typed, read-only view.

Input is hostile until proven otherwise: anything missing, mistyped or absurdly long
becomes a `MalformedEvent` with a reason a person can read in the log. Retrying such an
event cannot fix it, so handlers log it and return instead of raising.

`parse_event` is the one gate every detector's input goes through (runtime.screen), so it
also refuses values AWS never writes, before any judge computes with them (`validate`):

- a time that is not a CloudTrail timestamp, or outside a sane range (before 2006, when AWS
  offered its first API, or more than a day ahead of this function's clock): year 9999 or
  year 1 would overflow the grace-period and time-window arithmetic (text that does not begin
  like a date, e.g. "redacted", is an unknown time: shown as written, never computed with);
- in a successful IAM call, a name or ARN that IAM itself would have refused (the
  patterns and lengths of the IAM API Reference, `IAM_PARAMETERS`), and a policy document
  past IAM's size limit or nested deeper than any policy grammar allows (policy.limits_problem):
  IAM accepted the call, so such a value cannot be in a record AWS wrote;
- an event nested more than MAX_EVENT_DEPTH levels (checked without recursion).

A refused call (errorCode set) keeps its odd names and documents: they are often why IAM
refused it, and the call is still news (a refused root call is an alert). Judges treat its
request as untrusted text; its actor is the one in `userIdentity`, never assumed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from guardrail_core import policy

API_CALL = "AWS API Call via CloudTrail"
CONSOLE_SIGN_IN = "AWS Console Sign In via CloudTrail"
SCHEDULED = "Scheduled Event"
KNOWN_DETAIL_TYPES = frozenset({API_CALL, CONSOLE_SIGN_IN})
MAX_FIELD_CHARS = 2048  # longer identity fields are truncated for display, never trusted for decisions
IAM_SOURCE = "iam.amazonaws.com"

# --- what AWS can write (validate) --------------------------------------------------------------

# Times: CloudTrail's eventTime is ISO 8601 UTC ("2026-11-28T09:14:52Z"; CloudTrail User Guide,
# "CloudTrail record contents"). Exports (Athena, SIEMs) write a space and up to nine fraction
# digits; both are read. Anything else, and any time outside [EARLIEST_TIME, now + FUTURE_SLACK],
# is refused.
EARLIEST_TIME = datetime(2006, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?", re.ASCII)

# Request parameters of IAM calls, as the IAM API Reference constrains them (docs.aws.amazon.com/
# IAM/latest/APIReference/, e.g. API_AttachUserPolicy.html, API_AttachGroupPolicy.html,
# API_AttachRolePolicy.html, API_PutUserPolicy.html, API_SetDefaultPolicyVersion.html,
# API_PutUserPermissionsBoundary.html; the same constraints are in botocore's IAM model):
#   UserName   [\w+=,.@-]+, 1-64 (userNameType) or 1-128 (existingUserNameType): 128 here;
#   GroupName  [\w+=,.@-]+, 1-128;  RoleName [\w+=,.@-]+, 1-64;  PolicyName [\w+=,.@-]+, 1-128;
#   PolicyArn, PermissionsBoundary: an ARN of 20-2048 characters (arnType; botocore refuses a
#              shorter one before sending, with ParamValidationError); IAM accepts only a policy ARN;
#   VersionId  v[1-9][0-9]*(\.[A-Za-z0-9-]*)?
# `\w` in IAM's patterns is ASCII (letters, digits, underscore).
_IAM_NAME = r"[A-Za-z0-9_+=,.@-]"
_POLICY_ARN = r"arn:aws[a-z-]*:iam::(?:\d{12}|aws):policy/[\x21-\x7e]+"
IAM_PARAMETERS: Mapping[str, re.Pattern[str]] = {
    "userName": re.compile(_IAM_NAME + "{1,128}"),
    "newUserName": re.compile(_IAM_NAME + "{1,64}"),
    "groupName": re.compile(_IAM_NAME + "{1,128}"),
    "newGroupName": re.compile(_IAM_NAME + "{1,128}"),
    "roleName": re.compile(_IAM_NAME + "{1,64}"),
    "policyName": re.compile(_IAM_NAME + "{1,128}"),
    "policyArn": re.compile(f"(?=.{{20,2048}}$){_POLICY_ARN}", re.DOTALL),
    "permissionsBoundary": re.compile(f"(?=.{{20,2048}}$){_POLICY_ARN}", re.DOTALL),
    "versionId": re.compile(r"v[1-9][0-9]{0,8}(?:\.[A-Za-z0-9-]{0,64})?"),
}
_DATE_LIKE = re.compile(r"\s*[+-]?\d+-")
# CloudTrail's placeholder for the root user in root's own MFA calls (not an IAM user name).
ROOT_USER_PLACEHOLDER = "aws root user"
IAM_DOCUMENTS = ("policyDocument", "assumeRolePolicyDocument")
MAX_EVENT_DEPTH = 64  # CloudTrail records nest a dozen levels; EventBridge events are at most 256 KB


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
    moment: datetime | None = None  # event_time as an aware UTC datetime, within the sane range (validate)

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


def parse_event(raw: Any, *, now: datetime | None = None) -> CloudTrailEvent:
    """Parse an EventBridge event whose detail is a CloudTrail record, and `validate` it.

    `now`: the clock the time range is checked against (default: this function's clock).
    """
    if not isinstance(raw, Mapping):
        raise MalformedEvent(f"event is {type(raw).__name__}, expected an object")
    detail_type = _text(raw.get("detail-type"), "detail-type", required=True)
    if detail_type not in KNOWN_DETAIL_TYPES:
        raise MalformedEvent(f"detail-type {detail_type!r} is not a CloudTrail event")
    detail = raw.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEvent("missing or non-object detail")
    check_depth(raw)
    event = CloudTrailEvent(
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
    return validate(event, now=now)


def _resources(value: Any) -> tuple[Mapping[str, Any], ...]:
    """detail.resources as CloudTrail gives it (a list of objects with ARN, type, accountId);
    anything else is treated as absent (it only ever narrows what an event is about)."""
    if not isinstance(value, list):
        return ()
    return tuple(r for r in value[:100] if isinstance(r, Mapping))


# --- validation: values AWS never writes --------------------------------------------------------


def check_depth(value: Any, limit: int = MAX_EVENT_DEPTH) -> None:
    """Refuse an event nested deeper than `limit`, walking it without recursion (so nothing
    downstream - logging, copying, hashing - meets a structure deep enough to recurse on)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise MalformedEvent(f"event nested more than {limit} levels deep")
        if isinstance(node, Mapping):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def parse_timestamp(value: str, *, now: datetime | None = None) -> datetime:
    """A CloudTrail timestamp as an aware UTC datetime within [EARLIEST_TIME, now + FUTURE_SLACK];
    MalformedEvent otherwise (never OverflowError: the year is checked before any arithmetic)."""
    shown = value[:40]
    match = _TIMESTAMP.fullmatch(value.strip())
    if not match:
        raise MalformedEvent(f"time {shown!r} is not a CloudTrail timestamp (ISO 8601, e.g. 2026-11-28T09:14:52Z)")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    if not EARLIEST_TIME.year <= year <= 9000:  # far from datetime's limits: no overflow below
        raise MalformedEvent(f"time {shown!r} is outside the range AWS can record "
                             f"({EARLIEST_TIME:%Y-%m-%d} to a day from now)")
    fraction = (match.group(7) or "0")[:6].ljust(6, "0")
    zone = match.group(8) or "Z"
    try:
        moment = datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=UTC)
        if zone != "Z":
            digits = zone[1:].replace(":", "")
            hours, minutes = int(digits[:2]), int(digits[2:])
            if hours > 23 or minutes > 59:
                raise ValueError(f"offset {zone}")
            offset = timedelta(hours=hours, minutes=minutes)
            moment = moment - offset if zone[0] == "+" else moment + offset
    except ValueError as exc:
        raise MalformedEvent(f"time {shown!r} is not a valid time ({exc})") from None
    latest = (now or datetime.now(UTC)) + FUTURE_SLACK
    if not EARLIEST_TIME <= moment <= latest:
        raise MalformedEvent(f"time {shown!r} is outside the range AWS can record "
                             f"({EARLIEST_TIME:%Y-%m-%d} to a day from now)")
    return moment


def iam_parameter_problem(name: str, value: Any) -> str:
    """Why IAM would refuse this request parameter ('' when it would accept it, or does not check it)."""
    pattern = IAM_PARAMETERS.get(name)
    if pattern is None or value is None:
        return ""
    if not isinstance(value, str):
        return f"requestParameters.{name} is {type(value).__name__}, IAM takes a string"
    if name == "userName" and value.strip().lower() == ROOT_USER_PLACEHOLDER:
        return ""
    if not pattern.fullmatch(value):
        return f"requestParameters.{name} {value[:80]!r} is not a value IAM accepts (IAM API Reference)"
    return ""


def validate(event: CloudTrailEvent, *, now: datetime | None = None) -> CloudTrailEvent:
    """The event with its `moment`, or MalformedEvent for a value AWS never writes (module docstring)."""
    # Text that does not begin like a date ("redacted", or an account id where an export redacted
    # the time) says nothing: an unknown time, shown as written and never computed with. Anything
    # that begins like a date must be a sane CloudTrail timestamp.
    moment = parse_timestamp(event.event_time, now=now) if _DATE_LIKE.match(event.event_time) else None
    if event.event_source == IAM_SOURCE and not event.failed and isinstance(event.request, Mapping):
        for name, value in event.request.items():
            problem = iam_parameter_problem(name, value)
            if problem:
                raise MalformedEvent(f"{event.event_name}: {problem}")
        for name in IAM_DOCUMENTS:
            problem = policy.limits_problem(event.request.get(name))
            if problem:
                raise MalformedEvent(f"{event.event_name}: requestParameters.{name}: {problem}")
    return replace(event, moment=moment)
