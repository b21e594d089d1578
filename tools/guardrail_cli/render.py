"""Plain-text rendering of replays and of the demo: a timeline a person reads top to bottom.

event -> rule -> function -> API calls -> actions -> the email as the owner receives it.
Colour and bold only when writing to a terminal (and NO_COLOR is not set).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from guardrail_cli.apply import APPLIED, FAILED
from guardrail_cli.demo import DemoResult, Step
from guardrail_cli.local import Invocation
from guardrail_cli.replay import Replay

LABEL = 11  # width of the label column
WIDTH = 110  # wrap lists of API calls here
INDENT = "  "
KIND_ORDER = ("read", "write", "publish", "idempotency")


@dataclass(frozen=True)
class Style:
    color: bool = False

    def _sgr(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color and text else text

    def bold(self, text: str) -> str:
        return self._sgr("1", text)

    def dim(self, text: str) -> str:
        return self._sgr("2", text)

    def red(self, text: str) -> str:
        return self._sgr("31", text)

    def green(self, text: str) -> str:
        return self._sgr("32", text)

    def yellow(self, text: str) -> str:
        return self._sgr("33", text)

    def cyan(self, text: str) -> str:
        return self._sgr("36", text)

    def severity(self, value: str) -> str:
        if value in ("CRITICAL", "HIGH"):
            return self.bold(self.red(value))
        if value == "MEDIUM":
            return self.yellow(value)
        return self.cyan(value)

    def status(self, value: str) -> str:
        word = f"[{value}]"
        if value in ("succeeded", APPLIED, "ok"):
            return self.green(word)
        if value in ("failed", FAILED, "DRIFT"):
            return self.red(word)
        return self.yellow(word)


def field_lines(label: str, values: Iterable[str], style: Style) -> list[str]:
    """'  label      first value' then continuation lines aligned under it."""
    out = []
    for i, value in enumerate(values):
        head = style.dim(label.ljust(LABEL)) if i == 0 else " " * LABEL
        out.append(f"{INDENT}{head}{value}")
    if not out:
        out.append(f"{INDENT}{style.dim(label.ljust(LABEL))}")
    return out


def describe_event(event: Mapping[str, Any]) -> str:
    """'iam:AttachGroupPolicy by arn:... at 2026-...' from the CloudTrail record in the event."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping) or "eventName" not in detail:  # not CloudTrail, e.g. a schedule
        resources = event.get("resources")
        text = f"from {event.get('source', '?')}"
        if isinstance(resources, list) and resources:
            text += " for " + ", ".join(str(r) for r in resources)
        return text + (f" at {event['time']}" if event.get("time") else "")
    source = str(detail.get("eventSource", "")).split(".")[0]
    name = f"{source}:{detail.get('eventName', '?')}" if source else str(detail.get("eventName", "?"))
    identity = detail.get("userIdentity")
    who = ""
    if isinstance(identity, Mapping):
        who = str(identity.get("arn") or identity.get("userName") or identity.get("type") or "")
        if identity.get("type") == "Root":
            who = f"root ({who})" if who and who != "Root" else "root"
    parts = [name]
    if who:
        parts.append(f"by {who}")
    if detail.get("eventTime"):
        parts.append(f"at {detail['eventTime']}")
    text = " ".join(parts)
    extra = detail.get("additionalEventData")
    if isinstance(extra, Mapping) and "MFAUsed" in extra:
        text += f" (MFA used: {extra['MFAUsed']})"
    if detail.get("errorCode"):
        text += f" -> failed: {detail['errorCode']}"
    return text


def api_call_lines(invocation: Invocation, style: Style) -> list[str]:
    """'12 calls (8 read, 1 write, ...)' then every call in order, writes in bold."""
    counts = Counter(call.kind for call in invocation.calls)
    summary = ", ".join(f"{counts[k]} {k}" for k in KIND_ORDER if counts[k])
    lines = [f"{len(invocation.calls)} calls" + (f" ({summary})" if summary else "")]
    line, width = "", 0
    for i, call in enumerate(invocation.calls):
        text = call.name + (" ->" if i < len(invocation.calls) - 1 else "")
        if line and width + 1 + len(text) > WIDTH - len(INDENT) - LABEL:
            lines.append(line)
            line, width = "", 0
        line += (" " if line else "") + (style.bold(text) if call.kind == "write" else text)
        width += (1 if width else 0) + len(text)
    if line:
        lines.append(line)
    return lines


