"""Record every AWS API call made in-process, in order, whatever client made it; and, for the
benchmark, make each call pay a fixed simulated round trip (`simulated_latency`).

Both live in one wrapper around `BaseClient._make_api_call`, the method every botocore client
(boto3's, Powertools', Cloud Custodian's) goes through for every operation, on any thread:
the one place where a call starts and ends.
"""

from __future__ import annotations

import contextlib
import time
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
    started: float = 0.0  # time.perf_counter() when the client was asked (seconds)
    ended: float = 0.0  # ... and when it answered or raised (0.0: still running, or not timed)
    region: str = ""  # the client's region

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
_latency: list[float] = []  # seconds each call waits, innermost block last
_wrapped: list[Any] = []  # the method in place when the wrapper went in (may itself be a fault injector)


def _wrapper_call(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
    started = time.perf_counter()
    call = None
    if _active:
        service = self.meta.service_model.signing_name or self.meta.service_model.endpoint_prefix
        service = {"email": "ses", "monitoring": "cloudwatch"}.get(service, service)
        call = Call(service, operation_name, dict(api_params), started=started,
                    region=str(self.meta.region_name or ""))
        for recorder in _active:
            recorder.calls.append(call)
    try:
        if _latency:
            time.sleep(_latency[-1])  # releases the GIL: calls made on other threads overlap, as on a network
        return _wrapped[-1](self, operation_name, api_params)
    except Exception as exc:
        if call is not None and type(exc).__name__ == "WritesRefusedError":  # stopped at the write gate:
            for recorder in _active:  # it never left the function, so it is no call to AWS
                recorder.calls[:] = [c for c in recorder.calls if c is not call]
        raise
    finally:
        if call is not None:
            call.ended = time.perf_counter()


@contextlib.contextmanager
def _wrapper_in_place() -> Iterator[None]:
    if not _active and not _latency:
        _wrapped.append(BaseClient._make_api_call)  # type: ignore[attr-defined]
        BaseClient._make_api_call = _wrapper_call  # type: ignore[method-assign,attr-defined]
    try:
        yield
    finally:
        if not _active and not _latency:
            BaseClient._make_api_call = _wrapped.pop()  # type: ignore[method-assign,attr-defined]


@contextlib.contextmanager
def record_calls() -> Iterator[Recorder]:
    """Within the block, every botocore API call is appended to the returned recorder, with the
    moments it started and ended (`Call.started`, `Call.ended`)."""
    recorder = Recorder()
    with _wrapper_in_place():
        _active.append(recorder)
        try:
            yield recorder
        finally:
            _active.remove(recorder)


@contextlib.contextmanager
def simulated_latency(seconds: float) -> Iterator[None]:
    """Within the block, every botocore API call waits `seconds` before it is made: a fixed round
    trip, as a real account's endpoints would add (moto answers in-process, in about a millisecond).
    The wait is a sleep, so calls made concurrently on threads wait concurrently."""
    if seconds < 0:
        raise ValueError(f"latency must be >= 0 s, got {seconds}")
    with _wrapper_in_place():
        _latency.append(seconds)
        try:
            yield
        finally:
            _latency.pop()
