"""Audit-trail tampering: a trail stopped, deleted, or narrowed so management events go unrecorded.

`judge` re-reads the trail the event names (in the trail's home region: CloudTrail API
events arrive where the call was made, which for a trail is its home region; from other
regions they are forwarded to the stack's) and decides on what the account shows now, not on
what the event claims. It judges the ACCOUNT's coverage, not one trail: when another trail
still logs every region's management events (`covering`), a change to this one does not
blind anyone: a data-events-only trail stopped or narrowed is a LOW note and is never
restarted; a management trail stopped while another covers is MEDIUM (restarted in
remediate mode, as it was running). Without such a trail:

- StopLogging: not logging now -> CRITICAL, and (TrailMode=remediate) StartLogging again;
  logging again already (someone restarted it) -> HIGH, nothing to do but note the gap.
- DeleteTrail: gone -> CRITICAL; it cannot be restored (its settings are not in the event):
  the email says how to recreate it and that delivered logs stay in the bucket.
- PutEventSelectors: judged against full management logging (the event does not carry the
  previous selectors, so "narrowed" means "now logs less than every management event"):
  no management writes -> CRITICAL; reads or some sources left out -> HIGH. Alert only:
  rewriting selectors is not safe to guess.
- UpdateTrail: only the settings the request changed, confirmed on the trail: single-region
  or no global service events -> CRITICAL; logs delivered to another bucket -> HIGH; log
  file validation off -> MEDIUM. Anything else (SNS topic, KMS key, CloudWatch Logs) -> none.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core.alerts import cloudtrail_link
from guardrail_core.aws import client, error_code, is_access_denied, is_not_found, is_transient
from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent
from guardrail_core.findings import Action, Actor, Finding, Severity, Status, who
from guardrail_core.runtime import attempt_finding, logger
from guardrail_core.triage import Triage, Verdict

CLOUDTRAIL_SOURCE = "cloudtrail.amazonaws.com"
WATCHED = frozenset({"StopLogging", "DeleteTrail", "UpdateTrail", "PutEventSelectors"})

# Every CloudTrail action this module may call, for the least-privilege test and the template.
READ_ACTIONS = frozenset({"cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors", "cloudtrail:DescribeTrails"})
WRITE_ACTIONS = frozenset({"cloudtrail:StartLogging"})

_TRAIL_ARN = re.compile(r"^arn:(aws[\w-]*):cloudtrail:([a-z0-9-]+):(\d{12}):trail/([\w.-]{3,128})$")
_TRAIL_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{2,127}$")
_DENIED = re.compile(r"AccessDenied|Unauthorized|NotAuthorized|Forbidden", re.IGNORECASE)


# --- pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailRef:
    """The trail an event names: its name (or ARN, as given) and the region to call."""

    name: str  # what to pass to the API (name or ARN)
    short: str  # the trail's name, for people
    region: str
    account: str = ""  # from an ARN; '' for a bare name (this account)


def trail_ref(event: CloudTrailEvent) -> TrailRef | None:
    """None when the request names no valid trail (bad input: nothing to read or restart)."""
    given = (event.param("name") or event.param("trailName")).strip()
    region = event.aws_region or event.region
    match = _TRAIL_ARN.match(given)
    if match:
        return TrailRef(name=given, short=match.group(4), region=match.group(2), account=match.group(3))
    if _TRAIL_NAME.match(given) and region:
        return TrailRef(name=given, short=given, region=region)
    return None


@dataclass(frozen=True)
class Coverage:
    """Which management events a trail's selectors record."""

    reads: bool
    writes: bool
    excluded: tuple[str, ...] = ()

    @property
    def full(self) -> bool:
        return self.reads and self.writes and not self.excluded

    def gaps(self) -> list[str]:
        if not self.reads and not self.writes:
            return ["no management events are recorded at all"]
        out = []
        if not self.writes:
            out.append("management WRITE events (every change: IAM, CloudTrail, ...) are not recorded")
        if not self.reads:
            out.append("read-only management events are not recorded")
        if self.excluded:
            out.append("management events from " + ", ".join(self.excluded) + " are excluded")
        return out

    @property
    def severity(self) -> Severity:
        return Severity.CRITICAL if not self.writes else Severity.HIGH


