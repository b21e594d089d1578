"""The scheduled MFA sweep: console users without MFA, root MFA and root access keys, one digest.

Cost does not grow with the number of users: one IAM credential report covers the whole
account (IAM regenerates it at most every 4 hours, so it may be that old), and only the users
it flags are confirmed with one ListMFADevices call each. Calls per sweep: GenerateCredentialReport
(until COMPLETE), GetCredentialReport, GetAccountSummary, one publish, plus one per flagged user.

Idempotent by run and by user (the schedule's input carries an id; see `handle`):
- the run: its result and its rendered digest are stored once per scheduled event id (stage
  "sweep"), then the digest is published once (runtime.deliver_alerts). A retry after the digest
  failed to publish replays the stored result and re-sends only the digest: no IAM call at all;
- each user: every quarantine the run makes is recorded under "<event id>#<user>" (stage
  "sweep_user") as it is made, so a run that dies after some writes (a transient error, Lambda's
  timeout) and is retried writes only for the users not done yet;
- the stored result stays small whatever the account's size: counts and the first
  MAX_STORED_NAMES names, the digest capped (MAX_DIGEST_LINES, MAX_DIGEST_ACTIONS); every name is
  in the log. DynamoDB refuses an item over 400 KB (DynamoDB Developer Guide, "Quotas in Amazon
  DynamoDB": item size), which would lose the run's duplicate protection.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from guardrail_core import admin_reach, inventory, mfa
from guardrail_core.aws import client, error_code, is_access_denied, raise_if_transient
from guardrail_core.config import QUARANTINE, Settings
from guardrail_core.events import SCHEDULED
from guardrail_core.findings import Action, Finding, Severity, Status
from guardrail_core.runtime import REPLAYED, Outcome, at_most_once, deliver_alerts, logger, metrics, render_alerts
from guardrail_core.triage import Triage, Verdict

ROOT_ROW = "<root_account>"
# Seconds to wait between GenerateCredentialReport polls (about a minute in all).
REPORT_POLL_SECONDS = (1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0)
MAX_CONFIRMATIONS = 500  # per sweep: keeps a pathological account inside the timeout and IAM's rate limits
MAX_DIGEST_LINES = 200  # the email stays readable and far below SNS's 256 KB
MAX_DIGEST_ACTIONS = 50  # actions listed in the digest (quarantines first); the log has every one
MAX_STORED_NAMES = 50  # names kept in the stored result and the handler's answer; the log has every one
LOG_CHUNK = 1000  # names per log line (a CloudWatch Logs event is at most 256 KB)
USERS_CONSOLE = "https://us-east-1.console.aws.amazon.com/iam/home#/users"
CREDENTIAL_REPORT_CONSOLE = "https://us-east-1.console.aws.amazon.com/iam/home#/credential_report"
RESERVE_MS = 20_000  # stop confirming when less time than this is left: the digest must still go out

READ_ACTIONS = frozenset({
    "iam:GenerateCredentialReport", "iam:GetCredentialReport", "iam:GetAccountSummary", "iam:ListMFADevices",
    "iam:GetLoginProfile",
    "iam:GetGroup",  # does any member of the admin group still have MFA (admin_reach)
}) | inventory.INVENTORY_ACTIONS
WRITE_ACTIONS = frozenset({"iam:AttachUserPolicy"})

sleep: Callable[[float], None] = time.sleep  # replaced in tests that do not want to wait


class SweepError(RuntimeError):
    """The credential report could not be obtained."""


# --- the credential report (pure) -------------------------------------------------------------------


@dataclass(frozen=True)
class ReportUser:
    name: str
    arn: str
    created: datetime | None
    password_enabled: bool
    password_last_changed: datetime | None
    password_last_used: str  # a time, "no_information" or "N/A"
    mfa_active: bool
    active_access_keys: int

    password_created: datetime | None = None  # the login profile's creation, when it was read

    @property
    def password_since(self) -> datetime | None:
        """When the user's first console password was set, as far as known (the grace period runs
        from here, never from a later password change).

        The report has no 'password created' column: the login profile's creation date when it
        was read (see `password_may_be_new`), else the user's creation - a lower bound, since a
        password is never older than its user.
        """
        return self.password_created or self.created

    def password_may_be_new(self, now: datetime, grace_hours: int) -> bool:
        """The report alone cannot tell: the user is older than the grace period but the password
        was last set within it (a first password added lately, or only a change: GetLoginProfile's
        creation date decides)."""
        return (self.password_created is None and self.password_last_changed is not None
                and mfa.within_grace(self.password_last_changed, grace_hours, now))


@dataclass(frozen=True)
class RootRow:
    password_enabled: str  # "not_supported" for root in classic reports; "false" when root has no password
    mfa_active: bool | None
    active_access_keys: int


@dataclass(frozen=True)
class CredentialReport:
    users: list[ReportUser]
    root: RootRow | None = None
    generated: datetime | None = None
    unreadable_rows: int = 0


def _flag(value: str | None) -> bool | None:
    text = (value or "").strip().lower()
    return True if text == "true" else False if text == "false" else None


def parse_report(content: bytes | str, generated: datetime | None = None) -> CredentialReport:
    """Parse the CSV credential report; rows that cannot be read are counted, never guessed."""
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    users: list[ReportUser] = []
    root: RootRow | None = None
    unreadable = 0
    for row in csv.DictReader(io.StringIO(text)):
        name = (row.get("user") or "").strip()
        keys = sum(1 for k in ("access_key_1_active", "access_key_2_active") if _flag(row.get(k)))
        if name == ROOT_ROW:
            root = RootRow(password_enabled=(row.get("password_enabled") or "").strip().lower(),
                           mfa_active=_flag(row.get("mfa_active")), active_access_keys=keys)
            continue
        password, mfa_active = _flag(row.get("password_enabled")), _flag(row.get("mfa_active"))
        if not name or password is None or mfa_active is None:
            unreadable += 1
            continue
        users.append(ReportUser(
            name=name, arn=(row.get("arn") or "").strip(), created=mfa.parse_time(row.get("user_creation_time")),
            password_enabled=password, password_last_changed=mfa.parse_time(row.get("password_last_changed")),
            password_last_used=(row.get("password_last_used") or "").strip(), mfa_active=mfa_active,
            active_access_keys=keys,
        ))
    return CredentialReport(users=users, root=root, generated=generated, unreadable_rows=unreadable)


def select_offenders(
    users: list[ReportUser], now: datetime, grace_hours: int,
) -> tuple[list[ReportUser], list[ReportUser]]:
    """(console users without MFA past the grace period as far as the report tells, those within it).

    Flagged users for whom `password_may_be_new` holds are checked with GetLoginProfile by `run`."""
    flagged: list[ReportUser] = []
    in_grace: list[ReportUser] = []
    for user in users:
        if not user.password_enabled or user.mfa_active:
            continue
        (in_grace if mfa.within_grace(user.password_since, grace_hours, now) else flagged).append(user)
    return flagged, in_grace


@dataclass(frozen=True)
class RootFacts:
    mfa_enabled: bool | None
    access_keys: bool | None
    has_password: bool | None
    source: str


def root_facts(summary: Mapping[str, Any] | None, row: RootRow | None) -> RootFacts:
    """GetAccountSummary is current; the report's root row (up to 4 h old) is the fallback."""
    has_password = None if row is None else row.password_enabled != "false"
    if summary is not None and "AccountMFAEnabled" in summary:
        return RootFacts(mfa_enabled=bool(summary.get("AccountMFAEnabled")),
                         access_keys=bool(summary.get("AccountAccessKeysPresent")),
                         has_password=has_password, source="GetAccountSummary")
    if row is not None:
        return RootFacts(mfa_enabled=row.mfa_active, access_keys=row.active_access_keys > 0,
                         has_password=has_password, source="credential report")
    return RootFacts(None, None, has_password, source="unavailable")


