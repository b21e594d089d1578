"""Odd but possible values are rejected as malformed (issue 13, item 10), never a "this is a bug" email.

Every case goes through the real handler on the local account: the value must come back as
`malformed`, logged with its reason and counted (MalformedEvents), with no email, no AWS call at
all (so nothing written) and no exception. What AWS never writes - a time AWS cannot record, a
name or ARN IAM refuses, a document past IAM's limits - is refused once, where every handler's
input is parsed (`events.parse_event`), before any judge computes with it.

A refused call (errorCode) is different: its odd values are often why IAM refused it, and it is
still news. It is judged, without a bug email, and its actor is the one `userIdentity` names.

Also here: malformed CloudFormation custom-resource requests to the setup function.
"""

from __future__ import annotations

import copy
import http.server
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from guardrail_cli.faults import iam_event, log_lines, metrics, publishes, writes
from guardrail_cli.local import ACCOUNT_ID, Invocation, LocalGuardrail
from guardrail_cli.seed import ADMINISTRATOR_ACCESS
from guardrail_cli.testing import EVENTS_DIR, baseline_account, load_event
from guardrail_core import baseline, events, mfa, policy
from guardrail_core.events import MalformedEvent, iam_parameter_problem, parse_timestamp

ASSUME_POLICY = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
ADMIN_DOC = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
TRUST = ('{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::'
         f'{ACCOUNT_ID}:root"}},"Action":"sts:AssumeRole"}}]}}')
DEEP = '{"Statement":' + "[" * 5000 + "]" * 5000 + "}"  # the document: 5,000 levels
HUGE = '{"Statement":[' + ",".join(['{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}'] * 2500) + "]}"
_ids = itertools.count()


def nested(depth: int) -> dict[str, Any]:
    """{"a": {"a": ... {}}}, `depth` levels (built without recursion)."""
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth - 1):
        node["a"] = {}
        node = node["a"]
    return root


def fresh(event: dict[str, Any]) -> dict[str, Any]:
    """A copy with a new envelope id and CloudTrail event id (judged, never an idempotent replay)."""
    copied = copy.deepcopy(event)
    n = next(_ids)
    copied["id"] = f"odd-{n}"
    copied["detail"]["eventID"] = f"odd-record-{n}"
    return copied


def from_file(name: str, **detail: Any) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        event = fresh(load_event(EVENTS_DIR / name))
        event["detail"].update(detail)
        return event
    return build


def call(name: str, params: dict[str, Any], **detail: Any) -> Callable[[], dict[str, Any]]:
    """An IAM call by bob, successful unless `detail` says otherwise (errorCode)."""
    def build() -> dict[str, Any]:
        event = fresh(iam_event(name, params, event_id="placeholder"))
        event["detail"].update(detail)
        return event
    return build


@pytest.fixture(scope="module")
def account() -> Iterator[LocalGuardrail]:
    """One local account in the baseline for the module (every case is read-only by design)."""
    with baseline_account() as local:
        yield local


def assert_malformed(local: LocalGuardrail, function: str, event: dict[str, Any]) -> Invocation:
    inv = local.invoke(function, event)
    assert inv.error is None, inv.logs[-3000:]
    assert inv.result["status"] == "malformed", inv.result
    assert metrics(inv)["MalformedEvents"] == 1
    assert [line["reason"] for line in log_lines(inv, "WARNING") if line["message"] == "malformed event ignored"] \
        == [inv.result["reason"]]
    assert inv.calls == []  # not a read, not a write, not an idempotency record, not an email
    assert publishes(inv) == 0 and writes(inv) == [] and inv.findings == []
    return inv


def assert_judged_without_a_bug_email(local: LocalGuardrail, function: str, event: dict[str, Any]) -> Invocation:
    inv = local.invoke(function, event)
    assert inv.error is None, inv.logs[-3000:]
    assert inv.result["status"] in ("handled", "ignored"), inv.result
    assert "guardrail-error" not in [f["id"] for f in inv.findings]
    assert "This is a bug" not in json.dumps([n["message"] for n in inv.notifications])
    assert writes(inv) == []
    return inv


# --- times: outside what AWS can record --------------------------------------------------------------------------

