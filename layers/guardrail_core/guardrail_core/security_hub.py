"""Findings into AWS Security Hub (optional: stack parameter SecurityHubFindings=true).

Each finding becomes one AWS Security Finding Format (ASFF) record, imported with
BatchImportFindings into the account's own "default" product
(`arn:<partition>:securityhub:<region>:<account>:product/<account>/default`, the ARN Security
Hub gives findings an account imports for itself). The record's Id is stable per finding
(finding type + CloudTrail event id, or + day for scheduled runs), so a redelivered event
updates its record instead of adding a second one (Security Hub User Guide, "Using
BatchImportFindings to create and update findings"). Field limits follow the ASFF reference
("Required top-level attributes in ASFF"); schemas/asff-finding.schema.json writes them down.

Import is best effort: the email is the alert; a Security Hub that is not enabled, or a refused
call, is logged and counted (metric SecurityHubImportFailed), never retried into a second email.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from guardrail_core.alerts import finding_key
from guardrail_core.config import Settings
from guardrail_core.findings import Finding, Severity

SCHEMA_VERSION = "2018-10-08"
BATCH = 100  # BatchImportFindings takes at most 100 findings per call
IMPORT_ACTIONS = frozenset({"securityhub:BatchImportFindings"})  # every function, with SecurityHubFindings=true

_LABELS = {Severity.INFO: "INFORMATIONAL", Severity.LOW: "LOW", Severity.MEDIUM: "MEDIUM",
           Severity.HIGH: "HIGH", Severity.CRITICAL: "CRITICAL"}
_BEST_PRACTICE = "Software and Configuration Checks/AWS Security Best Practices"
_TYPES = (  # finding-type prefix -> ASFF type (namespace/category[/classifier])
    ("root-", "Unusual Behaviors/User"),
    ("attempt", "Unusual Behaviors/User"),
    ("trail-", "TTPs/Defense Evasion"),
    ("guardrail-tamper", "TTPs/Defense Evasion"),
    ("guardrail-stack", "TTPs/Defense Evasion"),
    ("guardrail-", "Software and Configuration Checks"),
)
_RESOURCE_TYPES = ((":role/", "AwsIamRole"), (":user/", "AwsIamUser"), (":group/", "AwsIamGroup"),
                   (":policy/", "AwsIamPolicy"), (":trail/", "AwsCloudTrailTrail"))


def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def product_arn(settings: Settings) -> str:
    """The account's own product ARN: findings an account imports for itself go there."""
    return (f"arn:{partition(settings.region)}:securityhub:{settings.region}:{settings.account_id}:"
            f"product/{settings.account_id}/default")


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _type(finding_id: str) -> str:
    return next((kind for prefix, kind in _TYPES if finding_id.startswith(prefix)), _BEST_PRACTICE)


def _resources(finding: Finding, settings: Settings) -> list[dict[str, Any]]:
    region, part = settings.region, partition(settings.region)
    out = [{"Type": "AwsAccount", "Id": f"AWS::::Account:{finding.account_id or settings.account_id}",
            "Partition": part, "Region": region}]
    for action in finding.actions:
        target = action.target
        if not target.startswith("arn:") or any(r["Id"] == target for r in out):
            continue
        kind = next((k for marker, k in _RESOURCE_TYPES if marker in target), "Other")
        out.append({"Type": kind, "Id": target, "Partition": part, "Region": region})
    return out[:32]


