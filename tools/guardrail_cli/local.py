"""The local stand-in account: moto in-process, driven through template.yaml's own rules.

`LocalGuardrail` does what EventBridge and Lambda do in the cloud: deliver an event where AWS
would (the home region's rules for an event recorded there; the forwarding StackSet's rules,
then the home rules, for an event recorded in a forwarded region; nothing elsewhere), match
it with an AWS-validated pattern engine (guardrail_cli.matcher), honour each rule's state
(read-only CloudTrail events reach only rules in ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS),
and call each target function's real handler, loaded from the template's CodeUri/Handler
with the environment the template gives it. Tests, `guardrail demo`, `guardrail replay`
and the benchmark all go through here, so none of them can drift from the template.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import io
import itertools
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from moto import mock_aws

from guardrail_cli.matcher import Pattern
from guardrail_cli.recorder import Call, record_calls
from guardrail_cli.template import Function, Rule, Stack

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
_module_ids = itertools.count()
_instance_ids = itertools.count()
_warm_container: list[tuple[int, str]] = []  # the (stack instance, function) whose caches are filled


@dataclass
class FakeContext:
    """The parts of the Lambda context object that powertools and our handlers read."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self._started)) * 1000))


@dataclass
class Invocation:
    function: str
    calls: list[Call] = field(default_factory=list)
    result: Any = None
    error: str | None = None
    logs: str = ""
    started: float = 0.0  # time.perf_counter() when the handler was called, and when it returned
    ended: float = 0.0

    @property
    def api_calls(self) -> list[str]:
        return [c.name for c in self.calls]

    @property
    def notifications(self) -> list[dict[str, str]]:
        """What the owner receives: subject and the email rendering of each published message."""
        out = []
        for call in self.calls:
            if call.name != "sns:Publish":
                continue
            message = call.params.get("Message", "")
            if call.params.get("MessageStructure") == "json":
                message = json.loads(message).get("email") or json.loads(message).get("default", "")
            out.append({"subject": call.params.get("Subject", ""), "message": message})
        return out

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.result.get("findings", [])) if isinstance(self.result, dict) else []

    @property
    def actions(self) -> list[dict[str, Any]]:
        return list(self.result.get("actions", [])) if isinstance(self.result, dict) else []

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "api_calls": self.api_calls,
            "findings": self.findings,
            "actions": [{k: a[k] for k in ("name", "target", "status", "detail") if k in a} for a in self.actions],
            "notifications": self.notifications,
            "error": self.error,
        }


ALL_MANAGEMENT = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
ENABLED_STATES = frozenset({"ENABLED", ALL_MANAGEMENT})


def delivers(state: str, event: Mapping[str, Any]) -> bool:
    """Whether a rule in `state` is offered the event at all (before its pattern is tried).

    EventBridge offers read-only CloudTrail management events (detail.readOnly true) only to
    rules in state ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS (EventBridge User Guide,
    "Events from AWS services": read-only management events); a DISABLED rule gets nothing.
    """
    if state not in ENABLED_STATES:
        return False
    detail = event.get("detail")
    read_only = isinstance(detail, Mapping) and detail.get("readOnly") is True
    return state == ALL_MANAGEMENT or not (read_only and event.get("detail-type") == "AWS API Call via CloudTrail")


@dataclass
class Routing:
    """Where EventBridge would take an event, and why: the functions' rules, the way it travelled."""

    rules: list[Rule]
    path: str  # "home", "forwarded", "schedule" or "not covered"
    note: str = ""  # for people: how the event got here, or why it went nowhere
    forwarded_by: list[str] = field(default_factory=list)  # the regional rules that forwarded it