FULL = Coverage(reads=True, writes=True)


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def coverage_basic(selectors: Sequence[Any]) -> Coverage:
    """Basic selectors: IncludeManagementEvents (default true) and ReadWriteType (default All)."""
    reads = writes = False
    exclusions: list[set[str]] = []
    for sel in selectors:
        if not isinstance(sel, Mapping) or sel.get("IncludeManagementEvents", True) is not True:
            continue
        kind = sel.get("ReadWriteType", "All")
        reads |= kind in ("All", "ReadOnly")
        writes |= kind in ("All", "WriteOnly")
        exclusions.append(set(_strings(sel.get("ExcludeManagementEventSources"))))
    # A source is missing only if every selector that records management events leaves it out.
    excluded = set.intersection(*exclusions) if exclusions else set()
    return Coverage(reads, writes, tuple(sorted(excluded)))


def coverage_advanced(selectors: Sequence[Any]) -> Coverage:
    """Advanced selectors for management events: eventCategory=Management, optional readOnly, eventSource."""
    reads = writes = False
    exclusions: list[set[str]] = []
    for sel in selectors:
        fields = sel.get("FieldSelectors") if isinstance(sel, Mapping) else None
        if not isinstance(fields, list):
            continue
        by_field = {f.get("Field"): f for f in fields if isinstance(f, Mapping)}
        category = by_field.get("eventCategory") or {}
        if "Management" not in _strings(category.get("Equals")):
            continue
        read_only = by_field.get("readOnly") or {}
        only = [v.lower() for v in _strings(read_only.get("Equals"))]
        never = [v.lower() for v in _strings(read_only.get("NotEquals"))]
        reads |= (not only or "true" in only) and "true" not in never
        writes |= (not only or "false" in only) and "false" not in never
        source = by_field.get("eventSource") or {}
        exclusions.append(set(_strings(source.get("NotEquals"))))
    excluded = set.intersection(*exclusions) if exclusions else set()
    return Coverage(reads, writes, tuple(sorted(excluded)))


def coverage(response: Mapping[str, Any]) -> Coverage:
    """GetEventSelectors' answer -> Coverage. No selectors at all is the default: every management event."""
    advanced = response.get("AdvancedEventSelectors")
    if isinstance(advanced, list) and advanced:
        return coverage_advanced(advanced)
    basic = response.get("EventSelectors")
    if isinstance(basic, list) and basic:
        return coverage_basic(basic)
    return FULL


@dataclass(frozen=True)
class TrailState:
    """One trail as the account shows it now (DescribeTrails, GetTrailStatus, GetEventSelectors).

    `logging`/`cover` are None when they could not be read (`problem` says why), e.g. an
    organization trail's selectors read from a member account.
    """

    name: str
    arn: str
    home_region: str
    multi_region: bool
    global_events: bool
    organization: bool = False
    logging: bool | None = None
    cover: Coverage | None = None
    problem: str = ""

    @property
    def records_management(self) -> bool:
        """Whether it records management events at all (a data-events-only trail does not)."""
        if self.cover is None:
            return self.organization  # an organization trail is the management account's audit trail
        return self.cover.reads or self.cover.writes

    @property
    def covers_account(self) -> bool:
        """Logging every region's management write events, global services (IAM, sign-in) included:
        with such a trail EventBridge receives the account's CloudTrail events (CloudTrail User Guide,
        "Working with CloudTrail events in EventBridge": events are delivered only while a trail logs)."""
        writes = self.cover.writes if self.cover is not None else self.organization
        return bool(self.logging) and self.multi_region and self.global_events and writes

    @property
    def label(self) -> str:
        kind = "organization trail" if self.organization else "trail"
        scope = "all regions" if self.multi_region else f"{self.home_region} only"
        return f"{kind} {self.name} ({scope}, home {self.home_region})"


