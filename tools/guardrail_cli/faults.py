"""Helpers for the reliability, safety, fuzz and least-privilege tests.

- real remediation scenarios (a drift made in the local account, and the event announcing it);
- faults injected below botocore's retry handler (so the client's retry policy is what is tested);
- the metrics a handler emitted (CloudWatch embedded metric format lines in its logs).
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse

from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation
from guardrail_cli.seed import ADMINISTRATOR_ACCESS, TRAIL
from guardrail_cli.template import REPO_ROOT
from guardrail_cli.testing import EVENTS_DIR, corpus_records, envelope, retarget

ADMIN_GROUP_ARN = f"arn:aws:iam::{ACCOUNT_ID}:group/administrators"
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{TRAIL}"
WRITE_SERVICES = frozenset({"iam", "cloudtrail"})


# --- what a handler did ----------------------------------------------------------------------


def writes(inv: Invocation) -> list[str]:
    """IAM and CloudTrail writes: what a remediation is made of."""
    return [c.name for c in inv.calls if c.kind == "write" and c.service in WRITE_SERVICES]


def publishes(inv: Invocation) -> int:
    return sum(c.name == "sns:Publish" for c in inv.calls)


def metrics(inv: Invocation) -> Counter[str]:
    """Metric name -> value summed, from the embedded-metric-format lines in the logs."""
    counts: Counter[str] = Counter()
    for line in inv.logs.split("\n"):  # not splitlines(): it also splits on \x85 and \u2028 inside JSON
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                values = blob[metric["Name"]]
                counts[metric["Name"]] += int(sum(values) if isinstance(values, list) else values)
    return counts


def log_lines(inv: Invocation, level: str | None = None) -> list[dict[str, Any]]:
    """The structured log records (powertools JSON), optionally of one level."""
    out = []
    for line in inv.logs.split("\n"):  # not splitlines(): it also splits on \x85 and \u2028 inside JSON
        if line.startswith('{"level"'):
            record = json.loads(line)
            if level is None or record["level"] == level:
                out.append(record)
    return out


# --- scenarios: real drift, and the event that reports it -------------------------------------


def iam_event(name: str, params: Mapping[str, Any], *, actor: str = "bob", event_id: str = "") -> dict[str, Any]:
    """An IAM API call by an IAM user of the local account: the real corpus AttachUserPolicy record
    (Stratus Red Team), moved here, with another call name and parameters."""
    (_, record), = [r for r in corpus_records("AttachUserPolicy") if r[0].startswith("raw/stratus-red-team/")]
    detail = retarget(record)
    detail["eventName"] = name
    detail["requestParameters"] = dict(params)
    detail["userIdentity"].update(arn=f"arn:aws:iam::{ACCOUNT_ID}:user/{actor}", userName=actor)
    detail["eventID"] = event_id or f"{name}-{actor}-" + "-".join(str(v)[-12:] for v in params.values())
    event = envelope(detail)
    event["id"] = f"eb-{detail['eventID']}"
    return event


def trail_event(name: str = "StopLogging", *, actor: str = "bob") -> dict[str, Any]:
    """The real corpus StopLogging record, moved into the local account, naming the seed trail."""
    (_, record), = [r for r in corpus_records(name) if r[0].startswith("raw/stratus-red-team/")]
    moved = retarget(record)
    moved["requestParameters"] = {"name": TRAIL_ARN}
    moved["userIdentity"].update(arn=f"arn:aws:iam::{ACCOUNT_ID}:user/{actor}", userName=actor)
    return envelope(moved)


def signin_without_mfa(user: str = "bob") -> dict[str, Any]:
    """The repository's example of an IAM user signing in with a password alone."""
    event = json.loads((EVENTS_DIR / "signin-iam-user-without-mfa.json").read_text())
    assert event["detail"]["userIdentity"]["userName"] == user
    return dict(event)


@dataclass(frozen=True)
class Remediation:
    """A drift the guardrail undoes: template parameters, how to cause it, what undoing it writes."""

    name: str
    function: str
    parameters: dict[str, str]
    drift: Callable[[], dict[str, Any]]  # makes the change in the account, returns the event
    write: str  # the one write call that undoes it
    fixed: Callable[[], bool]  # is the account back in the baseline?
    extra: dict[str, Any] = field(default_factory=dict)


