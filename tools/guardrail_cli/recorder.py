"""Record every AWS API call made in-process, in order, whatever client made it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.client import BaseClient

IDEMPOTENCY_SERVICES = frozenset({"dynamodb"})
PUBLISH_CALLS = frozenset({"sns:Publish"})


@dataclass
class Call:
    service: str  # IAM-style prefix: "iam", "sns", "cloudtrail", "dynamodb"
    operation: str  # "DetachGroupPolicy"
    params: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.service}:{self.operation}"

    @property
    def kind(self) -> str:
        """read, write, publish or idempotency (the split the benchmark reports)."""
        if self.service in IDEMPOTENCY_SERVICES:
            return "idempotency"
        if self.name in PUBLISH_CALLS:
            return "publish"
        if self.operation.startswith(("Get", "List", "Describe", "Lookup", "Generate")):
            return "read"
        return "write"


@dataclass
class Recorder:
    calls: list[Call] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def writes(self, service: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.kind == "write" and (service is None or c.service == service)]

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


_active: list[Recorder] = []
_wrapped: list[Any] = []  # the method in place when recording started (may itself be a fault injector)


def _recording_call(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
    if _active:
        service = self.meta.service_model.signing_name or self.meta.service_model.endpoint_prefix
        service = {"email": "ses", "monitoring": "cloudwatch"}.get(service, service)
        for recorder in _active:
            recorder.calls.append(Call(service, operation_name, dict(api_params)))
    return _wrapped[-1](self, operation_name, api_params)


@contextlib.contextmanager
def record_calls() -> Iterator[Recorder]:
    """Within the block, every botocore API call is appended to the returned recorder."""
    recorder = Recorder()
    if not _active:
        _wrapped.append(BaseClient._make_api_call)  # type: ignore[attr-defined]
        BaseClient._make_api_call = _recording_call  # type: ignore[method-assign,attr-defined]
    _active.append(recorder)
    try:
        yield recorder
    finally:
        _active.remove(recorder)
        if not _active:
            BaseClient._make_api_call = _wrapped.pop()  # type: ignore[method-assign,attr-defined]
