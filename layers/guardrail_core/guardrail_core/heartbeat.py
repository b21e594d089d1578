"""The heartbeat: on a schedule, can the guardrail still see the account?

Every detector waits for CloudTrail events through EventBridge. When no trail logs, or a
forwarding rule is switched off, nothing arrives, and silence looks exactly like "all is
well". The heartbeat does not wait for events: it reads the account's state directly, as a
list of checks (`CHECKS`), each returning the problems it found:

- `check_trails`: at least one trail logs management write events for every region, global
  services included (DescribeTrails with shadow trails, so organization trails and trails
  homed elsewhere count; GetTrailStatus and GetEventSelectors in each trail's home region);
- `check_rules`: the stack's CloudTrail rules exist, are enabled (the root-activity one with
  read-only events) and have their target, in the home region and in every forwarded region
  (DescribeRule, ListTargetsByRule; all regions concurrently).

A check is `Callable[[Settings, HeartbeatConfig], CheckResult]`; add one by appending it to
`CHECKS` (and declaring its actions in READ_ACTIONS/WRITE_ACTIONS for the least-privilege test).

Alerting is by state, not by run: the problems found are compared with those the last run
saved (one DynamoDB item in the idempotency table, key `heartbeat#state`, no expiry):
a new problem -> one CRITICAL email; all gone -> one recovery email; otherwise nothing. The
email is sent before the new state is saved, so a failed publish is tried again next run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import ClientError

from guardrail_core.aws import client, error_code, is_transient
from guardrail_core.config import Settings
from guardrail_core.findings import Action, Finding, Severity
from guardrail_core.runtime import Outcome, logger, metrics, publish_findings
from guardrail_core.trail_guard import TrailState, covering, gather, read_trails

READ_ACTIONS = frozenset({
    "cloudtrail:DescribeTrails", "cloudtrail:GetTrailStatus", "cloudtrail:GetEventSelectors",
    "events:DescribeRule", "events:ListTargetsByRule",
})
WRITE_ACTIONS: frozenset[str] = frozenset()

STATE_KEY = "heartbeat#state"
ENABLED = "ENABLED"
ALL_MANAGEMENT = "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"
RULES_CONSOLE = "https://{region}.console.aws.amazon.com/events/home?region={region}#/rules"
TRAILS_CONSOLE = "https://console.aws.amazon.com/cloudtrailv2/home#/trails"


@dataclass(frozen=True)
class HeartbeatConfig:
    """What the template tells the heartbeat (environment of the heartbeat function).

    `rules`: rule name -> the state it must have (ENABLED, or ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS
    for a rule that needs read-only events); each must exist in the home region (targeting a
    function) and in every forwarded region (targeting the home region's default event bus).
    `home_rules`: the same, for rules that exist in the home region only (IAM events).
    """

    home_region: str
    forwarded_regions: tuple[str, ...] = ()
    rules: Mapping[str, str] = field(default_factory=dict)
    home_rules: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str] | None = None) -> HeartbeatConfig:
        env = os.environ if env is None else env
        regions = tuple(r.strip() for r in env.get("FORWARDED_REGIONS", "").split(",") if r.strip())
        return cls(home_region=settings.region,
                   forwarded_regions=tuple(r for r in regions if r != settings.region),
                   rules=_rule_states(env.get("WATCHED_RULES", "")),
                   home_rules=_rule_states(env.get("HOME_RULES", "")))

    @property
    def regions(self) -> tuple[str, ...]:
        return (self.home_region, *self.forwarded_regions)

    def expected(self) -> list[tuple[str, str]]:
        """(region, rule name) of every rule that must be in place."""
        return ([(self.home_region, name) for name in {**self.rules, **self.home_rules}]
                + [(region, name) for region in self.forwarded_regions for name in self.rules])

    def needed_state(self, name: str) -> str:
        return self.rules.get(name) or self.home_rules.get(name) or ENABLED

    def home_bus_arn(self, settings: Settings) -> str:
        return f"arn:{settings.partition}:events:{self.home_region}:{settings.account_id}:event-bus/default"


def _rule_states(text: str) -> dict[str, str]:
    """"name=STATE,name2" -> {name: STATE, name2: ENABLED}."""
    out = {}
    for item in text.split(","):
        name, _, state = item.strip().partition("=")
        if name:
            out[name] = state or ENABLED
    return out


@dataclass(frozen=True)
class Problem:
    """Something that leaves the guardrail blind. `key` names the blind state (stable from run to run)."""

    key: str
    what: str
    fix: str = ""
    short: str = ""  # a few words for the email subject


@dataclass
class CheckResult:
    check: str
    problems: list[Problem] = field(default_factory=list)
    fine: list[str] = field(default_factory=list)  # what is well, for the log and the recovery email
    actions: list[Action] = field(default_factory=list)  # anything a check repaired


Check = Callable[[Settings, HeartbeatConfig], CheckResult]


# --- check: a trail logs management events everywhere ---------------------------------------------


def trail_problems(trails: Sequence[TrailState]) -> CheckResult:
    """Pure: the trails as read -> is the account seen? (one problem key, whatever the details)."""
    result = CheckResult("trails")
    cover = covering(trails)
    if cover:
        result.fine.append("CloudTrail: " + ", ".join(t.label for t in cover) + " logs management events")
        return result
    if not trails:
        why = "no CloudTrail trail exists"
    else:
        states = []
        for t in trails:
            if t.problem and t.logging is None:
                states.append(f"{t.name}: could not be read ({t.problem})")
            elif not t.logging:
                states.append(f"{t.name}: not logging")
            elif not t.records_management:
                states.append(f"{t.name}: logs data events only, no management events")
            elif not t.multi_region:
                states.append(f"{t.name}: logs its home region {t.home_region} only")
            elif not t.global_events:
                states.append(f"{t.name}: leaves out global service events (IAM, sign-in)")
            else:
                states.append(f"{t.name}: does not record management write events")
        why = "no trail logs management events for all regions (" + "; ".join(states) + ")"
    result.problems.append(Problem(
        key="trails",
        what=f"{why}: EventBridge receives no CloudTrail events, so every detector is blind",
        fix="Start logging on a multi-region trail that records management events (read and write): "
            "CloudTrail console > Trails, or aws cloudtrail start-logging --name <trail> --region <its home region>",
    ))
    return result


def check_trails(settings: Settings, config: HeartbeatConfig) -> CheckResult:
    return trail_problems(read_trails(client("cloudtrail", config.home_region)))


# --- check: the rules exist, are enabled and target the right place -----------------------------------


@dataclass(frozen=True)
class RuleState:
    region: str
    name: str
    state: str | None  # None: the rule does not exist
    targets: tuple[str, ...] = ()
    error: str = ""


def read_rule(region: str, name: str) -> RuleState:
    events = client("events", region)
    try:
        state = str(events.describe_rule(Name=name).get("State", ""))
        targets = tuple(str(t.get("Arn", "")) for t in events.list_targets_by_rule(Rule=name).get("Targets", []))
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return RuleState(region, name, None)
        if is_transient(exc):
            raise
        return RuleState(region, name, None, error=f"{error_code(exc)}: {exc}")
    return RuleState(region, name, state, targets)


def rule_problems(found: Sequence[RuleState], config: HeartbeatConfig, settings: Settings) -> CheckResult:
    """Pure: each rule as read -> the problems (one key per region and rule)."""
    result = CheckResult("rules")
    bus = config.home_bus_arn(settings)
    for rule in found:
        needed = config.needed_state(rule.name)
        where = f"rule {rule.name} in {rule.region}"
        forwarded = rule.region != config.home_region
        redeploy = "Update the guardrail's stack (sam deploy) to put it back"
        problem = word = ""
        if rule.error:
            problem, word = f"{where} could not be read ({rule.error})", "unreadable"
        elif rule.state is None:
            problem, word = f"{where} is missing", "missing"
        elif rule.state not in (ENABLED, ALL_MANAGEMENT):
            problem, word = f"{where} is {rule.state}", rule.state.lower()
        elif needed == ALL_MANAGEMENT and rule.state != ALL_MANAGEMENT:
            problem = (f"{where} is {rule.state}, so read-only events (root reads with an access key) no "
                       f"longer reach it; it must be {ALL_MANAGEMENT}")
            word = "without read-only events"
        elif not rule.targets:
            problem, word = f"{where} has no target", "without target"
        elif forwarded and bus not in rule.targets:
            problem = f"{where} no longer forwards to {bus} (targets: {', '.join(rule.targets)})"
            word = "not forwarding"
        if problem:
            short_name = rule.name.removeprefix(f"{settings.stack_name}-")
            what = problem + (f": events recorded in {rule.region} no longer reach the guardrail" if forwarded
                              else ": the events it routes no longer reach the guardrail")
            result.problems.append(Problem(key=f"rule:{rule.region}:{rule.name}", what=what,
                                           fix=f"{redeploy}; or aws events enable-rule --name {rule.name} "
                                               f"--region {rule.region} if it was only disabled",
                                           short=f"{short_name} {word} in {rule.region}"))
    if found and not result.problems:
        result.fine.append(f"EventBridge: {len(found)} rules enabled and targeted in {len(config.regions)} "
                           f"region(s) ({', '.join(config.regions)})")
    return result


def check_rules(settings: Settings, config: HeartbeatConfig) -> CheckResult:
    found = gather([lambda r=region, n=name: read_rule(r, n) for region, name in config.expected()])
    return rule_problems(found, config, settings)


CHECKS: list[Check] = [check_trails, check_rules]


# --- state: one item, compared with what the last run saw ---------------------------------------------


def load_state(settings: Settings) -> dict[str, str] | None:
    """The problems the last run saved (key -> text); {} when none; None when the table cannot be read."""
    try:
        item = client("dynamodb").get_item(TableName=settings.idempotency_table, Key={"id": {"S": STATE_KEY}},
                                           ConsistentRead=True).get("Item")
    except ClientError as exc:
        logger.warning("heartbeat state unreadable: alerting as if first run", extra={"error": error_code(exc)})
        return None
    problems = (item or {}).get("problems", {}).get("M", {})
    return {str(k): str(v.get("S", "")) for k, v in problems.items()}


def save_state(settings: Settings, problems: Mapping[str, str], now: datetime) -> None:
    client("dynamodb").put_item(TableName=settings.idempotency_table, Item={
        "id": {"S": STATE_KEY},
        "problems": {"M": {k: {"S": v[:1000]} for k, v in problems.items()}},
        "checked": {"S": stamp(now)},
    })


def stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the decision ---------------------------------------------------------------------------------------


def decide(previous: Mapping[str, str] | None, results: Sequence[CheckResult], settings: Settings,
           config: HeartbeatConfig, now: datetime) -> list[Finding]:
    """Pure: the emails this run sends. A new blind state -> one CRITICAL; back to seeing -> one INFO;
    the same problems as last run (or none, again) -> nothing. `previous` None: unknown (alert if blind)."""
    problems = [p for r in results for p in r.problems]
    current = {p.key for p in problems}
    known = set(previous or {})
    actions = [a for r in results for a in r.actions]
    fine = [line for r in results for line in r.fine]
    def finding(**kwargs: Any) -> Finding:
        return Finding(account_id=settings.account_id, region=config.home_region, event_time=stamp(now),
                       links=[TRAILS_CONSOLE, RULES_CONSOLE.format(region=config.home_region)], **kwargs)

    new = [p for p in problems if p.key not in known]
    if new:
        blind_all = any(p.key == "trails" for p in problems)
        first = new[0].short or new[0].what.split(":")[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        summary = ("Guardrail is blind: no trail logs management events" if blind_all
                   else f"Guardrail partly blind: {first}{more}")
        steps = list(dict.fromkeys(p.fix for p in problems if p.fix))
        return [finding(
            id="guardrail-blind", severity=Severity.CRITICAL, summary=summary[:200],
            what_happened=("The guardrail's scheduled heartbeat found that it can no longer see part or all of "
                           "the account: events are not reaching its detectors, so drift, root activity and "
                           "sign-ins without MFA go unnoticed until this is fixed. This alert is sent once; "
                           "you will get one more when the guardrail sees again."),
            items=[p.what for p in problems] + ([f"still fine: {line}" for line in fine] if fine else []),
            actions=actions, next_steps=[*steps, (
                "CloudTrail Event history keeps 90 days of management events: once fixed, review what happened "
                "meanwhile there.")],
        )]
    if previous and not current:
        return [finding(
            id="guardrail-sees-again", severity=Severity.INFO,
            summary="Guardrail sees the account again",
            what_happened=("The heartbeat found everything it checks working again. It had reported: "
                           + "; ".join(previous.values()) + ". Events recorded while it was blind were not "
                           "judged: review them in CloudTrail Event history."),
            items=fine, actions=actions,
        )]
    if actions:  # a check repaired something while nothing else changed: the owner is told
        return [finding(id="guardrail-heartbeat-repair", severity=Severity.HIGH,
                        summary="Guardrail heartbeat repaired " + actions[0].name[:150],
                        what_happened="The heartbeat found something broken and repaired it.",
                        actions=actions, items=fine)]
    return []


# --- the entry point's work ------------------------------------------------------------------------------


def run_checks(settings: Settings, config: HeartbeatConfig, checks: Sequence[Check] | None = None) -> list[CheckResult]:
    """Every check; one that fails for want of a permission (or a bug) becomes a problem of its own,
    so a broken check is never mistaken for a healthy account. Transient AWS errors are raised."""
    results = []
    for check in CHECKS if checks is None else checks:
        name = getattr(check, "__name__", "check")
        try:
            results.append(check(settings, config))
        except Exception as exc:
            if is_transient(exc):
                raise
            logger.exception("heartbeat check failed", extra={"check": name})
            results.append(CheckResult(name, [Problem(
                key=f"check:{name}", what=f"the heartbeat could not run {name} ({error_code(exc)}: {exc})",
                fix="Redeploy the stack (its heartbeat role may have lost a permission); the function's log "
                    "has the error.")]))
    return results


def handle(raw: Any, settings: Settings, now: datetime | None = None,
           checks: Sequence[Check] | None = None) -> dict[str, Any]:
    """One heartbeat run (scheduled, or invoked by hand with {}): check, compare, alert, save."""
    now = now or datetime.now(UTC)
    config = HeartbeatConfig.from_env(settings)
    results = run_checks(settings, config, checks)
    problems = {p.key: p.what for r in results for p in r.problems}
    previous = load_state(settings)
    findings = decide(previous, results, settings, config, now)
    metrics.add_metric(name="HeartbeatProblems", unit=MetricUnit.Count, value=len(problems))
    logger.info("heartbeat", extra={"problems": problems, "previous": previous,
                                    "fine": [line for r in results for line in r.fine]})
    published = publish_findings(findings, settings)  # raises when not sent: state not saved, tried next run
    if previous is None or set(previous) != set(problems):
        try:
            save_state(settings, problems, now)
        except ClientError as exc:
            logger.warning("heartbeat state not saved: the next run may alert again", extra={"error": error_code(exc)})
    status = "blind" if problems else "seeing"
    return {**Outcome("handled", status, findings, published).to_dict(), "problems": problems}
