"""EventBridge pattern matching for the local account, with an engine validated against AWS.

LocalStack's `EventRuleEngine` (package localstack-core) is tested by its authors against
EventBridge itself (their snapshot tests record AWS's answers); moto's matcher is a small
re-implementation that misses operators the template uses. Both are kept callable so
tests/test_routing.py can show where they agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any


@cache
def _engine() -> tuple[Any, Any]:
    """(compiler, engine), imported on first use: processes that only need the moto account
    (bench/custodian.py, in Cloud Custodian's virtualenv without localstack-core) never load it."""
    from localstack.services.events.event_rule_engine import EventPatternCompiler, EventRuleEngine

    return EventPatternCompiler(), EventRuleEngine()


class Pattern:
    """One compiled event pattern; `matches(event)` answers as EventBridge would."""

    def __init__(self, pattern: Mapping[str, Any]) -> None:
        self.source = json.loads(json.dumps(pattern))
        self._compiled = _engine()[0].compile_event_pattern(self.source)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return bool(_engine()[1].evaluate_pattern_on_event(self._compiled, json.loads(json.dumps(event))))


def moto_matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """moto's answer for the same question (its EventBridge PutEvents matcher)."""
    from moto.events.models import EventPattern

    return bool(EventPattern.load(json.dumps(pattern)).matches_event(json.loads(json.dumps(event))))
