"""Replay EventBridge events through the template's rules into the real handlers.

One event: reproduce the write it records on the local account (so remediation has
something real to undo), route it with the template's own patterns, invoke every matching
rule's function, and keep what happened. `guardrail replay` gives each file a fresh
account in the baseline state; `guardrail demo` plays several in one account, as a story.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail_cli.apply import Applied, apply_recorded_call
from guardrail_cli.local import Invocation, LocalGuardrail, Routing
from guardrail_cli.template import Rule
from guardrail_cli.testing import baseline_account

ENVELOPE_KEYS = ("detail-type", "source", "detail")


class InputError(ValueError):
    """A file that cannot be replayed; the message is one line for the user."""


@dataclass
class Replay:
    """One event replayed: what was applied, which rules matched, what each function did."""

    path: str
    event: dict[str, Any]
    applied: Applied | None = None
    rules: list[Rule] = field(default_factory=list)
    invocations: list[Invocation] = field(default_factory=list)
    routing: Routing | None = None

    @property
    def event_name(self) -> str:
        detail = self.event.get("detail")
        return str(detail.get("eventName", "")) if isinstance(detail, Mapping) else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.path,
            "detail_type": self.event.get("detail-type"),
            "event_name": self.event_name,
            "applied": self.applied.to_json() if self.applied else None,
            "rules": [rule.logical_id for rule in self.rules],
            "routing": {"path": self.routing.path, "note": self.routing.note,
                        "forwarded_by": self.routing.forwarded_by} if self.routing else None,
            "invocations": [invocation_json(inv) for inv in self.invocations],
        }


def invocation_json(invocation: Invocation) -> dict[str, Any]:
    """`Invocation.to_json()` plus the handler's own verdict (handled / ignored and why)."""
    data = invocation.to_json()
    result = invocation.result if isinstance(invocation.result, Mapping) else {}
    data["outcome"] = result.get("status")
    data["reason"] = result.get("reason")
    return data


def display_path(path: str | Path) -> str:
    """The path as the user would type it: relative to the working directory when inside it."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(path)


def load_event_file(path: str | Path) -> dict[str, Any]:
    """Read one EventBridge event; InputError with a one-line reason when it is not one."""
    where = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not a text file ({exc.reason})") from exc
    try:
        event = json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise InputError(f"{where}: not an EventBridge event: the file holds a JSON {type(event).__name__}, "
                         f"not an object")
    missing = [key for key in ENVELOPE_KEYS if key not in event]
    if missing:
        hint = ""
        if "eventName" in event or "eventSource" in event:
            hint = " (it looks like a bare CloudTrail record: put it under \"detail\" in an EventBridge envelope)"
        raise InputError(f"{where}: not an EventBridge event: missing {', '.join(repr(k) for k in missing)}{hint}")
    if not isinstance(event["detail"], dict):
        raise InputError(f"{where}: not an EventBridge event: \"detail\" is not an object")
    for key in ("detail-type", "source"):
        if not isinstance(event[key], str):
            raise InputError(f"{where}: not an EventBridge event: {key!r} is not a string")
    return event


def load_event_files(paths: Sequence[str | Path]) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """(display path, event) for each readable file, and the one-line error of each other one."""
    events, errors = [], []
    for path in paths:
        try:
            events.append((display_path(path), load_event_file(path)))
        except InputError as exc:
            errors.append(str(exc))
    return events, errors


def replay_in(guardrail: LocalGuardrail, path: str, event: dict[str, Any]) -> Replay:
    """Replay one event in the given account (which keeps whatever state it ends in)."""
    replay = Replay(path=path, event=event)
    replay.applied = apply_recorded_call(event, guardrail.stack.account_id)
    replay.routing, replay.invocations = guardrail.dispatch_routed(event)
    replay.rules = replay.routing.rules
    return replay


def replay_each(
    events: Sequence[tuple[str, dict[str, Any]]],
    parameters: Mapping[str, str] | None = None,
    template: Path | None = None,
) -> Iterator[Replay]:
    """Each event in its own fresh account in the baseline state, in order."""
    for path, event in events:
        with baseline_account(parameters, template=template) as guardrail:
            yield replay_in(guardrail, path, event)
