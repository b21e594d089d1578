"""Turn a Finding into an email a person reads at a glance, and publish it to SNS.

Email subscribers get the plain-text rendering; every other protocol (SQS, Lambda, HTTPS,
chat integrations) gets the same finding as JSON, through SNS `MessageStructure: json`.
"""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any, Protocol

from guardrail_core.findings import Finding, Status

SUBJECT_LIMIT = 100  # SNS rejects longer email subjects
_STATUS_WORDS = {
    Status.SUCCEEDED: "DONE",
    Status.FAILED: "FAILED",
    Status.SKIPPED: "NOT DONE",
}


class Publisher(Protocol):
    def publish(self, **kwargs: Any) -> Any: ...


def _ascii_line(text: str) -> str:
    """SNS subjects must be printable ASCII on one line."""
    text = re.sub(r"\s+", " ", text)
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text).strip()


def render_subject(finding: Finding, account_label: str = "") -> str:
    account = account_label or finding.account_id
    tail = f" - {account}" if account else ""
    head = f"[{finding.severity.value}] "
    room = SUBJECT_LIMIT - len(head) - len(tail)
    summary = _ascii_line(finding.summary)
    if len(summary) > room:
        summary = summary[: max(room - 3, 0)].rstrip() + "..."
    return _ascii_line(head + summary + tail)[:SUBJECT_LIMIT]


def _wrap(text: str, indent: str = "  ", *, first: str | None = None) -> list[str]:
    # Never split ARNs, URLs or CLI commands: a broken link is worse than a long line.
    return textwrap.wrap(
        text, width=78, initial_indent=indent if first is None else first, subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    ) or [indent]


def render_email(finding: Finding, account_label: str = "") -> str:
    """Plain text, most important first; no raw JSON."""
    account = f"{finding.account_id} ({account_label})" if account_label else finding.account_id
    lines = [f"{finding.severity.value}: {finding.summary}", ""]
    lines += ["WHAT HAPPENED", *_wrap(finding.what_happened or finding.summary), ""]
    if finding.items:
        lines += [f"FOUND ({len(finding.items)})", *(f"  - {item}" for item in finding.items), ""]
    if finding.actor:
        who = finding.actor
        lines += ["WHO", f"  Principal:  {who.arn}", f"  Type:       {who.type}"]
        if who.source_ip:
            lines.append(f"  Source IP:  {who.source_ip}")
        if who.user_agent:
            lines.append(f"  User agent: {who.user_agent}")
        if who.mfa:
            lines.append(f"  MFA used:   {who.mfa}")
        lines.append("")
    lines += ["WHEN AND WHERE", f"  Time (UTC): {finding.event_time or 'unknown'}", f"  Account:    {account}"]
    if finding.region:
        lines.append(f"  Region:     {finding.region}")
    if finding.event_name:
        lines.append(f"  API call:   {finding.event_name}")
    lines.append("")
    lines.append(f"WHAT THE GUARDRAIL DID (mode: {finding.mode or 'notify'})")
    if not finding.actions:
        lines.append("  Nothing: this is a notification only.")
    for action in finding.actions:
        lines += _wrap(f"[{_STATUS_WORDS[action.status]}] {action.name}", "      ", first="  ")
        lines.append(f"      Target: {action.target}")
        if action.at:
            lines.append(f"      When:   {action.at}")
        if action.detail:
            lines += _wrap(action.detail, "      ")
        if action.undo and action.status is Status.SUCCEEDED:
            lines += _wrap(f"To undo: {action.undo}", "        ", first="      ")
    lines.append("")
    if finding.next_steps:
        lines.append("WHAT TO DO")
        for step in finding.next_steps:
            lines += _wrap(step, "    ", first="  - ")
        lines.append("")
    if finding.links or finding.event_id:
        lines.append("LINKS")
        lines += [f"  {link}" for link in finding.links]
        if finding.event_id:
            lines.append(f"  CloudTrail event ID: {finding.event_id}")
        lines.append("")
    lines.append(f"-- account-guardrail (finding type: {finding.id})")
    return "\n".join(lines)


def render_json(finding: Finding) -> str:
    return json.dumps({"guardrail_finding": finding.to_dict()}, sort_keys=True)


def sns_message(finding: Finding, account_label: str = "") -> dict[str, str]:
    """Keyword arguments for sns.publish."""
    as_json = render_json(finding)
    return {
        "Subject": render_subject(finding, account_label),
        "MessageStructure": "json",
        "Message": json.dumps({"default": as_json, "email": render_email(finding, account_label)}),
    }


def publish(sns: Publisher, topic_arn: str, finding: Finding, account_label: str = "") -> str:
    """Publish one finding; returns the SNS message id. Raises on failure (callers decide)."""
    response = sns.publish(TopicArn=topic_arn, **sns_message(finding, account_label))
    return str(response.get("MessageId", ""))


def cloudtrail_link(region: str, event_id: str) -> str:
    region = region or "us-east-1"
    return f"https://{region}.console.aws.amazon.com/cloudtrailv2/home?region={region}#/events/{event_id}"


def iam_console_link(kind: str, name: str) -> str:
    """kind: groups, roles, users, policies (policies take the ARN as name)."""
    return f"https://us-east-1.console.aws.amazon.com/iam/home#/{kind}/details/{name}"