# --- the sweep -----------------------------------------------------------------------------------------


@dataclass
class Offender:
    user: ReportUser
    confirmed: bool = True
    note: str = ""
    exempt: bool = False
    action: Action | None = None


@dataclass
class SweepResult:
    report: CredentialReport
    root: RootFacts
    offenders: list[Offender] = field(default_factory=list)
    in_grace: list[ReportUser] = field(default_factory=list)
    enrolled_since_report: list[str] = field(default_factory=list)
    unchecked: int = 0  # flagged users not confirmed (cap or time): listed, never quarantined
    summary_error: str = ""

    @property
    def root_issues(self) -> list[str]:
        issues = []
        if self.root.mfa_enabled is False and self.root.has_password is not False:
            issues.append("root user: no MFA device - the root password alone signs in with full control")
        if self.root.access_keys:
            issues.append("root user: access keys present - anyone holding them has full, unrestricted control")
        return issues


def fetch_report(iam: Any, remaining_ms: Callable[[], int]) -> CredentialReport:
    """GenerateCredentialReport until COMPLETE (a report under 4 h old is reused by IAM), then get it."""
    for delay in (*REPORT_POLL_SECONDS, None):
        state = str(iam.generate_credential_report().get("State", ""))
        if state == "COMPLETE":
            break
        if delay is None or remaining_ms() < delay * 1000 + 2 * RESERVE_MS:
            raise SweepError(f"credential report still {state or 'not ready'} after polling")
        sleep(delay)
    response = iam.get_credential_report()
    return parse_report(response.get("Content", b""), mfa.parse_time(response.get("GeneratedTime")))


