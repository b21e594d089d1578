"""Users without MFA, caught as it happens: console sign-ins, MFA removed, new console users.

`judge` is the MFA detector's decision for one CloudTrail event (runtime.make_handler runs it).
Decisions are pure functions of the event and a few facts read from IAM; the facts come from
small adapters, one IAM call each, and only for the user the event touched.

Quarantine (MfaMode=quarantine): attach the stack's quarantine policy to the user. The policy
only denies (every action, with or without MFA): it can never give a session a right it did
not have. A quarantined user cannot enrol an MFA device themselves - whoever holds the password
alone must not be able to add their own device and then pass admin-mfa's MFA condition. An
administrator enrols the device (from an MFA-authenticated admin-role session), and that
enrolment lifts the quarantine; a device enabled by anyone else keeps it (HIGH alert) until
the owner detaches the policy from an MFA admin session.

Takeover signal (every mode): an MFA device enabled, a console password created or reset, or
an access key created for a member of the admin group, by a session without MFA or by anyone
but that user and an MFA-authenticated admin session, is HIGH.

Decided on current facts: a user who has an MFA device now is never quarantined, whatever the
event's age; the grace period counts from the user's first console password (the login
profile's creation), never from the last password change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from guardrail_core import admin_reach
from guardrail_core.alerts import cloudtrail_link, iam_console_link
from guardrail_core.aws import client, error_code, is_access_denied, is_not_found, raise_if_transient
from guardrail_core.config import QUARANTINE, Settings
from guardrail_core.events import EARLIEST_TIME, CloudTrailEvent, Identity
from guardrail_core.findings import Action, Actor, Finding, Severity, Status, who
from guardrail_core.runtime import attempt_finding, logger
from guardrail_core.triage import Triage, Verdict

SIGNIN_SOURCE = "signin.amazonaws.com"
IAM_SOURCE = "iam.amazonaws.com"
ROOT_TARGET = "aws root user"  # requestParameters.userName when root manages its own MFA

# Every IAM action this module may call, for the least-privilege test and the template.
READ_ACTIONS = frozenset({
    "iam:ListMFADevices", "iam:GetLoginProfile", "iam:ListGroupsForUser", "iam:ListAttachedUserPolicies",
    "iam:GetGroup",  # the admin group's members: does anyone still have MFA (admin_reach)
})
# Calls that hand a user a way in: judged for members of the admin group as a takeover signal.
TAKEOVER_EVENTS = frozenset({"EnableMFADevice", "CreateLoginProfile", "UpdateLoginProfile", "CreateAccessKey"})
WRITE_ACTIONS = frozenset({"iam:AttachUserPolicy", "iam:DetachUserPolicy"})


# --- pure helpers -------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_time(value: Any) -> datetime | None:
    """A credential-report or IAM timestamp as aware UTC; None when absent, not a time, or outside
    the range AWS can record (events.EARLIEST_TIME to year 9000: no arithmetic on it overflows).

    CloudTrail event times are checked once, when the event is parsed (`CloudTrailEvent.moment`)."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif not isinstance(value, str) or not value[:4].isdigit():
        return None
    else:
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not EARLIEST_TIME.year <= moment.year <= 9000:
        return None
    return moment


def grace_deadline(since: datetime | None, hours: int) -> datetime | None:
    """When the grace period that started at `since` ends (None when unknown or past year 9999)."""
    if since is None:
        return None
    try:
        return since + timedelta(hours=max(hours, 0))
    except OverflowError:
        return None


def within_grace(since: datetime | None, hours: int, now: datetime) -> bool:
    """True while a console password set at `since` is younger than the grace period."""
    deadline = grace_deadline(since, hours)
    return deadline is not None and now < deadline


def mfa_used(event: CloudTrailEvent) -> str | None:
    """additionalEventData.MFAUsed lower-cased ('yes', 'no'), None when the record does not say."""
    value = event.additional.get("MFAUsed")
    return value.strip().lower() if isinstance(value, str) else None


def signin_verdict(event: CloudTrailEvent) -> tuple[bool, str]:
    """Is this ConsoleLogin an IAM user signing in successfully with a password alone?"""
    ident = event.identity
    if ident.type != "IAMUser":
        # Federated, SSO and assumed-role sign-ins say MFAUsed: No even when the IdP did MFA;
        # root sign-ins belong to the root-activity detector.
        return False, f"sign-in by {ident.type or 'unknown identity'}: not judged on MFA here"
    outcome = event.response.get("ConsoleLogin")
    if outcome != "Success":
        return False, f"sign-in outcome {outcome!r}: a failed sign-in is not an MFA finding"
    if event.additional_value("SamlProviderArn"):
        return False, "SAML-federated sign-in: MFA is the identity provider's"
    used = mfa_used(event)
    if used is None:
        return False, "record does not say whether MFA was used"
    if used == "yes":
        return False, "signed in with MFA"
    return True, f"MFAUsed={event.additional_value('MFAUsed')}"