def covering(trails: Sequence[TrailState], *, besides: str = "") -> list[TrailState]:
    """The trails that keep the account seen, other than the one named `besides` (name or ARN)."""
    return [t for t in trails if t.covers_account and besides not in (t.name, t.arn)]


def _trail_state(description: Mapping[str, Any], client_for: Any) -> TrailState:
    arn = str(description.get("TrailARN") or "")
    name = str(description.get("Name") or arn)
    home = str(description.get("HomeRegion") or "")
    ct = client_for(home) if home else None
    logging: bool | None = None
    cover: Coverage | None = None
    problems: list[str] = []
    try:
        logging = bool(ct.get_trail_status(Name=arn or name).get("IsLogging")) if ct else None
    except ClientError as exc:
        if is_transient(exc):
            raise
        problems.append(f"GetTrailStatus: {error_code(exc)}")
    try:
        cover = coverage(ct.get_event_selectors(TrailName=arn or name)) if ct else None
    except ClientError as exc:
        if is_transient(exc):
            raise
        problems.append(f"GetEventSelectors: {error_code(exc)}")
    return TrailState(
        name=name, arn=arn, home_region=home,
        multi_region=description.get("IsMultiRegionTrail") is True,
        global_events=description.get("IncludeGlobalServiceEvents") is not False,
        organization=description.get("IsOrganizationTrail") is True,
        logging=logging, cover=cover, problem="; ".join(problems),
    )


def read_trails(ct: Any, client_for: Any = None) -> list[TrailState]:
    """Every trail the account's region `ct` sees (its own, multi-region trails homed elsewhere and
    organization trails: includeShadowTrails), each read in its home region, concurrently.

    `client_for(region)` returns a CloudTrail client for a trail's home region (default: the shared
    clients). Calls: 1 DescribeTrails + 2 per trail (GetTrailStatus, GetEventSelectors).
    """
    pick = client_for or (lambda region: client("cloudtrail", region))
    return gather([lambda t=t: _trail_state(t, pick) for t in all_trails(ct)])


def gather(thunks: Sequence[Any], workers: int = 16) -> list[Any]:
    """Run the thunks on a small thread pool (boto3 clients are thread-safe); results in order.
    The first exception raised by any thunk is raised here, after all have finished."""
    if len(thunks) <= 1:
        return [thunk() for thunk in thunks]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(thunks))) as pool:
        futures = [pool.submit(thunk) for thunk in thunks]
    return [future.result() for future in futures]


@dataclass(frozen=True)
class TrailChange:
    """What an UpdateTrail did that matters, confirmed on the trail as it is now."""

    severity: Severity
    what: str


def update_changes(request: Mapping[str, Any], trail: Mapping[str, Any]) -> list[TrailChange]:
    """Only settings the request touched AND the trail now shows count (re-read, not trusted)."""
    def asked(key: str) -> Any:
        return request.get(key) if isinstance(request, Mapping) else None

    out = []
    if asked("isMultiRegionTrail") is not None and trail.get("IsMultiRegionTrail") is False:
        home = str(trail.get("HomeRegion") or "")[:32]
        out.append(TrailChange(Severity.CRITICAL, f"it now records only its home region{' ' + home if home else ''}: "
                                                  "activity in every other region goes unrecorded"))
    if asked("includeGlobalServiceEvents") is not None and trail.get("IncludeGlobalServiceEvents") is False:
        out.append(TrailChange(Severity.CRITICAL, "it no longer records global service events: IAM, STS and "
                                                  "console sign-in activity goes unrecorded"))
    if asked("s3BucketName") is not None and trail.get("S3BucketName"):
        out.append(TrailChange(Severity.HIGH, f"its log files now go to S3 bucket {trail.get('S3BucketName')}: "
                                              "if that is not your bucket, someone else receives (or discards) "
                                              "your audit logs"))
    if asked("enableLogFileValidation") is not None and trail.get("LogFileValidationEnabled") is False:
        out.append(TrailChange(Severity.MEDIUM, "log file validation is off: altered or deleted log files can no "
                                                "longer be detected"))
    return out


