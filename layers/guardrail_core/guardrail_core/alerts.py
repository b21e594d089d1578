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


MIN_WHAT = 20  # characters of "what happened" kept in a subject before anything else gives way
_NAME_TOKEN = 10  # words longer than this are names (groups, roles, policies, trails): shortened first


def _short_outcome(outcome: str) -> str:
    """'Not undone (notify mode)' -> 'Not undone'."""
    return re.sub(r"\s*\(.*\)\s*$", "", outcome) or outcome


def shorten_middle(text: str, room: int) -> str:
    """`text` in at most `room` characters: the longest names lose their middle first
    ('group very-long-...-name'), then, if still too long, whole words of the text's middle
    ('Guardrail tampered: ... on function x'); a character cut only when one word is too long."""
    if len(text) <= room:
        return text
    words = text.split(" ")
    while len(" ".join(words)) > room:
        longest = max(range(len(words)), key=lambda i: len(words[i]))
        word = words[longest]
        if len(word) < _NAME_TOKEN:
            break
        keep = max(_NAME_TOKEN - 3, len(word) - (len(" ".join(words)) - room) - 3)
        if keep >= len(word) - 3:
            keep = len(word) - 4
        head = (keep + 1) // 2
        words[longest] = word[:head] + "..." + word[len(word) - (keep - head):]
    out = " ".join(words)
    if len(out) <= room:
        return out
    if room <= 3:
        return "..."[:room]
    head_words: list[str] = []
    tail_words: list[str] = []
    first, last = 0, len(words) - 1
    while first <= last:  # keep words from both ends, alternately, while "head ... tail" fits
        grown = [*head_words, words[first]]
        if len(" ".join([*grown, "...", *tail_words])) > room:
            break
        head_words, first = grown, first + 1
        if first > last:
            break
        grown = [words[last], *tail_words]
        if len(" ".join([*head_words, "...", *grown])) > room:
            break
        tail_words, last = grown, last - 1
    if head_words:
        return " ".join([*head_words, "...", *tail_words])
    head = (room - 3 + 1) // 2
    return out[:head] + "..." + out[len(out) - (room - 3 - head):]


def render_subject(finding: Finding, account_label: str = "") -> str:
    """'[HIGH] Undone: AdministratorAccess attached to group administrators by phoebe - 123456789012'.

    At most SUBJECT_LIMIT printable ASCII characters. Severity and the actor's name are never
    cut: when the line is too long, the account goes first (it is in the body), then names in the
    middle of what happened are shortened (then its middle words); "using role ..." and the
    outcome's parenthesis go only when what happened would otherwise keep fewer than MIN_WHAT
    characters.
    """
    head = f"[{finding.severity.value}] "
    what = _ascii_line(finding.summary)
    account = _ascii_line(account_label or finding.account_id)
    who_long, who_short = (_ascii_line(w) for w in finding.subject_actor)
    outcome = _ascii_line(finding.outcome)
    tails = [f" - {account}", ""] if account else [""]
    outs = [f"{outcome}: ", f"{_short_outcome(outcome)}: "] if outcome else [""]
    bys = [f" by {who_long}", f" by {who_short}"] if who_short else [""]
    # Given up last to first: the outcome's reason ("notify mode": whether to act), the whole actor
    # ("phoebe, using role admin-mfa"), the account.
    candidates = [(out, by, tail) for out in dict.fromkeys(outs) for by in dict.fromkeys(bys) for tail in tails]
    shortened = [c for c in candidates if not c[2]]  # once what happened must be shortened: no account
    for minimum in (len(what), MIN_WHAT, 8, 0):
        for out, by, tail in candidates if minimum == len(what) else shortened:
            room = SUBJECT_LIMIT - len(head) - len(out) - len(by) - len(tail)
            if room >= min(minimum, len(what)):
                return head + out + shorten_middle(what, room) + by + tail
    return (head + what)[:SUBJECT_LIMIT]  # unreachable for actor names IAM allows (<= 64 characters)


def _wrap(text: str, indent: str = "  ", *, first: str | None = None) -> list[str]:
    # Never split ARNs, URLs or CLI commands: a broken link is worse than a long line.
    return textwrap.wrap(
        text, width=78, initial_indent=indent if first is None else first, subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    ) or [indent]


def _field(label: str, value: str) -> list[str]:
    """'  Label:      value', wrapped within 80 columns under the value (long user agents, ARNs)."""
    first = f"  {label + ':':<12}"
    return textwrap.wrap(value, width=78, initial_indent=first, subsequent_indent=" " * len(first),
                         break_long_words=True, break_on_hyphens=False) or [first.rstrip()]