def confirm(iam: Any, user: ReportUser) -> tuple[bool | None, str]:
    """Confirm one flagged user with ListMFADevices: (True: no MFA, False: has MFA/gone, None: unknown)."""
    try:
        devices = mfa.mfa_devices(iam, user.name)
    except ClientError as exc:
        raise_if_transient(exc)  # throttling past the client's retries, 5xx: the run fails, Lambda retries
        return None, f"could not confirm ({error_code(exc)}); the report says no MFA"
    if devices is None:
        return False, "deleted since the report"
    return (False, "enrolled since the report") if devices else (True, "")


def first_password(iam: Any, user: ReportUser) -> ReportUser:
    """The user with `password_created` from GetLoginProfile (unchanged when it cannot be read:
    then the user's creation date stands, and the user is reported rather than given more grace)."""
    try:
        profile = mfa.login_profile(iam, user.name)
    except ClientError as exc:
        if not is_access_denied(exc):
            raise
        return user
    return replace(user, password_created=profile.created) if profile.created else user


def _action_record(action: Action) -> dict[str, str]:
    return {**asdict(action), "status": action.status.value}


def _action(record: Mapping[str, Any]) -> Action:
    return Action(**{**record, "status": Status(record["status"])})


def quarantine_once(iam: Any, settings: Settings, user: str, run_key: str = "", context: Any = None) -> Action:
    """Attach the quarantine policy to `user` once per sweep run: the action is recorded under
    "<run key>#<user>" (IAM user names are case-insensitive), so a retried run replays it instead
    of writing again. Without a run key (a hand-made invocation) or a table: attach directly."""
    key = f"{run_key}#{user.lower()}" if run_key else ""
    record, _ = at_most_once("sweep_user", key, lambda: _action_record(mfa.attach_quarantine(iam, settings, user)),
                      settings, context)
    return _action(record)


