"""The scheduled MFA sweep: one credential report, one confirmation per flagged user, one digest."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.iam.models import iam_backends

from guardrail_cli.faults import log_lines
from guardrail_cli.local import ACCOUNT_ID, Invocation, LocalGuardrail
from guardrail_cli.testing import EVENTS_DIR, baseline_account, inject_errors, load_event
from guardrail_core import mfa_sweep
from guardrail_core.config import load_settings

FUNCTION = "MfaSweepFunction"
QUARANTINE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:policy/account-guardrail-mfa-required"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)

# A report in the shape IAM returns (columns and placeholder values as in the IAM User Guide).
HEADER = ("user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
          "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
          "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
          "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
          "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,"
          "cert_2_active,cert_2_last_rotated")
REPORT = "\n".join([
    HEADER,
    "<root_account>,arn:aws:iam::111122223333:root,2019-05-05T00:00:00+00:00,not_supported,"
    "2026-11-01T10:00:00+00:00,not_supported,not_supported,false,true,2021-03-01T00:00:00+00:00,"
    "2026-11-20T00:00:00+00:00,us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
    "alice,arn:aws:iam::111122223333:user/alice,2024-01-01T00:00:00+00:00,true,2026-11-27T08:00:00+00:00,"
    "2024-01-01T00:00:00+00:00,N/A,true,true,2024-01-01T00:00:00+00:00,2026-11-27T00:00:00+00:00,"
    "us-east-1,ec2,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
    "bob,arn:aws:iam::111122223333:user/bob,2025-06-01T00:00:00+00:00,true,no_information,"
    "2025-06-01T00:00:00+00:00,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
    "ci-deploy,arn:aws:iam::111122223333:user/ci/ci-deploy,2023-02-01T00:00:00+00:00,false,N/A,N/A,N/A,"
    "false,true,2023-02-01T00:00:00+00:00,2026-11-27T00:00:00+00:00,eu-west-1,s3,false,N/A,N/A,N/A,N/A,"
    "false,N/A,false,N/A",
    "dave,arn:aws:iam::111122223333:user/dave,2022-01-01T00:00:00+00:00,true,N/A,2026-11-28T04:00:00+00:00,"
    "N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
    "erin,arn:aws:iam::111122223333:user/erin,2026-11-27T20:00:00+00:00,true,N/A,2026-11-27T20:00:00+00:00,"
    "N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
    "broken,arn:aws:iam::111122223333:user/broken,2020-01-01T00:00:00+00:00,maybe",
]) + "\n"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the report polling's waits instead of sleeping through them."""
    waits: list[float] = []
    monkeypatch.setattr(mfa_sweep, "sleep", waits.append)
    return waits


def iam() -> Any:
    return boto3.client("iam")


def root(*, mfa: bool, keys: bool) -> None:
    """moto cannot sign in as root: set what GetAccountSummary reports about it."""
    summary = iam_backends[ACCOUNT_ID]["global"].account_summary
    summary._account_mfa_enabled = int(mfa)
    summary._account_access_keys_present = int(keys)


def age(name: str, *, hours: float) -> None:
    """Back-date a local user; moto dates the password (and the report's columns) from it too."""
    iam_backends[ACCOUNT_ID]["global"].users[name].create_date = (
        datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=hours))


def add_users(prefix: str, count: int, *, mfa: bool, password: bool = True, hours: float = 48) -> list[str]:
    client = iam()
    names = [f"{prefix}{i:04d}" for i in range(count)]
    for name in names:
        client.create_user(UserName=name)
        if password:
            client.create_login_profile(UserName=name, Password="Correct-horse-battery-1")
        if mfa:
            client.enable_mfa_device(UserName=name, SerialNumber=f"GAHT{name}", AuthenticationCode1="123456",
                                     AuthenticationCode2="654321")
        age(name, hours=hours)
    return names


def sweep(local: LocalGuardrail, event: dict[str, Any] | None = None) -> Invocation:
    inv = local.invoke(FUNCTION, event if event is not None else load_event(EVENTS_DIR / "mfa-sweep-scheduled.json"))
    assert inv.error is None, inv.logs
    return inv


def aws_calls(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.kind != "idempotency"]


def writes(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.kind == "write"]


def text(inv: Invocation) -> str:
    (mail,) = inv.notifications
    return mail["message"]


def attached(user: str) -> list[str]:
    return [p["PolicyArn"] for p in iam().list_attached_user_policies(UserName=user)["AttachedPolicies"]]