def render_email(finding: Finding, account_label: str = "") -> str:
    """Plain text, most important first; no raw JSON; lines within 80 columns except unbreakable
    links and commands (never split: a broken link is worse than a long line)."""
    account = f"{finding.account_id} ({account_label})" if account_label else finding.account_id
    lines = [*_wrap(f"{finding.severity.value}: {finding.headline}", "  ", first=""), ""]
    lines += ["WHAT HAPPENED", *_wrap(finding.what_happened or finding.summary), ""]
    if finding.items:
        lines += [f"FOUND ({len(finding.items)})"]
        for item in finding.items:
            lines += _wrap(item, "    ", first="  - ")
        lines.append("")
    if finding.actor:
        who = finding.actor
        lines += ["WHO", *_wrap(who.sentence.rstrip(","))]
        lines += _field("Principal", who.arn) + _field("Type", who.type)
        if who.access_key_id and who.type == "Root" and who.via:
            lines += _field("Access key", who.access_key_id)
        if who.source_ip:
            lines += _field("Source IP", who.source_ip)
        if who.user_agent:
            lines += _field("User agent", who.user_agent)
        if who.mfa:
            lines += _field("MFA used", who.mfa)
        lines.append("")
    lines += ["WHEN AND WHERE", f"  Time (UTC): {finding.event_time or finding.detected_at}"]
    if finding.event_time and finding.detected_at and finding.detected_at != finding.event_time:
        lines.append(f"  Judged:     {finding.detected_at}")
    lines.append(f"  Account:    {account}")
    if finding.region:
        lines.append(f"  Region:     {finding.region}")
    if finding.event_name:
        lines.append(f"  API call:   {finding.event_name}")
    lines.append("")
    lines.append(f"WHAT THE GUARDRAIL DID (mode: {finding.mode or 'notify'})")
    if not finding.actions:
        lines.append("  Nothing: this is a notification only.")
    undoable = [a for a in finding.actions if a.undo and a.status is Status.SUCCEEDED]
    if undoable and finding.undo_warning:
        lines += _wrap(f"Before running a 'To undo' command below: {finding.undo_warning}")
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


SCHEMA_VERSION = "1.0"  # of the machine JSON ("default"): schemas/finding.schema.json
SEVERITY_ICONS = {"CRITICAL": ":rotating_light:", "HIGH": ":red_circle:", "MEDIUM": ":large_orange_circle:",
                  "LOW": ":large_yellow_circle:", "INFO": ":information_source:"}
CHAT_DESCRIPTION_LIMIT = 3000  # characters: a readable card (our limit, well inside the chat clients')
CHAT_STEPS = 5


def render_json(finding: Finding) -> str:
    """The machine JSON every non-email, non-HTTPS subscriber gets (schemas/finding.schema.json)."""
    return json.dumps({"schema_version": SCHEMA_VERSION, "guardrail_finding": finding.to_dict()}, sort_keys=True)


def finding_key(finding: Finding) -> str:
    """Stable per finding: the same event judged again (a redelivery) gives the same key."""
    anchor = finding.event_id or (finding.event_time or finding.detected_at)[:10] or "undated"
    return f"{finding.id}/{anchor}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def chat_message(finding: Finding, account_label: str = "") -> dict[str, Any]:
    """The finding as an Amazon Q Developer in chat applications (formerly AWS Chatbot) custom
    notification: what a Slack, Microsoft Teams or Amazon Chime channel shows as a card.

    Schema: "Custom notifications using Amazon Q Developer in chat applications" (Chatbot
    Administrator Guide, Event schema); written down in schemas/chat-notification.schema.json.
    """
    account = f"{finding.account_id} ({account_label})" if account_label else finding.account_id
    lines = [finding.what_happened or finding.summary, ""]
    if finding.actions:
        lines.append(f"*What the guardrail did* (mode: {finding.mode or 'notify'})")
        for a in finding.actions:
            note = f": {a.detail}" if a.detail and a.status is not Status.SUCCEEDED else ""
            lines.append(f"- [{_STATUS_WORDS[a.status]}] {a.name}{note}")
        lines.append("")
    if finding.items:
        lines += [f"- {item}" for item in finding.items[:10]]
        if len(finding.items) > 10:
            lines.append(f"- ... and {len(finding.items) - 10} more (see the email)")
        lines.append("")
    lines.append(f"*Account* {account}   *Time (UTC)* {finding.event_time or finding.detected_at}")
    if finding.actor:
        lines.append(f"*Who* {finding.actor.words} (`{finding.actor.arn}`)")
    context = {
        "account": finding.account_id, "region": finding.region, "findingType": finding.id,
        "severity": finding.severity.value, "eventTime": finding.event_time or finding.detected_at,
    }
    if finding.event_id:
        context["cloudTrailEventId"] = finding.event_id
    if finding.actor:
        context["principal"] = finding.actor.arn
    resources = [a.target for a in finding.actions if a.target.startswith("arn:")]
    return {
        "version": "1.0",
        "source": "custom",
        "id": finding_key(finding),
        "content": {
            "textType": "client-markdown",
            "title": _clip(f"{SEVERITY_ICONS[finding.severity.value]} [{finding.severity.value}] "
                           f"{finding.headline}", 250),
            "description": _clip("\n".join(lines).strip(), CHAT_DESCRIPTION_LIMIT),
            "nextSteps": [_clip(step, 500) for step in finding.next_steps[:CHAT_STEPS]],
            "keywords": [k for k in (finding.severity.value, finding.id, _short_outcome(finding.outcome)) if k],
        },
        "metadata": {
            "threadId": _clip(f"account-guardrail-{finding.account_id}-{finding.id}", 128),
            "summary": render_subject(finding, account_label),
            "eventType": finding.id,
            "relatedResources": list(dict.fromkeys(resources))[:10],
            "additionalContext": context,
        },
    }


def sns_message(finding: Finding, account_label: str = "") -> dict[str, str]:
    """Keyword arguments for sns.publish: one message, a body per protocol (MessageStructure json).

    - email / email-json: the plain-text email;
    - https: the chat card (Amazon Q Developer in chat applications subscribes to a topic over
      HTTPS and shows only custom notifications; any other HTTPS endpoint gets the same JSON);
    - default (SQS, Lambda, HTTP, SMS, Firehose...): the machine JSON, schemas/finding.schema.json.
    """
    return {
        "Subject": render_subject(finding, account_label),
        "MessageStructure": "json",
        "Message": json.dumps({
            "default": render_json(finding),
            "email": render_email(finding, account_label),
            "https": json.dumps(chat_message(finding, account_label), sort_keys=True),
        }),
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