def run(iam: Any, settings: Settings, now: datetime, remaining_ms: Callable[[], int], *,
        run_key: str = "", context: Any = None) -> SweepResult:
    report = fetch_report(iam, remaining_ms)
    summary: Mapping[str, Any] | None = None
    summary_error = ""
    try:
        summary = iam.get_account_summary().get("SummaryMap", {})
    except ClientError as exc:  # the report's root row still answers, up to 4 h old
        summary_error = error_code(exc)
        logger.warning("GetAccountSummary failed: using the credential report's root row",
                       extra={"error": summary_error})
    result = SweepResult(report=report, root=root_facts(summary, report.root), summary_error=summary_error)
    flagged, result.in_grace = select_offenders(report.users, now, settings.mfa_grace_hours)
    sweep_verdict = Triage(Verdict.ACT, "scheduled sweep")
    for index, user in enumerate(flagged):
        if index >= MAX_CONFIRMATIONS or remaining_ms() < RESERVE_MS:
            result.unchecked = len(flagged) - index
            result.offenders += [Offender(u, confirmed=False, note="not confirmed this run (time or call cap)")
                                 for u in flagged[index:]]
            break
        without_mfa, note = confirm(iam, user)
        if without_mfa is False:
            if note.startswith("enrolled"):
                result.enrolled_since_report.append(user.name)
            continue
        if without_mfa and user.password_may_be_new(now, settings.mfa_grace_hours):
            user = first_password(iam, user)
            if mfa.within_grace(user.password_since, settings.mfa_grace_hours, now):
                result.in_grace.append(user)
                continue
        offender = Offender(user, confirmed=bool(without_mfa), note=note,
                            exempt=mfa.user_exempt(settings, user.name, user.arn))
        blocker = mfa.quarantine_blocker(settings, sweep_verdict, user.name, user.arn)
        if offender.confirmed and not blocker:
            offender.action = quarantine_once(iam, settings, user.name, run_key, context)
        elif settings.mode == QUARANTINE:
            why = blocker or "not confirmed: never quarantined on the report alone"
            offender.action = Action(f"Quarantine {user.name}", user.name, Status.SKIPPED, detail=why)
        result.offenders.append(offender)
    return result


# --- the digest ------------------------------------------------------------------------------------------