def target_user(event: CloudTrailEvent) -> str:
    """The IAM user an MFA/password/group call acted on; '' for root or when unknown.

    userName may be omitted for DeactivateMFADevice/EnableMFADevice: then it is the caller.
    """
    request = event.request
    if not request:  # no parameters recorded: nothing to go on, never guess
        return ""
    if "userName" in request:  # present but not a usable name: never fall back to the caller
        return user_name(event.param("userName"))
    ident = event.identity
    return user_name(ident.user_name) if ident.type == "IAMUser" else ""


_USER_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")  # IAM's own rule for user names


def user_name(value: str) -> str:
    """A valid IAM user name, or '' (an invalid one could only fail the call, on every retry)."""
    name = value.strip()
    return name if _USER_NAME.match(name) and name.lower() != ROOT_TARGET else ""


_USER_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):user/(?:.*/)?([^/]+)$", re.IGNORECASE)


def user_exempt(settings: Settings, name: str, arn: str = "") -> bool:
    """Exempt principal? Events give a user's name, not its path, so a name match on an exempt
    user ARN of this account counts too (errs towards leaving the user alone)."""
    if settings.is_exempt(arn, settings.iam_arn("user", name)):
        return True
    for exempt in settings.exempt_principals:
        match = _USER_ARN.match(exempt)
        if match and match.group(2) == name.lower() and match.group(1) == settings.account_id:
            return True
    return False


_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(\d{12}):role/(?:.*/)?([^/]+)$", re.IGNORECASE)


def admin_session(ident: Identity, settings: Settings) -> bool:
    """An MFA-authenticated session that may vouch for a user's new credential: the admin role
    (this account's admin-mfa), root, or an exempt (break-glass) principal - each with MFA."""
    if not ident.mfa_authenticated:
        return False
    if ident.is_root:
        return True
    if ident.type == "AssumedRole":
        match = _ROLE_ARN.match(ident.session_issuer_arn)
        if match and match.group(1) == settings.account_id and match.group(2).lower() == settings.admin_role.lower():
            return True
    return settings.is_exempt(ident.arn, ident.session_issuer_arn)


def takeover_reason(ident: Identity, settings: Settings, user: str) -> str:
    """Why a new credential for `user` (an admin-group member) is suspect; '' when it is not:
    made with MFA by the user themselves or by an MFA-authenticated admin session."""
    if not ident.mfa_authenticated:
        how = "a long-term access key or a password-only session" if ident.type == "IAMUser" else "a session"
        return f"from {how} without MFA"
    if ident.type == "IAMUser" and ident.user_name.lower() == user.lower():
        return ""
    if admin_session(ident, settings):
        return ""
    return f"with MFA, but neither as {user} nor from an MFA-authenticated {settings.admin_role} session"


def quarantine_blocker(settings: Settings, verdict: Triage, name: str, arn: str = "") -> str:
    """Why this user must not be quarantined now ('' when nothing stands in the way)."""
    if settings.mode != QUARANTINE:
        return "notify mode"
    if settings.kill_switch:
        return "kill switch on: notify only"
    if not settings.quarantine_policy_arn:
        return "no quarantine policy configured"
    if verdict.verdict is not Verdict.ACT:
        return verdict.reason
    if user_exempt(settings, name, arn):
        return f"{name} is an exempt principal: never quarantined"
    if settings.is_guardrail(arn, settings.iam_arn("user", name)):
        return f"{name} is one of the guardrail's own identities"
    return ""


# --- what the owner is told -----------------------------------------------------------------


def admin_enrol_steps(settings: Settings, user: str) -> list[str]:
    """How an administrator enrols a device for `user` - the only way for admin-group members
    and quarantined users (a password alone must never be enough to add a device)."""
    mfa_arn = f"arn:{settings.partition}:iam::{settings.account_id}:mfa/{user}"
    return [
        f"An administrator enrols {user}'s MFA device, from an admin-role session ({settings.admin_role}, "
        f"with MFA): aws iam create-virtual-mfa-device --virtual-mfa-device-name {user} --outfile {user}-mfa.png "
        f"--bootstrap-method QRCodePNG ; show the QR code to {user} in person (never by email or chat) and have "
        f"them scan it with an authenticator app ; then aws iam enable-mfa-device --user-name {user} "
        f"--serial-number {mfa_arn} --authentication-code1 <code> --authentication-code2 <next code> ; "
        f"finally delete {user}-mfa.png.",
    ]