def _group_policies() -> list[str]:
    iam = boto3.client("iam")
    return [p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName="administrators")["AttachedPolicies"]]


def _admin_attached_to_group() -> dict[str, Any]:
    boto3.client("iam").attach_group_policy(GroupName="administrators", PolicyArn=ADMINISTRATOR_ACCESS)
    return iam_event("AttachGroupPolicy", {"groupName": "administrators", "policyArn": ADMINISTRATOR_ACCESS})


def _trail_stopped() -> dict[str, Any]:
    boto3.client("cloudtrail", region_name=REGION).stop_logging(Name=TRAIL)
    return trail_event()


def _trail_logging() -> bool:
    return bool(boto3.client("cloudtrail", region_name=REGION).get_trail_status(Name=TRAIL)["IsLogging"])


def _quarantined(user: str = "bob") -> bool:
    iam = boto3.client("iam")
    return any("mfa-required" in p["PolicyArn"]
               for p in iam.list_attached_user_policies(UserName=user)["AttachedPolicies"])


REMEDIATIONS = [
    Remediation("admin-policy-on-group", "AdminDriftFunction", {}, _admin_attached_to_group,
                "iam:DetachGroupPolicy", lambda: ADMINISTRATOR_ACCESS not in _group_policies()),
    Remediation("trail-stopped", "TrailGuardFunction", {}, _trail_stopped,
                "cloudtrail:StartLogging", _trail_logging),
    Remediation("signin-without-mfa", "MfaDriftFunction", {"MfaMode": "quarantine", "MfaGraceHours": "0"},
                signin_without_mfa, "iam:AttachUserPolicy", _quarantined),
]


def remediation(name: str) -> Remediation:
    return next(r for r in REMEDIATIONS if r.name == name)


def function_landed(function: str) -> bool:
    """Whether a detector's code exists. Every one has landed: a missing one is an error, never a quiet skip."""
    folder = {"AdminDriftFunction": "admin_drift", "TrailGuardFunction": "trail_guard", "MfaDriftFunction": "mfa_drift",
              "MfaSweepFunction": "mfa_sweep", "RootActivityFunction": "root_activity",
              "SelfProtectFunction": "self_protect", "SetupFunction": "setup",
              "HeartbeatFunction": "heartbeat"}[function]
    path = REPO_ROOT / "functions" / folder / "app.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the template's {function} has no code")
    return True


# --- faults below botocore's retry handler ---------------------------------------------------


_XML_ERROR = ('<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message>'
              '</Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>')


@contextlib.contextmanager
def http_errors(errors: Mapping[str, tuple[str, int]], *, times: int = 1) -> Iterator[list[str]]:
    """The first `times` requests of each named operation ("iam.DetachGroupPolicy") get an HTTP
    error response (code, status) from the "service", as the network would deliver it: botocore's
    retry handler sees it, so the client's retry configuration is what decides what happens next.

    Yields the operations that were failed, one entry per failed request.
    """
    failed: list[str] = []
    original = BotocoreStubber.__call__

    def stub(self: BotocoreStubber, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        operation = event_name.removeprefix("before-send.")
        if operation in errors and failed.count(operation) < times:
            failed.append(operation)
            code, status = errors[operation]
            if "X-Amz-Target" in request.headers:  # JSON protocol (CloudTrail, DynamoDB)
                body = json.dumps({"__type": code, "message": f"injected {code}"})
                headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-errortype": code}
            else:  # query protocol (IAM, SNS, STS)
                body = _XML_ERROR.format(code=code, message=f"injected {code}")
                headers = {"Content-Type": "text/xml"}
            return AWSResponse(request.url, status, headers, MockRawResponse(body))  # type: ignore[arg-type]
        return original(self, event_name, request, **kwargs)

    BotocoreStubber.__call__ = stub  # type: ignore[method-assign]
    try:
        yield failed
    finally:
        BotocoreStubber.__call__ = original  # type: ignore[method-assign]


# --- sequential round trips ----------------------------------------------------------------------

LATENCY = 0.3  # seconds added to every call: long next to moto's own time (and a busy CI), so rounds show


@dataclass
class Timed:
    name: str
    start: float
    end: float = 0.0
    depth: int = 0  # 1 + the depth of the latest call that ended before this one started


@contextlib.contextmanager
def round_trips() -> Iterator[list[Timed]]:
    """Every AWS call in the block waits LATENCY first (as a network would) and is timed; on exit each
    call's `depth` says in which sequential round trip it was made (1 = first)."""
    from botocore.client import BaseClient

    original = BaseClient._make_api_call  # type: ignore[attr-defined]
    timed: list[Timed] = []
    lock = threading.Lock()

    def slow(self: Any, operation: str, params: dict[str, Any]) -> Any:
        call = Timed(f"{self.meta.service_model.endpoint_prefix}:{operation}", time.monotonic())
        with lock:
            timed.append(call)
        time.sleep(LATENCY)
        try:
            return original(self, operation, params)
        finally:
            call.end = time.monotonic()

    BaseClient._make_api_call = slow  # type: ignore[method-assign,attr-defined]
    try:
        yield timed
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign,attr-defined]
        for call in sorted(timed, key=lambda c: c.start):
            call.depth = 1 + max((c.depth for c in timed if c.end and c.end <= call.start), default=0)