def _day(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d") if moment else "unknown"


def offender_line(offender: Offender) -> str:
    user = offender.user
    last = user.password_last_used
    last = "never" if last in ("N/A", "no_information", "") else last[:10]
    since = (f"first console password {_day(user.password_since)}" if user.password_created
             else f"user since {_day(user.created)}")
    line = (f"{user.name}: {since}, no MFA device; "
            f"last console sign-in {last}; active access keys {user.active_access_keys}")
    if offender.exempt:
        line += "; exempt principal (never quarantined)"
    if offender.note:
        line += f"; {offender.note}"
    return line


def digest(result: SweepResult, settings: Settings, now: datetime) -> Finding | None:
    """One finding for the whole sweep, or None when all is well (unless asked to say so)."""
    root_issues = result.root_issues
    offenders = result.offenders
    if not root_issues and not offenders and not settings.notify_when_clean:
        return None
    consoles = sum(1 for u in result.report.users if u.password_enabled)
    parts = []
    if offenders:
        parts.append(f"{len(offenders)} console user{'s' if len(offenders) != 1 else ''} without MFA")
    if result.root.mfa_enabled is False and result.root.has_password is not False:
        parts.append("root without MFA")
    if result.root.access_keys:
        parts.append("root access keys present")
    severity = Severity.CRITICAL if root_issues else Severity.MEDIUM if offenders else Severity.INFO
    summary = "MFA sweep: " + (", ".join(parts) if parts else f"all clear ({consoles} console users have MFA)")
    generated = mfa.stamp(result.report.generated) if result.report.generated else "unknown time"
    what = (f"The scheduled MFA sweep read the IAM credential report (generated {generated}; IAM refreshes it at "
            f"most every 4 hours) covering {len(result.report.users)} users, {consoles} with a console password, "
            "and confirmed each user it flagged by reading their MFA devices directly. "
            f"Console users get {settings.mfa_grace_hours} h from their first console password to enrol MFA "
            "(a later password change does not restart it).")
    if result.root.source != "GetAccountSummary":
        what += f" Root facts come from the {result.root.source} (GetAccountSummary failed: {result.summary_error})."
    items = list(root_issues) + [offender_line(o) for o in offenders]
    if len(items) > MAX_DIGEST_LINES:
        hidden = len(items) - MAX_DIGEST_LINES
        items = [*items[:MAX_DIGEST_LINES], f"... and {hidden} more (the sweep's log lists every user)"]
    if result.in_grace:
        names = ", ".join(f"{u.name} (until {mfa.stamp(d)})" for u in result.in_grace[:10]
                          if (d := mfa.grace_deadline(u.password_since, settings.mfa_grace_hours)))
        more = f" and {len(result.in_grace) - 10} more" if len(result.in_grace) > 10 else ""
        items.append(f"not yet due - within the grace period: {names}{more}")
    if result.enrolled_since_report:
        items.append(f"enrolled since the report (no action): {', '.join(result.enrolled_since_report[:10])}")
    if result.report.unreadable_rows:
        items.append(f"{result.report.unreadable_rows} report rows could not be read (check the report by hand)")
    steps: list[str] = []
    every_action = [o.action for o in offenders if o.action]
    quarantined_any = any(a.status is Status.SUCCEEDED for a in every_action)
    # Done and failed first (a stable sort), then the ones not made; the log lists every one.
    actions = sorted(every_action, key=lambda a: a.status is Status.SKIPPED)[:MAX_DIGEST_ACTIONS]
    if len(every_action) > len(actions):
        done = sum(a.status is Status.SUCCEEDED for a in every_action)
        items.append(f"{len(every_action) - len(actions)} more actions not listed below ({done} quarantines made "
                     "in all; the sweep's log lists every one)")
    if offenders:
        steps += mfa.enrol_steps(settings, "<user>", self_service=not quarantined_any)
    if result.root.mfa_enabled is False and result.root.has_password is not False:
        steps.append("Root MFA: sign in as the root user, open the account menu > Security credentials > "
                     "Multi-factor authentication (MFA) > Assign MFA device. Keep the device somewhere safe.")
    if result.root.access_keys:
        steps.append("Root access keys: sign in as the root user, open Security credentials > Access keys, "
                     "check when each key was last used, then deactivate and delete them. Use IAM users or "
                     "roles instead.")
    if quarantined_any:
        steps.append(mfa.quarantine_note(settings, "<user>"))
    return Finding(
        id="mfa-sweep", severity=severity, summary=summary, account_id=settings.account_id,
        region=settings.region, what_happened=what, event_time=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        actions=actions, next_steps=steps, items=items,
        links=[USERS_CONSOLE, CREDENTIAL_REPORT_CONSOLE],
    )


# --- the entry point's work ---------------------------------------------------------------------------------


def _no_deadline() -> int:
    return 10**9


def _failure_finding(settings: Settings, now: datetime, why: str) -> Finding:
    return Finding(
        id="mfa-sweep-failed", severity=Severity.MEDIUM, summary="MFA sweep could not run",
        account_id=settings.account_id, region=settings.region, event_time=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        what_happened=f"The scheduled MFA sweep could not read the IAM credential report: {why}. "
                      "Users without MFA are not being reported until this is fixed.",
        next_steps=["If this says AccessDenied, redeploy the stack: the sweep role must allow "
                    "iam:GenerateCredentialReport and iam:GetCredentialReport.",
                    "Check by hand meanwhile: aws iam generate-credential-report && aws iam get-credential-report"],
    )


def handle(raw: Any, settings: Settings, remaining_ms: Callable[[], int] | None = None, *,
           context: Any = None) -> dict[str, Any]:
    """Run one sweep for a scheduled (or hand-made, e.g. {}) invocation; returns what the handler returns.

    Once per scheduled event id (see the module docstring): the sweep and its writes run once and
    their result is stored; the digest is then published once. A failed publish raises
    (runtime.AlertDeliveryError) so Lambda retries, and the retry only re-sends the digest.
    """
    remaining = remaining_ms or _no_deadline
    if not isinstance(raw, Mapping):
        logger.warning("sweep input ignored", extra={"reason": f"event is {type(raw).__name__}"})
        metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
        return Outcome("malformed", f"event is {type(raw).__name__}, expected an object").to_dict()
    detail_type = raw.get("detail-type")
    if detail_type is not None and detail_type != SCHEDULED:
        # Only a schedule (or a bare manual invoke) starts a sweep: a misrouted event is not one.
        logger.info("event ignored", extra={"reason": f"detail-type {detail_type!r} is not a schedule"})
        metrics.add_metric(name="IgnoredEvents", unit=MetricUnit.Count, value=1)
        return Outcome("ignored", f"detail-type {str(detail_type)[:100]!r} is not a Scheduled Event").to_dict()
    given = raw.get("id")
    key = given[:256] if isinstance(given, str) else ""
    acted, how = at_most_once("sweep", key, lambda: sweep_once(settings, remaining, key, context), settings, context)
    if how == REPLAYED:
        logger.info("this scheduled run was already swept: its writes are not repeated, only an undelivered "
                    "digest is sent")
        metrics.add_metric(name="DuplicateEvents", unit=MetricUnit.Count, value=1)
    outcome: dict[str, Any] = dict(acted["outcome"])
    outcome["published"] = deliver_alerts(list(acted["alerts"]), settings, key=key, context=context)
    if how == REPLAYED:
        outcome["duplicate"] = True
    return outcome


def _log_names(message: str, names: list[str]) -> None:
    """Every name, LOG_CHUNK to a line (the stored result and the email keep only the first ones)."""
    for start in range(0, len(names), LOG_CHUNK):
        logger.info(message, extra={"part": start // LOG_CHUNK + 1, "count": len(names),
                                    "names": names[start:start + LOG_CHUNK]})


def stored_summary(result: SweepResult) -> dict[str, Any]:
    """What the stored result and the handler's answer say about the sweep: counts and the first
    MAX_STORED_NAMES names (small whatever the account's size; the log has every name)."""
    offenders = [o.user.name for o in result.offenders]
    in_grace = [u.name for u in result.in_grace]
    return {
        "users": len(result.report.users),
        "offender_count": len(offenders), "offenders": offenders[:MAX_STORED_NAMES],
        "in_grace_count": len(in_grace), "in_grace": in_grace[:MAX_STORED_NAMES],
        "root_issues": result.root_issues, "unchecked": result.unchecked,
        "quarantined": sum(1 for o in result.offenders if o.action and o.action.status is Status.SUCCEEDED),
        "names_in_log_only": len(offenders) > MAX_STORED_NAMES or len(in_grace) > MAX_STORED_NAMES,
    }


def sweep_once(settings: Settings, remaining: Callable[[], int], key: str = "", context: Any = None) -> dict[str, Any]:
    """One run's work: read, judge, quarantine (once per user), render the digest.

    Returns what is stored for the run: the outcome (small) and the rendered digest, so a retry
    re-sends exactly this email. Transient AWS errors are raised (Lambda retries the run)."""
    now = mfa.utc_now()
    iam = client("iam")
    try:
        result = run(iam, settings, now, remaining, run_key=key, context=context)
    except (SweepError, ClientError) as exc:
        if isinstance(exc, ClientError) and not is_access_denied(exc):
            raise  # throttled or 5xx after the client's retries: let Lambda retry the sweep
        why = str(exc) if isinstance(exc, SweepError) else f"{error_code(exc)} ({exc})"
        logger.error("sweep failed", extra={"reason": why})
        failure = _failure_finding(settings, now, why)
        return {"outcome": Outcome("failed", why, [failure]).to_dict(), "alerts": render_alerts([failure], settings)}
    metrics.add_metric(name="SweepUsers", unit=MetricUnit.Count, value=len(result.report.users))
    metrics.add_metric(name="SweepOffenders", unit=MetricUnit.Count, value=len(result.offenders))
    summary = stored_summary(result)
    logger.info("sweep done", extra={"summary": summary})
    _log_names("sweep offenders", [o.user.name for o in result.offenders])
    _log_names("sweep users within the grace period", [u.name for u in result.in_grace])
    actions = [_action_record(o.action) for o in result.offenders if o.action]
    for start in range(0, len(actions), LOG_CHUNK):
        logger.info("sweep actions", extra={"actions": actions[start:start + LOG_CHUNK]})
    held, why_not = inventory.take(iam, settings)  # admin grants outside the baseline: once a day in the digest
    finding = inventory.with_grants(digest(result, settings, now), held, why_not, settings, now)
    findings = [finding] if finding else []
    nobody = admin_reach.group_without_mfa(iam, settings.admin_group, {u.name for u in result.report.users
                                                                       if u.mfa_active}, mfa.mfa_devices)
    if nobody is not None:
        findings.append(admin_reach.finding(
            settings, "The daily MFA sweep checked every member of the admin group.",
            members=nobody, when=now.strftime("%Y-%m-%dT%H:%M:%SZ")))
    reason = f"{len(result.offenders)} offenders, {len(result.root_issues)} root issues"
    outcome = Outcome("handled", reason, findings).to_dict()
    return {"outcome": {**outcome, "sweep": summary}, "alerts": render_alerts(findings, settings)}