# --- the report, parsed and judged (pure) ------------------------------------------------------------------


def test_parse_report_of_the_real_shape() -> None:
    report = mfa_sweep.parse_report(REPORT.encode())
    assert [u.name for u in report.users] == ["alice", "bob", "ci-deploy", "dave", "erin"]
    assert report.unreadable_rows == 1  # "maybe" is not a value IAM writes: counted, never guessed
    assert report.root == mfa_sweep.RootRow(password_enabled="not_supported", mfa_active=False, active_access_keys=1)
    users = {u.name: u for u in report.users}
    assert users["bob"].password_enabled and not users["bob"].mfa_active
    assert users["bob"].password_last_used == "no_information"
    assert users["ci-deploy"].arn.endswith(":user/ci/ci-deploy") and not users["ci-deploy"].password_enabled
    assert users["ci-deploy"].password_last_changed is None  # "N/A"
    assert users["alice"].active_access_keys == 1 and users["alice"].mfa_active
    # The grace period runs from the first console password, never from the last change: the report
    # only tells the user's creation (a lower bound), so dave (old user, password changed 2 h ago)
    # is one the sweep must ask GetLoginProfile about.
    assert users["dave"].password_since == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
    assert users["dave"].password_may_be_new(NOW, 24) and not users["bob"].password_may_be_new(NOW, 24)


def test_grace_period_is_honoured() -> None:
    users = mfa_sweep.parse_report(REPORT).users
    flagged, in_grace = mfa_sweep.select_offenders(users, NOW, 24)
    assert [u.name for u in flagged] == ["bob", "dave"]  # dave: a password change is not a new grace
    assert [u.name for u in in_grace] == ["erin"]  # a new user, password set 10 h ago
    flagged, in_grace = mfa_sweep.select_offenders(users, NOW, 6)
    assert [u.name for u in flagged] == ["bob", "dave", "erin"] and in_grace == []
    flagged, in_grace = mfa_sweep.select_offenders(users, NOW, 0)
    assert [u.name for u in flagged] == ["bob", "dave", "erin"] and in_grace == []


def test_root_facts_prefer_the_live_summary_to_the_report() -> None:
    row = mfa_sweep.parse_report(REPORT).root
    live = mfa_sweep.root_facts({"AccountMFAEnabled": 1, "AccountAccessKeysPresent": 0}, row)
    assert (live.mfa_enabled, live.access_keys, live.source) == (True, False, "GetAccountSummary")
    fallback = mfa_sweep.root_facts(None, row)
    assert (fallback.mfa_enabled, fallback.access_keys, fallback.source) == (False, True, "credential report")
    # Root without a password (centrally managed root access): no MFA is not a hole.
    no_password = mfa_sweep.RootRow(password_enabled="false", mfa_active=False, active_access_keys=0)
    result = mfa_sweep.SweepResult(report=mfa_sweep.CredentialReport([]), root=mfa_sweep.root_facts(
        {"AccountMFAEnabled": 0, "AccountAccessKeysPresent": 0}, no_password))
    assert result.root_issues == []


