"""Root user activity: every root sign-in and root API call is news. Notify only.

The root user is never "remediated": the guardrail cannot (and must not) lock out the
account's owner; it tells them, within minutes, what root did and what to do if it was not them.

- `ConsoleLogin` as root: success with MFA HIGH, success WITHOUT MFA CRITICAL, failure MEDIUM
  (HIGH from the REPEATED_FAILURES-th failure within an hour that this container has seen);
  a failure with `MFAUsed: Yes` failed at the MFA step, after the password was accepted: HIGH
  (CloudTrail User Guide, "AWS Management Console sign-in events": a sign-in that fails at the
  MFA step is recorded as `ConsoleLogin: Failure`, "Failed authentication", `MFAUsed: Yes`).
- Calls made in a privileged root session opened from the organization's management account
  (`sts:AssumeRoot`, centralized root access: userIdentity type Root with
  `sessionContext.assumedRoot: "true"`; IAM User Guide, "Track privileged tasks in AWS
  CloudTrail") are named as such, with the advice that fits (no "change the root password").
- Root password changed or recovered (sign-in events): HIGH; refused: MEDIUM.
- API calls made as root (console or root access key; AWS services acting for root, i.e.
  `invokedBy` other than the console, are left out by the rule): HIGH; `CreateAccessKey` for
  root itself and root MFA removal: CRITICAL; refused calls: MEDIUM.

Budget: one sns:Publish per event and no IAM call once the container is warm: the account
alias shown in the email is read once per container (`account_alias`, cached, also when the
read fails) and never again.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from guardrail_core.alerts import cloudtrail_link
from guardrail_core.aws import client, error_code
from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent, MalformedEvent, parse_timestamp
from guardrail_core.findings import Finding, Severity, who
from guardrail_core.runtime import logger
from guardrail_core.triage import Triage, Verdict

SIGNIN_SOURCE = "signin.amazonaws.com"
IAM_SOURCE = "iam.amazonaws.com"
CONSOLE_INVOKER = "signin.amazonaws.com"  # root clicking in the console: still root's own call
ROOT_MFA_USER = "aws root user"  # requestParameters.userName when root manages its own MFA
ROOT_MFA_DEVICE = "root-account-mfa-device"  # the console's name for root's virtual MFA device
MFA_REMOVAL = frozenset({"DeactivateMFADevice", "DeleteVirtualMFADevice"})
PASSWORD_EVENTS = frozenset({"PasswordUpdated", "PasswordRecoveryRequested", "PasswordRecoveryCompleted"})
FAILURE_WINDOW = timedelta(hours=1)
REPEATED_FAILURES = 3

# Every AWS action this module may call (publishing is runtime's), for the least-privilege test.
READ_ACTIONS = frozenset({"iam:ListAccountAliases"})
WRITE_ACTIONS: frozenset[str] = frozenset()

SECURITY_CREDENTIALS = "https://us-east-1.console.aws.amazon.com/iam/home#/security_credentials"
ACCOUNT_SETTINGS = "https://us-east-1.console.aws.amazon.com/billing/home#/account"
SIGNIN_PAGE = "https://signin.aws.amazon.com/console"


class Kind(StrEnum):
    SIGNIN = "signin"
    PASSWORD = "password"
    ROOT_KEY = "root-access-key"
    ROOT_MFA_REMOVED = "root-mfa-removed"
    API_CALL = "api-call"
    NONE = "none"


# --- pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignIn:
    """What a root sign-in record says, normalised for the email."""

    succeeded: bool
    mfa: str  # "yes", "no", or "" when the record does not say
    endpoint_region: str
    login_to: str = ""
    mobile: str = ""
    mfa_device: str = ""


def _text(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    return value.strip() if isinstance(value, str) else ""


def signin_facts(event: CloudTrailEvent) -> SignIn:
    """Success only when the record says so: a missing or odd result counts as a failure."""
    result = _text(event.response, event.event_name) or _text(event.response, "ConsoleLogin")
    return SignIn(
        succeeded=result.lower() == "success" and not event.failed,
        mfa=_text(event.additional, "MFAUsed").lower(),
        endpoint_region=event.aws_region or event.region,
        login_to=_text(event.additional, "LoginTo")[:512],
        mobile=_text(event.additional, "MobileVersion"),
        mfa_device=_text(event.additional, "MFAIdentifier")[:256],
    )


def failed_at_mfa(signin: SignIn) -> bool:
    """A failed sign-in that got past the password: CloudTrail records MFAUsed Yes for it."""
    return not signin.succeeded and signin.mfa == "yes"


def signin_severity(signin: SignIn, failures_in_window: int = 0) -> Severity:
    if not signin.succeeded:
        if failed_at_mfa(signin):
            return Severity.HIGH  # the password was right: someone has it
        return Severity.HIGH if failures_in_window >= REPEATED_FAILURES else Severity.MEDIUM
    return Severity.HIGH if signin.mfa == "yes" else Severity.CRITICAL


def is_root_mfa_target(event: CloudTrailEvent) -> bool:
    """The MFA call concerns root's own device (root names itself 'AWS ROOT USER' or no user at all)."""
    user = event.param("userName").strip().lower()
    serial = event.param("serialNumber")
    if re.search(rf":mfa/{ROOT_MFA_DEVICE}$", serial):
        return True
    return event.identity.is_root and user in ("", ROOT_MFA_USER)