def asff(finding: Finding, settings: Settings) -> dict[str, Any]:
    """One ASFF record for the finding (pure)."""
    account = finding.account_id or settings.account_id
    created = finding.event_time or finding.detected_at
    record: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Id": _clip(f"account-guardrail/{account}/{finding_key(finding)}", 512),
        "ProductArn": product_arn(settings),
        "GeneratorId": f"account-guardrail/{finding.id}",
        "AwsAccountId": account,
        "Types": [_type(finding.id)],
        "CreatedAt": created,
        "UpdatedAt": max(finding.detected_at, created),
        "Severity": {"Label": _LABELS[finding.severity]},
        "Title": _clip(finding.headline, 256),
        "Description": _clip(finding.what_happened or finding.summary, 1024),
        "Resources": _resources(finding, settings),
        "ProductFields": {"account-guardrail/FindingType": finding.id,
                          "account-guardrail/Outcome": finding.outcome or "reported",
                          "account-guardrail/Mode": finding.mode or "notify"},
        "RecordState": "ACTIVE",
        # Severity and Types may be updated by the provider only through these (BatchImportFindings).
        "FindingProviderFields": {"Severity": {"Label": _LABELS[finding.severity]}, "Types": [_type(finding.id)]},
    }
    if finding.next_steps:
        recommendation: dict[str, str] = {"Text": _clip(finding.next_steps[0], 512)}
        if finding.links:
            recommendation["Url"] = finding.links[0]
        record["Remediation"] = {"Recommendation": recommendation}
    if finding.event_id and finding.links:
        record["SourceUrl"] = finding.links[0]
    return record


def import_findings(securityhub: Any, records: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """BatchImportFindings in batches of 100: (imported, error lines for the failed ones)."""
    imported, errors = 0, []
    for start in range(0, len(records), BATCH):
        response = securityhub.batch_import_findings(Findings=records[start:start + BATCH])
        imported += int(response.get("SuccessCount", 0))
        errors += [f"{f.get('Id', '?')}: {f.get('ErrorCode', '')} {f.get('ErrorMessage', '')}".strip()
                   for f in response.get("FailedFindings", [])]
    return imported, errors


def records_from_alerts(messages: list[dict[str, str]], settings: Settings) -> list[dict[str, Any]]:
    """ASFF records for the sns.publish arguments the runtime sends (their machine JSON, read back):
    the same finding, rendered once, whether it is published now or re-sent on a redelivery."""
    records = []
    for message in messages:
        try:
            body = json.loads(message["Message"])
            data = json.loads(body["default"])["guardrail_finding"]
            records.append(asff(Finding.from_dict(data), settings))
        except (KeyError, TypeError, ValueError) as exc:  # not one of ours: nothing to import
            from guardrail_core.runtime import logger

            logger.warning("alert not imported into Security Hub", extra={"error": repr(exc)[:300]})
    return records


def import_alerts(messages: list[dict[str, str]], settings: Settings,
                  count: Callable[[str], None] | None = None) -> int:
    """Best effort, never raises: with SecurityHubFindings=true, import each alert's finding
    (BatchImportFindings); a redelivery imports the same Id again, so Security Hub updates the
    record instead of adding one. See import_records."""
    if not settings.security_hub or not messages:
        return 0
    return import_records(records_from_alerts(messages, settings), settings, count)


def import_records(records: list[dict[str, Any]], settings: Settings,
                   count: Callable[[str], None] | None = None) -> int:
    """Best effort, never raises (SecurityHubFindings=true only): failures are logged and counted
    (`count("SecurityHubImportFailed")`, by default the runtime's metric): the email is the alert.
    Returns how many records Security Hub accepted."""
    if not settings.security_hub or not records:
        return 0
    from guardrail_core.aws import client, error_code
    from guardrail_core.runtime import logger, metrics

    def counted(name: str) -> None:
        if count is not None:
            count(name)
        else:
            from aws_lambda_powertools.metrics import MetricUnit

            metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)

    try:
        imported, errors = import_findings(client("securityhub"), records)
    except Exception as exc:  # Security Hub not enabled, AccessDenied, throttled past the client's retries
        logger.warning("Security Hub import failed", extra={"error": f"{error_code(exc)}: {exc}"})
        counted("SecurityHubImportFailed")
        return 0
    if errors:
        logger.warning("Security Hub refused findings", extra={"errors": errors[:10]})
        counted("SecurityHubImportFailed")
    return imported