class StaleReportIam:
    """An account whose credential report (up to 4 h old) predates bob enrolling MFA."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def generate_credential_report(self) -> dict[str, str]:
        self.calls.append("GenerateCredentialReport")
        return {"State": "COMPLETE"}

    def get_credential_report(self) -> dict[str, Any]:
        self.calls.append("GetCredentialReport")
        return {"Content": REPORT.encode(), "GeneratedTime": datetime(2026, 11, 28, 3, 0, tzinfo=UTC)}

    def get_account_summary(self) -> dict[str, Any]:
        self.calls.append("GetAccountSummary")
        return {"SummaryMap": {"AccountMFAEnabled": 1, "AccountAccessKeysPresent": 0}}

    def list_mfa_devices(self, UserName: str) -> dict[str, Any]:  # boto3 spells it UserName
        self.calls.append(f"ListMFADevices:{UserName}")
        return {"MFADevices": [{"SerialNumber": "arn:aws:iam::111122223333:mfa/bob"}]}

    def get_paginator(self, operation: str) -> Any:  # get_group: the admin group, without members here
        calls = self.calls

        class Pages:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                calls.append(f"GetGroup:{kwargs['GroupName']}")
                return [{"Users": []}]

        assert operation == "get_group"
        return Pages()


def test_flagged_users_are_confirmed_because_the_report_can_be_stale() -> None:
    stub = StaleReportIam()
    settings = load_settings({"ACCOUNT_ID": "111122223333", "MFA_GRACE_HOURS": "24"})
    result = mfa_sweep.run(stub, settings, NOW, lambda: 300_000)
    assert stub.calls == ["GenerateCredentialReport", "GetCredentialReport", "GetAccountSummary",
                          "ListMFADevices:bob", "ListMFADevices:dave"]
    assert result.offenders == [] and result.enrolled_since_report == ["bob", "dave"]
    assert mfa_sweep.digest(result, settings, NOW) is None  # nothing to report: no email


class NoMfaIam(StaleReportIam):
    """The report's users have no MFA device; dave's login profile was created `profile_age` ago."""

    def __init__(self, profile_age: timedelta) -> None:
        super().__init__()
        self.profile_age = profile_age

    def list_mfa_devices(self, UserName: str) -> dict[str, Any]:
        self.calls.append(f"ListMFADevices:{UserName}")
        return {"MFADevices": []}

    def get_login_profile(self, UserName: str) -> dict[str, Any]:
        self.calls.append(f"GetLoginProfile:{UserName}")
        return {"LoginProfile": {"UserName": UserName, "CreateDate": NOW - self.profile_age}}


@pytest.mark.parametrize(("profile_age", "dave_due"), [(timedelta(days=400), True), (timedelta(hours=3), False)])
def test_grace_counts_from_the_first_password_never_from_a_change(profile_age: timedelta, dave_due: bool) -> None:
    """Issue 13 item 6: a 400-day-old console user without MFA whose password changed 2 h ago is
    due (the change does not restart the grace); a first password added 3 h ago to an old user is not."""
    stub = NoMfaIam(profile_age)
    settings = load_settings({"ACCOUNT_ID": "111122223333", "MFA_GRACE_HOURS": "24"})
    result = mfa_sweep.run(stub, settings, NOW, lambda: 300_000)
    # One GetLoginProfile, and only for the user the report leaves ambiguous.
    assert [c for c in stub.calls if c.startswith("GetLoginProfile")] == ["GetLoginProfile:dave"]
    assert ("dave" in [o.user.name for o in result.offenders]) is dave_due
    assert ("dave" in [u.name for u in result.in_grace]) is not dave_due
    assert "bob" in [o.user.name for o in result.offenders]  # created 2025, password never changed since


# --- the sweep on a local account -----------------------------------------------------------------------------


@pytest.fixture
def account() -> Iterator[LocalGuardrail]:
    with baseline_account() as local:
        root(mfa=True, keys=False)
        yield local


def test_digest_lists_offenders_past_grace_only(account: LocalGuardrail, no_waiting: list[float]) -> None:
    age("bob", hours=30)  # no MFA, password set 30 h ago
    add_users("new", 1, mfa=False, hours=2)  # still within the 24 h grace period
    add_users("svc", 1, mfa=False, password=False)  # no console password: not a console user
    inv = sweep(account)
    # A handful of calls, then one per flagged user (bob), the admin-grant inventory, then one email.
    assert aws_calls(inv) == ["iam:GenerateCredentialReport", "iam:GenerateCredentialReport",
                              "iam:GetCredentialReport", "iam:GetAccountSummary", "iam:ListMFADevices",
                              "iam:GetAccountAuthorizationDetails", "iam:GetGroup", "sns:Publish"]
    assert [c.params for c in inv.calls if c.name == "iam:ListMFADevices"] == [{"UserName": "bob"}]
    assert no_waiting == [1.0]  # the first report took one poll to complete
    (mail,) = inv.notifications
    assert mail["subject"] == "[MEDIUM] MFA sweep: 1 console user without MFA - 123456789012"
    body = mail["message"]
    found: list[str] = []  # one item per "  - " line, its wrapped continuation lines joined back
    for line in body.split("FOUND (")[1].split("\n\n")[0].splitlines()[1:]:
        if line.startswith("  - "):
            found.append(line)
        else:
            found[-1] += " " + line.strip()
    assert len(found) == 2
    assert found[0].startswith("  - bob: user since ") and "no MFA device" in found[0]
    assert "last console sign-in never" in found[0]
    assert found[1].startswith("  - not yet due - within the grace period: new0000 (until ")
    assert "phoebe" not in body and "svc0000" not in body
    flat = " ".join(body.split())
    assert "aws iam create-virtual-mfa-device --virtual-mfa-device-name <user>" in flat
    assert "aws iam enable-mfa-device --user-name <user>" in flat
    assert writes(inv) == []


def test_clean_account_sends_nothing_unless_asked() -> None:
    with baseline_account() as local:
        root(mfa=True, keys=False)
        inv = sweep(local)  # phoebe has MFA; bob's password is younger than the grace period
        assert inv.notifications == [] and inv.findings == []
        assert "sns:Publish" not in aws_calls(inv)
    with baseline_account({"SweepDigestWhenClean": "true"}) as local:
        root(mfa=True, keys=False)
        inv = sweep(local)
        assert [(f["id"], f["severity"]) for f in inv.findings] == [("mfa-sweep", "INFO")]
        assert inv.notifications[0]["subject"].startswith("[INFO] MFA sweep: all clear")


def test_root_without_mfa_and_root_access_keys(account: LocalGuardrail) -> None:
    root(mfa=False, keys=True)
    inv = sweep(account)
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("mfa-sweep", "CRITICAL")]
    mail = inv.notifications[0]
    assert mail["subject"] == "[CRITICAL] MFA sweep: root without MFA, root access keys present - 123456789012"
    assert "  - root user: no MFA device" in mail["message"]
    assert "  - root user: access keys present" in mail["message"]
    flat = " ".join(mail["message"].split())
    assert "Root access keys: sign in as the root user" in flat and "Root MFA: sign in as the root user" in flat


@pytest.mark.parametrize(("users", "flagged"), [(10, 3), (1000, 10)])
def test_calls_grow_with_flagged_users_not_with_users(users: int, flagged: int) -> None:
    with baseline_account() as local:
        root(mfa=True, keys=False)
        add_users("ok", users - flagged, mfa=True)
        offenders = add_users("nomfa", flagged, mfa=False)
        started = time.perf_counter()
        inv = sweep(local)
        seconds = time.perf_counter() - started
    calls = aws_calls(inv)
    confirmations = [c.params["UserName"] for c in inv.calls if c.name == "iam:ListMFADevices"]
    assert sorted(confirmations) == offenders
    # 2 x Generate (moto: STARTED, COMPLETE), Get, Summary, the inventory, GetGroup (the admin group's
    # MFA), Publish. (The inventory's GetAccountAuthorizationDetails is one page here; AWS pages it by
    # 100 principals.)
    assert len(calls) == 7 + flagged
    assert inv.result["sweep"]["offenders"] == offenders
    assert seconds < 20, f"{users} users took {seconds:.1f} s"


def test_quarantine_mode_fences_in_confirmed_offenders_except_exempt() -> None:
    exempt = f"arn:aws:iam::{ACCOUNT_ID}:user/Bob"  # IAM names are case-insensitive
    with baseline_account({"MfaMode": "quarantine", "ExemptPrincipalArns": exempt}) as local:
        root(mfa=True, keys=False)
        age("bob", hours=48)
        (carol,) = add_users("carol", 1, mfa=False)
        inv = sweep(local)
        assert writes(inv) == ["iam:AttachUserPolicy"]
        assert attached(carol) == [QUARANTINE_ARN] and attached("bob") == []
        assert attached("phoebe") == []
        body = inv.notifications[0]["message"]
        assert "bob: user since" in body and "exempt principal (never quarantined)" in body
        flat = " ".join(body.split())
        assert f"[DONE] Quarantine: attach account-guardrail-mfa-required to {carol}" in flat
        assert f"To undo: aws iam detach-user-policy --user-name {carol} --policy-arn {QUARANTINE_ARN}" in flat
        assert "[NOT DONE] Quarantine bob" in flat


def test_notify_mode_sweep_makes_no_write_call(account: LocalGuardrail) -> None:
    age("bob", hours=48)
    add_users("nomfa", 3, mfa=False)
    inv = sweep(account)
    assert len(inv.result["sweep"]["offenders"]) == 4
    assert writes(inv) == []


def test_each_scheduled_run_sends_one_digest(account: LocalGuardrail) -> None:
    age("bob", hours=48)
    event = load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")
    first, retry = sweep(account, event), sweep(account, copy.deepcopy(event))
    assert len(first.notifications) == 1 and retry.notifications == []
    assert [c.name for c in retry.calls if c.service == "iam"] == []
    by_hand = sweep(account, {})  # `aws lambda invoke` with {}: a sweep now
    assert len(by_hand.notifications) == 1


def test_bad_or_misrouted_input_starts_no_sweep(account: LocalGuardrail) -> None:
    cloudtrail = load_event(EVENTS_DIR / "signin-iam-user-without-mfa.json")
    for event, status in ((cloudtrail, "ignored"), ([1, 2], "malformed"), ("sweep", "malformed")):
        inv = account.invoke(FUNCTION, event)
        assert inv.error is None and inv.result["status"] == status
        assert [c for c in inv.calls if c.kind != "idempotency"] == []


def test_report_access_denied_is_reported_not_retried(account: LocalGuardrail) -> None:
    with inject_errors({"GenerateCredentialReport": "AccessDenied"}):
        inv = sweep(account)
    assert inv.result["status"] == "failed"
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("mfa-sweep-failed", "MEDIUM")]
    assert "iam:GenerateCredentialReport" in " ".join(inv.notifications[0]["message"].split())


def test_throttling_after_retries_fails_the_invocation_for_lambda_to_retry(account: LocalGuardrail) -> None:
    with inject_errors({"GetCredentialReport": "Throttling"}):
        inv = account.invoke(FUNCTION, {})
    assert inv.error is not None and "Throttling" in inv.error
    assert inv.notifications == []


def test_a_confirmation_throttled_past_the_retries_fails_the_run_not_the_user(account: LocalGuardrail) -> None:
    """Issue 13 (2): a transient ListMFADevices failure is retried by Lambda, never reported as "could not
    confirm"; AccessDenied still is (a retry cannot fix it)."""
    age("bob", hours=48)
    with inject_errors({"ListMFADevices": "Throttling"}):
        inv = account.invoke(FUNCTION, {})
    assert inv.error is not None and "Throttling" in inv.error and inv.notifications == []
    with inject_errors({"ListMFADevices": "AccessDenied"}):
        inv = sweep(account)
    assert "could not confirm (AccessDenied)" in " ".join(inv.notifications[0]["message"].split())