def failed_attempt_matters(event: CloudTrailEvent) -> bool:
    """A refused call worth a note: refused for permission (someone tried), not a typo'd name."""
    return bool(_DENIED.search(event.error_code))


# --- adapters: one CloudTrail call each -----------------------------------------------------------


def is_logging(ct: Any, trail: TrailRef) -> bool | None:
    """True/False from GetTrailStatus; None when the trail does not exist (any more)."""
    try:
        return bool(ct.get_trail_status(Name=trail.name).get("IsLogging"))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def describe(ct: Any, trail: TrailRef) -> Mapping[str, Any] | None:
    try:
        found = ct.describe_trails(trailNameList=[trail.name], includeShadowTrails=True).get("trailList") or []
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    named = [t for t in found if isinstance(t, Mapping) and trail.name in (t.get("Name"), t.get("TrailARN"))]
    return named[0] if named else None  # only the trail asked for, whatever else the answer lists


def all_trails(ct: Any) -> list[Mapping[str, Any]]:
    """Every trail visible in the region (its own, and multi-region trails homed elsewhere)."""
    found = ct.describe_trails(includeShadowTrails=True).get("trailList") or []
    return [t for t in found if isinstance(t, Mapping)]


def selectors(ct: Any, trail: TrailRef) -> Mapping[str, Any] | None:
    try:
        return dict(ct.get_event_selectors(TrailName=trail.name))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise


def start_logging(ct: Any, trail: TrailRef, stamp: str) -> Action:
    name = f"Start logging on trail {trail.short}"
    try:
        ct.start_logging(Name=trail.name)
    except ClientError as exc:
        if is_transient(exc):
            raise  # Lambda retries the event: the trail is re-read and restarted then
        why = "the guardrail lacks cloudtrail:StartLogging" if is_access_denied(exc) else "CloudTrail refused"
        return Action(name, trail.name, Status.FAILED, detail=f"{why}: {error_code(exc)}: {exc}")
    return Action(name, trail.name, Status.SUCCEEDED, at=stamp,
                  detail="CloudTrail records management events again from now on; the gap stays.",
                  undo=f"aws cloudtrail stop-logging --name {trail.name} --region {trail.region} (only if you want "
                       "the trail stopped; set TrailMode=notify first, or the guardrail starts it again)")


# --- the judges ---------------------------------------------------------------------------------


@dataclass
class Context:
    event: CloudTrailEvent
    settings: Settings
    verdict: Triage
    trail: TrailRef
    ct: Any = field(default=None)

    @property
    def actor(self) -> str:
        return Actor.from_event(self.event).inline

    @property
    def actor_start(self) -> str:
        return who(self.event)

    @property
    def when(self) -> str:
        return self.event.event_time or "an unknown time"

    def links(self) -> list[str]:
        region = self.trail.region
        out = [f"https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/trails"]
        if self.event.event_id:
            out.append(cloudtrail_link(self.event.aws_region or self.event.region, self.event.event_id))
        return out

    def finding(self, **kwargs: Any) -> Finding:
        kwargs.setdefault("links", self.links())
        return Finding.for_event(self.event, **kwargs)


GAP_STEP = ("CloudTrail Event history keeps 90 days of management events even while no trail logs: use it to "
            "see what happened during the gap.")


def account_trails(c: Context) -> tuple[TrailState | None, list[TrailState]]:
    """The named trail as it is now (None: gone), and the OTHER trails that cover the account."""
    states = read_trails(c.ct)
    mine = next((t for t in states if c.trail.name in (t.name, t.arn) or c.trail.short == t.name), None)
    others = [t for t in covering(states) if t is not mine]
    return mine, others


def still_covered(others: Sequence[TrailState]) -> str:
    """The sentence naming what still covers the account."""
    names = ", ".join(t.label for t in others)
    return (f" The account is still covered: {names} logs every region's management events, so EventBridge "
            "(and the guardrail) still sees the account.")


