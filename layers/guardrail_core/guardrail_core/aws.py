"""boto3 clients, made once per container, with the retry policy every call shares."""

from __future__ import annotations

from functools import cache
from typing import Any

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
RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=15)

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
    return boto3.client(service, region_name=region, config=RETRIES)  # type: ignore[call-overload]


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def is_access_denied(exc: BaseException) -> bool:
    return error_code(exc) in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in {"NoSuchEntity", "NoSuchEntityException", "TrailNotFoundException", "NotFound"}


def is_transient(exc: BaseException) -> bool:
    """An AWS failure that a later retry may not meet (the client's own retries ran out)."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(exc) in TRANSIENT_CODES or (isinstance(status, int) and status >= 500)