def test_account_summary_failure_falls_back_to_the_report(account: LocalGuardrail) -> None:
    age("bob", hours=48)
    with inject_errors({"GetAccountSummary": "AccessDenied"}):
        inv = sweep(account)
    assert inv.result["sweep"]["offenders"] == ["bob"]
    assert "GetAccountSummary failed: AccessDenied" in " ".join(inv.notifications[0]["message"].split())


def test_sample_event_is_what_the_schedule_sends() -> None:
    """events/mfa-sweep-scheduled.json is the template's schedule Input for one run."""
    import json

    from guardrail_cli.template import Stack

    stack = Stack()
    sweep_event = stack.resources[FUNCTION]["Properties"]["Events"]["Sweep"]["Properties"]
    sent = stack.resolve(sweep_event["Input"])
    sample = load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")
    for placeholder, value in (("<aws.scheduler.scheduled-time>", sample["time"]),
                               ("<aws.scheduler.schedule-arn>", sample["resources"][0]),
                               ("<aws.scheduler.attempt-number>", sample["detail"]["attempt"])):
        sent = sent.replace(placeholder, value)
    assert json.loads(sent) == sample
    assert sample["resources"][0].endswith(":schedule/default/" + stack.resolve(sweep_event["Name"]))


# --- issue 13: idempotent by run and by user, a small stored result ---------------------------------------------