def enrol_steps(settings: Settings, user: str, *, self_service: bool = True) -> list[str]:
    """How `user` gets an MFA device. Self-service only when `self_service` (not for members of
    the admin group, nor for a quarantined user: there an administrator enrols it)."""
    if not self_service:
        return admin_enrol_steps(settings, user)
    return [
        f"If {user} is not in the {settings.admin_group} group, {user} can enrol MFA: sign in, open the account menu "
        "(top right) > Security credentials > Multi-factor authentication (MFA) > Assign MFA device, and follow "
        "the steps (authenticator app, passkey or security key). Members of the group must not: a device "
        "enabled from a session without MFA is exactly what a stolen password would do, and is alerted HIGH.",
        *admin_enrol_steps(settings, user),
    ]


def quarantine_note(settings: Settings, user: str) -> str:
    return (
        f"While quarantined, every AWS action by {user} is denied, with or without MFA (the quarantine policy only "
        f"denies: it never gives a right). {user} cannot enrol an MFA device themselves: an administrator does it "
        f"(above). When the device is enabled from an MFA-authenticated {settings.admin_role} session, the guardrail "
        "lifts the quarantine; a device enabled any other way keeps it until you confirm the device is "
        f"{user}'s, then lift it from an MFA admin session: aws iam detach-user-policy --user-name {user} "
        f"--policy-arn {settings.quarantine_policy_arn}"
    )


def _links(event: CloudTrailEvent, user: str) -> list[str]:
    links = [iam_console_link("users", user)] if user else []
    if event.event_id:
        links.append(cloudtrail_link(event.aws_region or event.region, event.event_id))
    return links


# --- adapters: one IAM call each ---------------------------------------------------------------


@dataclass(frozen=True)
class LoginProfile:
    exists: bool
    created: datetime | None = None


def mfa_devices(iam: Any, user: str) -> list[str] | None:
    """Serial numbers of the user's MFA devices (virtual, hardware, passkeys); None if the user is gone."""
    try:
        response = iam.list_mfa_devices(UserName=user)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return [str(d.get("SerialNumber", "")) for d in response.get("MFADevices", [])]


def login_profile(iam: Any, user: str) -> LoginProfile:
    try:
        profile = iam.get_login_profile(UserName=user)["LoginProfile"]
    except ClientError as exc:
        if is_not_found(exc):
            return LoginProfile(exists=False)
        raise
    return LoginProfile(exists=True, created=parse_time(profile.get("CreateDate")))


def in_group(iam: Any, user: str, group: str) -> bool:
    """Member of the group (case-insensitive)? A user is in at most 10 groups: one page."""
    groups = iam.list_groups_for_user(UserName=user).get("Groups", [])
    return any(str(g.get("GroupName", "")).lower() == group.lower() for g in groups)


def quarantined(iam: Any, user: str, policy_arn: str) -> bool:
    policies = iam.list_attached_user_policies(UserName=user).get("AttachedPolicies", [])
    return any(str(p.get("PolicyArn", "")).lower() == policy_arn.lower() for p in policies)


def attach_quarantine(iam: Any, settings: Settings, user: str) -> Action:
    """Attach the MFA-required policy (idempotent in IAM: attaching twice is not an error)."""
    name = f"Quarantine: attach {settings.quarantine_policy_arn.rsplit('/', 1)[-1]} to {user}"
    try:
        iam.attach_user_policy(UserName=user, PolicyArn=settings.quarantine_policy_arn)
    except ClientError as exc:
        raise_if_transient(exc)  # throttling or a 5xx: the run fails and Lambda retries, never [FAILED]
        why = ("the guardrail lacks iam:AttachUserPolicy for this policy" if is_access_denied(exc)
               else f"{error_code(exc)}: {exc}")
        return Action(name, user, Status.FAILED, detail=f"{why}. Attach it by hand, or have an administrator "
                      f"enrol {user}'s MFA device.")
    return Action(name, user, Status.SUCCEEDED, at=stamp(utc_now()),
                  detail="Denies every action, with or without MFA, until an administrator enrols a device.",
                  undo=f"aws iam detach-user-policy --user-name {user} --policy-arn {settings.quarantine_policy_arn}")


