"""Cloud Custodian's cloudtrail-mode policies, run in-process on a local account, for `make bench`.

Runs in its own virtualenv (.venv-c7n: c7n pins boto3) as a child of bench/run.py, which
drives it one run at a time over stdin/stdout (JSON lines), so that the guardrail's runs and
Custodian's are interleaved and a burst of load from elsewhere hits both alike:

    {"op": "open", "scenario": "admin-policy-attached-to-group.json"}  -> {"ok": true, ...}
    {"op": "run", "latency": 0.025}  -> {"ok": true, "calls": [[name, kind, start_ms, end_ms]], ...}
    {"op": "close"}

Each "open" is a new account and a new Lambda container: the account holds what the guardrail's
baseline holds (group `administrators` with `assume-admin-role`, role `admin-mfa` with
AdministratorAccess, member phoebe with MFA, bob without), plus the drift the event records,
re-made before every run (guardrail_cli.apply, as for the guardrail). The policy is invoked
exactly as a deployed Custodian Lambda invokes it: `c7n.handler.dispatch_event(event, context)`
with a `config.json` in the working directory (what `custodian run` packages; the account id
comes from its execution options, as `custodian run` writes them). The first invocation
(cold: it loads the policy and the resource types) is not timed.

Every AWS call goes through guardrail_cli.recorder, the same latency shim and recorder as the
guardrail's runs. After each run the account is checked: a policy that did not remediate (or
alert) is an error, never a fast result.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "tools", REPO):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from guardrail_cli.local import ACCOUNT_ID, REGION, local_aws  # noqa: E402
from guardrail_cli.recorder import record_calls, simulated_latency  # noqa: E402
from guardrail_cli.seed import create_seed_account  # noqa: E402

ADMINISTRATOR_ACCESS = "arn:aws:iam::aws:policy/AdministratorAccess"
ASSUME_POLICY = f"arn:aws:iam::{ACCOUNT_ID}:policy/assume-admin-role"
TOPIC = "custodian-alerts"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{TOPIC}"
GROUP = "administrators"


def trail(event: str, ids: str) -> dict[str, Any]:
    return {"type": "cloudtrail", "events": [{"source": "iam.amazonaws.com", "event": event, "ids": ids}]}


NOTIFY = {"type": "notify", "subject": "Custodian: {{ policy.name }}", "violation_desc": "admin rights drift",
          "action_desc": "remediated", "to": ["owner@example.com"], "transport": {"type": "sns", "topic": TOPIC_ARN}}


def _group_lacks_admin(iam: Any) -> bool:
    attached = iam.list_attached_group_policies(GroupName=GROUP)["AttachedPolicies"]
    return ADMINISTRATOR_ACCESS not in [p["PolicyArn"] for p in attached]


def _group_has_no_inline(iam: Any) -> bool:
    return not iam.list_group_policies(GroupName=GROUP)["PolicyNames"]


def _group_holds_assume(iam: Any) -> bool:
    attached = iam.list_attached_group_policies(GroupName=GROUP)["AttachedPolicies"]
    return ASSUME_POLICY in [p["PolicyArn"] for p in attached]


def _alert_only(iam: Any) -> bool:
    return True  # judged by the publish alone


# event file -> (Custodian's policy for the same event, what must be true after the run, what it does)
POLICIES: dict[str, tuple[dict[str, Any], Callable[[Any], bool], str]] = {
    "admin-policy-attached-to-group.json": ({
        "name": "admin-group-restore", "resource": "iam-group",
        "mode": trail("AttachGroupPolicy", "requestParameters.groupName"),
        "filters": [{"type": "has-specific-managed-policy", "value": "AdministratorAccess"}],
        "actions": [{"type": "set-policy", "state": "detached", "arn": ADMINISTRATOR_ACCESS}, NOTIFY],
    }, _group_lacks_admin, "set-policy detached + notify"),
    "admin-inline-policy-put-on-group.json": ({
        "name": "admin-group-inline", "resource": "iam-group",
        "mode": trail("PutGroupPolicy", "requestParameters.groupName"),
        "filters": [{"type": "has-inline-policy", "value": True}],
        "actions": [{"type": "delete-inline-policies"}, NOTIFY],
    }, _group_has_no_inline, "delete-inline-policies + notify"),
    "admin-assume-policy-detached.json": ({
        "name": "admin-group-assume", "resource": "iam-group",
        "mode": trail("DetachGroupPolicy", "requestParameters.groupName"),
        "filters": [{"not": [{"type": "has-specific-managed-policy", "value": "assume-admin-role"}]}],
        "actions": [{"type": "set-policy", "state": "attached", "arn": ASSUME_POLICY}, NOTIFY],
    }, _group_holds_assume, "set-policy attached + notify"),
    "admin-policy-attached-to-user.json": ({  # the guardrail only alerts here by default (DetachOtherAdminGrants)
        "name": "admin-user-alert", "resource": "iam-user",
        "mode": trail("AttachUserPolicy", "requestParameters.userName"),
        "filters": [{"type": "policy", "key": "PolicyName", "value": "AdministratorAccess"}],
        "actions": [NOTIFY],
    }, _alert_only, "notify (as the guardrail by default)"),
}


def baseline_like() -> None:
    """The IAM the guardrail's baseline leaves (without the guardrail's own stack)."""
    import boto3

    create_seed_account()
    iam = boto3.client("iam")
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Resource": f"arn:aws:iam::{ACCOUNT_ID}:role/admin-mfa"}]}
    iam.create_policy(PolicyName="assume-admin-role", PolicyDocument=json.dumps(document))
    iam.attach_group_policy(GroupName=GROUP, PolicyArn=ASSUME_POLICY)
    iam.detach_group_policy(GroupName=GROUP, PolicyArn=ADMINISTRATOR_ACCESS)
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "Action": "sts:AssumeRole",
        "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}}}]}
    iam.create_role(RoleName="admin-mfa", AssumeRolePolicyDocument=json.dumps(trust), MaxSessionDuration=3600)
    iam.attach_role_policy(RoleName="admin-mfa", PolicyArn=ADMINISTRATOR_ACCESS)
    boto3.client("sns", region_name=REGION).create_topic(Name=TOPIC)


class Context:
    """What a Lambda context gives Custodian's handler."""

    def __init__(self, name: str) -> None:
        self.function_name = f"custodian-{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"
        self.memory_limit_in_mb = 512

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class Container:
    """One scenario: one account, one warm Custodian Lambda."""

    def __init__(self, scenario: str) -> None:
        from c7n import handler, utils

        self.policy, self.check, self.does = POLICIES[scenario]
        self.event = json.loads((REPO / "events" / scenario).read_text())
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(local_aws())
        self.directory = Path(self.stack.enter_context(tempfile.TemporaryDirectory(prefix="c7n-")))
        baseline_like()
        config = {"execution-options": {"account_id": ACCOUNT_ID, "region": REGION, "output_dir": "/tmp"},
                  "policies": [self.policy]}
        (self.directory / "config.json").write_text(json.dumps(config))
        self.handler = handler
        handler.policy_config = handler.policy_data = None  # a new container
        utils.reset_session_cache()
        self.run(0.0)  # cold start: loads config.json and the resource types; not timed

    def close(self) -> None:
        self.stack.close()

    def run(self, latency: float) -> dict[str, Any]:
        import boto3

        from guardrail_cli.apply import APPLIED, apply_recorded_call

        applied = apply_recorded_call(self.event, ACCOUNT_ID)
        if applied is None or applied.status != APPLIED:
            return {"ok": False, "error": f"could not re-make the drift: {applied}"}
        event = {**self.event, "id": str(uuid.uuid4()),  # a new record, as for the guardrail
                 "detail": {**self.event["detail"], "eventID": str(uuid.uuid4())}}
        cwd = os.getcwd()
        os.chdir(self.directory)
        try:
            with simulated_latency(latency), record_calls() as recorder:
                started = time.perf_counter()
                self.handler.dispatch_event(event, Context(self.policy["name"]))
                ended = time.perf_counter()
        finally:
            os.chdir(cwd)
        calls = [[c.name, c.kind, (c.started - started) * 1000, (c.ended - started) * 1000] for c in recorder.calls]
        published = any(c.name == "sns:Publish" for c in recorder.calls)
        iam = boto3.client("iam")
        fixed = self.check(iam)
        group = {"attached": [p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName=GROUP)[
            "AttachedPolicies"]], "inline": iam.list_group_policies(GroupName=GROUP)["PolicyNames"]}
        if not (fixed and published):
            return {"ok": False, "error": f"Custodian did not {self.does}: account fixed={fixed}, "
                                          f"alert published={published}", "calls": calls, "group": group}
        return {"ok": True, "calls": calls, "total_ms": (ended - started) * 1000, "group": group}


@contextlib.contextmanager
def protocol_stdout() -> Iterator[Any]:
    """stdout carries the protocol only: anything a library prints goes to stderr."""
    out = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield out
    finally:
        sys.stdout = out


def serve() -> int:
    from c7n.version import version

    container: Container | None = None
    with protocol_stdout() as out:
        for line in sys.stdin:
            request = json.loads(line)
            op = request.get("op")
            try:
                if op == "open":
                    if container is not None:
                        container.close()
                        container = None
                    scenario = request["scenario"]
                    if scenario not in POLICIES:
                        reply: dict[str, Any] = {"ok": False, "error": "no Custodian equivalent"}
                    else:
                        container = Container(scenario)
                        reply = {"ok": True, "version": version, "does": container.does}
                elif op == "run" and container is not None:
                    reply = container.run(float(request.get("latency", 0.0)))
                elif op == "close":
                    if container is not None:
                        container.close()
                        container = None
                    reply = {"ok": True}
                else:
                    reply = {"ok": False, "error": f"unknown request {request!r}"}
            except Exception as exc:  # reported to the parent, which fails the budget with it
                reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            out.write(json.dumps(reply) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve())