def root_is_caller(event: CloudTrailEvent) -> bool:
    """Root made the call itself (directly or in the console), not an AWS service on its behalf."""
    return event.identity.is_root and event.identity.invoked_by in ("", CONSOLE_INVOKER)


def classify(event: CloudTrailEvent) -> Kind:
    if event.event_source == SIGNIN_SOURCE and event.identity.is_root:
        if event.event_name == "ConsoleLogin":
            return Kind.SIGNIN
        return Kind.PASSWORD if event.event_name in PASSWORD_EVENTS else Kind.NONE
    if event.event_source == IAM_SOURCE and event.event_name in MFA_REMOVAL and is_root_mfa_target(event):
        return Kind.ROOT_MFA_REMOVED
    if not root_is_caller(event):
        return Kind.NONE
    if event.event_source == IAM_SOURCE and event.event_name == "CreateAccessKey" and not event.param("userName"):
        return Kind.ROOT_KEY  # no userName: the key is for the caller, root itself
    return Kind.API_CALL


class FailureWindow:
    """Failed root sign-ins this container has seen, per account, within FAILURE_WINDOW.

    Best effort and free (no AWS call): another container may have seen more, so the count
    is a lower bound. Keyed by event time, not the clock, so late deliveries count right.
    """

    def __init__(self, window: timedelta = FAILURE_WINDOW, keep: int = 100) -> None:
        self.window = window
        self.keep = keep
        self._seen: dict[str, deque[tuple[datetime, str]]] = {}

    def add(self, account: str, when: datetime, event_id: str) -> int:
        """Record one failure; returns how many fall in the window ending at `when`."""
        seen = self._seen.setdefault(account, deque(maxlen=self.keep))
        if not event_id or all(eid != event_id for _, eid in seen):
            seen.append((when, event_id))
        return sum(1 for moment, _ in seen if when - self.window < moment <= when)


_failures = FailureWindow()


def event_moment(when: CloudTrailEvent | str) -> datetime:
    """When the event happened (an event's `moment`, within the sane range `events.validate`
    checked; or a timestamp, read the same way), or now when it does not say."""
    if isinstance(when, str):
        try:
            return parse_timestamp(when)
        except MalformedEvent:
            return datetime.now(UTC)
    return when.moment or datetime.now(UTC)


# --- the one read, once per container -----------------------------------------------------------


