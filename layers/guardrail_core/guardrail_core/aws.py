"""boto3 clients, made once per container, with the retry policy every call shares."""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import cache
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

# Standard retries back off (with jitter) on throttling (Throttling, TooManyRequests, ...),
# transient 5xx and connection errors: up to 5 attempts before the error reaches our code.
# One connection per concurrent call (`concurrently` runs up to MAX_THREADS): botocore keeps 10 per
# client by default, and a call past them opens a new TLS connection and drops it ("Connection pool
# is full"), which costs round trips the concurrency was meant to save (botocore Config,
# max_pool_connections).
MAX_THREADS = 32  # IAM's per-account request rate is the real bound; callers cap what they submit
RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=15,
                 max_pool_connections=MAX_THREADS)

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "SlowDown", "RequestThrottled",
    "ProvisionedThroughputExceededException",
})
TRANSIENT_CODES = THROTTLING_CODES | {
    "InternalFailure", "InternalError", "InternalServerError", "ServiceUnavailable", "ServiceUnavailableException",
    "ServiceFailure", "RequestTimeout", "RequestTimeoutException",
}
_CONNECTION_ERRORS = (ConnectionClosedError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError)


@cache
def client(service: str, region: str | None = None) -> Any:
    """A shared client per service and region (created on first use, reused while warm)."""
    made = boto3.client(service, region_name=region, config=RETRIES)  # type: ignore[call-overload]
    made.meta.events.register("before-call", _gate_hook)  # every write of a judgement passes the gate
    return made


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def is_access_denied(exc: BaseException) -> bool:
    return error_code(exc) in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in {"NoSuchEntity", "NoSuchEntityException", "TrailNotFoundException", "NotFound"}


class TransientError(RuntimeError):
    """A failure of ours that a later attempt may not meet (e.g. IAM's answer contradicted a read)."""


def is_transient(exc: BaseException) -> bool:
    """An AWS failure that a later retry may not meet (the client's own retries ran out)."""
    if isinstance(exc, (*_CONNECTION_ERRORS, TransientError)):
        return True
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(exc) in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)


def raise_if_transient(exc: BaseException) -> None:
    """Re-raise a transient failure of a WRITE, so the run fails and Lambda retries the event.

    Writes follow the same rule as reads: what a later attempt may not meet (throttling past
    the client's retries, 5xx, timeouts) fails the run; only a permanent refusal (AccessDenied,
    a validation error, a limit) may become a [FAILED] action in the email. Call it first in
    every `except ClientError` around a remediation write.
    """
    if is_transient(exc):
        raise exc


# --- concurrent reads ----------------------------------------------------------------------------

T = TypeVar("T")


def concurrently(thunks: Sequence[Callable[[], T]]) -> list[T]:
    """Run every thunk at once (one thread each, up to MAX_THREADS) and return their results in order.

    boto3 clients are thread-safe (sessions are not: every client here comes from `client()`,
    made once). Each thunk runs in a copy of the caller's context (contextvars: the write gate,
    log keys). All thunks finish before this returns; if any raised, the exception of the first
    one (in argument order) is raised, after the others finished: a caller never acts on a
    partial read.
    """
    if len(thunks) <= 1:
        return [thunk() for thunk in thunks]
    with ThreadPoolExecutor(max_workers=min(len(thunks), MAX_THREADS), thread_name_prefix="aws") as pool:
        futures = [pool.submit(contextvars.copy_context().run, thunk) for thunk in thunks]
        wait(futures)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]


# --- the write gate ------------------------------------------------------------------------------


class WritesRefusedError(RuntimeError):
    """A write was attempted after the gate closed (the event turned out to be a duplicate)."""


class WriteGate:
    """Holds every AWS write of one judgement until the run may act.

    The runtime writes its idempotency record while the judge reads; a judge's first write
    waits here until that record is in place (or known unavailable), then every pending
    "intent" record too. If the record shows a duplicate, the gate closes and the write
    raises WritesRefusedError instead: the judgement is dropped before it changed anything.
    """

    def __init__(self) -> None:
        self._decided = threading.Event()
        self._open = False
        self._why = ""
        self._pending: list[Future[Any]] = []
        self._lock = threading.Lock()
        self._write_hooks: list[Callable[[str, Mapping[str, Any]], None]] = []

    def open(self) -> None:
        self._open = True
        self._decided.set()

    def close(self, why: str) -> None:
        self._why = why
        self._open = False
        self._decided.set()

    def also_wait_for(self, future: Future[Any]) -> None:
        with self._lock:
            self._pending.append(future)

    def before_first_write(self, hook: Callable[[str, Mapping[str, Any]], None]) -> None:
        """`hook(operation, params)` runs before every write, after the gate opened (e.g. an intent record)."""
        self._write_hooks.append(hook)

    def wait(self, operation: str, params: Mapping[str, Any]) -> None:
        self._decided.wait()
        if not self._open:
            raise WritesRefusedError(f"{operation} not made: {self._why}")
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            future.result()  # an intent record that failed to save fails the write: nothing half-done
        for hook in self._write_hooks:
            hook(operation, params)


_GATE: contextvars.ContextVar[WriteGate | None] = contextvars.ContextVar("write_gate", default=None)
READ_PREFIXES = ("Get", "List", "Describe", "Generate", "Lookup", "Simulate")
GATED_SERVICES = frozenset({"iam", "cloudtrail", "sns", "events", "lambda", "kms", "sts"})


@contextlib.contextmanager
def gated(gate: WriteGate) -> Iterator[WriteGate]:
    """Within the block (and the threads `concurrently` starts from it), AWS writes pass `gate`."""
    token = _GATE.set(gate)
    try:
        yield gate
    finally:
        _GATE.reset(token)


def current_gate() -> WriteGate | None:
    return _GATE.get()


def _gate_hook(params: Mapping[str, Any], model: Any, **_: Any) -> None:
    """botocore before-call hook: writes on the guarded services wait for the gate (reads never do)."""
    gate = _GATE.get()
    if gate is None or model.name.startswith(READ_PREFIXES):
        return
    if model.service_model.endpoint_prefix not in GATED_SERVICES or model.name == "Publish":
        return
    gate.wait(model.name, params)
