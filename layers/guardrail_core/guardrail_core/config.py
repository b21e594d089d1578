"""Settings every function reads from its environment (set by template.yaml).

One frozen object per container: the environment does not change while a
container lives, so parsing it once keeps the hot path free of work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

REMEDIATE = "remediate"
NOTIFY = "notify"
QUARANTINE = "quarantine"

IAM_HOME_REGION = "us-east-1"  # IAM (a global service) records its events here only
ADMINISTRATOR_ACCESS_ARN = "arn:aws:iam::aws:policy/AdministratorAccess"


def _csv(value: str | None) -> frozenset[str]:
    """A comma-separated list, trimmed, empties dropped, compared case-insensitively."""
    return frozenset(part.strip().lower() for part in (value or "").split(",") if part.strip())


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "yes", "1", "on"}


@dataclass(frozen=True)
class Settings:
    account_id: str
    region: str = IAM_HOME_REGION
    stack_name: str = "account-guardrail"
    alert_topic_arn: str = ""
    admin_group: str = "administrators"
    admin_role: str = "admin-mfa"
    assume_policy: str = "assume-admin-role"
    session_seconds: int = 3600
    mode: str = NOTIFY
    kill_switch: bool = False
    # Lower-cased ARNs: IAM names are case-insensitive, so comparisons must be too.
    exempt_principals: frozenset[str] = field(default_factory=frozenset)
    guardrail_roles: frozenset[str] = field(default_factory=frozenset)
    # Lower-cased names of the stack's own functions: Lambda names a function's role session
    # after the function, so a guardrail role's session with any other name is not the guardrail.
    guardrail_functions: frozenset[str] = field(default_factory=frozenset)
    idempotency_table: str = ""
    detach_other_admin: bool = False
    mfa_grace_hours: int = 24
    quarantine_policy_arn: str = ""
    notify_when_clean: bool = False
    own_resource_names: frozenset[str] = field(default_factory=frozenset)
    alert_email: str = ""  # the owner's address, subscribed to the alert topic
    alert_key_arn: str = ""  # the KMS key that encrypts the alert topic
    # Regions whose sign-in, root, trail and tamper events are forwarded to this one (template:
    # ForwardedRegions + ForwardedOptInRegions).
    forwarded_regions: frozenset[str] = field(default_factory=frozenset)
    security_hub: bool = False  # also import each finding into Security Hub (SecurityHubFindings=true)

    @property
    def remediation_enabled(self) -> bool:
        """True when this function may write: its mode allows it and the kill switch is off."""
        return self.mode in (REMEDIATE, QUARANTINE) and not self.kill_switch

    @property
    def partition(self) -> str:
        return "aws-cn" if self.region.startswith("cn-") else (
            "aws-us-gov" if self.region.startswith("us-gov-") else "aws"
        )

    def iam_arn(self, kind: str, name: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:{kind}/{name}"

    @property
    def admin_group_arn(self) -> str:
        return self.iam_arn("group", self.admin_group)

    @property
    def admin_role_arn(self) -> str:
        return self.iam_arn("role", self.admin_role)

    @property
    def assume_policy_arn(self) -> str:
        return self.iam_arn("policy", self.assume_policy)

    def is_exempt(self, *arns: str | None) -> bool:
        return any(arn and arn.lower() in self.exempt_principals for arn in arns)

    def is_guardrail(self, *arns: str | None) -> bool:
        return any(arn and arn.lower() in self.guardrail_roles for arn in arns)

    def is_guardrail_role_name(self, role: str) -> bool:
        """A role named like one of the guardrail's own (path-insensitive, case-insensitive)."""
        name = role.rsplit("/", 1)[-1].lower()
        return bool(name) and any(arn.rsplit("/", 1)[-1] == name for arn in self.guardrail_roles)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or IAM_HOME_REGION
    return Settings(
        account_id=env.get("ACCOUNT_ID", ""),
        region=region,
        stack_name=env.get("STACK_NAME", "account-guardrail"),
        alert_topic_arn=env.get("ALERT_TOPIC_ARN", ""),
        admin_group=env.get("ADMIN_GROUP_NAME", "administrators"),
        admin_role=env.get("ADMIN_ROLE_NAME", "admin-mfa"),
        assume_policy=env.get("ASSUME_POLICY_NAME", "assume-admin-role"),
        session_seconds=int(env.get("ADMIN_SESSION_SECONDS", "3600")),
        mode=env.get("MODE", NOTIFY).strip().lower(),
        kill_switch=_flag(env.get("KILL_SWITCH")),
        exempt_principals=_csv(env.get("EXEMPT_PRINCIPAL_ARNS")),
        guardrail_roles=_csv(env.get("GUARDRAIL_ROLE_ARNS")),
        guardrail_functions=_csv(env.get("GUARDRAIL_FUNCTION_NAMES")),
        idempotency_table=env.get("IDEMPOTENCY_TABLE", ""),
        detach_other_admin=_flag(env.get("DETACH_OTHER_ADMIN")),
        mfa_grace_hours=int(env.get("MFA_GRACE_HOURS", "24")),
        quarantine_policy_arn=env.get("QUARANTINE_POLICY_ARN", ""),
        notify_when_clean=_flag(env.get("NOTIFY_WHEN_CLEAN")),
        own_resource_names=_csv(env.get("OWN_RESOURCE_NAMES")),
        alert_email=env.get("ALERT_EMAIL", "").strip(),
        alert_key_arn=env.get("ALERT_KEY_ARN", "").strip(),
        forwarded_regions=_csv(env.get("FORWARDED_REGIONS")),
        security_hub=_flag(env.get("SECURITY_HUB_FINDINGS")),
    )
