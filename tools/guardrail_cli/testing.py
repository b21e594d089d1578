"""Helpers shared by the tests, the demo and the benchmark: real records, envelopes, accounts."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from guardrail_cli.local import ACCOUNT_ID, REGION, LocalGuardrail, deploy_stack_resources, local_aws
from guardrail_cli.seed import create_seed_account
from guardrail_cli.template import REPO_ROOT, TEMPLATE_PATH, Stack

EVENTS_DIR = REPO_ROOT / "events"


CORPUS_DIR = REPO_ROOT / "tests" / "corpus"


def corpus_dir() -> Path:
    """The CloudTrail corpus shipped with the repository (tests/corpus; its MANIFEST.md gives
    each record's source and licence). Nothing outside the checkout is read."""
    if not (CORPUS_DIR / "index.json").is_file():
        raise FileNotFoundError(f"CloudTrail corpus missing at {CORPUS_DIR}: the checkout is incomplete")
    return CORPUS_DIR


def corpus_index() -> list[dict[str, Any]]:
    return list(json.loads((corpus_dir() / "index.json").read_text()))


def corpus_records(event_name: str | None = None, event_source: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(file, record) for every raw CloudTrail record, optionally filtered."""
    out = []
    for entry in corpus_index():
        if entry.get("form") != "raw":
            continue
        if event_name and entry.get("eventName") != event_name:
            continue
        if event_source and entry.get("eventSource") != event_source:
            continue
        out.append((entry["file"], json.loads((corpus_dir() / entry["file"]).read_text())))
    return out


def detail_type_for(record: Mapping[str, Any]) -> str:
    if record.get("eventSource") == "signin.amazonaws.com" and record.get("eventType") != "AwsApiCall":
        return "AWS Console Sign In via CloudTrail"
    return "AWS API Call via CloudTrail"


_REAL_REGION = re.compile(r"^[a-z]{2}(-gov)?-(north|south|east|west|central)+-\d$")


def recorded_region(record: Mapping[str, Any]) -> str:
    """The region EventBridge would deliver the record in: its awsRegion. Published records are
    often anonymised with invented regions ("megov-westwest-1r"), which no bus exists for: those
    are taken as recorded in the home region, so the pattern, not the anonymisation, is tested."""
    region = record.get("awsRegion")
    return region if isinstance(region, str) and _REAL_REGION.match(region) else REGION


def envelope(record: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """Wrap a raw CloudTrail record in the EventBridge envelope EventBridge would give it."""
    source = "aws." + str(record.get("eventSource", "unknown.amazonaws.com")).split(".")[0]
    identity = record.get("userIdentity") or {}
    account = record.get("recipientAccountId") or (identity.get("accountId") if isinstance(identity, dict) else None)
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    event = {
        "version": "0",
        "id": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
        "detail-type": detail_type_for(record),
        "source": source,
        "account": str(account or ACCOUNT_ID),
        "time": record.get("eventTime", "2026-11-29T00:00:00Z"),
        "region": recorded_region(record),
        "resources": [],
        "detail": copy.deepcopy(dict(record)),
    }
    event.update(overrides)
    return event


def retarget(record: Mapping[str, Any], account: str = ACCOUNT_ID, region: str = REGION) -> dict[str, Any]:
    """The same record as if recorded in the local account and region (for handler tests).

    Corpus records come from other (often anonymised) accounts and regions; the handlers
    rightly ignore those, so tests that want a judgement move the record here first.
    """
    text = json.dumps(record)
    identity = record.get("userIdentity") or {}
    for old in {str(record.get("recipientAccountId") or ""), str(identity.get("accountId") or "")}:
        if old and old != account:
            text = text.replace(old, account)
    moved = json.loads(text)
    moved["awsRegion"] = region
    moved["recipientAccountId"] = account
    return dict(moved)


def load_event(path: str | Path) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


@contextlib.contextmanager
def baseline_account(parameters: Mapping[str, str] | None = None, *, converge: bool = True,
                     template: Path | None = None, forwarding: bool = False) -> Iterator[LocalGuardrail]:
    """A fresh local account: the seed account, the stack's resources, and (by default)
    the setup function run once so the account is in the baseline state.

    `template`: another template file (default: the repository's template.yaml).
    `forwarding`: also create the forwarding StackSet's rules in every forwarded region (as
    the heartbeat reads them; events are routed through them either way)."""
    with local_aws():
        stack = Stack(account_id=ACCOUNT_ID, region=REGION, parameters=dict(parameters or {}),
                      path=template or TEMPLATE_PATH)
        guardrail = LocalGuardrail(stack)
        deploy_stack_resources(guardrail.stack, forwarding=forwarding)
        create_seed_account()
        if converge:
            setup = guardrail.invoke("SetupFunction", {})
            if setup.error or not setup.result.get("compliant"):
                raise RuntimeError(f"setup did not reach the baseline: {setup.error or setup.result}")
        yield guardrail


@contextlib.contextmanager
def inject_errors(errors: Mapping[str, str], *, times: int | None = None,
                  when: Callable[[Mapping[str, Any]], bool] | None = None) -> Iterator[list[str]]:
    """Make the named operations (e.g. {"CreateRole": "AccessDenied"}) fail with that AWS error code.

    `times`: fail only the first N matching calls (then let them through), e.g. throttling.
    `when(params)`: fail only calls whose parameters it accepts (e.g. one DynamoDB record's key).
    Yields the list of operations that were failed, in order.
    """
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    failed: list[str] = []
    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def failing(self: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation in errors and (times is None or len(failed) < times) and (when is None or when(params)):
            failed.append(operation)
            code = errors[operation]
            status = 400 if code != "ServiceUnavailable" else 503
            response: Any = {"Error": {"Code": code, "Message": f"injected {code} for {operation}"},
                             "ResponseMetadata": {"HTTPStatusCode": status}}
            raise ClientError(response, operation)
        return original(self, operation, params)

    BaseClient._make_api_call = failing  # type: ignore[method-assign,attr-defined]
    try:
        yield failed
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign,attr-defined]