ODD_TIMES = {
    "year-9999": "9999-12-31T23:59:59Z",  # + the grace period: OverflowError (issue 13)
    "year-1": "0001-01-01T00:00:00Z",  # - the failure window: OverflowError
    "year-9999-west-of-utc": "9999-12-31T23:00:00-05:00",  # in UTC it is year 10000
    "year-1-east-of-utc": "0001-01-01T00:00:00+05:00",  # in UTC it is year 0
    "five-digit-year": "10000-01-01T00:00:00Z",
    "before-aws": "1970-01-01T00:00:00Z",
    "next-century": "2100-01-01T00:00:00Z",
    "feb-31": "2026-02-31T00:00:00Z",
    "hour-25": "2026-11-28T25:00:00Z",
    "offset-99-hours": "2026-11-28T10:00:00+99:00",
    "date-only": "2026-11-28",
    "date-then-junk": "2026-11-28T10:00:00Zjunk",
}
# One event per detector (and the judges that compute with times: the grace period, the
# failed root sign-in window).
TIMED_EVENTS = {
    "grace-start": ("MfaDriftFunction", "mfa-admin-group-member-added.json"),
    "signin": ("MfaDriftFunction", "signin-iam-user-without-mfa.json"),
    "root-signin": ("RootActivityFunction", "root-console-signin.json"),
    "trail": ("TrailGuardFunction", "trail-stopped.json"),
    "admin-drift": ("AdminDriftFunction", "admin-policy-attached-to-group.json"),
    "self-protect": ("SelfProtectFunction", "tamper-rule-disabled.json"),
}


@pytest.mark.parametrize("when", ODD_TIMES.values(), ids=ODD_TIMES.keys())
@pytest.mark.parametrize("source", TIMED_EVENTS.values(), ids=TIMED_EVENTS.keys())
def test_an_event_time_aws_cannot_record_is_malformed(account: LocalGuardrail, source: tuple[str, str],
                                                      when: str) -> None:
    function, name = source
    inv = assert_malformed(account, function, from_file(name, eventTime=when)())
    assert when[:20] in inv.result["reason"]


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"], ids=["year-9999", "year-1"])
@pytest.mark.parametrize("shape", ["failed-root-signin", "console-password-created", "envelope-time-only"])
def test_the_other_ways_an_odd_time_reaches_a_judge(account: LocalGuardrail, shape: str, when: str) -> None:
    if shape == "failed-root-signin":  # the repeated-failures window subtracts an hour
        event = from_file("root-console-signin.json", eventTime=when, responseElements={"ConsoleLogin": "Failure"},
                          errorMessage="Failed authentication")()
        function = "RootActivityFunction"
    elif shape == "console-password-created":  # the grace deadline adds MfaGraceHours
        event = call("CreateLoginProfile", {"userName": "bob"}, eventTime=when)()
        function = "MfaDriftFunction"
    else:  # no eventTime: the envelope's time stands in for it, and is checked the same way
        event = from_file("mfa-admin-group-member-added.json")()
        del event["detail"]["eventTime"]
        event["time"] = when
        function = "MfaDriftFunction"
    assert_malformed(account, function, event)


@pytest.mark.parametrize("when", [
    "2026-11-28T08:41:17+14:00",  # Kiribati: a real offset
    "2026-11-28 08:41:17.000000000",  # as exports (Athena, SIEMs) write it
    "2026-11-28T08:41:17.123Z",
    "redacted",  # not a date at all: an unknown time, shown as written, never computed with
    "123456789012",  # a redacted time, as an export rewrote it
    "28/11/2026 10:00",
], ids=["offset", "export-format", "milliseconds", "redacted", "digits", "not-iso"])
def test_times_aws_and_exports_do_write_are_still_judged(account: LocalGuardrail, when: str) -> None:
    inv = assert_judged_without_a_bug_email(
        account, "MfaDriftFunction", from_file("mfa-admin-group-member-added.json", eventTime=when)())
    assert inv.result["status"] == "handled"


# --- names and ARNs IAM would refuse --------------------------------------------------------------------------------