@cache
def account_alias() -> str:
    """The account alias for the email, '' when there is none or it cannot be read (cached either way)."""
    try:
        aliases = client("iam").list_account_aliases().get("AccountAliases") or []
    except (ClientError, BotoCoreError) as exc:  # a timeout or a refusal: the alert goes out without the alias
        logger.warning("account alias not read: emails show the account id only",
                       extra={"error": error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__})
        return ""
    return str(aliases[0]) if aliases and isinstance(aliases[0], str) else ""


def account_words(settings: Settings, event: CloudTrailEvent) -> tuple[str, str]:
    """('123456789012 (alias prod)', ' (prod)'): the account for the text, and a tag for the subject."""
    account = event.event_account or settings.account_id
    alias = account_alias()
    return (f"{account} (alias {alias})" if alias else account), (f" ({alias})" if alias else "")


# --- email text ---------------------------------------------------------------------------------


def _where(event: CloudTrailEvent) -> str:
    parts = [f"from {event.source_ip or 'an unknown IP address'}"]
    if event.user_agent:
        parts.append(f"with user agent {event.user_agent[:300]!r}")
    return ", ".join(parts)


def _links(event: CloudTrailEvent) -> list[str]:
    region = event.aws_region or event.region or "us-east-1"
    links = [SECURITY_CREDENTIALS]
    if event.event_id:
        links.append(cloudtrail_link(region, event.event_id))
    links.append(f"https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events")
    return links


def root_session_steps(event: CloudTrailEvent) -> list[str]:
    """Advice for a privileged root session opened from the management account (sts:AssumeRoot)."""
    key = event.identity.access_key_id or "the access key shown above"
    steps = [
        "If your organization's administrators did this on purpose (a privileged task such as deleting root "
        "credentials or unlocking a bucket policy): nothing to do.",
        "Otherwise find who opened the session: in the management account (or IAM's delegated administrator "
        f"account), CloudTrail Event history, Event name = AssumeRoot; the event whose credentials are {key} "
        "names the principal. Then review who holds sts:AssumeRoot there and limit it (IAM policy or SCP).",
    ]
    if event.event_name == "DeleteLoginProfile":
        steps.append("The root user of this account has no password now, by design of centralized root access: "
                     "nobody can sign in as root here. To allow password recovery again, the management account "
                     "runs the privileged task 'Allow password recovery' (IAM console > Root access management).")
    elif event.event_name == "CreateLoginProfile":
        steps.append("Password recovery for root is allowed again: whoever controls the root email address can now "
                     "set a root password. If that was not intended, delete the root credentials again from the "
                     "management account (IAM console > Root access management > Delete root user credentials).")
    return steps


ROOT_TASKS = {  # what a privileged root session did, in words (IAM User Guide, the "root-task" policies)
    "DeleteLoginProfile": "Root password deleted",
    "CreateLoginProfile": "Root password recovery allowed",
    "DeleteAccessKey": "Root access key deleted",
    "DeactivateMFADevice": "Root MFA device removed",
    "DeleteSigningCertificate": "Root signing certificate deleted",
    "DeleteBucketPolicy": "Bucket policy deleted",
    "DeleteQueuePolicy": "Queue policy deleted",
}
ROOT_SESSION_WHO = "a root session from the management account (AssumeRoot)"


def if_not_you(*, signed_in: bool) -> list[str]:
    steps = [
        "If this was you: nothing to do. Use root only for the few tasks that need it; sign in as your IAM user "
        "and assume the admin role for everything else.",
        f"If it was NOT you: change the root password now ({SIGNIN_PAGE}, 'Root user'; use 'Forgot password' if "
        "it no longer works - the reset goes to the root email address, so secure that mailbox too).",
        f"Check root's MFA on the Security credentials page ({SECURITY_CREDENTIALS}): only your devices should be "
        "listed; remove any you do not recognise and add one if there is none.",
        "Root should have no access keys: delete any listed on the same page (rotate nothing - root needs none).",
    ]
    if signed_in:
        steps.append("Review what root did after signing in: CloudTrail Event history, filter 'User name' = root "
                     "(link below); check the account's contact details and alternate contacts were not changed "
                     f"({ACCOUNT_SETTINGS}).")
    else:
        steps.append("Review recent root activity in CloudTrail Event history (filter 'User name' = root).")
    return steps