def detach_quarantine(iam: Any, settings: Settings, user: str) -> Action:
    name = f"Lift quarantine: detach {settings.quarantine_policy_arn.rsplit('/', 1)[-1]} from {user}"
    try:
        iam.detach_user_policy(UserName=user, PolicyArn=settings.quarantine_policy_arn)
    except ClientError as exc:
        raise_if_transient(exc)
        if is_not_found(exc):  # already detached (a duplicate delivery, or by hand)
            return Action(name, user, Status.SUCCEEDED, detail="It was already detached.", at=stamp(utc_now()))
        return Action(name, user, Status.FAILED, detail=f"{error_code(exc)}: detach it by hand: aws iam "
                      f"detach-user-policy --user-name {user} --policy-arn {settings.quarantine_policy_arn}")
    return Action(name, user, Status.SUCCEEDED, at=stamp(utc_now()),
                  undo=f"aws iam attach-user-policy --user-name {user} --policy-arn {settings.quarantine_policy_arn}")


def _maybe_quarantine(iam: Any, settings: Settings, verdict: Triage, user: str, arn: str = "") -> list[Action]:
    blocker = quarantine_blocker(settings, verdict, user, arn)
    if not blocker:
        return [attach_quarantine(iam, settings, user)]
    if settings.mode == QUARANTINE:  # in notify mode "nothing was done" needs no explanation
        return [Action(f"Quarantine {user}", user, Status.SKIPPED, detail=blocker)]
    return []


def _raise_unless_denied(exc: ClientError) -> None:
    """AccessDenied cannot be fixed by retrying: report it. Anything else (throttling after the
    client's retries, a 5xx) is raised so Lambda retries the event and alarms if it keeps failing."""
    if not is_access_denied(exc):
        raise exc


def _permission_finding(event: CloudTrailEvent, user: str, exc: ClientError, needed: str) -> Finding:
    """The guardrail could not read what it needs: say so rather than stay silent."""
    _raise_unless_denied(exc)
    return Finding.for_event(
        event, id="mfa-check-failed", severity=Severity.MEDIUM,
        summary=f"Could not check MFA of {user or 'a user'} after {event.event_name}",
        what_happened=(f"{who(event)} called {event.event_name} for {user or 'a user'}, and the guardrail "
                       f"could not check the user's MFA: {error_code(exc)} on {needed}."),
        next_steps=[f"Check {user}'s MFA devices by hand: aws iam list-mfa-devices --user-name {user}",
                    "If the error is AccessDenied, redeploy the stack: its MFA role should grant " + needed + "."],
        links=_links(event, user),
    )


# --- the judges -------------------------------------------------------------------------------------


def _quarantine_fact_blocker(iam: Any, settings: Settings, user: str) -> tuple[str, str]:
    """Current facts that rule a quarantine out: ('', '') when none, else (why not, note).

    A device now means the user is never quarantined, however old the event; the grace period
    runs from the user's first console password (the login profile's creation date), never
    from a later password change.
    """
    try:
        devices = mfa_devices(iam, user)
    except ClientError as exc:
        _raise_unless_denied(exc)
        return f"could not read {user}'s MFA devices ({error_code(exc)})", ""
    if devices is None:
        return f"{user} no longer exists", ""
    if devices:
        return f"{user} has an MFA device now: never quarantined, whatever the event's age", ""
    try:
        profile = login_profile(iam, user)
    except ClientError as exc:
        _raise_unless_denied(exc)
        return f"could not read the password's age ({error_code(exc)})", ""
    if not profile.exists:
        return f"{user} no longer has a console password", ""
    deadline = grace_deadline(profile.created, settings.mfa_grace_hours)
    if deadline and within_grace(profile.created, settings.mfa_grace_hours, utc_now()):
        return (f"within the {settings.mfa_grace_hours} h grace period for new console users (until {stamp(deadline)})",
                f" {user}'s first console password is new: they have until {stamp(deadline)} to enrol MFA.")
    return "", ""