def judge_stop(c: Context) -> list[Finding]:
    mine, others = account_trails(c)
    who = f"{c.actor_start} stopped logging on trail {c.trail.short} ({c.trail.region}) at {c.when}."
    if mine is not None and not mine.records_management and mine.cover is not None:
        # Data events only: management events (what the guardrail and an investigation need) are
        # not affected by this trail. Never restarted: starting a data trail is a cost decision.
        severity = Severity.LOW if others else Severity.HIGH
        state = "logging again now" if mine.logging else "stopped"
        return [c.finding(
            id="trail-stopped", severity=severity,
            summary=f"CloudTrail data-events trail {c.trail.short} was stopped" + (" (logging again)" if mine.logging
                                                                                  else ""),
            what_happened=who + f" It is {state}. It records data events only (no management events)."
                          + (still_covered(others) if others else
                             " No trail logs every region's management events, though: EventBridge receives no "
                             "CloudTrail events, so the guardrail is blind until one does."),
            actions=[Action(f"Start logging on trail {c.trail.short}", c.trail.name, Status.SKIPPED,
                            detail="a data-events trail is not restarted: what it records (and costs) is your choice")]
            if not mine.logging else [],
            next_steps=([f"If you want its data events again: aws cloudtrail start-logging --name {c.trail.name} "
                         f"--region {c.trail.region}"] if not mine.logging else [])
            + ([] if others else ["Start logging on a multi-region trail that records management events."]),
        )]
    if mine is not None and mine.logging:
        return [c.finding(
            id="trail-stopped", severity=Severity.LOW if others else Severity.HIGH,
            summary=f"CloudTrail trail {c.trail.short} was stopped (logging again now)",
            what_happened=who + " The trail is logging again now (someone started it); events between the stop "
                                "and the restart were not delivered to its bucket."
                          + (still_covered(others) if others else ""),
            next_steps=[GAP_STEP, f"Find out why {c.actor} stopped the trail."],
        )]
    if mine is None:
        return [c.finding(
            id="trail-stopped", severity=Severity.LOW if others else Severity.CRITICAL,
            summary=f"CloudTrail trail {c.trail.short} was stopped and no longer exists",
            what_happened=who + " The trail cannot be found now: it was probably deleted too."
                          + (still_covered(others) if others else ""),
            actions=[Action(f"Start logging on trail {c.trail.short}", c.trail.name, Status.SKIPPED,
                            detail="the trail no longer exists")],
            next_steps=[recreate_step(c.trail), GAP_STEP],
        )]
    actions = [restart(c)]
    if others:
        return [c.finding(
            id="trail-stopped", severity=Severity.MEDIUM,
            summary=f"CloudTrail trail {c.trail.short} stopped; another trail covers the account",
            what_happened=who + " It recorded management events, now delivered to its bucket no more."
                          + still_covered(others),
            actions=actions,
            next_steps=[f"Find out why {c.actor} stopped the trail.", GAP_STEP]
            + ([f"Start it again: aws cloudtrail start-logging --name {c.trail.name} --region {c.trail.region}"]
               if actions[0].status is not Status.SUCCEEDED else []),
        )]
    return [c.finding(
        id="trail-stopped", severity=Severity.CRITICAL,
        summary=f"CloudTrail trail {c.trail.short} was stopped",
        what_happened=who + " It was the last trail logging the account's management events: while it is "
                            "stopped, nothing done in the account is written to the audit log and EventBridge "
                            "(so the guardrail) sees nothing; stopping the trail is a common step before an "
                            "attacker acts.",
        actions=actions,
        next_steps=[f"Find out why {c.actor} stopped the trail; if you do not know, treat their credentials as "
                    "compromised.", GAP_STEP]
        + ([f"Start it again: aws cloudtrail start-logging --name {c.trail.name} --region {c.trail.region}"]
           if actions[0].status is not Status.SUCCEEDED else []),
    )]


