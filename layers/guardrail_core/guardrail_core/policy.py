"""Does an IAM policy document give admin rights, or a way to get them? One pure, table-driven analyzer.

`analyze(document) -> PolicyVerdict` judges an identity-based policy document as IAM or
CloudTrail gives it (a dict, a JSON string, or a URL-encoded JSON string, as
`GetUserPolicy`/`GetPolicyVersion` return it) and answers one of:

- ``admin``: allows every action on every resource (``*``, ``*:*``, or an ``Allow`` with
  ``NotAction``/``NotResource`` that leaves every probed service and the escalation actions in);
- ``escalation``: not admin, but allows, on every resource of their kind, the actions of at least
  one known privilege-escalation method (``ESCALATION_METHODS``): the holder can grant itself or
  others more (attach or put a policy, a new policy version, a trust policy rewritten, a user
  added to a group, a password or access key made for another user, a role passed to a new
  compute resource...);
- ``deny-only``: has statements, and none of them allows anything;
- ``ordinary``: anything else (it allows something, nothing of the above).

Semantics follow the IAM JSON policy reference (docs.aws.amazon.com/IAM/latest/UserGuide/
reference_policies_elements_*.html): action names are case-insensitive and match with ``*``
(any run of characters) and ``?`` (one character); ``NotAction``/``NotResource`` are the
complement of their set, never "not the literal string"; ``Effect`` values are matched here
ignoring case (IAM itself refuses anything but ``Allow``/``Deny`` when a policy is written, so
this only matters for hostile or hand-made input). Wildcards are expanded against a catalogue
(every action named by an escalation method, plus one probe action per major service), never
compared as strings: ``iam:Put*``, ``iam:*Policy`` and ``NotAction: s3:*`` all expand correctly.

Conservative by design, because a missed grant costs more than a reported one:
- a condition never makes an ``Allow`` go away: the statement is reported with its condition
  quoted (``PolicyVerdict.condition``); the deciding statement is an unconditional one when
  there is one;
- a ``Deny`` takes rights away only when it has no condition and covers every resource: a
  conditional Deny (e.g. "deny unless MFA") may not apply, so the grant is still reported;
- a resource counts as "every resource" when it is ``*``, ``NotResource`` (everything but a few),
  or a pattern whose resource part is only wildcards (``arn:aws:iam::*:user/*``); a named
  resource or a prefix (``role/app-*``) is scoped and does not count.

Hostile input (deep nesting, huge documents, odd types) gives ``ordinary`` with `error` set,
never an exception: documents past `MAX_DEPTH` levels or `MAX_CHARS` characters are not parsed.
Nothing here calls AWS; the module imports only the standard library (cold start).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import unquote

VerdictKind = Literal["admin", "escalation", "deny-only", "ordinary"]
ADMIN: VerdictKind = "admin"
ESCALATION: VerdictKind = "escalation"
DENY_ONLY: VerdictKind = "deny-only"
ORDINARY: VerdictKind = "ordinary"

# IAM's own limits: an inline policy is at most 10,240 characters (roles) and a managed one
# 6,144 without whitespace; 131,072 leaves room for pretty-printed or URL-encoded copies.
MAX_CHARS = 131_072
MAX_DEPTH = 32  # a real policy document nests 5 or 6 levels (Condition operator -> key -> values)
MAX_STATEMENTS = 1_000


@dataclass(frozen=True)
class Method:
    """One privilege-escalation method: every action in `actions` is needed on every resource."""

    name: str
    actions: tuple[str, ...]
    how: str  # what the holder can do with it, in plain words


# The escalation methods: Rhino Security Labs, "AWS IAM Privilege Escalation - Methods and
# Mitigation" (Spencer Gietzen, 2018; rhinosecuritylabs.com/aws/aws-privilege-escalation-methods-
# mitigation/), in the grouping and naming of salesforce/cloudsplaining (shared/constants.py,
# PRIVILEGE_ESCALATION_METHODS) and the IAM edges of nccgroup/PMapper. Left out on purpose: the
# methods that need an existing resource already holding a privileged role (lambda:UpdateFunctionCode,
# glue:UpdateDevEndpoint, ...): whether they escalate depends on the account's resources, not on the
# document, and counting them would make every developer policy (and PowerUserAccess) "escalation".
# Adding a method is adding a row.
ESCALATION_METHODS: tuple[Method, ...] = (
    # IAM permissions on other users
    Method("CreateAccessKey", ("iam:CreateAccessKey",), "create an access key for any user"),
    Method("CreateLoginProfile", ("iam:CreateLoginProfile",), "give any user a console password"),
    Method("UpdateLoginProfile", ("iam:UpdateLoginProfile",), "change any user's console password"),
    Method("AddUserToGroup", ("iam:AddUserToGroup",), "add any user, itself included, to any group"),
    # Permissions on policies
    Method("CreateNewPolicyVersion", ("iam:CreatePolicyVersion",), "rewrite any customer-managed policy"),
    Method("SetExistingDefaultPolicyVersion", ("iam:SetDefaultPolicyVersion",),
           "make an older, broader version of a policy the one in force"),
    Method("AttachUserPolicy", ("iam:AttachUserPolicy",), "attach any policy (AdministratorAccess) to a user"),
    Method("AttachGroupPolicy", ("iam:AttachGroupPolicy",), "attach any policy to a group"),
    Method("AttachRolePolicy", ("iam:AttachRolePolicy",), "attach any policy to a role"),
    Method("PutUserPolicy", ("iam:PutUserPolicy",), "write any inline policy on a user"),
    Method("PutGroupPolicy", ("iam:PutGroupPolicy",), "write any inline policy on a group"),
    Method("PutRolePolicy", ("iam:PutRolePolicy",), "write any inline policy on a role"),
    Method("DeleteUserPermissionsBoundary", ("iam:DeleteUserPermissionsBoundary",),
           "lift the permissions boundary that limits a user"),
    Method("DeleteRolePermissionsBoundary", ("iam:DeleteRolePermissionsBoundary",),
           "lift the permissions boundary that limits a role"),
    # Updating an AssumeRole policy
    Method("UpdateRolePolicyToAssumeIt", ("iam:UpdateAssumeRolePolicy", "sts:AssumeRole"),
           "rewrite any role's trust policy to let itself in, then assume it"),
    # iam:PassRole with a service that runs code as the passed role
    Method("CreateEC2WithExistingIP", ("iam:PassRole", "ec2:RunInstances"),
           "start an instance with any role and read its credentials"),
    Method("PassExistingRoleToNewLambdaThenInvoke",
           ("iam:PassRole", "lambda:CreateFunction", "lambda:InvokeFunction"),
           "create and run a Lambda function with any role"),
    Method("PassExistingRoleToNewLambdaThenTriggerWithExistingDynamo",
           ("iam:PassRole", "lambda:CreateFunction", "lambda:CreateEventSourceMapping"),
           "create a Lambda function with any role and trigger it"),
    Method("PassExistingRoleToNewGlueDevEndpoint", ("iam:PassRole", "glue:CreateDevEndpoint"),
           "create a Glue endpoint with any role"),
    Method("PassExistingRoleToCloudFormation", ("iam:PassRole", "cloudformation:CreateStack"),
           "create a CloudFormation stack that runs as any role"),
    Method("PassExistingRoleToNewDataPipeline", ("iam:PassRole", "datapipeline:CreatePipeline"),
           "create a Data Pipeline that runs as any role"),
    Method("PassExistingRoleToNewCodeBuildProject", ("iam:PassRole", "codebuild:CreateProject"),
           "create a CodeBuild project that runs as any role"),
    Method("PassExistingRoleToNewSageMakerNotebook", ("iam:PassRole", "sagemaker:CreateNotebookInstance"),
           "create a SageMaker notebook that runs as any role"),
    Method("PassExistingRoleToNewEcsTask", ("iam:PassRole", "ecs:RunTask"),
           "run a container task as any role"),
)

# AWS-managed policies whose default version `analyze` finds admin or escalation, by name (the
# ARN is arn:<partition>:iam::aws:policy/<name>). Source: the AWS Managed Policy Reference
# (docs.aws.amazon.com/aws-managed-policy/latest/reference/<name>.html); the documents checked
# are kept in tests/corpus/managed-policies/, and a test holds this table, those documents and
# the template's AdminAccessChange pattern equal. PowerUserAccess was checked and is not here:
# its NotAction leaves out iam:* (no PassRole, no policy writes).
AWS_MANAGED_GRANTS: Mapping[str, VerdictKind] = {
    "AdministratorAccess": "admin",
    "IAMFullAccess": "escalation",
    "AWSLambda_FullAccess": "escalation",
}
# The escalation methods each listed policy allows, as `analyze` finds them in its document (tested).
_IAM_METHODS = ("CreateAccessKey", "CreateLoginProfile", "UpdateLoginProfile", "AddUserToGroup",
                "CreateNewPolicyVersion", "SetExistingDefaultPolicyVersion", "AttachUserPolicy", "AttachGroupPolicy",
                "AttachRolePolicy", "PutUserPolicy", "PutGroupPolicy", "PutRolePolicy",
                "DeleteUserPermissionsBoundary", "DeleteRolePermissionsBoundary")
AWS_MANAGED_METHODS: Mapping[str, tuple[str, ...]] = {
    "IAMFullAccess": _IAM_METHODS,
    "AWSLambda_FullAccess": ("PassExistingRoleToNewLambdaThenInvoke",
                             "PassExistingRoleToNewLambdaThenTriggerWithExistingDynamo"),
}

# One action per major service (and the account-level ones): a statement that allows all of
# these and every escalation action on every resource is treated as "every action".
PROBE_ACTIONS: tuple[str, ...] = (
    "s3:GetObject", "s3:PutBucketPolicy", "ec2:TerminateInstances", "kms:Decrypt", "kms:ScheduleKeyDeletion",
    "dynamodb:DeleteTable", "rds:DeleteDBInstance", "secretsmanager:GetSecretValue", "ssm:GetParameter",
    "cloudtrail:StopLogging", "organizations:LeaveOrganization", "account:PutAlternateContact",
    "sts:AssumeRole", "sso:CreatePermissionSet", "route53:ChangeResourceRecordSets", "logs:DeleteLogGroup",
    "sns:Publish", "events:PutRule", "iam:CreateUser", "iam:DeleteRole", "billing:ModifyBillingPreferences",
)
CATALOGUE: tuple[str, ...] = tuple(sorted(
    {a for m in ESCALATION_METHODS for a in m.actions} | set(PROBE_ACTIONS), key=str.lower))


@dataclass(frozen=True)
class PolicyVerdict:
    """The analyzer's answer for one document.

    `statement` is the statement that decides the verdict (the first Allow that gives admin or
    an escalation method; {} for deny-only and ordinary); `condition` its Condition block as
    compact JSON ('' when unconditional); `methods` the escalation methods the document allows
    (empty for admin, where they are implied); `error` why the document could not be read
    ('' when it could).
    """

    kind: VerdictKind
    statement: Mapping[str, Any] = field(default_factory=dict)
    condition: str = ""
    methods: tuple[str, ...] = ()
    error: str = ""

    @property
    def grants(self) -> bool:
        """Admin or escalation: a holder without MFA has (or can take) more than the baseline allows."""
        return self.kind in (ADMIN, ESCALATION)

    @property
    def direct(self) -> bool:
        """Admin, or an escalation method that needs no role passed to a service (HIGH, not MEDIUM)."""
        return self.kind == ADMIN or any(
            "iam:PassRole" not in m.actions for m in ESCALATION_METHODS if m.name in self.methods)

    @property
    def sid(self) -> str:
        return str(self.statement.get("Sid", "")) if self.statement else ""

    def quote(self, limit: int = 400) -> str:
        """The deciding statement as compact JSON, cut at `limit` characters (for an email)."""
        if not self.statement:
            return ""
        text = json.dumps(self.statement, separators=(",", ":"), sort_keys=True, default=str)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def describe(self) -> str:
        """One sentence for a person: what the document allows."""
        if self.error:
            return f"the document could not be read ({self.error})"
        where = f" (statement {self.sid})" if self.sid else ""
        cond = f", under the condition {self.condition}" if self.condition else ""
        if self.kind == ADMIN:
            return f"it allows every action on every resource{where}{cond}"
        if self.kind == ESCALATION:
            hows = [m.how for m in ESCALATION_METHODS if m.name in self.methods][:3]
            return f"it lets its holder {'; '.join(hows)}{where}{cond}: a way to take admin rights"
        if self.kind == DENY_ONLY:
            return "it only denies: it gives nobody any right"
        return "it allows neither every action nor a known way to take admin rights"


# --- reading ------------------------------------------------------------------------------


class DocumentError(ValueError):
    """The document is not a readable policy (too big, too deep, not JSON, not an object)."""


def load(document: Any) -> dict[str, Any]:
    """A policy document as a dict, from a dict, a JSON string, or a URL-encoded JSON string.

    Raises DocumentError for anything else, for strings over MAX_CHARS and nesting over MAX_DEPTH.
    GetUserPolicy, GetGroupPolicy, GetRolePolicy and GetPolicyVersion return URL-encoded JSON
    (RFC 3986; boto3 decodes it, other SDKs and the CLI's --query may not); CloudTrail gives JSON.
    """
    if isinstance(document, Mapping):
        _check_depth(document)
        return dict(document)
    if isinstance(document, bytes):
        document = document.decode("utf-8", "replace")
    if not isinstance(document, str):
        raise DocumentError(f"a policy document is JSON text or an object, not {type(document).__name__}")
    if len(document) > MAX_CHARS:
        raise DocumentError(f"{len(document)} characters, over the {MAX_CHARS} this analyzer reads")
    text = document.strip()
    if len(text) > MAX_CHARS:
        raise DocumentError(f"{len(text)} characters, over the {MAX_CHARS} this analyzer reads")
    if text[:1] not in ("{", "["):
        text = unquote(text).strip()  # URL-encoded JSON ("%7B%22Version%22...")
    _check_text_depth(text)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DocumentError(f"not JSON: {str(exc)[:80]}") from None
    if not isinstance(value, dict):
        raise DocumentError("the JSON is not an object")
    return value


def limits_problem(document: Any) -> str:
    """Why a document is past this analyzer's limits ('' when it is not), without parsing it.

    The limits are IAM's own, so a document past them is not one IAM accepted: IAM refuses a
    policy document longer than 131,072 characters (`PolicyDocument`, "Length Constraints:
    Minimum length of 1. Maximum length of 131072", IAM API Reference, PutUserPolicy /
    CreatePolicyVersion / UpdateAssumeRolePolicy), and the IAM JSON policy grammar nests a handful
    of levels (IAM User Guide, "Grammar of the IAM JSON policy language"). Checked by counting
    brackets (text) or walking at most MAX_DEPTH levels (objects): a document nested 5,000 deep
    costs one pass over its characters and never reaches a recursive parser. Used by
    `events.parse_event` to reject such a document in an event as malformed.
    """
    try:
        if isinstance(document, (Mapping, list)):
            _check_depth(document)
            return ""
        if isinstance(document, bytes):
            document = document.decode("utf-8", "replace")
        if not isinstance(document, str):
            return ""
        if len(document) > MAX_CHARS:
            return f"{len(document)} characters, over the {MAX_CHARS} IAM accepts"
        text = document.strip()
        _check_text_depth(text if text[:1] in ("{", "[") else unquote(text))
    except DocumentError as exc:
        return str(exc)
    return ""


def _check_text_depth(text: str) -> None:
    """Refuse deep nesting before json.loads recurses into it (a cheap bracket count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    raise DocumentError(f"nested more than {MAX_DEPTH} levels deep")
        elif ch in "}]":
            depth -= 1


def _check_depth(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise DocumentError(f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, Mapping):
        for item in value.values():
            _check_depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_depth(item, depth + 1)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _key(stmt: Mapping[str, Any], name: str) -> Any:
    """An element by name: IAM element names are case-sensitive, but hostile input is read leniently."""
    if name in stmt:
        return stmt[name]
    lowered = name.lower()
    return next((v for k, v in stmt.items() if isinstance(k, str) and k.lower() == lowered), None)


def _has(stmt: Mapping[str, Any], name: str) -> bool:
    return _key(stmt, name) is not None


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The document's statements (a single statement object counts as a list of one)."""
    return [s for s in _as_list(_key(document, "Statement")) if isinstance(s, Mapping)][:MAX_STATEMENTS]


def effect(stmt: Mapping[str, Any]) -> str:
    """'allow', 'deny', or '' for anything else (IAM refuses other values when writing)."""
    value = str(_key(stmt, "Effect") or "").strip().lower()
    return value if value in ("allow", "deny") else ""


# --- matching -----------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _pattern(text: str) -> re.Pattern[str]:
    """An IAM wildcard ('*' any run, '?' one character) as a case-insensitive regex."""
    parts = ["." + "*" if c == "*" else "." if c == "?" else re.escape(c) for c in text]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def action_matches(pattern: str, action: str) -> bool:
    """Does an Action entry (e.g. 'iam:Put*', '*', 'IAM:attachuserpolicy') cover `action`?"""
    return bool(_pattern(pattern.strip()).fullmatch(action))


def _strings(value: Any) -> list[str]:
    return [v for v in _as_list(value) if isinstance(v, str)]


def allowed_actions(stmt: Mapping[str, Any]) -> frozenset[str]:
    """The catalogue actions a statement's Action/NotAction covers (ignores Effect and Resource)."""
    if _has(stmt, "NotAction"):
        excluded = _strings(_key(stmt, "NotAction"))
        return frozenset(a for a in CATALOGUE if not any(action_matches(p, a) for p in excluded))
    patterns = _strings(_key(stmt, "Action"))
    return frozenset(a for a in CATALOGUE if any(action_matches(p, a) for p in patterns))


_WILD_ONLY = re.compile(r"^[*?]+$")


def _broad_resource(resource: str) -> bool:
    """'*', or an ARN whose resource part is wildcards only ('arn:aws:iam::*:role/*', 'arn:*:iam::1:*')."""
    resource = resource.strip()
    if _WILD_ONLY.match(resource):
        return True
    if not resource.lower().startswith("arn:"):
        return False
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return bool(_WILD_ONLY.match(parts[-1]))
    service, tail = parts[2], parts[5]
    if _WILD_ONLY.match(tail):
        return True
    if service.lower() == "s3":  # S3 ARNs have no resource type: 'bucket/*' is one bucket's objects
        return False
    _, _, name = tail.partition("/")  # 'user/*', 'role/*', 'instance/*' (any path: '*' covers it)
    return bool(name) and bool(_WILD_ONLY.match(name))


def covers_every_resource(stmt: Mapping[str, Any]) -> bool:
    """Resource '*' (or wildcards-only resource part), or NotResource (everything but a few)."""
    if _has(stmt, "NotResource"):
        return True
    return any(_broad_resource(r) for r in _strings(_key(stmt, "Resource")))


def _condition(stmt: Mapping[str, Any]) -> str:
    cond = _key(stmt, "Condition")
    if not cond:
        return ""
    return json.dumps(cond, separators=(",", ":"), sort_keys=True, default=str)


# --- the verdict --------------------------------------------------------------------------


def analyze(document: Any) -> PolicyVerdict:
    """The verdict on one identity-based policy document (see the module docstring)."""
    try:
        doc = load(document)
    except DocumentError as exc:
        return PolicyVerdict(ORDINARY, error=str(exc))
    stmts = statements(doc)
    # Unconditional Denies on every resource take their actions away; any other Deny may not apply.
    denied: set[str] = set()
    for stmt in stmts:
        if effect(stmt) == "deny" and not _key(stmt, "Condition") and covers_every_resource(stmt) \
                and not _has(stmt, "NotResource"):
            denied |= allowed_actions(stmt)
    allows = [s for s in stmts if effect(s) == "allow"]
    if not allows:
        return PolicyVerdict(DENY_ONLY if any(effect(s) == "deny" for s in stmts) else ORDINARY)
    # Unconditional statements first: the one that decides is the one that needs no condition.
    ranked = sorted(allows, key=lambda s: bool(_key(s, "Condition")))
    granted: dict[str, Mapping[str, Any]] = {}  # catalogue action -> first statement granting it broadly
    for stmt in ranked:
        if not covers_every_resource(stmt):
            continue
        for action in allowed_actions(stmt) - denied:
            granted.setdefault(action, stmt)
    if all(a in granted for a in CATALOGUE):
        decider = next((s for s in ranked if covers_every_resource(s) and
                        allowed_actions(s) >= set(CATALOGUE) - denied), granted[CATALOGUE[0]])
        return PolicyVerdict(ADMIN, decider, _condition(decider))
    methods = [m for m in ESCALATION_METHODS if all(a in granted for a in m.actions)]
    if methods:
        # The deciding statement: of a method needing no condition if there is one; within the
        # method, the statement whose condition it depends on (that is the one to quote).
        def needed(method: Method) -> list[Mapping[str, Any]]:
            return sorted((granted[a] for a in method.actions), key=lambda s: not _key(s, "Condition"))

        decider = min((needed(m)[0] for m in methods), key=lambda s: bool(_key(s, "Condition")))
        return PolicyVerdict(ESCALATION, decider, _condition(decider), tuple(m.name for m in methods))
    return PolicyVerdict(ORDINARY)


def managed_verdict(arn: str) -> VerdictKind | None:
    """The verdict of an AWS-managed policy from `AWS_MANAGED_GRANTS` (None: not listed, or not AWS-managed)."""
    name = _managed_name(arn)
    return AWS_MANAGED_GRANTS[name] if name else None


def managed_policy_verdict(arn: str) -> PolicyVerdict:
    """An AWS-managed policy's verdict, with its methods, from the list (ordinary when not listed)."""
    name = _managed_name(arn)
    if not name:
        return PolicyVerdict(ORDINARY)
    return PolicyVerdict(AWS_MANAGED_GRANTS[name], methods=AWS_MANAGED_METHODS.get(name, ()))


def _managed_name(arn: str) -> str:
    prefix, _, name = arn.partition(":iam::aws:policy/")
    if not prefix.lower().startswith("arn:aws") or not name:
        return ""
    lowered = name.lower()  # AWS-managed names are unique with their path ("job-function/Billing")
    return next((key for key in AWS_MANAGED_GRANTS if key.lower() == lowered), "")


def worst(verdicts: Iterable[PolicyVerdict]) -> PolicyVerdict:
    """The most serious of several verdicts (admin > escalation > ordinary > deny-only)."""
    order = {ADMIN: 0, ESCALATION: 1, ORDINARY: 2, DENY_ONLY: 3}
    found = sorted(verdicts, key=lambda v: order[v.kind])
    return found[0] if found else PolicyVerdict(ORDINARY)