def judge_signin(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    without_mfa, reason = signin_verdict(event)
    if not without_mfa:
        logger.info("sign-in not an MFA finding", extra={"reason": reason})
        return []
    ident = event.identity
    user = ident.user_name or ident.arn.rsplit("/", 1)[-1] or "unknown user"
    where = f" from {event.source_ip}" if event.source_ip else ""
    what = (f"IAM user {user} signed in to the AWS console{where} with a password alone: no MFA device was used. "
            f"Anyone who learns {user}'s password can sign in as {user}; nothing else protects the account.")
    actions: list[Action] = []
    blocker = quarantine_blocker(settings, verdict, user, ident.arn)
    if not blocker:
        iam = client("iam")
        blocker, note = _quarantine_fact_blocker(iam, settings, user)  # the grace period is never cut short
        what += note
        if not blocker:
            actions = [attach_quarantine(iam, settings, user)]
    if blocker and settings.mode == QUARANTINE:
        actions = [Action(f"Quarantine {user}", user, Status.SKIPPED, detail=blocker)]
    done = any(a.status is Status.SUCCEEDED for a in actions)
    steps = enrol_steps(settings, user, self_service=not done)
    steps.append(f"If this sign-in was not {user}, reset the password now (aws iam update-login-profile "
                 f"--user-name {user} --password <new> --password-reset-required) and review {user}'s recent "
                 "activity in CloudTrail.")
    if done:
        steps.append(quarantine_note(settings, user))
    return [Finding.for_event(
        event, id="console-signin-without-mfa", severity=Severity.MEDIUM,
        summary=f"IAM user {user} signed in to the console without MFA", who="",
        what_happened=what, actions=actions, next_steps=steps, links=_links(event, user),
    )]


def judge_mfa_removed(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    if event.event_name == "DeleteVirtualMFADevice" and not event.param("userName"):
        # IAM deletes only unassigned virtual devices: the DeactivateMFADevice that freed it
        # was the moment a user could lose MFA, and was judged then.
        logger.info("virtual MFA device deleted: it was unassigned first",
                    extra={"serial": event.param("serialNumber")})
        return []
    user = target_user(event)
    if not user:
        logger.info("MFA change on root or an unknown user: not judged here")
        return []
    iam = client("iam")
    try:
        devices = mfa_devices(iam, user)
    except ClientError as exc:
        return [_permission_finding(event, user, exc, "iam:ListMFADevices")]
    if devices is None:
        logger.info("user no longer exists", extra={"user": user})
        return []
    if devices:
        logger.info("user still has MFA", extra={"user": user, "devices": len(devices)})
        return []
    try:
        profile = login_profile(iam, user)
        admin = False if profile.exists else in_group(iam, user, settings.admin_group)
    except ClientError as exc:
        return [_permission_finding(event, user, exc, "iam:GetLoginProfile / iam:ListGroupsForUser")]
    serial = event.param("serialNumber")[:256] or "an MFA device"  # request text: shown, never trusted
    if profile.exists:
        exposure = f"{user} has a console password, which alone now protects console sign-in."
    elif admin:
        exposure = f"{user} is in the {settings.admin_group} group; without MFA they cannot assume the admin role."
    else:
        exposure = f"{user} has no console password, so only API calls that ask for MFA are affected."
    who = Actor.from_event(event)
    actor = f"IAM user {user} (themselves)" if who.type == "IAMUser" and who.name == user else who.sentence
    actions = _maybe_quarantine(iam, settings, verdict, user) if profile.exists else []
    done = any(a.status is Status.SUCCEEDED for a in actions)
    steps = enrol_steps(settings, user, self_service=not done)
    steps.insert(0, f"If neither you nor {user} did this, treat it as an attack: reset {user}'s password, deactivate "
                    f"their access keys, and review what {who.words} did in CloudTrail.")
    if done:
        steps.append(quarantine_note(settings, user))
    return [Finding.for_event(
        event, id="mfa-removed", severity=Severity.HIGH if (profile.exists or admin) else Severity.LOW,
        summary=f"Last MFA device of IAM user {user} removed",
        what_happened=(f"{actor} called {event.event_name} on {serial} and IAM user {user} now has no MFA device. "
                       f"{exposure} Removing MFA is a common first step after a password is stolen."),
        actions=actions, next_steps=steps, links=_links(event, user),
    ), *_nobody_reaches_admin(iam, settings, event, user)]


def _nobody_reaches_admin(iam: Any, settings: Settings, event: CloudTrailEvent, user: str) -> list[Finding]:
    """When this removal left no member of the admin group with MFA: its own HIGH finding (admin_reach)."""
    try:
        members = admin_reach.admin_members(iam, settings.admin_group) or []
        if user.lower() not in {m.lower() for m in members}:
            return []
        others = [m for m in members if m.lower() != user.lower()]
        found, complete = admin_reach.first_member_with_mfa(others, lambda m: bool(mfa_devices(iam, m)))
    except ClientError as exc:
        _raise_unless_denied(exc)
        logger.warning("admin group's MFA not checked", extra={"error": error_code(exc)})
        return []
    if not found and not complete:
        logger.warning("admin group's MFA not fully checked", extra={
            "reason": f"none of the first {admin_reach.MAX_MEMBER_CHECKS} of {len(others)} other members has an MFA "
                      "device; the rest were not read (the daily sweep checks them from the credential report)"})
    if found or not complete:
        return []
    who = Actor.from_event(event)
    by = "IAM user " + user if who.type == "IAMUser" and who.name == user else who.sentence
    cause = f"{by} removed the last MFA device of IAM user {user} ({event.event_name})."
    return [admin_reach.finding(settings, cause, event=event, members=len(members))]


# --- takeover signal: a new way in for an admin-group member -----------------------------------------


_TAKEOVER_WORDS = {
    "EnableMFADevice": ("MFA device enabled", "With that device, whoever holds it passes the MFA condition of "
                        "role {role} and can take admin rights as {user}."),
    "CreateLoginProfile": ("console password created", "Whoever set it can sign in to the console as {user}."),
    "UpdateLoginProfile": ("console password reset", "Whoever set it can sign in to the console as {user}."),
    "CreateAccessKey": ("access key created", "Whoever holds the key can call AWS as {user}."),
}


def credential_target(event: CloudTrailEvent) -> str:
    """The user a new credential is for. CreateAccessKey names it in its response (the request
    omits userName when users create their own key); the others in the request."""
    if event.event_name == "CreateAccessKey":
        key = event.response.get("accessKey") if isinstance(event.response, Mapping) else None
        name = key.get("userName") if isinstance(key, Mapping) else None
        if isinstance(name, str):
            return user_name(name)
    return target_user(event)


def _undo_credential(event: CloudTrailEvent, user: str) -> str:
    if event.event_name == "EnableMFADevice":
        serial = event.param("serialNumber")[:256] or "<serial>"
        return (f"aws iam deactivate-mfa-device --user-name {user} --serial-number {serial} ; "
                f"aws iam delete-virtual-mfa-device --serial-number {serial}")
    if event.event_name == "CreateAccessKey":
        key = event.response.get("accessKey") if isinstance(event.response, Mapping) else None
        key_id = str(key.get("accessKeyId", "<key id>"))[:128] if isinstance(key, Mapping) else "<key id>"
        return f"aws iam update-access-key --user-name {user} --access-key-id {key_id} --status Inactive"
    return f"aws iam update-login-profile --user-name {user} --password <new> --password-reset-required"


def takeover_finding(event: CloudTrailEvent, settings: Settings, iam: Any, user: str) -> Finding | None:
    """HIGH when a new credential for an admin-group member was not vouched for (see takeover_reason).

    One IAM call (ListGroupsForUser), only when the actor is not already vouched for."""
    reason = takeover_reason(event.identity, settings, user)
    if not reason:
        return None
    try:
        member = in_group(iam, user, settings.admin_group)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        return _permission_finding(event, user, exc, "iam:ListGroupsForUser")
    if not member:
        return None
    what_word, consequence = _TAKEOVER_WORDS[event.event_name]
    actor = who(event)
    return Finding.for_event(
        event, id="admin-credential-takeover", severity=Severity.HIGH,
        summary=(f"Possible takeover: {what_word} for admin {user} "
                 + ("without MFA" if not event.identity.mfa_authenticated else "by another principal")),
        what_happened=(f"{actor} called {event.event_name} for IAM user {user}, a member of the "
                       f"{settings.admin_group} group, {reason}. "
                       + consequence.format(role=settings.admin_role, user=user)
                       + " New credentials for members of the admin group are expected only from the member "
                       f"themselves signed in with MFA, or from an MFA-authenticated {settings.admin_role} session."),
        next_steps=[
            f"Ask {user} - in person or by phone, not by email - whether they did this.",
            f"If they did not: undo it at once, from an MFA admin session: {_undo_credential(event, user)} ; "
            f"then reset {user}'s password and review what {Actor.from_event(event).words} did in CloudTrail.",
            *admin_enrol_steps(settings, user),
        ],
        links=_links(event, user),
    )


def judge_credential_created(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """CreateAccessKey / UpdateLoginProfile: only the takeover signal (admin-group members)."""
    user = credential_target(event)
    if not user:
        logger.info("no valid user in the record", extra={"event": event.event_name})
        return []
    found = takeover_finding(event, settings, client("iam"), user)
    return [found] if found else []


def judge_grace_start(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """A console password created, or a user added to the admin group: MFA due within the grace period."""
    user = user_name(event.param("userName"))
    if event.event_name == "AddUserToGroup" and event.param("groupName").lower() != settings.admin_group.lower():
        return []
    if not user:
        logger.info("no valid userName in the request", extra={"event": event.event_name})
        return []
    iam = client("iam")
    if event.event_name == "CreateLoginProfile":
        takeover = takeover_finding(event, settings, iam, user)
        if takeover:
            return [takeover]
    try:
        devices = mfa_devices(iam, user)
    except ClientError as exc:
        return [_permission_finding(event, user, exc, "iam:ListMFADevices")]
    if devices is None or devices:
        return []
    started = event.moment or utc_now()  # in the sane range: checked when the event was parsed
    deadline = grace_deadline(started, settings.mfa_grace_hours) or started
    login = event.event_name == "CreateLoginProfile"
    what_now = "got a console password" if login else f"was added to the {settings.admin_group} group"
    short = f"console password created for {user}" if login else f"{user} added to group {settings.admin_group}"
    what = f"{who(event)} called {event.event_name}: IAM user {user} {what_now} and has no MFA device."
    if event.event_name == "AddUserToGroup":
        what += (f" Until {user} has MFA they cannot assume the admin role (it requires MFA); an administrator "
                 "enrols their device.")
    if settings.mfa_grace_hours > 0:
        # Grace: a new console user needs time to enrol; nothing is quarantined yet.
        what += (f" The {settings.mfa_grace_hours} h grace period to enrol has started: after {stamp(deadline)} "
                 "the daily MFA sweep reports the user"
                 + (" and quarantines them." if settings.mode == QUARANTINE else "."))
        return [Finding.for_event(
            event, id="mfa-grace-started", severity=Severity.LOW,
            outcome=f"MFA due {stamp(deadline)}", summary=f"{short} without MFA",
            what_happened=what, next_steps=enrol_steps(settings, user, self_service=login),
            links=_links(event, user),
        )]
    # No grace period configured: a console user without MFA is an offender at once.
    actions = _maybe_quarantine(iam, settings, verdict, user) if login else []
    done = any(a.status is Status.SUCCEEDED for a in actions)
    steps = enrol_steps(settings, user, self_service=login and not done)
    if done:
        steps.append(quarantine_note(settings, user))
    return [Finding.for_event(
        event, id="user-without-mfa", severity=Severity.MEDIUM,
        outcome="Quarantined" if done else "MFA due now (no grace period)", summary=f"{short} without MFA",
        what_happened=what, actions=actions, next_steps=steps, links=_links(event, user),
    )]


def judge_mfa_enabled(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """MFA enabled: the takeover signal for admin-group members; a quarantine is lifted only when
    an MFA-authenticated admin session enabled the device (that is the owner's confirmation)."""
    user = target_user(event)
    if not user:
        return []
    iam = client("iam")
    takeover = takeover_finding(event, settings, iam, user)
    if not settings.quarantine_policy_arn:
        return [takeover] if takeover else []
    try:
        held = quarantined(iam, user, settings.quarantine_policy_arn)
    except ClientError as exc:
        if is_not_found(exc):
            return []
        return [_permission_finding(event, user, exc, "iam:ListAttachedUserPolicies")]
    if not held:
        return [takeover] if takeover else []
    manual = f"aws iam detach-user-policy --user-name {user} --policy-arn {settings.quarantine_policy_arn}"
    actor = who(event)
    if not admin_session(event.identity, settings):
        why = (f"the device was enabled by {Actor.from_event(event).words}, not from an MFA-authenticated "
               f"{settings.admin_role} session: "
               "the quarantine stays until you confirm the device is the user's")
        kept = Action(f"Lift quarantine of {user}", user, Status.SKIPPED, detail=why)
        if takeover:
            takeover.actions.append(kept)
            takeover.next_steps.append(f"Once you have confirmed the device is {user}'s: {manual}")
            return [takeover]
        unvouched = not event.identity.mfa_authenticated
        serial = event.param("serialNumber")[:256] or "serial not recorded"
        return [Finding.for_event(
            event, id="mfa-quarantine-kept-unconfirmed", severity=Severity.HIGH if unvouched else Severity.MEDIUM,
            outcome="Quarantine kept", summary=f"MFA device enabled for quarantined {user}",
            what_happened=(f"{actor} called EnableMFADevice for IAM user {user}, who is quarantined. A device "
                           f"enabled by anyone but an MFA-authenticated {settings.admin_role} session could be a "
                           "thief's, so the quarantine stays."),
            actions=[kept],
            next_steps=[f"Ask {user} in person whether the device ({serial}) is theirs. "
                        f"If not: {_undo_credential(event, user)}.",
                        f"If it is: lift the quarantine from an MFA admin session: {manual}"],
            links=_links(event, user),
        )]
    if settings.remediation_enabled and verdict.verdict is Verdict.ACT:
        # Events can arrive late or out of order (a later DeactivateMFADevice first): lift only
        # when the account shows a device now.
        try:
            devices = mfa_devices(iam, user)
        except ClientError as exc:
            return [_permission_finding(event, user, exc, "iam:ListMFADevices")]
        if devices is None:
            return []
        if not devices:
            why = (f"IAM user {user} has no MFA device now (it was removed again, or events arrived out of "
                   "order): the quarantine is kept")
            return [Finding.for_event(
                event, id="mfa-quarantine-kept", severity=Severity.LOW,
                outcome="Quarantine kept", summary=f"MFA enabled for {user}, but {user} has no MFA device now",
                who="",
                what_happened=(f"{who(event)} called EnableMFADevice for IAM user {user}, but the "
                               f"account shows no MFA device for {user} now, so the guardrail's quarantine "
                               "policy stays attached."),
                actions=[Action(f"Lift quarantine of {user}", user, Status.SKIPPED, detail=why)],
                next_steps=admin_enrol_steps(settings, user), links=_links(event, user),
            )]
        action = detach_quarantine(iam, settings, user)
        serial = event.param("serialNumber")[:256] or "serial not recorded"
        lifted = action.status is Status.SUCCEEDED
        return [Finding.for_event(
            event, id="mfa-quarantine-lifted" if lifted else "mfa-quarantine-lift-failed",
            severity=Severity.INFO if lifted else Severity.MEDIUM,
            outcome="Quarantine lifted" if lifted else "Quarantine NOT lifted",
            summary=f"MFA device enrolled for {user}",
            what_happened=(f"{actor} (an MFA-authenticated admin session) enabled an MFA device ({serial}) for IAM "
                           f"user {user}, so the guardrail's quarantine policy is no longer needed."),
            actions=[action], next_steps=[] if lifted else [f"Lift it by hand: {manual}"], links=_links(event, user),
        )]
    why = "kill switch on" if settings.kill_switch else (
        verdict.reason if verdict.verdict is not Verdict.ACT else "notify mode: the guardrail may not detach policies")
    return [Finding.for_event(
        event, id="mfa-quarantine-still-attached", severity=Severity.INFO,
        outcome="Quarantine still attached", summary=f"MFA device enrolled for {user}",
        what_happened=(f"IAM user {user} now has an MFA device, enabled by an MFA-authenticated admin session, but "
                       f"the guardrail's quarantine policy is still attached and was not detached ({why}). It denies "
                       f"every action by {user}."),
        actions=[Action(f"Lift quarantine of {user}", user, Status.SKIPPED, detail=why)],
        next_steps=[f"Detach it: {manual}"], links=_links(event, user),
    )]


_JUDGES: dict[tuple[str, str], Callable[[CloudTrailEvent, Settings, Triage], list[Finding]]] = {
    (SIGNIN_SOURCE, "ConsoleLogin"): judge_signin,
    (IAM_SOURCE, "DeactivateMFADevice"): judge_mfa_removed,
    (IAM_SOURCE, "DeleteVirtualMFADevice"): judge_mfa_removed,
    (IAM_SOURCE, "CreateLoginProfile"): judge_grace_start,
    (IAM_SOURCE, "AddUserToGroup"): judge_grace_start,
    (IAM_SOURCE, "EnableMFADevice"): judge_mfa_enabled,
    (IAM_SOURCE, "UpdateLoginProfile"): judge_credential_created,
    (IAM_SOURCE, "CreateAccessKey"): judge_credential_created,
}


def judge(event: CloudTrailEvent, settings: Settings, verdict: Triage) -> list[Finding]:
    """The MFA detector: findings for one event (runtime has already triaged it)."""
    if verdict.verdict is Verdict.ATTEMPT:
        # Somebody tried to remove an MFA device and was refused: worth a note, nothing changed.
        if event.event_name == "DeactivateMFADevice":
            return [attempt_finding(event, f"MFA device of {target_user(event) or 'a user'}")]
        return []
    judge_one = _JUDGES.get((event.event_source, event.event_name))
    if judge_one is None:
        logger.info("event not judged by the MFA detector", extra={"source": event.event_source})
        return []
    return judge_one(event, settings, verdict)
