"""What the local account looks like, and how it compares with the baseline.

Read straight from the (moto) account with boto3, outside any recorded invocation, so the
numbers the demo prints are the account's, not what a handler said it did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from guardrail_cli.local import LocalGuardrail
from guardrail_core import baseline, iam_baseline
from guardrail_core.config import ADMINISTRATOR_ACCESS_ARN, Settings, load_settings


def settings_for(guardrail: LocalGuardrail) -> Settings:
    """The baseline's names and account as the setup function sees them (template + parameters)."""
    env = dict(guardrail.functions["SetupFunction"].environment)
    env.setdefault("AWS_REGION", guardrail.stack.region)
    return load_settings(env)


def _not_found(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchEntity", "TrailNotFoundException")


def _real_name(items: Sequence[Mapping[str, Any]], key: str, name: str) -> str | None:
    return next((str(i[key]) for i in items if str(i[key]).lower() == name.lower()), None)


def snapshot(guardrail: LocalGuardrail) -> dict[str, Any]:
    """The parts of the account the guardrail cares about, as plain data (JSON-ready)."""
    cfg = settings_for(guardrail)
    iam = boto3.client("iam", region_name=guardrail.stack.region)
    state: dict[str, Any] = {"account": guardrail.stack.account_id, "region": guardrail.stack.region}

    group_name = _real_name(iam.list_groups()["Groups"], "GroupName", cfg.admin_group)
    group: dict[str, Any] = {"name": group_name or cfg.admin_group, "exists": group_name is not None}
    if group_name:
        group["policies"] = sorted(p["PolicyName"] for p in
                                   iam.list_attached_group_policies(GroupName=group_name)["AttachedPolicies"])
        group["inline_policies"] = sorted(iam.list_group_policies(GroupName=group_name)["PolicyNames"])
        group["members"] = sorted(u["UserName"] for u in iam.get_group(GroupName=group_name)["Users"])
    state["group"] = group

    role_name = _real_name(iam.list_roles()["Roles"], "RoleName", cfg.admin_role)
    role: dict[str, Any] = {"name": role_name or cfg.admin_role, "exists": role_name is not None}
    if role_name:
        raw = iam.get_role(RoleName=role_name)["Role"]
        role["trust_requires_mfa"] = baseline.trust_requires_mfa(raw.get("AssumeRolePolicyDocument"), cfg)
        role["max_session_seconds"] = int(raw.get("MaxSessionDuration", 3600))
        role["policies"] = sorted(p["PolicyName"] for p in
                                  iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"])
        role["inline_policies"] = sorted(iam.list_role_policies(RoleName=role_name)["PolicyNames"])
    state["role"] = role

    policy: dict[str, Any] = {"name": cfg.assume_policy, "exists": False}
    try:
        meta = iam.get_policy(PolicyArn=cfg.assume_policy_arn)["Policy"]
        doc = iam.get_policy_version(PolicyArn=cfg.assume_policy_arn,
                                     VersionId=meta["DefaultVersionId"])["PolicyVersion"]["Document"]
        policy.update(exists=True, matches_baseline=baseline.same_document(doc, baseline.assume_policy_document(cfg)))
    except ClientError as exc:
        if not _not_found(exc):
            raise
    state["assume_policy"] = policy

    users: dict[str, Any] = {}
    for user in iam.list_users()["Users"]:
        name = user["UserName"]
        try:
            iam.get_login_profile(UserName=name)
            console = True
        except ClientError as exc:
            if not _not_found(exc):
                raise
            console = False
        users[name] = {
            "console_password": console,
            "mfa": bool(iam.list_mfa_devices(UserName=name)["MFADevices"]),
            "access_keys": len(iam.list_access_keys(UserName=name)["AccessKeyMetadata"]),
            "groups": sorted(g["GroupName"] for g in iam.list_groups_for_user(UserName=name)["Groups"]),
            "policies": sorted(p["PolicyName"] for p in
                               iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]),
        }
    state["users"] = users

    cloudtrail = boto3.client("cloudtrail", region_name=guardrail.stack.region)
    trails: dict[str, Any] = {}
    for trail in cloudtrail.describe_trails(includeShadowTrails=False)["trailList"]:
        status = cloudtrail.get_trail_status(Name=trail["TrailARN"])
        trails[trail["Name"]] = {"logging": bool(status.get("IsLogging")),
                                 "multi_region": bool(trail.get("IsMultiRegionTrail"))}
    state["trails"] = trails

    observed = iam_baseline.read(iam, cfg, iam_baseline.EVERYTHING)
    state["baseline_plan"] = baseline.describe(baseline.plan(observed, cfg))
    return state


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    actual: str
    note: str = ""  # what the guardrail does about it when it does not hold

    def to_json(self) -> dict[str, Any]:
        return {"check": self.what, "ok": self.ok, "actual": self.actual, "note": self.note}


def _names(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def checks(state: Mapping[str, Any], parameters: Mapping[str, str], quarantine_policy: str = "") -> list[Check]:
    """The baseline, item by item, against a snapshot. `quarantine_policy`: the name of the
    policy MfaMode=quarantine attaches to console users without MFA."""
    group, role, policy = state["group"], state["role"], state["assume_policy"]
    out = []
    if group["exists"]:
        only = group["policies"] == [policy["name"]] and not group["inline_policies"]
        out.append(Check(f"group {group['name']} holds only {policy['name']}", only,
                         f"policies: {_names(group['policies'])}; inline: {_names(group['inline_policies'])}"))
    else:
        out.append(Check(f"group {group['name']} exists", False, "missing"))
    out.append(Check(f"policy {policy['name']} allows only sts:AssumeRole on {role['name']}",
                     bool(policy.get("matches_baseline")),
                     "as in the baseline" if policy.get("matches_baseline") else
                     ("a different document" if policy["exists"] else "missing")))
    if role["exists"]:
        out.append(Check(f"role {role['name']} can be assumed only with MFA", role["trust_requires_mfa"],
                         "trust policy requires MFA" if role["trust_requires_mfa"] else "trust policy without MFA"))
        admin_name = ADMINISTRATOR_ACCESS_ARN.rsplit("/", 1)[1]
        out.append(Check(f"role {role['name']} has {admin_name}", admin_name in role["policies"],
                         f"policies: {_names(role['policies'])}; inline: {_names(role['inline_policies'])}"))
        seconds = int(parameters.get("AdminSessionSeconds", "3600"))
        out.append(Check(f"role {role['name']} sessions last {seconds // 60} minutes",
                         role["max_session_seconds"] == seconds, f"{role['max_session_seconds'] // 60} minutes"))
    else:
        out.append(Check(f"role {role['name']} exists", False, "missing"))
    logging = sorted(name for name, t in state["trails"].items() if t["logging"] and t["multi_region"])
    out.append(Check("a multi-region CloudTrail trail is logging", bool(logging),
                     ", ".join(f"{n}: {'logging' if t['logging'] else 'STOPPED'}" for n, t in state["trails"].items())
                     or "no trail"))
    mode = parameters.get("MfaMode", "notify")
    for name, user in sorted(state["users"].items()):
        if not user["console_password"]:
            continue
        note = ""
        if not user["mfa"] and quarantine_policy and quarantine_policy in user["policies"]:
            note = f"quarantined: {quarantine_policy} denies everything but enrolling MFA"
        elif not user["mfa"]:
            note = f"MfaMode={mode}: the owner was told; nothing restricts this user until they enrol MFA"
        out.append(Check(f"console user {name} has MFA", user["mfa"], "MFA" if user["mfa"] else "no MFA", note))
    return out


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every leaf that differs between two snapshots: {"what": "users.phoebe.mfa", "before", "after"}."""
    out: list[dict[str, Any]] = []

    def walk(prefix: str, a: Any, b: Any) -> None:
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b), key=str):
                walk(f"{prefix}.{key}" if prefix else str(key), a.get(key), b.get(key))
        elif a != b:
            out.append({"what": prefix, "before": a, "after": b})

    walk("", dict(before), dict(after))
    return out