def email_lines(notification: Mapping[str, str], style: Style) -> list[str]:
    lines = [f"Subject: {style.bold(notification.get('subject', ''))}"]
    lines += [f"| {line}".rstrip() for line in notification.get("message", "").splitlines()]
    return lines


def action_lines(actions: Iterable[Mapping[str, Any]], style: Style) -> list[str]:
    out = []
    for action in actions:
        out.append(f"{style.status(str(action.get('status')))} {action.get('name')}")
        out.append(f"    on {action.get('target')}")
        if action.get("detail"):
            out.append(f"    {action['detail']}")
    return out


def invocation_lines(invocation: Invocation, style: Style, *, logs: bool = False) -> list[str]:
    result = invocation.result if isinstance(invocation.result, Mapping) else {}
    verdict = ""
    if invocation.error:
        verdict = style.red(f"error: {invocation.error}")
    elif invocation.findings and "sns:Publish" not in invocation.api_calls:
        verdict = "duplicate event id: the stored result of the first delivery, nothing done or sent again"
    elif result.get("status"):
        verdict = str(result["status"]) + (f" ({result['reason']})" if result.get("reason") else "")
    lines = field_lines("function", [style.bold(invocation.function) + (f": {verdict}" if verdict else "")], style)
    if invocation.calls:
        lines += field_lines("api calls", api_call_lines(invocation, style), style)
    if not invocation.error and not invocation.findings and result.get("status"):
        lines += field_lines("findings", ["none"], style)
    for finding in invocation.findings:
        lines += field_lines("finding", [f"{style.severity(str(finding.get('severity')))} {finding.get('id')}: "
                                          f"{finding.get('summary')}"], style)
    if invocation.actions:
        lines += field_lines("actions", action_lines(invocation.actions, style), style)
    elif not invocation.error and invocation.findings:
        lines += field_lines("actions", ["none (notification only)"], style)
    for notification in invocation.notifications:
        lines += field_lines("email", email_lines(notification, style), style)
    if logs and invocation.logs.strip():
        lines += field_lines("logs", invocation.logs.rstrip().splitlines(), style)
    return lines


def replay_lines(replay: Replay, style: Style, *, logs: bool = False, show_path: bool = True) -> list[str]:
    what = f"{replay.event.get('detail-type')}: {describe_event(replay.event)}"
    lines = field_lines("event", [replay.path, what] if show_path else [what], style)
    if replay.applied:
        text = replay.applied.line
        if replay.applied.status == APPLIED:
            text = style.green(text) + " (made on the local account first, so there is something to undo)"
        elif replay.applied.status == FAILED:
            text = style.red(text)
        lines += field_lines("", [text], style)
    routing = replay.routing
    if routing and routing.path == "forwarded" and routing.rules:
        lines += field_lines("route", [routing.note], style)
    if not replay.rules:
        why = routing.note if routing and routing.note else "no rule matched"
        lines += field_lines("rule", [style.yellow(f"{why}: no function invoked")], style)
    for rule, invocation in zip(replay.rules, replay.invocations, strict=True):
        lines += field_lines("rule", [f"{style.bold(rule.logical_id)} -> {rule.function}"], style)
        lines += invocation_lines(invocation, style, logs=logs)
    return lines


def heading(text: str, style: Style) -> str:
    return style.bold(f"== {text} ==")


# --- the demo ----------------------------------------------------------------------------