class LocalGuardrail:
    """One deployed stack: its rules and functions, each function a warm 'container'."""

    def __init__(self, stack: Stack | None = None) -> None:
        from guardrail_cli import regional

        self.stack = stack or Stack(account_id=ACCOUNT_ID, region=REGION)
        self.functions: dict[str, Function] = self.stack.functions()
        self.rules: list[tuple[Rule, Pattern]] = [(rule, Pattern(rule.pattern)) for rule in self.stack.rules()]
        forwarding = regional.resolved_regional_template(self.stack)["Resources"] \
            if regional.STACKSET in self.stack.resources else {}
        self.forwarding_rules: list[tuple[str, str, Pattern]] = [
            (str(r["Properties"]["Name"]), str(r["Properties"].get("State", "ENABLED")),
             Pattern(r["Properties"]["EventPattern"])) for r in forwarding.values()]
        self.forwarded_regions: list[str] = regional.stack_instance_regions(self.stack) if forwarding else []
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._instance = next(_instance_ids)

    # -- EventBridge ----------------------------------------------------------------------

    def route(self, event: Mapping[str, Any]) -> list[Rule]:
        """The rules that would invoke a function for this event (see `routing`)."""
        return self.routing(event).rules

    def _home_rules(self, event: Mapping[str, Any]) -> list[Rule]:
        return [rule for rule, pattern in self.rules if delivers(rule.state, event) and pattern.matches(event)]

    def routing(self, event: Mapping[str, Any]) -> Routing:
        """As EventBridge would route it: an AWS event reaches only the bus of the region it was
        recorded in (the envelope's `region`); there, the stack's rules match it (home region), or
        its forwarding rules send it on, unchanged, to the home bus, whose rules then match it.
        A schedule's event goes to its function (it names the schedule in `resources`)."""
        scheduled = self._schedules_for(event)
        if scheduled:
            return Routing(scheduled, "schedule")
        region = str(event.get("region") or self.stack.region)
        home = self.stack.region
        if region == home:
            rules = self._home_rules(event)
            return Routing(rules, "home")
        if region not in self.forwarded_regions:
            return Routing([], "not covered", (
                f"recorded in {region}, a region the stack does not cover: EventBridge delivers it only in "
                f"{region}, where the guardrail has no rule (add {region} to ForwardedRegions, or to "
                "ForwardedOptInRegions for an opt-in region, to cover it)"))
        forwarders = [name for name, state, pattern in self.forwarding_rules
                      if delivers(state, event) and pattern.matches(event)]
        if not forwarders:
            return Routing([], "forwarded", f"no forwarding rule in {region} matches it: it stays in {region}")
        rules = self._home_rules(event)
        how = f"forwarded from {region} to {home} by {', '.join(forwarders)}"
        return Routing(rules, "forwarded", how if rules else how + f"; no rule of the stack matches it in {home}",
                       forwarders)

    def _schedules_for(self, event: Mapping[str, Any]) -> list[Rule]:
        resources = event.get("resources")
        if event.get("detail-type") != "Scheduled Event" or not isinstance(resources, list):
            return []
        out = []
        for logical_id, resource in self.stack.resources.items():
            if resource.get("Type") != "AWS::Serverless::Function":
                continue
            for event_id, spec in resource.get("Properties", {}).get("Events", {}).items():
                if spec.get("Type") not in ("Schedule", "ScheduleV2") or "Name" not in spec.get("Properties", {}):
                    continue
                name = str(self.stack.resolve(spec["Properties"]["Name"]))
                if any(isinstance(arn, str) and arn.endswith("/" + name) for arn in resources):
                    out.append(Rule(event_id, logical_id, {"detail-type": ["Scheduled Event"], "resources": [name]}))
        return out

    def dispatch(self, event: Mapping[str, Any]) -> tuple[list[Rule], list[Invocation]]:
        """Route an event and invoke every matching rule's target once per rule."""
        rules = self.route(event)
        return rules, [self.invoke(rule.function, event) for rule in rules]

    def dispatch_routed(self, event: Mapping[str, Any]) -> tuple[Routing, list[Invocation]]:
        """`dispatch`, keeping how the event was routed (for replay's output)."""
        routing = self.routing(event)
        return routing, [self.invoke(rule.function, event) for rule in routing.rules]

    # -- Lambda ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def environment(self, function: Function) -> Iterator[None]:
        """The function's environment as Lambda would set it, restored afterwards."""
        env = {
            **function.environment,
            "AWS_REGION": self.stack.region,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
        }
        with patched_environ(env):
            yield

    def _load(self, function: Function) -> Callable[[Any, Any], Any]:
        if function.logical_id not in self._handlers:
            name = f"guardrail_fn_{function.logical_id}_{next(_module_ids)}"
            spec = importlib.util.spec_from_file_location(name, function.module_path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {function.module_path}")
            module: ModuleType = importlib.util.module_from_spec(spec)
            with self.environment(function):
                spec.loader.exec_module(module)
            self._handlers[function.logical_id] = getattr(module, function.handler_name)
        return self._handlers[function.logical_id]

    def handler(self, logical_id: str) -> Callable[[Any, Any], Any]:
        return self._load(self.functions[logical_id])

    def context(self, logical_id: str) -> FakeContext:
        function = self.functions[logical_id]
        return FakeContext(
            function_name=function.name,
            memory_limit_in_mb=function.memory,
            invoked_function_arn=f"arn:aws:lambda:{self.stack.region}:{self.stack.account_id}:function:{function.name}",
            timeout_seconds=function.timeout,
            log_group_name=f"/aws/lambda/{function.name}",
        )

    def invoke(self, logical_id: str, event: Any) -> Invocation:
        """Call the function's handler as Lambda would; an exception becomes `error`.

        Code that is missing or does not import is an `error` too (Lambda would report an
        init failure): one broken function must not stop the others from being tried.
        """
        function = self.functions[logical_id]
        invocation = Invocation(function=logical_id)
        logs = io.StringIO()
        _enter_container((self._instance, logical_id))
        try:
            handler = self._load(function)
        except Exception as exc:
            invocation.error = f"cannot load {function.module_path}: {type(exc).__name__}: {exc}"
            invocation.logs = logs.getvalue() + traceback.format_exc()
            return invocation
        with self.environment(function), _captured_logs(logs), record_calls() as recorder:
            delivered, context = json.loads(json.dumps(event)), self.context(logical_id)
            invocation.started = time.perf_counter()
            try:
                invocation.result = handler(delivered, context)
            except Exception as exc:  # Lambda reports it and retries (async)
                invocation.error = f"{type(exc).__name__}: {exc}"
                logs.write(traceback.format_exc())
            finally:
                invocation.ended = time.perf_counter()
        invocation.calls = recorder.calls
        invocation.logs = logs.getvalue()
        return invocation


def _enter_container(container: tuple[int, str]) -> None:
    """Forget what another function's warm container remembers (settings, clients, idempotency store).

    In the cloud each function runs in its own container with its own environment; here
    they share one process, so a cache filled by one function (or by an earlier account
    with other parameters) must not leak into the next. The same function invoked again
    stays warm, as it would in Lambda.
    """
    if _warm_container == [container]:
        return
    _warm_container[:] = [container]
    for name, module in list(sys.modules.items()):
        if name != "guardrail_core" and not name.startswith("guardrail_core."):
            continue
        for value in list(vars(module).values()):
            if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == name:
                value.cache_clear()


@contextlib.contextmanager
def _captured_logs(buffer: io.StringIO) -> Iterator[None]:
    """Send the handlers' structured logs and metrics (stdout in Lambda) into `buffer`."""
    handlers = [h for h in logging.getLogger("account-guardrail").handlers if isinstance(h, logging.StreamHandler)]
    for h in handlers:
        if getattr(h.stream, "closed", False):  # the stdout of whoever imported the handlers first, since closed
            h.stream = sys.__stdout__
    previous = [h.setStream(buffer) for h in handlers]
    with contextlib.redirect_stdout(buffer):
        try:
            yield
        finally:
            for h, stream in zip(handlers, previous, strict=True):
                h.setStream(stream)


# --- the account -------------------------------------------------------------------------


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set for the block, then exactly as it was."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def local_aws(region: str = REGION) -> Iterator[None]:
    """moto for every AWS call in the block, with AWS managed policies available."""
    fake = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": region, "AWS_REGION": region,
        "MOTO_ACCOUNT_ID": ACCOUNT_ID,
    }
    with patched_environ(fake), mock_aws(config={"iam": {"load_aws_managed_policies": True}}), \
            _credential_report_times():
        yield


