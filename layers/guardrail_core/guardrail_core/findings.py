"""What a detector found and what it did about it: the one shape every alert is made from."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from guardrail_core.events import CloudTrailEvent, Identity

NAME_LIMIT = 64  # IAM user, role and session names are at most 64 characters


def utc_now() -> datetime:
    """The clock findings are stamped with (tests with golden output replace it)."""
    return datetime.now(UTC)


clock: Callable[[], datetime] = utc_now


def now_iso() -> str:
    return clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


_ARN = re.compile(r"^arn:[^:]*:(?:iam|sts)::(\d*):(.+)$")


def principal_words(ident: Identity, home_account: str = "") -> tuple[str, str]:
    """(name, via): who acted, in the words a person uses, from a CloudTrail userIdentity.

    ('phoebe', '') for IAM user phoebe; ('phoebe', 'role admin-mfa') for a session of role
    admin-mfa named phoebe (the name people choose, or the one the console gives: the user's);
    ('root', '') for the root user; ('root', 'AssumeRoot session from the management account')
    for a privileged root session (sts:AssumeRoot, centralized root access). Another account
    than `home_account` is named in `via`. Names are never cut here (they are at most 64
    characters in IAM); odd values longer than that are.
    """
    if ident.is_root:
        return "root", ("AssumeRoot session from the management account" if ident.assumed_root else "")
    match = _ARN.match(ident.arn)
    name, via, account = "", "", ""
    if match:
        account = match.group(1)
        kind, _, rest = match.group(2).partition("/")
        if kind == "assumed-role" and "/" in rest:
            role, _, session = rest.partition("/")
            name, via = session, f"role {role}"
        elif kind == "user":
            name = rest.rsplit("/", 1)[-1]
        elif kind == "federated-user":
            name, via = rest, "federation"
        elif kind == "root":
            name = "root"
        else:
            name = rest.rsplit("/", 1)[-1] or kind
    elif ident.type == "AWSService":
        name = ident.invoked_by or "an AWS service"
    elif ident.type == "AWSAccount":
        name = f"account {ident.account_id or ident.principal_id or 'unknown'}"
    else:
        name = ident.user_name or ident.principal_id or ident.type or "unknown"
    if account and home_account and account != home_account:
        via = f"{via} in account {account}" if via else f"account {account}"
    if len(name) > NAME_LIMIT:
        name = name[: NAME_LIMIT - 3] + "..."
    return name, via


@dataclass(frozen=True)
class Actor:
    arn: str
    type: str
    source_ip: str = ""
    user_agent: str = ""
    mfa: str = ""  # "yes", "no", or "" when the record does not say
    name: str = ""  # the person or principal, short ("phoebe", "root"): see principal_words
    via: str = ""  # how they acted ("role admin-mfa"), '' when directly
    access_key_id: str = ""  # the credentials' key id (links an AssumeRoot session to its AssumeRoot call)

    @property
    def inline(self) -> str:
        """`words` as a sentence's subject: 'phoebe, using role admin-mfa,' (the clause closed)."""
        return self.words + "," if self.via and self.type != "Root" else self.words

    @property
    def sentence(self) -> str:
        """`inline` to start a sentence: 'The root user' (names keep their case: 'phoebe, ...')."""
        words = self.inline
        return "T" + words[1:] if words.startswith("the ") else words

    @property
    def words(self) -> str:
        """'IAM user phoebe', 'phoebe, using role admin-mfa', 'the root user': for the first sentence."""
        name = self.name or self.arn or "an unknown principal"
        if self.type == "Root":
            return "the root user" + (f" ({self.via})" if self.via else "")
        if self.via:
            return f"{name}, using {self.via}"
        return f"IAM user {name}" if self.type == "IAMUser" else name

    @property
    def subject_words(self) -> tuple[str, str]:
        """(long, short) forms for a subject line: the short one is the name alone, never cut."""
        name = self.name or "unknown"
        return (f"{name}, using {self.via}" if self.via else name), name

    @classmethod
    def from_event(cls, event: CloudTrailEvent) -> Actor:
        ident = event.identity
        mfa = event.additional_value("MFAUsed").lower()
        if not mfa and ident.type in ("IAMUser", "AssumedRole", "Root"):
            mfa = "yes" if ident.mfa_authenticated else "no"
        name, via = principal_words(ident, event.event_account)
        return cls(
            arn=ident.display,
            type=ident.type or "unknown",
            source_ip=event.source_ip,
            user_agent=event.user_agent,
            mfa=mfa,
            name=name,
            via=via,
            access_key_id=ident.access_key_id,
        )


def who(event: CloudTrailEvent) -> str:
    """Who made the call, in words, to start a sentence: 'IAM user phoebe', 'phoebe, using role x,'."""
    return Actor.from_event(event).sentence


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
    outcome: str = ""  # what the guardrail did, in a word or three ("Undone", "Not undone (notify mode)")
    who: str | None = None  # the actor for the subject; None: from `actor`; "": the summary names them already
    undo_warning: str = ""  # shown before any "To undo" command: what to change first so it sticks
    detected_at: str = field(default_factory=now_iso)  # when the guardrail judged it (UTC, ISO 8601)

    @property
    def headline(self) -> str:
        """Outcome, what happened and who, uncut (the email's first line; the subject fits it into 100)."""
        text = f"{self.outcome}: {self.summary}" if self.outcome else self.summary
        who = self.subject_actor[0]
        return f"{text} by {who}" if who else text

    @property
    def subject_actor(self) -> tuple[str, str]:
        """(long, short) actor words for the subject ('', '') when the subject names nobody."""
        if self.who is not None:
            return self.who, self.who
        return self.actor.subject_words if self.actor else ("", "")

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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """`to_dict` read back (the machine JSON's `guardrail_finding`); unknown keys are ignored,
        missing ones take their defaults (a clipped alert carries only id, severity, summary,
        account_id and event_id). Raises KeyError/ValueError on a dict without id or severity."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["severity"] = Severity(data["severity"])
        kwargs.setdefault("summary", "")
        kwargs.setdefault("account_id", "")
        actor = data.get("actor")
        actor_fields = {f.name for f in fields(Actor)}
        kwargs["actor"] = Actor(**{k: v for k, v in actor.items() if k in actor_fields}) \
            if isinstance(actor, Mapping) else None
        action_fields = {f.name for f in fields(Action)}
        kwargs["actions"] = [Action(**{**{k: v for k, v in a.items() if k in action_fields},
                                       "status": Status(a["status"])})
                             for a in data.get("actions") or [] if isinstance(a, Mapping)]
        return cls(**kwargs)