def _policies(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def state_lines(snapshot: Mapping[str, Any], style: Style) -> list[str]:
    group, role = snapshot["group"], snapshot["role"]
    lines = field_lines("group", [f"{group['name']}: policies {_policies(group.get('policies', []))}; "
                                  f"members {_policies(group.get('members', []))}"
                                  if group["exists"] else f"{group['name']}: does not exist"], style)
    if role["exists"]:
        role_text = (f"{role['name']}: policies {_policies(role['policies'])}; "
                     f"trust {'requires' if role['trust_requires_mfa'] else 'does NOT require'} MFA; "
                     f"{role['max_session_seconds'] // 60}-minute sessions")
    else:
        role_text = f"{role['name']}: does not exist"
    lines += field_lines("role", [role_text], style)
    users = []
    for name, user in sorted(snapshot["users"].items()):
        bits = ["console password" if user["console_password"] else "no console password",
                f"{user['access_keys']} access key(s)", "MFA" if user["mfa"] else "no MFA"]
        if user["groups"]:
            bits.append("in " + ", ".join(user["groups"]))
        if user["policies"]:
            bits.append("policies " + ", ".join(user["policies"]))
        users.append(f"{name}: " + ", ".join(bits))
    lines += field_lines("users", users, style)
    trails = [f"{name}: {'logging' if t['logging'] else 'STOPPED'}, "
              f"{'multi-region' if t['multi_region'] else 'one region'}" for name, t in snapshot["trails"].items()]
    lines += field_lines("trail", trails or ["none"], style)
    return lines


def seed_lines(snapshot: Mapping[str, Any], style: Style) -> list[str]:
    return [heading(f"The seed account ({snapshot['account']}, {snapshot['region']}): before the guardrail", style),
            *state_lines(snapshot, style)]


def setup_lines(invocation: Invocation, style: Style, *, logs: bool = False) -> list[str]:
    result = invocation.result if isinstance(invocation.result, Mapping) else {}
    lines = [heading("Setup: the setup function converges the baseline", style)]
    lines += field_lines("function", [style.bold(invocation.function) +
                                      (style.red(f": error: {invocation.error}") if invocation.error else "")], style)
    lines += field_lines("api calls", api_call_lines(invocation, style), style)
    plan = [f"{i}. {p}" for i, p in enumerate(result.get("plan", []), 1)]
    lines += field_lines("plan", plan or ["nothing to change"], style)
    lines += field_lines("actions", action_lines(invocation.actions, style), style)
    if result.get("trail"):
        lines += field_lines("trail", [str(result["trail"])], style)
    for notification in invocation.notifications:
        lines += field_lines("email", email_lines(notification, style), style)
    if logs and invocation.logs.strip():
        lines += field_lines("logs", invocation.logs.rstrip().splitlines(), style)
    return lines


def step_lines(number: int, step: Step, style: Style, *, logs: bool = False) -> list[str]:
    lines = [heading(f"{number}. {step.scenario.title}", style)]
    if step.replay is None:
        return lines + field_lines("skipped", [style.yellow(step.skipped)], style)
    return lines + replay_lines(step.replay, style, logs=logs)


def _value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def final_lines(result: DemoResult, style: Style) -> list[str]:
    lines = [heading("The account now, against the baseline", style)]
    width = max((len(c.what) for c in result.checks), default=0)
    for check in result.checks:
        word = "[ok]" if check.ok else "[DRIFT]"
        text = (style.green(word) if check.ok else style.red(word)) + " " * (8 - len(word))
        text += f"{check.what.ljust(width)}  "
        text += check.actual if check.ok else style.bold(check.actual)
        lines.append(INDENT + text)
        if check.note:
            lines.append(INDENT + " " * (8 + width + 2) + style.dim(check.note))
    lines.append("")
    if result.changed:
        lines.append(INDENT + "What the scenarios left changed since setup (everything else is as setup left it):")
        lines += [f"{INDENT}  {c['what']}: {_value(c['before'])} -> {_value(c['after'])}" for c in result.changed]
    else:
        lines.append(INDENT + "Nothing changed since setup" + (": every drift the scenarios made was undone."
                                                                if any(s.replay for s in result.steps) else "."))
    return lines


def more_lines(replay: Replay, style: Style) -> list[str]:
    """A compact block for an event outside the story (replayed in a fresh account)."""
    lines = [INDENT + style.bold(replay.path), f"{INDENT}  {describe_event(replay.event)}"]
    if replay.applied and replay.applied.status != APPLIED:
        lines.append(f"{INDENT}  {replay.applied.line}")
    if not replay.rules:
        why = replay.routing.note if replay.routing and replay.routing.note else "no rule matched"
        lines.append(f"{INDENT}  {why}: no function invoked")
    for rule, inv in zip(replay.rules, replay.invocations, strict=True):
        lines.append(f"{INDENT}  {rule.logical_id} -> {inv.function}")
        if inv.error:
            lines.append(f"{INDENT}    {style.red('error: ' + inv.error)}")
        lines += [f"{INDENT}    {style.severity(str(f.get('severity')))} {f.get('summary')}" for f in inv.findings]
        lines += [f"{INDENT}    {style.status(str(a.get('status')))} {a.get('name')}" for a in inv.actions]
        if not inv.error and not inv.findings and isinstance(inv.result, Mapping):
            status = inv.result.get("status")
            verdict = "no finding" if status == "handled" else f"{status}: {inv.result.get('reason')}"
            lines.append(f"{INDENT}    {verdict}")
    return lines