REPORT_REUSE = datetime.timedelta(hours=4)  # IAM reuses a credential report younger than this


def report_clock() -> datetime.datetime:
    """The local account's clock for credential reports (tests with golden output fix it)."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


@contextlib.contextmanager
def _credential_report_times() -> Iterator[None]:
    """GetCredentialReport's GeneratedTime as IAM gives it: when the report was generated.

    moto answers a constant (2015-02-02T20:02:02Z), which an email would repeat as if it were
    the report's date. Here GenerateCredentialReport starts a new report (and records the time)
    unless one younger than 4 hours exists, as IAM does (IAM User Guide, "Getting credential
    reports for your AWS account").
    """
    from moto.iam.models import IAMBackend
    from moto.iam.responses import IamResponse

    saved = IAMBackend.generate_report, IamResponse.get_credential_report

    def generate_report(self: Any) -> None:
        now = report_clock()
        previous = getattr(self, "credential_report_time", None)
        if not self.credential_report or previous is None or now - previous >= REPORT_REUSE:
            self.credential_report_time = now
        self.credential_report = True

    def get_credential_report(self: Any) -> Any:
        result = saved[1](self)
        generated = getattr(self.backend, "credential_report_time", None)
        body = getattr(result, "result", None)
        if generated is not None and isinstance(body, dict):
            body["GeneratedTime"] = generated.strftime("%Y-%m-%dT%H:%M:%SZ")
        return result

    IAMBackend.generate_report = generate_report  # type: ignore[method-assign]
    IamResponse.get_credential_report = get_credential_report  # type: ignore[method-assign]
    try:
        yield
    finally:
        IAMBackend.generate_report, IamResponse.get_credential_report = saved  # type: ignore[method-assign]


def deploy_stack_resources(stack: Stack, *, forwarding: bool = False) -> None:
    """Create what the handlers call besides IAM: the alert topic, the idempotency table,
    the failure queue and the quarantine policy, named as the template names them; the
    stack's rules in its region; and, with `forwarding`, the StackSet's rules in every
    forwarded region (a few seconds for the default 16 regions: only tests that read them ask)."""
    import boto3

    for logical_id, resource in stack.resources.items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if kind == "AWS::SNS::Topic":
            boto3.client("sns", region_name=stack.region).create_topic(Name=stack._name_of(logical_id))
        elif kind == "AWS::DynamoDB::Table":
            boto3.client("dynamodb", region_name=stack.region).create_table(
                TableName=stack._name_of(logical_id),
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        elif kind == "AWS::SQS::Queue":
            boto3.client("sqs", region_name=stack.region).create_queue(QueueName=stack._name_of(logical_id))
        elif kind == "AWS::IAM::ManagedPolicy" and "mfa-required" in stack._name_of(logical_id):
            boto3.client("iam").create_policy(
                PolicyName=stack._name_of(logical_id),
                PolicyDocument=json.dumps(stack.resolve(props["PolicyDocument"])),
            )
    events = boto3.client("events", region_name=stack.region)
    for rule in stack.rules():  # the rules, as the heartbeat reads them
        events.put_rule(Name=rule.name, EventPattern=json.dumps(rule.pattern), State=rule.state)  # type: ignore[arg-type]
        events.put_targets(Rule=rule.name, Targets=[{"Id": rule.function, "Arn": stack.get_att(rule.function, "Arn")}])
    from guardrail_cli import regional

    if not forwarding or regional.STACKSET not in stack.resources:
        return
    forwarded = regional.resolved_regional_template(stack)["Resources"]
    for region in regional.stack_instance_regions(stack):  # what the StackSet deploys in each region
        events = boto3.client("events", region_name=region)
        for resource in forwarded.values():
            props = resource["Properties"]
            events.put_rule(Name=props["Name"], EventPattern=json.dumps(props["EventPattern"]), State=props["State"],
                            Description=props["Description"])
            events.put_targets(Rule=props["Name"], Targets=props["Targets"])