def signin_finding(event: CloudTrailEvent, settings: Settings, failures_in_window: int = 0) -> Finding:
    facts = signin_facts(event)
    account, tag = account_words(settings, event)
    severity = signin_severity(facts, failures_in_window)
    mfa_words = {"yes": "with MFA", "no": "WITHOUT MFA"}.get(facts.mfa, "(the record does not say if MFA was used)")
    details = [f"Sign-in endpoint region: {facts.endpoint_region or 'unknown'}."]
    if facts.login_to:
        details.append(f"Signing in to: {facts.login_to}.")
    if facts.mobile:
        details.append(f"Mobile console: {facts.mobile}.")
    if facts.mfa_device:
        details.append(f"MFA device: {facts.mfa_device}.")
    if facts.succeeded:
        summary = f"Root user signed in to the console {'with MFA' if facts.mfa == 'yes' else 'WITHOUT MFA'}{tag}"
        what = (f"Someone signed in to account {account} as the ROOT user {mfa_words}, {_where(event)}, at "
                f"{event.event_time or 'an unknown time'}. Sign-in succeeded. " + " ".join(details))
        if facts.mfa != "yes":
            what += " Without MFA, the root password alone was enough: anyone who has it controls the account."
    elif failed_at_mfa(facts):
        summary = f"Root sign-in failed at the MFA step: the password was right{tag}"
        what = (f"Someone signed in to account {account} as the ROOT user with the right password, {_where(event)}, "
                f"at {event.event_time or 'an unknown time'}, and failed at the MFA step "
                f"({event.error_message or 'failed authentication'}; MFA used: yes). Only MFA stopped them: "
                "whoever this was knows the root password. " + " ".join(details))
    else:
        repeated = failures_in_window >= REPEATED_FAILURES
        summary = (f"{failures_in_window} failed root sign-ins within an hour{tag}" if repeated
                   else f"Failed root console sign-in{tag}")
        what = (f"Someone tried to sign in to account {account} as the ROOT user, {_where(event)}, at "
                f"{event.event_time or 'an unknown time'}, and failed ({event.error_message or 'failed authentication'}"
                f"; MFA used: {facts.mfa or 'not recorded'}). Nothing was accessed, but they know the root email "
                f"address. " + " ".join(details))
        if repeated:
            what += (f" This guardrail has seen {failures_in_window} failed root sign-ins for this account within "
                     "an hour (a lower bound): someone may be guessing the password.")
    steps = if_not_you(signed_in=facts.succeeded)
    if failed_at_mfa(facts):  # the you / not-you pair, said for a password that was right
        steps[:2] = [f"If this was you mistyping the MFA code: nothing to do. Otherwise change the root password now "
                     f"({SIGNIN_PAGE}, 'Root user'; use 'Forgot password' if it no longer works - the reset goes to "
                     "the root email address, so secure that mailbox too), and keep root's MFA device safe: it is "
                     "all that stood in the way."]
    return Finding.for_event(
        event, id="root-console-signin" if facts.succeeded else (
            "root-console-signin-failed-mfa" if failed_at_mfa(facts) else "root-console-signin-failed"),
        severity=severity, summary=summary, what_happened=what, who="",
        next_steps=steps, links=_links(event),
    )