def restart(c: Context) -> Action:
    name = f"Start logging on trail {c.trail.short}"
    if c.verdict.verdict is Verdict.NOTIFY_ONLY:
        return Action(name, c.trail.name, Status.SKIPPED, detail=c.verdict.reason)
    if not c.settings.remediation_enabled:
        why = "kill switch is on" if c.settings.kill_switch else f"TrailMode is {c.settings.mode}"
        return Action(name, c.trail.name, Status.SKIPPED, detail=f"{why}: notify only")
    return start_logging(c.ct, c.trail, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))


def recreate_step(trail: TrailRef) -> str:
    return (f"Recreate it (a deleted trail cannot be restored): aws cloudtrail create-trail --name {trail.short} "
            "--s3-bucket-name <your log bucket> --is-multi-region-trail --include-global-service-events "
            f"--enable-log-file-validation --region {trail.region}, then aws cloudtrail start-logging --name "
            f"{trail.short} --region {trail.region}. Log files already delivered stay in the old bucket unless "
            "that was emptied too.")


def judge_delete(c: Context) -> list[Finding]:
    mine, covers = account_trails(c)
    who = f"{c.actor_start} deleted trail {c.trail.short} ({c.trail.region}) at {c.when}."
    if covers and mine is None:
        return [c.finding(
            id="trail-deleted", severity=Severity.LOW,
            summary=f"CloudTrail trail {c.trail.short} deleted; another trail covers the account",
            what_happened=who + still_covered(covers) + " Whatever the deleted trail recorded besides (data events, "
                                "a copy in its own bucket) is no longer recorded.",
            next_steps=[f"Only if you still need what {c.trail.short} recorded: " + recreate_step(c.trail)],
        )]
    trails = all_trails(c.ct)
    names = {str(t.get("Name")) for t in trails} | {str(t.get("TrailARN")) for t in trails}
    others = sorted(str(t.get("Name")) for t in trails if t.get("Name") != c.trail.short)
    remaining = (f" Other trails visible in {c.trail.region}: {', '.join(others)} (none of them logs every "
                 "region's management events)." if others
                 else f" No other trail is visible in {c.trail.region}: nothing keeps an audit log there.")
    if c.trail.name in names or c.trail.short in names:
        return [c.finding(
            id="trail-deleted", severity=Severity.LOW if covers else Severity.HIGH,
            summary=f"CloudTrail trail {c.trail.short} was deleted (a trail of that name exists again)",
            what_happened=who + " A trail with that name exists now (recreated): check its settings; events between "
                                "the deletion and the new trail were not logged." + remaining,
            next_steps=[GAP_STEP],
        )]
    return [c.finding(
        id="trail-deleted", severity=Severity.CRITICAL,
        summary=f"CloudTrail trail {c.trail.short} was deleted",
        what_happened=who + " The trail is gone, and with it the audit log of everything done from now on."
                      + remaining,
        actions=[Action(f"Restore trail {c.trail.short}", c.trail.name, Status.SKIPPED,
                        detail="a deleted trail cannot be restored, and its settings (bucket, KMS key, selectors) "
                               "are not in the event")],
        next_steps=[recreate_step(c.trail), GAP_STEP,
                    f"Find out why {c.actor} deleted the trail; if you do not know, treat their credentials as "
                    "compromised."],
    )]