ODD_NAMES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # policyArn: 20-2048 characters (arnType); shorter ones botocore refuses before sending (issue 13)
    "policy-arn-too-short": ("AdminDriftFunction", "AttachGroupPolicy",
                             {"groupName": "developers", "policyArn": "arn:x"}),
    "policy-arn-19-characters": ("AdminDriftFunction", "AttachUserPolicy",
                                 {"userName": "bob", "policyArn": "arn:aws:iam::aws:po"}),
    "policy-arn-empty": ("AdminDriftFunction", "AttachRolePolicy", {"roleName": "admin-mfa", "policyArn": ""}),
    "policy-arn-of-another-service": ("AdminDriftFunction", "AttachGroupPolicy",
                                      {"groupName": "administrators", "policyArn": "arn:aws:s3:::bucket/policy/x"}),
    "policy-arn-too-long": ("AdminDriftFunction", "AttachUserPolicy",
                            {"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/" + "a" * 2100}),
    "policy-arn-a-number": ("AdminDriftFunction", "AttachGroupPolicy",
                            {"groupName": "developers", "policyArn": 12345678901234567890}),
    "permissions-boundary-too-short": ("AdminDriftFunction", "PutRolePermissionsBoundary",
                                       {"roleName": "admin-mfa", "permissionsBoundary": "arn:x"}),
    "version-id-v0": ("AdminDriftFunction", "SetDefaultPolicyVersion", {"policyArn": ASSUME_POLICY, "versionId": "v0"}),
    # UserName [\w+=,.@-]+, 1-128; GroupName 1-128; RoleName 1-64; PolicyName 1-128
    "user-name-with-a-space": ("AdminDriftFunction", "AttachUserPolicy",
                               {"userName": "a b", "policyArn": ADMINISTRATOR_ACCESS}),
    "user-name-129-characters": ("MfaDriftFunction", "AddUserToGroup",
                                 {"groupName": "administrators", "userName": "u" * 129}),
    "user-name-with-a-newline": ("MfaDriftFunction", "AddUserToGroup",
                                 {"groupName": "administrators", "userName": "bob\n"}),
    "user-name-a-path": ("MfaDriftFunction", "CreateLoginProfile", {"userName": "../bob"}),
    "user-name-not-ascii": ("MfaDriftFunction", "AddUserToGroup", {"groupName": "administrators", "userName": "bøb"}),
    "user-name-empty": ("AdminDriftFunction", "AttachUserPolicy", {"userName": "", "policyArn": ADMINISTRATOR_ACCESS}),
    "user-name-a-list": ("AdminDriftFunction", "AttachUserPolicy",
                         {"userName": ["bob"], "policyArn": ADMINISTRATOR_ACCESS}),
    "group-name-129-characters": ("AdminDriftFunction", "PutGroupPolicy",
                                  {"groupName": "g" * 129, "policyName": "x", "policyDocument": ADMIN_DOC}),
    "group-name-a-wildcard": ("AdminDriftFunction", "AttachGroupPolicy",
                              {"groupName": "admin*", "policyArn": ADMINISTRATOR_ACCESS}),
    "new-group-name-with-a-slash": ("AdminDriftFunction", "UpdateGroup",
                                    {"groupName": "administrators", "newGroupName": "a/b"}),
    "role-name-65-characters": ("AdminDriftFunction", "AttachRolePolicy",
                                {"roleName": "r" * 65, "policyArn": ADMINISTRATOR_ACCESS}),
    "role-name-with-a-colon": ("AdminDriftFunction", "UpdateAssumeRolePolicy",
                               {"roleName": "admin-mfa:x", "policyDocument": TRUST}),
    "policy-name-with-a-slash": ("AdminDriftFunction", "PutUserPolicy",
                                 {"userName": "bob", "policyName": "a/b", "policyDocument": ADMIN_DOC}),
}


@pytest.mark.parametrize("case", ODD_NAMES.values(), ids=ODD_NAMES.keys())
def test_a_name_or_arn_iam_would_refuse_is_malformed(account: LocalGuardrail,
                                                     case: tuple[str, str, dict[str, Any]]) -> None:
    function, name, params = case
    inv = assert_malformed(account, function, call(name, params)())
    assert "IAM" in inv.result["reason"]


# --- documents past IAM's limits, and deep events -------------------------------------------------------------------