def password_finding(event: CloudTrailEvent, settings: Settings) -> Finding:
    facts = signin_facts(event)
    account, tag = account_words(settings, event)
    words = {
        "PasswordUpdated": "changed the root password",
        "PasswordRecoveryRequested": "asked for a root password reset email",
        "PasswordRecoveryCompleted": "reset the root password through the recovery email",
    }[event.event_name]
    outcome = "It succeeded." if facts.succeeded else "It did not succeed."
    summary = (f"Root password {'changed' if event.event_name != 'PasswordRecoveryRequested' else 'reset requested'}"
               f"{'' if facts.succeeded else ' (failed)'}{tag}")
    return Finding.for_event(
        event, id="root-password", severity=Severity.HIGH if facts.succeeded else Severity.MEDIUM,
        summary=summary,
        what_happened=(f"Someone {words} of account {account}, {_where(event)}, at "
                       f"{event.event_time or 'an unknown time'}. {outcome} If it was not you, someone controls the "
                       "root email address or a root session."),
        next_steps=if_not_you(signed_in=True), links=_links(event), who="",
    )


def root_session_finding(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> Finding:
    """A call made in a privileged root session opened from the management account (sts:AssumeRoot)."""
    account, tag = account_words(settings, event)
    service = event.event_source.split(".")[0] or "an AWS service"
    did = ROOT_TASKS.get(event.event_name, f"{event.event_name} ({service}) called")
    refused = verdict.verdict is Verdict.ATTEMPT
    source = event.identity.source_identity
    opener = f" (source identity set by the caller: {source})" if source else ""
    action = (f"tried {event.event_name} ({service})" if refused
              else f"called {event.event_name} ({service}): {did[:1].lower() + did[1:]}")
    what = (f"A privileged root session opened from your organization's management account (or IAM's delegated "
            f"administrator) with sts:AssumeRoot - centralized root access - {action} in account {account}, "
            f"{_where(event)}, at {event.event_time or 'an unknown time'}{opener}. The session's access key is "
            f"{event.identity.access_key_id or 'not recorded'}; this account's root password was not used.")
    if refused:
        what += f" AWS refused it ({event.error_code}): nothing changed."
    return Finding.for_event(
        event, id="root-session-call", severity=Severity.MEDIUM if refused else Severity.HIGH,
        summary=f"{'Refused: ' + event.event_name if refused else did}{tag}",
        who=ROOT_SESSION_WHO, what_happened=what, next_steps=root_session_steps(event),
        links=_links(event),
    )


def api_finding(event: CloudTrailEvent, settings: Settings, kind: Kind, verdict: Triage) -> Finding:
    account, tag = account_words(settings, event)
    service = event.event_source.split(".")[0] or "an AWS service"
    how = ("in the console" if event.identity.invoked_by == CONSOLE_INVOKER
           else "with root credentials (an access key or a console session)")
    when = event.event_time or "an unknown time"
    if event.identity.assumed_root:
        return root_session_finding(event, settings, verdict)
    if verdict.verdict is Verdict.ATTEMPT and not event.identity.is_root:
        return refused_by_another(event, account, tag, when)
    if verdict.verdict is Verdict.ATTEMPT:
        return Finding.for_event(
            event, id="root-api-call-failed", severity=Severity.MEDIUM, who="",
            summary=f"Root user tried {event.event_name} ({service}) and was refused{tag}",
            what_happened=(f"The ROOT user of account {account} called {event.event_name} on {service} {how}, "
                           f"{_where(event)}, at {when}; AWS refused it with {event.error_code}. Nothing changed, "
                           "but someone is using root."),
            next_steps=if_not_you(signed_in=True), links=_links(event),
        )
    steps = if_not_you(signed_in=True)
    if kind is Kind.ROOT_KEY:
        key = event.response.get("accessKey") if isinstance(event.response, Mapping) else None
        key_id = _text(key, "accessKeyId") if isinstance(key, Mapping) else ""
        steps.insert(0, f"Delete the new root access key {key_id or ''} now unless you have a reason for it that "
                        f"nothing else can serve: Security credentials page ({SECURITY_CREDENTIALS}), 'Access "
                        "keys', Delete. A root key cannot be limited by any policy.")
        return Finding.for_event(
            event, id="root-access-key-created", severity=Severity.CRITICAL, who="",
            summary=f"Access key created for the ROOT user{tag}",
            what_happened=(f"The ROOT user of account {account} created an access key for itself "
                           f"{'(' + key_id + ') ' if key_id else ''}{how}, {_where(event)}, at {when}. Whoever holds "
                           "it has unrestricted, permanent access to the account without MFA."),
            next_steps=steps, links=_links(event),
        )
    if kind is Kind.ROOT_MFA_REMOVED:
        serial = event.param("serialNumber")[:256] or "root's MFA device"
        steps.insert(0, f"Add an MFA device to root now ({SECURITY_CREDENTIALS}, 'Multi-factor authentication'). "
                        "Until then the root password alone opens the account.")
        return Finding.for_event(
            event, id="root-mfa-removed", severity=Severity.CRITICAL,
            who="" if event.identity.is_root else None,
            summary=f"Root MFA device removed{tag}",
            what_happened=(f"{who(event)} called {event.event_name} on {serial} in account {account}, "
                           f"{_where(event)}, at {when}. Removing root's MFA is how an attacker who has the root "
                           "password keeps the account."),
            next_steps=steps, links=_links(event),
        )
    extra = ""
    if event.event_name == "CreateAccessKey":
        extra = f" It created an access key for IAM user {event.param('userName')[:64]}."
    elif event.event_name in ("EnableMFADevice", "CreateVirtualMFADevice"):
        extra = " If this was not you, someone is binding their own MFA device to root: that is an account takeover."
    return Finding.for_event(
        event, id="root-api-call", severity=Severity.HIGH, who="",
        summary=f"Root user called {event.event_name} ({service}){tag}",
        what_happened=(f"The ROOT user of account {account} called {event.event_name} on {service} {how}, "
                       f"{_where(event)}, at {when}.{extra} Root should not be used for day-to-day work."),
        next_steps=steps, links=_links(event),
    )


def refused_by_another(event: CloudTrailEvent, account: str, tag: str, when: str) -> Finding:
    """A refused call on root's MFA device by someone other than root (RootMfaChange routes it here).

    The actor is the one the record names in `userIdentity` (CloudTrail User Guide, "CloudTrail
    userIdentity element": the identity that made the request, also when it was refused), never
    root because the target was root's device."""
    actor = event.identity.display
    serial = event.param("serialNumber")[:256] or "root's MFA device"
    return Finding.for_event(
        event, id="root-api-call-failed", severity=Severity.MEDIUM,
        outcome="Refused", summary=f"{event.event_name} on root's MFA device{tag}",
        what_happened=(f"{who(event)} (not the root user) called {event.event_name} on {serial} in account {account}, "
                       f"{_where(event)}, at {when}; AWS refused it with {event.error_code or 'an error'}. Nothing "
                       "changed, but removing root's MFA is how someone who has the root password keeps the "
                       "account."),
        next_steps=[f"Find out who uses {actor} and why it tried to remove root's MFA device. If nobody should "
                    "have: deactivate its access keys and console password, and review its activity in CloudTrail "
                    "(link below).",
                    f"Check root's MFA on the Security credentials page ({SECURITY_CREDENTIALS}): only your devices "
                    "should be listed."],
        links=_links(event),
    )


# --- the judge ----------------------------------------------------------------------------------


def judge(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """The root-activity detector: one finding per root event; no AWS call but the alias (once)."""
    kind = classify(event)
    if kind is Kind.NONE:
        logger.info("not root activity this detector reports",
                    extra={"identity": event.identity.type, "invoked_by": event.identity.invoked_by})
        return []
    if kind is Kind.SIGNIN:
        # A refused sign-in is the interesting case here, whatever triage calls it.
        facts = signin_facts(event)
        failures = 0
        if not facts.succeeded:
            failures = _failures.add(event.event_account, event_moment(event), event.event_id or event.id)
        return [signin_finding(event, settings, failures)]
    if kind is Kind.PASSWORD:
        return [password_finding(event, settings)]
    return [api_finding(event, settings, kind, verdict)]