TABLE = "account-guardrail-idempotency"


def iam_writes(inv: Invocation) -> list[str]:
    return [c.name for c in inv.calls if c.kind == "write" and c.service == "iam"]


def published(inv: Invocation) -> int:
    """sns:Publish calls made (an injected failure is one of them)."""
    return sum(c.name == "sns:Publish" for c in inv.calls)


@pytest.fixture
def quarantine() -> Iterator[tuple[LocalGuardrail, list[str]]]:
    """Quarantine mode; three confirmed offenders past the grace period."""
    with baseline_account({"MfaMode": "quarantine"}) as local:
        root(mfa=True, keys=False)
        age("bob", hours=48)
        yield local, ["bob", *add_users("carol", 2, mfa=False)]


def test_a_retry_after_the_digest_failed_re_sends_it_and_repeats_no_write(
        quarantine: tuple[LocalGuardrail, list[str]]) -> None:
    local, offenders = quarantine
    event = load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")
    with inject_errors({"Publish": "InternalError"}, times=1) as failed:
        first = local.invoke(FUNCTION, event)
    assert failed == ["Publish"] and published(first) == 1  # the digest's one attempt failed
    assert first.error is not None and "AlertDeliveryError" in first.error  # Lambda retries the run
    assert iam_writes(first) == ["iam:AttachUserPolicy"] * 3
    retry = local.invoke(FUNCTION, copy.deepcopy(event))
    assert retry.error is None and retry.result["duplicate"] is True
    assert [c.name for c in retry.calls if c.service == "iam"] == []  # not even a read: the stored result
    assert published(retry) == 1 and len(retry.notifications) == 1
    assert retry.result["sweep"]["quarantined"] == 3
    flat = " ".join(retry.notifications[0]["message"].split())
    assert all(f"[DONE] Quarantine: attach account-guardrail-mfa-required to {u}" in flat for u in offenders)
    again = local.invoke(FUNCTION, copy.deepcopy(event))  # a third delivery: nothing at all
    assert again.error is None and iam_writes(again) == [] and published(again) == 0
    assert all(attached(u) == [QUARANTINE_ARN] for u in offenders)