ODD_DOCUMENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "5000-deep-on-a-group": ("PutGroupPolicy", {"groupName": "developers", "policyName": "x", "policyDocument": DEEP}),
    "5000-deep-on-the-admin-group": ("PutGroupPolicy", {"groupName": "administrators", "policyName": "x",
                                                        "policyDocument": DEEP}),
    "5000-deep-on-a-user": ("PutUserPolicy", {"userName": "bob", "policyName": "x", "policyDocument": DEEP}),
    "5000-deep-on-the-admin-role": ("PutRolePolicy", {"roleName": "admin-mfa", "policyName": "x",
                                                      "policyDocument": DEEP}),
    "5000-deep-trust-of-the-admin-role": ("UpdateAssumeRolePolicy", {"roleName": "admin-mfa", "policyDocument": DEEP}),
    "5000-deep-trust-of-a-new-role": ("CreateRole", {"roleName": "app", "assumeRolePolicyDocument": DEEP}),
    "5000-deep-version-of-the-assume-policy": ("CreatePolicyVersion", {"policyArn": ASSUME_POLICY,
                                                                       "policyDocument": DEEP, "setAsDefault": True}),
    "5000-deep-url-encoded": ("PutUserPolicy", {"userName": "bob", "policyName": "x", "policyDocument": quote(DEEP)}),
    "40-deep-object": ("PutGroupPolicy", {"groupName": "developers", "policyName": "x", "policyDocument": nested(40)}),
    "over-131072-characters": ("PutUserPolicy", {"userName": "bob", "policyName": "x", "policyDocument": HUGE}),
    "request-nested-100-deep": ("AttachUserPolicy", {"userName": "bob", "policyArn": ADMINISTRATOR_ACCESS,
                                                     "tags": nested(100)}),
}


@pytest.mark.parametrize("case", ODD_DOCUMENTS.values(), ids=ODD_DOCUMENTS.keys())
def test_a_document_past_iams_limits_is_malformed(account: LocalGuardrail, case: tuple[str, dict[str, Any]]) -> None:
    name, params = case
    assert len(HUGE) > policy.MAX_CHARS
    assert_malformed(account, "AdminDriftFunction", call(name, params)())


# --- refused calls: judged, no bug email, the actor as recorded -----------------------------------------------------