def judge_selectors(c: Context) -> list[Finding]:
    answer = selectors(c.ct, c.trail)
    if answer is None:
        logger.info("trail no longer exists: its deletion is reported on its own", extra={"trail": c.trail.name})
        return []
    cover = coverage(answer)
    if cover.full:
        logger.info("event selectors still record every management event", extra={"trail": c.trail.name})
        return []
    gaps = cover.gaps()
    _, others = account_trails(c)
    return [c.finding(
        id="trail-selectors-narrowed", severity=Severity.LOW if others else cover.severity,
        summary=f"CloudTrail trail {c.trail.short} no longer records all management events"
        + ("; another trail covers the account" if others else ""),
        what_happened=(f"{c.actor_start} changed the event selectors of trail {c.trail.short} ({c.trail.region}) at "
                       f"{c.when}. Now " + "; ".join(gaps) + "." + (still_covered(others) if others else
                       " No other trail logs every region's management events.")),
        actions=[Action(f"Restore event selectors of {c.trail.short}", c.trail.name, Status.SKIPPED,
                        detail="not done automatically: the previous selectors are not in the event, and guessing "
                               "could drop data events you pay for")],
        next_steps=[f"If you did not intend this, record all management events again: aws cloudtrail "
                    f"put-event-selectors --trail-name {c.trail.name} --region {c.trail.region} --event-selectors "
                    "'[{\"ReadWriteType\":\"All\",\"IncludeManagementEvents\":true}]' (add back any data events "
                    "you had).", GAP_STEP],
    )]


def judge_update(c: Context) -> list[Finding]:
    trail = describe(c.ct, c.trail)
    if trail is None:
        logger.info("trail no longer exists: its deletion is reported on its own", extra={"trail": c.trail.name})
        return []
    changes = update_changes(c.event.request, trail)
    if not changes:
        logger.info("UpdateTrail did not narrow management logging",
                    extra={"trail": c.trail.name, "changed": sorted(k for k in c.event.request if k != "name")})
        return []
    others: list[TrailState] = []
    if any(ch.severity is Severity.CRITICAL for ch in changes):
        _, others = account_trails(c)
        if others:  # coverage is kept by another trail: what this one lost blinds nobody
            changes = [TrailChange(Severity.LOW, ch.what) if ch.severity is Severity.CRITICAL else ch
                       for ch in changes]
    worst = max((ch.severity for ch in changes), key=lambda s: s.rank)
    return [c.finding(
        id="trail-updated", severity=worst,
        summary=f"CloudTrail trail {c.trail.short} changed: " + ("logs less" if worst is Severity.CRITICAL
                                                                  else "audit settings weakened"),
        what_happened=(f"{c.actor_start} updated trail {c.trail.short} ({c.trail.region}) at {c.when}: "
                       + "; ".join(ch.what for ch in changes) + "." + (still_covered(others) if others else "")),
        actions=[Action(f"Revert trail {c.trail.short}", c.trail.name, Status.SKIPPED,
                        detail="not done automatically: the previous settings are not in the event")],
        next_steps=[f"If you did not intend this: aws cloudtrail update-trail --name {c.trail.name} --region "
                    f"{c.trail.region} --is-multi-region-trail --include-global-service-events "
                    "--enable-log-file-validation (and --s3-bucket-name <your log bucket> if it was moved).",
                    GAP_STEP],
    )]


_JUDGES = {"StopLogging": judge_stop, "DeleteTrail": judge_delete,
           "PutEventSelectors": judge_selectors, "UpdateTrail": judge_update}


def judge(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """The trail guard's decision for one (triaged) CloudTrail event."""
    if event.event_source != CLOUDTRAIL_SOURCE or event.event_name not in WATCHED:
        logger.info("event not judged by the trail guard", extra={"source": event.event_source})
        return []
    trail = trail_ref(event)
    if verdict.verdict is Verdict.ATTEMPT:
        if not failed_attempt_matters(event):
            logger.info("failed call on a trail: nothing changed", extra={"error": event.error_code})
            return []
        note = attempt_finding(event, f"trail {trail.short if trail else 'unknown'}")
        note.severity = Severity.MEDIUM  # someone without the right tried to blind the audit log
        return [note]
    if trail is None:
        logger.warning("request names no valid trail: nothing to read or restart",
                       extra={"trail_name": (event.param("name") or event.param("trailName"))[:200]})
        return []
    if trail.account and settings.account_id and trail.account != settings.account_id:
        logger.info("trail of another account: not ours to read or restart", extra={"trail": trail.name})
        return []
    context = Context(event, settings, verdict, trail, client("cloudtrail", trail.region))
    return _JUDGES[event.event_name](context)
