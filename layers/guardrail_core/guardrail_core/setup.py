"""Converge the whole baseline (the setup function), and speak CloudFormation's custom resource protocol.

Direct invocation: `{"dry_run": true}` reports the plan and changes nothing; `{}` converges.
The daily schedule sends `{"converge": "scheduled"}`: it converges only when remediation is on
(AdminDriftMode=remediate, KillSwitch=off), as the detectors would, and emails only when it
changed something or failed.
Custom resource: Create/Update converge; Delete leaves the baseline in place. Whatever
happens, CloudFormation gets exactly one answer, before the function's own timeout.
"""

from __future__ import annotations

import concurrent.futures
import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from guardrail_core import iam_baseline, inventory, lockout, subscription
from guardrail_core.aws import client, error_code
from guardrail_core.baseline import describe
from guardrail_core.config import Settings
from guardrail_core.findings import Action, Finding, Severity, Status

RESPONSE_MARGIN_MS = 15_000  # answer CloudFormation this long before Lambda would kill us
CLOUDTRAIL_READ_ACTIONS = frozenset({"cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus",
                                     "cloudtrail:GetEventSelectors"})


@dataclass
class SetupResult:
    dry_run: bool
    plan: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    trail: str = ""
    trail_ok: bool = False
    refused: str = ""  # why setup would not adopt what exists (one line, with the parameter to set)
    admin_grants: list[str] = field(default_factory=list)  # inventory lines: admin rights outside the baseline
    subscription: subscription.SubscriptionCheck | None = None

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.status is Status.FAILED]

    @property
    def held_back(self) -> list[Action]:
        return [a for a in self.actions if a.status is Status.SKIPPED and "lockout" in a.detail]

    @property
    def compliant(self) -> bool:
        return not self.refused and not self.failed and not self.held_back and (self.dry_run is False or not self.plan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "plan": self.plan,
            "actions": [{"name": a.name, "target": a.target, "status": a.status.value, "detail": a.detail,
                         "undo": a.undo} for a in self.actions],
            "trail": self.trail,
            "trail_ok": self.trail_ok,
            "refused": self.refused,
            "admin_grants": self.admin_grants,
            "subscription": {"status": self.subscription.status, "detail": self.subscription.detail}
            if self.subscription else None,
            "compliant": self.compliant,
        }

    def summary(self) -> str:
        if self.refused:
            return f"Setup stopped, nothing changed: {self.refused}."
        if not self.plan:
            return "Baseline already in place: nothing to change."
        done = sum(a.status is Status.SUCCEEDED for a in self.actions)
        text = f"{done} of {len(self.plan)} changes made."
        if self.held_back:
            text += " Held back to avoid a lockout: " + self.held_back[0].detail
        if self.failed:
            text += " Failed: " + "; ".join(f"{a.name} ({a.detail})" for a in self.failed)
        return text


def check_trail(cloudtrail: Any) -> tuple[bool, str]:
    """Is a logging, multi-region trail recording management events? EventBridge sees nothing otherwise."""
    trails = cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", [])
    candidates = [t for t in trails if t.get("IsMultiRegionTrail")]
    if not candidates:
        return False, ("No multi-region CloudTrail trail exists: EventBridge receives no CloudTrail events, so "
                       "the detectors are blind. Create one (CloudTrail console > Trails > Create trail, "
                       "all regions, management events: read and write).")
    for trail in candidates:
        arn = trail["TrailARN"]
        if not cloudtrail.get_trail_status(Name=arn).get("IsLogging"):
            continue
        selectors = cloudtrail.get_event_selectors(TrailName=arn)
        if _records_management_writes(selectors):
            return True, f"Trail {trail['Name']} is logging management events in all regions."
    names = ", ".join(t["Name"] for t in candidates)
    return False, (f"Trail(s) {names} exist but none is logging management write events: the detectors are "
                   f"blind until one is (CloudTrail console > Trails > the trail > Start logging).")


def _records_management_writes(selectors: Mapping[str, Any]) -> bool:
    basic, advanced_list = selectors.get("EventSelectors") or [], selectors.get("AdvancedEventSelectors") or []
    if not basic and not advanced_list:
        return True  # no selectors at all: CloudTrail's default records all management events
    for selector in selectors.get("EventSelectors") or []:
        writes = selector.get("ReadWriteType", "All") in ("All", "WriteOnly")
        if selector.get("IncludeManagementEvents", True) and writes:
            return True
    for advanced in selectors.get("AdvancedEventSelectors") or []:
        fields = {f.get("Field"): f for f in advanced.get("FieldSelectors", [])}
        category = fields.get("eventCategory", {}).get("Equals", [])
        if "Management" in category and "true" not in fields.get("readOnly", {}).get("Equals", []):
            return True
    return False