REFUSED: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "5000-deep-document": ("AdminDriftFunction", "PutUserPolicy",
                           {"userName": "bob", "policyName": "x", "policyDocument": DEEP}, "MalformedPolicyDocument"),
    "5000-deep-on-the-admin-group": ("AdminDriftFunction", "PutGroupPolicy",
                                     {"groupName": "administrators", "policyName": "x", "policyDocument": DEEP},
                                     "AccessDenied"),
    "policy-arn-too-short": ("AdminDriftFunction", "AttachGroupPolicy",
                             {"groupName": "developers", "policyArn": "arn:x"}, "ValidationError"),
    "user-name-with-a-space": ("MfaDriftFunction", "DeactivateMFADevice",
                               {"userName": "a b", "serialNumber": f"arn:aws:iam::{ACCOUNT_ID}:mfa/x"},
                               "ValidationError"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_call_with_odd_values_is_judged_without_a_bug_email(
        account: LocalGuardrail, case: tuple[str, str, dict[str, Any], str]) -> None:
    function, name, params, code = case
    assert_judged_without_a_bug_email(account, function, call(name, params, errorCode=code, errorMessage="refused")())


def test_a_refused_call_on_roots_mfa_device_names_who_made_it_not_root(account: LocalGuardrail) -> None:
    """Issue 13: an IAM user's refused DeactivateMFADevice on root's device was emailed as if
    root had made it. The actor is the one userIdentity names."""
    event = call("DeactivateMFADevice", {"userName": "AWS ROOT USER",
                                         "serialNumber": f"arn:aws:iam::{ACCOUNT_ID}:mfa/root-account-mfa-device"},
                 errorCode="AccessDenied", errorMessage="not authorized")()
    assert "RootMfaChange" in {r.logical_id for r in account.route(event)}
    inv = assert_judged_without_a_bug_email(account, "RootActivityFunction", event)
    assert [(f["id"], f["severity"]) for f in inv.findings] == [("root-api-call-failed", "MEDIUM")]
    (mail,) = inv.notifications
    text = " ".join(mail["message"].split())
    assert mail["subject"].startswith("[MEDIUM] Refused: DeactivateMFADevice on root's MFA device by bob")
    assert "IAM user bob (not the root user) called DeactivateMFADevice" in text
    assert "The ROOT user" not in text and "Root user tried" not in mail["subject"]


def test_the_root_placeholder_user_name_is_not_an_odd_value(account: LocalGuardrail) -> None:
    """CloudTrail writes userName "AWS ROOT USER" in root's own MFA calls: not an IAM user name, but real."""
    event = from_file("root-access-key-created.json", eventName="DeactivateMFADevice", responseElements=None,
                      requestParameters={"userName": "AWS ROOT USER",
                                         "serialNumber": f"arn:aws:iam::{ACCOUNT_ID}:mfa/root-account-mfa-device"})()
    inv = assert_judged_without_a_bug_email(account, "RootActivityFunction", event)
    assert [f["id"] for f in inv.findings] == ["root-mfa-removed"]


# --- the checks themselves (pure) --------------------------------------------------------------------------------


def test_parse_timestamp_reads_cloudtrail_times_and_refuses_the_rest() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_timestamp("2026-11-28T09:14:52Z", now=now) == datetime(2026, 11, 28, 9, 14, 52, tzinfo=UTC)
    assert parse_timestamp("2026-11-28T09:14:52+01:00", now=now) == datetime(2026, 11, 28, 8, 14, 52, tzinfo=UTC)
    assert parse_timestamp("2026-11-28 09:14:52.123456789", now=now).microsecond == 123456
    assert parse_timestamp("2026-12-01T11:59:00Z", now=now)  # a day of clock skew is allowed
    for odd in [*ODD_TIMES.values(), "2026-12-01T12:01:00Z", "", "   ", "2026-11-28", "2026-11-28T09:14:52+0A:00"]:
        with pytest.raises(MalformedEvent):
            parse_timestamp(odd, now=now)


def test_iam_parameter_problem_follows_the_iam_api_reference() -> None:
    good = {"userName": ["bob", "a" * 128, "x+=,.@_-1", "AWS ROOT USER"], "groupName": ["g" * 128],
            "roleName": ["r" * 64], "policyName": ["p" * 128], "newUserName": ["n" * 64],
            "policyArn": [ADMINISTRATOR_ACCESS, "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                          f"arn:aws-us-gov:iam::{ACCOUNT_ID}:policy/path:with/odd!chars/p"],
            "versionId": ["v1", "v12.abc-1"], "serialNumber": ["anything: not checked here"]}
    bad: dict[str, list[Any]] = {
           "userName": ["", "a" * 129, "a b", "bøb", "*", 5], "groupName": ["g" * 129], "roleName": ["r" * 65],
           "newUserName": ["n" * 65], "policyName": ["a/b"],
           "policyArn": ["arn:x", "arn:aws:iam::aws:po", f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa",
                         "arn:aws:iam::aws:policy/" + "a" * 2048, "arn:aws:iam::aws:policy/a b"],
           "permissionsBoundary": ["arn:x"], "versionId": ["v0", "1", "v1/x"]}
    assert [(k, v) for k, values in good.items() for v in values if iam_parameter_problem(k, v)] == []
    assert [(k, v) for k, values in bad.items() for v in values if not iam_parameter_problem(k, v)] == []


def test_documents_past_the_limits_are_refused_without_recursion() -> None:
    for deep in (DEEP, quote(DEEP), DEEP.encode(), nested(40), [nested(40)], "[" * 200_000):
        assert policy.limits_problem(deep)
        verdict = policy.analyze(deep)  # never RecursionError: an ordinary verdict that says why
        assert verdict.kind == policy.ORDINARY and verdict.error
        assert baseline.load_document(deep) == {}
    assert "131072" in policy.limits_problem(HUGE)
    assert policy.limits_problem(ADMIN_DOC) == "" and policy.limits_problem(json.loads(ADMIN_DOC)) == ""
    assert policy.limits_problem(None) == "" and policy.limits_problem(5) == ""


def test_an_event_nested_past_the_limit_is_refused_without_recursion() -> None:
    events.check_depth(nested(events.MAX_EVENT_DEPTH))
    with pytest.raises(MalformedEvent):
        events.check_depth(nested(events.MAX_EVENT_DEPTH + 2))
    events.check_depth([[[]]] * 10_000)  # wide is fine


def test_times_from_iam_reads_are_range_checked_too() -> None:
    """The credential report and GetLoginProfile go through mfa.parse_time: no overflow either."""
    assert mfa.parse_time("9999-12-31T23:59:59+00:00") is None and mfa.parse_time("0001-01-01T00:00:00") is None
    assert mfa.parse_time(datetime(9999, 12, 31)) is None
    assert mfa.grace_deadline(datetime(9999, 12, 31, 23, tzinfo=UTC), 24) is None
    assert mfa.within_grace(datetime(9999, 12, 31, 23, tzinfo=UTC), 24, datetime.now(UTC)) is False
    assert mfa.parse_time("2026-11-28T09:14:52+00:00") == datetime(2026, 11, 28, 9, 14, 52, tzinfo=UTC)
    assert mfa.grace_deadline(datetime(2026, 11, 28, tzinfo=UTC), 24) == datetime(2026, 11, 29, tzinfo=UTC)
    assert timedelta(days=1) == events.FUTURE_SLACK


# --- the setup function: malformed custom-resource requests ----------------------------------------------------------


class _Listener(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local stand-in for CloudFormation's pre-signed S3 response URL."""
    received: list[dict[str, Any]] = []
    server = http.server.HTTPServer(("127.0.0.1", 0), type("Listener", (_Listener,), {"received": received}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", received
    server.shutdown()


@pytest.fixture
def drifted(account: LocalGuardrail) -> Iterator[LocalGuardrail]:
    """AdministratorAccess back on the admin group: a converge would write (and undo it)."""
    iam = boto3.client("iam")
    iam.attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    yield account
    iam.detach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)


def cfn_request(changes: dict[str, Any]) -> dict[str, Any]:
    """A Create request as CloudFormation sends it, with `changes` (Ellipsis: the key left out)."""
    request: dict[str, Any] = {
        "RequestType": "Create", "ServiceToken": "arn:aws:lambda:us-east-1:1:function:x",
        "StackId": f"arn:aws:cloudformation:us-east-1:{ACCOUNT_ID}:stack/account-guardrail/1",
        "RequestId": "req-1", "LogicalResourceId": "Baseline", "ResourceType": "Custom::Baseline",
        "ResourceProperties": {"ServiceToken": "arn"},
    }
    request.update(changes)
    return {k: v for k, v in request.items() if v is not ...}


MALFORMED_REQUESTS: dict[str, tuple[dict[str, Any], bool]] = {  # changes, and whether a FAILED answer can be sent
    "no-response-url": ({"ResponseURL": ...}, False),
    "response-url-not-a-url": ({"ResponseURL": "not a url"}, False),
    "response-url-ftp": ({"ResponseURL": "ftp://example.com/x"}, False),
    "response-url-no-host": ({"ResponseURL": "https://"}, False),
    "response-url-a-number": ({"ResponseURL": 12345}, False),
    "no-request-type": ({"RequestType": ...}, True),
    "request-type-lower-case": ({"RequestType": "create"}, True),
    "request-type-rollback": ({"RequestType": "Rollback"}, True),
    "request-type-a-number": ({"RequestType": 5}, True),
    "request-type-null": ({"RequestType": None}, True),
    "no-stack-id": ({"StackId": ...}, True),
    "no-request-id": ({"RequestId": ...}, True),
    "logical-id-an-object": ({"LogicalResourceId": {"a": 1}}, True),
}


@pytest.mark.parametrize("case", MALFORMED_REQUESTS.values(), ids=MALFORMED_REQUESTS.keys())
def test_a_malformed_custom_resource_request_is_answered_failed_and_converges_nothing(
        drifted: LocalGuardrail, response_url: tuple[str, list[dict[str, Any]]],
        case: tuple[dict[str, Any], bool]) -> None:
    url, received = response_url
    changes, answerable = case
    inv = drifted.invoke("SetupFunction", cfn_request({"ResponseURL": url, **changes}))
    assert inv.error is None, inv.logs[-3000:]  # never escapes: retrying cannot fix the request
    assert inv.result["status"] == "FAILED" and "malformed custom-resource request" in inv.result["reason"]
    assert [c for c in inv.calls if c.service == "iam"] == []  # not converged: not even read
    assert ADMINISTRATOR_ACCESS in [p["PolicyArn"] for p in boto3.client("iam").list_attached_group_policies(
        GroupName="administrators")["AttachedPolicies"]]
    assert [line["message"] for line in log_lines(inv, "ERROR")] == ["malformed custom-resource request: "
                                                                     "nothing converged"]
    assert metrics(inv)["MalformedEvents"] == 1 and publishes(inv) == 0
    if answerable:
        (answer,) = received
        assert answer["Status"] == "FAILED" and answer["Reason"].startswith("Malformed custom-resource request: ")
    else:
        assert received == []


def test_a_malformed_request_whose_url_does_not_answer_is_still_not_an_exception(drifted: LocalGuardrail) -> None:
    request = cfn_request({"ResponseURL": "http://127.0.0.1:9/unreachable", "RequestType": "Rollback"})
    inv = drifted.invoke("SetupFunction", request)
    assert inv.error is None and inv.result["status"] == "FAILED"
    assert "FAILED response to the malformed request not sent" in [line["message"] for line in log_lines(inv, "ERROR")]
    assert [c for c in inv.calls if c.service == "iam"] == []