def test_a_run_killed_after_some_writes_is_retried_writing_only_for_the_users_not_done(
        quarantine: tuple[LocalGuardrail, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed mid-run (Lambda's timeout, a transient error): the run's record is gone, but each
    user's quarantine was recorded as it was made, so the retry writes for the third user only."""
    from guardrail_core import mfa

    local, offenders = quarantine
    real = mfa.attach_quarantine
    made: list[str] = []

    def dies_at_the_third(iam: Any, settings: Any, user: str) -> Any:
        if len(made) == 2:
            monkeypatch.setattr(mfa, "attach_quarantine", real)  # only this run dies
            raise TimeoutError("Task timed out")
        made.append(user)
        return real(iam, settings, user)

    monkeypatch.setattr(mfa, "attach_quarantine", dies_at_the_third)
    event = load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")
    first = local.invoke(FUNCTION, event)
    assert first.error is not None and "Task timed out" in first.error
    assert iam_writes(first) == ["iam:AttachUserPolicy"] * 2 and published(first) == 0
    retry = local.invoke(FUNCTION, copy.deepcopy(event))
    assert retry.error is None
    (third,) = [c.params["UserName"] for c in retry.calls if c.name == "iam:AttachUserPolicy"]
    assert sorted([*made, third]) == sorted(offenders)  # each user written exactly once across both runs
    assert published(retry) == 1
    flat = " ".join(retry.notifications[0]["message"].split())
    assert all(f"[DONE] Quarantine: attach account-guardrail-mfa-required to {u}" in flat for u in offenders)


def _item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values, UTF-8 (Developer Guide, "Item sizes")."""
    return sum(len(name.encode()) + len(next(iter(value.values())).encode()) for name, value in item.items())


def test_8000_offenders_keep_the_stored_result_far_below_dynamodbs_400_kb() -> None:
    """8,000 console users without MFA, names of 64 characters (IAM's longest), quarantine mode: the
    run's record is saved (so a retry is still a duplicate), holds counts and the first names only,
    and the log lists every name."""
    names = [f"user-{i:05d}-" + "x" * 53 for i in range(8000)]
    with baseline_account({"MfaMode": "quarantine"}) as local:
        root(mfa=True, keys=False)
        backend = iam_backends[ACCOUNT_ID]["global"]
        old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
        for name in names:  # straight into moto: 16,000 API calls would take minutes
            backend.create_user("us-east-1", name).create_date = old
            backend.create_login_profile(name, "Correct-horse-battery-1")
        event = load_event(EVENTS_DIR / "mfa-sweep-scheduled.json")
        inv = sweep(local, event)
        items = boto3.client("dynamodb").scan(TableName=TABLE)["Items"]
        (run,) = [i for i in items if ".sweep_once#" in i["id"]["S"]]
        assert run["status"]["S"] == "COMPLETED"
        assert _item_bytes(run) < 200_000, _item_bytes(run)  # DynamoDB's limit is 400 KB
        assert max(_item_bytes(i) for i in items) < 200_000
        summary = inv.result["sweep"]
        assert summary["offender_count"] == 8000 and summary["offenders"] == names[:mfa_sweep.MAX_STORED_NAMES]
        assert summary["quarantined"] == mfa_sweep.MAX_CONFIRMATIONS and summary["unchecked"] == 7500
        assert len(inv.result["actions"]) == mfa_sweep.MAX_DIGEST_ACTIONS
        logged = [n for line in log_lines(inv, "INFO") if line["message"] == "sweep offenders" for n in line["names"]]
        assert logged == names
        assert len(inv.notifications) == 1 and len(inv.notifications[0]["message"].encode()) < 100_000
        retry = sweep(local, copy.deepcopy(event))  # the record was saved: the retry is a duplicate
        assert retry.result["duplicate"] is True and [c for c in retry.calls if c.service == "iam"] == []
