"""Nobody in the admin group has MFA any more: no one can reach admin (its own HIGH finding).

Role admin-mfa trusts only sessions signed in with MFA, so the group's members reach admin only
while one of them has an MFA device. When the last one loses it (a device deactivated, seen by
the MFA detector; or found by the daily sweep), the owner must hear it as such, not as one more
"MFA device removed". The deeper question "is there a working path to admin at all" is the
lockout guard's (guardrail_core.lockout, issue 13); this module answers only the MFA part,
from facts the callers already read, in a bounded number of calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from guardrail_core.alerts import iam_console_link
from guardrail_core.aws import concurrently
from guardrail_core.config import Settings
from guardrail_core.events import CloudTrailEvent
from guardrail_core.findings import Finding, Severity

FINDING_ID = "admin-group-no-mfa"
MAX_MEMBER_CHECKS = 50  # ListMFADevices calls at most per judgement; beyond it the answer is "unknown"
BATCH = 20  # members asked at once: one round trip per batch, stopping at the first batch with a device


def first_member_with_mfa(members: Iterable[str], has_mfa: Callable[[str], bool | None],
                          limit: int = MAX_MEMBER_CHECKS) -> tuple[str | None, bool]:
    """(a member with an MFA device or None, whether every member was checked).

    `has_mfa` answers for one user (None: the user is gone). Members are asked BATCH at a time,
    all of a batch at once (issue 13 (7): round trips do not grow one per member); the first
    member in the group's order who has a device is returned.
    """
    names = list(members)
    for start in range(0, min(len(names), limit), BATCH):
        batch = names[start:min(start + BATCH, limit)]
        answers = concurrently([lambda m=m: has_mfa(m) for m in batch])  # type: ignore[misc]
        found = next((m for m, yes in zip(batch, answers, strict=True) if yes), None)
        if found is not None:
            return found, True
    return None, len(names) <= limit


def admin_members(iam: Any, group: str) -> list[str] | None:
    """The admin group's member names (GetGroup, paginated); None when the group does not exist."""
    from botocore.exceptions import ClientError

    from guardrail_core.aws import is_not_found

    names: list[str] = []
    try:
        for page in iam.get_paginator("get_group").paginate(GroupName=group):
            names += [str(u.get("UserName", "")) for u in page.get("Users", [])]
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return names


def group_without_mfa(iam: Any, group: str, with_mfa: Iterable[str],
                      devices: Callable[[Any, str], list[str] | None]) -> int | None:
    """The admin group's size when none of its members has an MFA device (confirmed), else None.

    One GetGroup. A member named in `with_mfa` (the credential report's users with MFA) answers at
    once; only when none is are the members confirmed with `devices` (ListMFADevices, one call
    each, BATCH at once, stopping at the first batch with a device, at most MAX_MEMBER_CHECKS): the report may be 4
    hours old. A read the guardrail may not make (or that fails) gives None, logged: no finding
    on a guess.
    """
    from botocore.exceptions import ClientError

    from guardrail_core.aws import error_code
    from guardrail_core.runtime import logger

    try:
        members = admin_members(iam, group)
        known = {name.lower() for name in with_mfa}
        if not members or any(m.lower() in known for m in members):
            return None
        found, complete = first_member_with_mfa(members, lambda m: bool(devices(iam, m)))
    except ClientError as exc:
        logger.warning("admin group's MFA not checked", extra={"error": error_code(exc)})
        return None
    if found is None and not complete:
        logger.warning("admin group's MFA not fully confirmed", extra={
            "reason": f"the credential report shows no member of {group} with MFA; the first {MAX_MEMBER_CHECKS} of "
                      f"{len(members)} confirmed it, the rest were not read: no finding on a guess"})
    return len(members) if found is None and complete else None


def steps(settings: Settings) -> list[str]:
    return [
        f"Sign in as the root user (the recovery path) and assign an MFA device to a member of group "
        f"{settings.admin_group}: IAM console > Users > the user > Security credentials > Assign MFA device. "
        "Members cannot do it themselves: the baseline gives them no rights but switching to the admin role.",
        f"Then that member signs in with MFA and switches to role {settings.admin_role}; sign out of root.",
        "If nobody removed these devices on purpose, treat it as an attack: someone may be locking you out "
        "before acting as root. Check root's MFA and password, and CloudTrail for who removed the devices.",
    ]


def finding(settings: Settings, cause: str, *, event: CloudTrailEvent | None = None, members: int = 0,
            when: str = "") -> Finding:
    """The HIGH finding: `cause` says in words what left the group without MFA."""
    what = (f"{cause} Now no member of group {settings.admin_group} ({members} member"
            f"{'' if members == 1 else 's'}) has an MFA device. Role {settings.admin_role} accepts only sessions "
            "signed in with MFA, so nobody can reach admin rights through it: only the root user can repair this.")
    kwargs: dict[str, Any] = {
        "id": FINDING_ID, "severity": Severity.HIGH,
        "summary": (f"No one can reach admin: the last MFA device in group {settings.admin_group} removed"
                    if event is not None else f"No one can reach admin: nobody in group {settings.admin_group} "
                                              "has MFA"),
        "what_happened": what, "next_steps": steps(settings),
        "links": [iam_console_link("groups", settings.admin_group)],
    }
    if event is not None:
        return Finding.for_event(event, **kwargs)
    return Finding(account_id=settings.account_id, region=settings.region, event_time=when, **kwargs)