@dataclass(frozen=True)
class Request:
    """What one direct invocation asks of setup."""

    dry_run: bool = False
    why_not: str = "dry run: planned, not made"  # shown on each change not made
    scheduled: bool = False

    def worth_an_email(self, result: SetupResult) -> bool:
        """Deploys and hand runs report any change and a blind trail; the daily run only what it did."""
        if self.scheduled:
            return bool(result.refused) or any(a.status in (Status.SUCCEEDED, Status.FAILED) for a in result.actions)
        return not self.dry_run and (bool(result.actions) or not result.trail_ok or bool(result.refused)
                                     or bool(result.admin_grants))


SCHEDULED = "scheduled"


def request_of(event: Any, settings: Settings) -> Request:
    """`{"dry_run": true}`, `{}`, a custom-resource event (converge), or the daily schedule's
    `{"converge": "scheduled"}`, which writes only when remediation is on."""
    if not isinstance(event, Mapping):
        return Request()
    if event.get("converge") == SCHEDULED:
        if settings.kill_switch:
            return Request(dry_run=True, scheduled=True,
                           why_not="kill switch on (KillSwitch=on): the daily converge would make this change")
        if not settings.remediation_enabled:
            return Request(dry_run=True, scheduled=True,
                           why_not="notify mode (AdminDriftMode=notify): the daily converge would make this change")
        return Request(scheduled=True)
    return Request(dry_run=bool(event.get("dry_run")))


CONVERGE_ATTEMPTS = 2  # a second read and plan when IAM's answer contradicted the first (RaceError)


def converge(settings: Settings, *, dry_run: bool, why_not: str = Request.why_not) -> SetupResult:
    """Refuse to adopt look-alikes; read the whole baseline and the lockout guard's facts at once; plan; apply."""
    iam = client("iam")
    refused = iam_baseline.adoption_problems(iam_baseline.existing_entities(iam, settings), settings)
    if refused:
        return SetupResult(dry_run=dry_run, refused="; ".join(refused), trail="not checked: setup stopped")
    for attempt in range(CONVERGE_ATTEMPTS):
        facts = lockout.read_facts(iam, settings)
        observed = iam_baseline.observed_from(iam, settings, facts)
        changes = iam_baseline.converge_plan(iam, settings, observed, facts=facts)
        result = SetupResult(dry_run=dry_run, plan=describe(changes))
        try:
            result.actions = iam_baseline.apply(iam, changes, allowed=not dry_run, not_allowed_reason=why_not)
            break
        except iam_baseline.RaceError:
            if attempt + 1 == CONVERGE_ATTEMPTS:
                raise
    try:
        result.trail_ok, result.trail = check_trail(client("cloudtrail", settings.region))
    except Exception as exc:  # the trail check informs; it must not fail the setup
        result.trail = f"Could not check CloudTrail ({error_code(exc)}); make sure a multi-region trail is logging."
    held, unread = inventory.take(iam, settings)  # who else holds admin rights: in the email below
    result.admin_grants = inventory.lines(held, unread)
    try:  # the owner's alert subscription: there, confirmed, unfiltered (repaired unless a dry run)
        result.subscription = subscription.check(client("sns"), settings, repair=not dry_run)
    except Exception as exc:  # informs too; a deployment never fails on it
        result.subscription = subscription.SubscriptionCheck("failed", f"Could not check the alert subscription "
                                                                       f"({error_code(exc)}).")
    return result


def setup_finding(settings: Settings, result: SetupResult, *, scheduled: bool = False) -> Finding:
    """The email the owner gets after setup changed something or could not finish."""
    if result.refused:
        severity, headline = Severity.HIGH, "Baseline setup stopped: a stack parameter must change"
    elif result.failed or result.held_back:
        severity, headline = Severity.HIGH, "Baseline setup incomplete"
    elif not result.trail_ok:
        severity, headline = Severity.MEDIUM, "Baseline in place, but CloudTrail is not logging"
    else:
        severity, headline = Severity.INFO, "Baseline converged by the daily check" if scheduled else "Baseline set up"
    if result.admin_grants and severity is Severity.INFO:
        severity, headline = Severity.HIGH, "Baseline in place; admin rights held outside it"
    steps = [result.trail] if not result.trail_ok and not result.refused else []
    if result.refused:
        steps.append("Deploy again with the parameter values above (sam deploy --parameter-overrides "
                     "Name=Value); setup then adopts what exists.")
    if result.subscription and result.subscription.status == "pending":
        steps.append("Confirm the alert subscription: open the email from AWS Notifications and click "
                     "'Confirm subscription'. Until then no alert reaches you.")
    steps += [a.detail for a in result.held_back[:1]]
    if not result.refused:
        steps.append(f"Use admin rights by switching to role {settings.admin_role} with MFA: https://signin.aws."
                     f"amazon.com/switchrole?roleName={settings.admin_role}&account={settings.account_id}")
    return Finding(
        id="baseline-setup", severity=severity, summary=headline, account_id=settings.account_id,
        region=settings.region, what_happened=result.summary(), actions=result.actions,
        next_steps=steps + inventory.steps(bool(result.admin_grants), settings),
        mode="setup", items=result.admin_grants,
    )