def no_backoff() -> Any:
    """Patch target and value that make botocore's standard retries wait 0 s (tests stay fast)."""
    from botocore.retries import standard

    return standard.ExponentialBackoff, "delay_amount", lambda self, context: 0


def clone(event: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    copied = copy.deepcopy(dict(event))
    copied.update(overrides)
    return copied


# --- the permissions the code declares --------------------------------------------------------

# Each function: the guardrail_core module whose READ_ACTIONS/WRITE_ACTIONS it calls with, and
# the template Condition under which it may write (None: notify only, never writes).
DETECTOR_MODULES = {
    "AdminDriftFunction": ("admin_drift", "AdminDriftRemediates"),
    "MfaDriftFunction": ("mfa", "MfaQuarantines"),
    "MfaSweepFunction": ("mfa_sweep", "MfaQuarantines"),
    "RootActivityFunction": ("root_activity", None),
    "TrailGuardFunction": ("trail_guard", "TrailRemediates"),
    "SelfProtectFunction": ("self_protect", None),
    "HeartbeatFunction": ("heartbeat", None),
}


def declared_actions(function: str, stack: Any) -> frozenset[str]:
    """Every action `function` may call under the stack's parameters, from the code's declarations
    (adapter modules' READ_ACTIONS/WRITE_ACTIONS and the shared runtime's)."""
    import importlib

    from guardrail_core import iam_baseline, inventory, runtime, security_hub, setup, subscription

    shared = runtime.LOG_ACTIONS | runtime.PUBLISH_ACTIONS
    if stack.conditions["ImportToSecurityHub"]:  # every function imports what it publishes
        shared |= security_hub.IMPORT_ACTIONS
    if function == "SetupFunction":  # converges the whole baseline, checks the trail
        return (shared | iam_baseline.READ_ACTIONS | iam_baseline.WRITE_ACTIONS | iam_baseline.ADOPTION_READ_ACTIONS
                | setup.CLOUDTRAIL_READ_ACTIONS | inventory.INVENTORY_ACTIONS
                | subscription.READ_ACTIONS | subscription.WRITE_ACTIONS)
    name, condition = DETECTOR_MODULES[function]
    module = importlib.import_module(f"guardrail_core.{name}")
    missing = [attr for attr in ("READ_ACTIONS", "WRITE_ACTIONS") if not hasattr(module, attr)]
    assert not missing, f"guardrail_core/{name}.py must declare {missing} (frozenset(), if it calls nothing)"
    actions = shared | runtime.IDEMPOTENCY_ACTIONS | runtime.ON_FAILURE_ACTIONS | module.READ_ACTIONS
    if condition and stack.conditions[condition]:
        actions |= module.WRITE_ACTIONS
    if function == "AdminDriftFunction" and stack.conditions["DetachOtherAdmin"]:
        actions |= module.DETACH_OTHER_ACTIONS
    return frozenset(actions)


def calls_outside(inv: Invocation, stack: Any) -> list[str]:
    """API calls an invocation made that its function does not declare (must be none)."""
    allowed = declared_actions(inv.function, stack)
    return sorted({c.name for c in inv.calls} - allowed)
