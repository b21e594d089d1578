"""boto3 clients, made once per container, with the retry policy every call shares."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

# Standard retries back off on throttling (Throttling, TooManyRequests) and transient 5xx.
RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=15)


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