# --- CloudFormation custom resource protocol ---------------------------------------------


def send_cfn_response(event: Mapping[str, Any], status: str, reason: str, data: Mapping[str, Any],
                      physical_id: str) -> None:
    """PUT the one response CloudFormation waits for to the pre-signed ResponseURL."""
    body = json.dumps({
        "Status": status,
        "Reason": reason[:3000],  # keep well inside CloudFormation's 4 KB response limit
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "NoEcho": False,
        "Data": dict(data),
    }).encode()
    request = urllib.request.Request(
        str(event["ResponseURL"]), data=body, method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


# CloudFormation User Guide, "Custom resource request objects" (AWS CloudFormation template
# reference): every request carries RequestType (Create, Update or Delete), ResponseURL (a
# pre-signed S3 URL), StackId, RequestId, LogicalResourceId and ResourceType.
CUSTOM_RESOURCE_KEYS = ("RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId", "ResourceType")
REQUEST_TYPES = ("Create", "Update", "Delete")


def is_custom_resource_event(event: Any) -> bool:
    """A custom-resource request, or input that claims to be one (any of its keys): answered as
    one (see `custom_resource_problem`), never converged as if it were a direct invocation."""
    return isinstance(event, Mapping) and any(key in event for key in CUSTOM_RESOURCE_KEYS)


def response_url(event: Mapping[str, Any]) -> str:
    """The request's ResponseURL when a response can be PUT to it (http or https, with a host), else ''."""
    url = event.get("ResponseURL")
    if not isinstance(url, str):
        return ""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return ""
    return url if parts.scheme in ("https", "http") and parts.netloc else ""


def custom_resource_problem(event: Mapping[str, Any]) -> str:
    """Why this is not a request CloudFormation could have sent ('' when it is one). Such a request
    is not converged: it is logged, and answered FAILED when its ResponseURL can be used."""
    if not response_url(event):
        return f"ResponseURL {str(event.get('ResponseURL'))[:80]!r} is missing or not an http(s) URL"
    request_type = event.get("RequestType")
    if request_type not in REQUEST_TYPES:
        return f"RequestType {str(request_type)[:40]!r} is not one of {', '.join(REQUEST_TYPES)}"
    for key in ("StackId", "RequestId", "LogicalResourceId"):
        if not isinstance(event.get(key), str) or not event.get(key):
            return f"{key} is missing or not a string"
    return ""


def malformed_response_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The request with the fields a response echoes made strings, so a FAILED answer can be built."""
    return {**event, **{key: str(event.get(key) or "")[:1024] for key in ("StackId", "RequestId", "LogicalResourceId")}}


def handle_custom_resource(
    event: Mapping[str, Any],
    remaining_ms: Callable[[], int],
    work: Callable[[], SetupResult],
    send: Callable[..., None] = send_cfn_response,
) -> dict[str, Any]:
    """Run `work` for Create/Update, nothing for Delete, and answer exactly once."""
    physical_id = str(event.get("PhysicalResourceId") or f"baseline-{event.get('LogicalResourceId', 'Baseline')}")
    request_type = event.get("RequestType")
    if request_type == "Delete":
        send(event, "SUCCESS", "Baseline left in place (the guardrail never removes it)", {}, physical_id)
        return {"status": "SUCCESS", "request": "Delete"}
    if request_type not in ("Create", "Update"):
        send(event, "FAILED", f"Unknown RequestType {request_type!r}", {}, physical_id)
        return {"status": "FAILED"}
    budget_s = max(1.0, (remaining_ms() - RESPONSE_MARGIN_MS) / 1000)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(work)
    try:
        result = future.result(timeout=budget_s)
    except concurrent.futures.TimeoutError:
        send(event, "FAILED", "Setup did not finish in time; invoke the setup function directly to see why.",
             {}, physical_id)
        pool.shutdown(wait=False)
        return {"status": "FAILED", "reason": "timeout"}
    except Exception as exc:
        send(event, "FAILED", f"Setup failed: {error_code(exc)}: {exc}", {}, physical_id)
        pool.shutdown(wait=False)
        return {"status": "FAILED", "reason": str(exc)}
    pool.shutdown(wait=False)
    if result.failed or result.refused:
        # Fail the deployment: CloudFormation rolls back and the reason says what to fix.
        send(event, "FAILED", result.summary(), {}, physical_id)
        return {"status": "FAILED", **result.to_dict()}
    # A held-back step is not a failure: the stack deploys, and the owner is told what to do.
    send(event, "SUCCESS", result.summary(), {"Compliant": str(result.compliant).lower()}, physical_id)
    return {"status": "SUCCESS", **result.to_dict()}
