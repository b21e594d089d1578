"""The `guardrail` command: demo and replay on the local stand-in account, through template.yaml."""

from __future__ import annotations

import copy
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from guardrail_cli import demo, state
from guardrail_cli.__main__ import main
from guardrail_cli.apply import APPLIED, FAILED, SKIPPED, apply_recorded_call, recorded_write
from guardrail_cli.local import ACCOUNT_ID, REGION, local_aws
from guardrail_cli.recorder import Call
from guardrail_cli.render import Style
from guardrail_cli.replay import load_event_file, replay_in
from guardrail_cli.seed import ADMINISTRATOR_ACCESS, TRAIL, create_seed_account
from guardrail_cli.template import TEMPLATE_PATH
from guardrail_cli.testing import EVENTS_DIR, baseline_account, corpus_records, envelope, retarget
from guardrail_core import baseline
from guardrail_core.config import load_settings

SEVERITIES = {"INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"}
ASSUME_POLICY = "assume-admin-role"
EVENT_FILES = sorted(EVENTS_DIR.glob("*.json"))


@dataclass(frozen=True)
class Expect:
    """What the template's defaults promise for a story scenario."""

    rule: str
    function: str
    applied: str | None  # the recorded write replay makes first
    writes: frozenset[str]  # the handler's own AWS writes (idempotency and publish excluded)


EXPECTED = {
    "admin-policy-attached-to-group.json": Expect("AdminAccessChange", "AdminDriftFunction", "iam:AttachGroupPolicy",
                                                  frozenset({"iam:DetachGroupPolicy"})),
    "admin-role-mfa-removed.json": Expect("AdminAccessChange", "AdminDriftFunction", "iam:UpdateAssumeRolePolicy",
                                          frozenset({"iam:UpdateAssumeRolePolicy"})),
    "mfa-device-deactivated.json": Expect("MfaChange", "MfaDriftFunction", "iam:DeactivateMFADevice", frozenset()),
    "signin-iam-user-without-mfa.json": Expect("ConsoleSignInWithoutMfa", "MfaDriftFunction", None, frozenset()),
    "root-console-signin.json": Expect("RootSignIn", "RootActivityFunction", None, frozenset()),
    "trail-stopped.json": Expect("TrailTamper", "TrailGuardFunction", "cloudtrail:StopLogging",
                                 frozenset({"cloudtrail:StartLogging"})),
}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def writes(api_calls: list[str]) -> set[str]:
    """The write calls among `service:Operation` names, classified as the recorder does."""
    return {n for n in api_calls if Call(n.split(":", 1)[0], n.split(":", 1)[1], {}).kind == "write"}


def write_event(path: Path, event: Mapping[str, Any]) -> Path:
    path.write_text(json.dumps(event))
    return path


def stop_logging_event() -> dict[str, Any]:
    """A real CloudTrail StopLogging record (Stratus Red Team), moved to the local account and trail."""
    (_, record), = corpus_records("StopLogging", "cloudtrail.amazonaws.com")[:1]
    record = retarget(record)
    record["requestParameters"] = {"name": f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{TRAIL}"}
    return envelope(record)


def template_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = TEMPLATE_PATH.read_text()
    assert text.count(old) == 1, f"template.yaml no longer contains {old!r}: update this test"
    copy = tmp_path / "template.yaml"
    copy.write_text(text.replace(old, new))
    return copy


def group_policies(iam: Any) -> list[str]:
    return sorted(p["PolicyName"] for p in
                  iam.list_attached_group_policies(GroupName="administrators")["AttachedPolicies"])


# --- the demo ----------------------------------------------------------------------------


def test_every_story_scenario_is_in_events() -> None:
    missing = [s.file for s in demo.STORY if not (EVENTS_DIR / s.file).is_file()]
    assert not missing, f"the demo skips these scenarios: {missing}"
    assert set(EXPECTED) == {s.file for s in demo.STORY}


def test_demo_end_state_is_the_baseline_plus_exactly_what_the_scenarios_leave() -> None:
    """One account, the whole story; then the account itself is inspected."""
    with baseline_account(converge=False) as guardrail:
        result = demo.DemoResult(parameters=guardrail.stack.params, template="template.yaml")
        demo.play(guardrail, result, EVENTS_DIR)
        iam = boto3.client("iam", region_name=REGION)
        settings = load_settings({**guardrail.functions["SetupFunction"].environment, "AWS_REGION": REGION})

        # The seed account had AdministratorAccess on the group and no role; setup converged it.
        assert result.seed["group"]["policies"] == ["AdministratorAccess"] and not result.seed["role"]["exists"]
        assert result.setup is not None and result.setup.error is None
        assert result.setup.result["plan"] and all(a["status"] == "succeeded" for a in result.setup.actions)
        assert len(result.setup.notifications) == 1

        # Every scenario drifted the account for real, and the remediations promised happened.
        expected_changes = []
        for step in result.steps:
            if step.replay is None:
                continue
            expect = EXPECTED[step.scenario.file]
            replay = step.replay
            if expect.applied:
                assert replay.applied is not None and replay.applied.call == expect.applied
                assert replay.applied.status == APPLIED, replay.applied.line
            else:
                assert replay.applied is None
            assert [r.logical_id for r in replay.rules] == [expect.rule]
            (invocation,) = replay.invocations
            assert invocation.error is None, invocation.logs
            handler_writes = {c.name for c in invocation.calls if c.kind == "write"}
            assert handler_writes == expect.writes, step.scenario.file
            assert invocation.findings and len(invocation.notifications) == len(invocation.findings)
            if step.scenario.file == "mfa-device-deactivated.json":
                user = replay.event["detail"]["requestParameters"]["userName"]
                expected_changes.append({"what": f"users.{user}.mfa", "before": True, "after": False})

        # The account now: the baseline, read straight from IAM and CloudTrail.
        assert group_policies(iam) == [ASSUME_POLICY]
        assert iam.list_group_policies(GroupName="administrators")["PolicyNames"] == []
        role = iam.get_role(RoleName="admin-mfa")["Role"]
        assert baseline.trust_requires_mfa(role["AssumeRolePolicyDocument"], settings)
        assert role["MaxSessionDuration"] == 3600
        assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="admin-mfa")["AttachedPolicies"]] \
            == [ADMINISTRATOR_ACCESS]
        cloudtrail = boto3.client("cloudtrail", region_name=REGION)
        assert cloudtrail.get_trail_status(Name=TRAIL)["IsLogging"] is True
        assert iam.list_mfa_devices(UserName="bob")["MFADevices"] == []
        phoebe_mfa = bool(iam.list_mfa_devices(UserName="phoebe")["MFADevices"])
        assert phoebe_mfa is not any(c["what"] == "users.phoebe.mfa" for c in expected_changes)

    # ...and exactly that drift (MfaMode=notify only reports it) is all that differs from after setup.
    assert result.changed == expected_changes
    assert result.final["baseline_plan"] == []
    failing = {c.what for c in result.checks if not c.ok}
    assert failing == {f"console user {name} has MFA" for name, user in result.final["users"].items()
                       if user["console_password"] and not user["mfa"]}


def test_demo_json_lists_the_story_in_order_with_the_final_state(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "demo", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert [s["title"] for s in data["scenarios"]] == [s.title for s in demo.STORY]
    assert data["parameters"]["AdminDriftMode"] == "remediate" and data["parameters"]["MfaMode"] == "notify"
    assert data["seed"]["users"]["bob"] == {"console_password": True, "mfa": False, "access_keys": 0,
                                            "groups": [], "policies": []}
    assert data["seed"]["users"]["phoebe"]["mfa"] is True and data["seed"]["trails"][TRAIL]["logging"] is True
    assert data["setup"]["function"] == "SetupFunction" and data["setup"]["plan"]
    assert data["setup"]["notifications"][0]["subject"].startswith("[INFO] Baseline set up")
    for scenario in data["scenarios"]:
        present = (EVENTS_DIR / Path(scenario["file"]).name).is_file()
        assert (scenario["skipped"] is None) == present
        if present:
            assert scenario["rules"] == [EXPECTED[Path(scenario["file"]).name].rule]
            assert_replay_shape(scenario)
    final = data["final"]
    assert final["state"]["group"]["policies"] == [ASSUME_POLICY]
    assert final["state"]["role"]["trust_requires_mfa"] is True
    assert final["state"]["trails"][TRAIL]["logging"] is True
    assert {c["check"] for c in final["checks"]} >= {"group administrators holds only assume-admin-role",
                                                     "role admin-mfa can be assumed only with MFA",
                                                     "a multi-region CloudTrail trail is logging"}
    assert isinstance(final["changed_since_setup"], list)


def test_demo_text_is_a_plain_timeline_with_the_emails(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "demo")
    assert code == 0, err
    assert "\x1b[" not in out  # not a terminal: no colour codes
    for number, scenario in enumerate(demo.STORY, 1):
        assert f"== {number}. {scenario.title} ==" in out
    assert "== Setup: the setup function converges the baseline ==" in out
    assert "Subject: [INFO] Baseline set up - 123456789012" in out
    assert "| WHAT THE GUARDRAIL DID (mode: setup)" in out  # the email body, line by line
    assert "== The account now, against the baseline ==" in out
    assert re.search(r"\[ok\] +group administrators holds only assume-admin-role", out)
    assert err == ""


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from guardrail_cli.__main__ import _color

    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert _color(Tty())  # type: ignore[arg-type]
    assert Style(color=True).bold("x") == "\x1b[1mx\x1b[0m" and Style().bold("x") == "x"
    monkeypatch.setenv("NO_COLOR", "1")
    assert not _color(Tty())  # type: ignore[arg-type]


# --- replay ------------------------------------------------------------------------------


def assert_replay_shape(item: Mapping[str, Any]) -> None:
    assert isinstance(item["event"], str)
    assert isinstance(item["rules"], list) and all(isinstance(r, str) for r in item["rules"])
    assert len(item["invocations"]) == len(item["rules"])
    for inv in item["invocations"]:
        assert set(inv) >= {"function", "api_calls", "findings", "actions", "notifications", "error"}
        assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", c) for c in inv["api_calls"])
        for finding in inv["findings"]:
            assert set(finding) >= {"id", "severity", "summary"} and finding["severity"] in SEVERITIES
            assert finding["id"] and finding["summary"]
        for action in inv["actions"]:
            assert set(action) >= {"name", "target", "status"}
            assert action["status"] in {"succeeded", "failed", "skipped"}
        for note in inv["notifications"]:
            assert set(note) == {"subject", "message"} and len(note["subject"]) <= 100
        assert inv["api_calls"].count("sns:Publish") == len(inv["notifications"])
        assert inv["error"] is None or isinstance(inv["error"], str)


@pytest.mark.parametrize("path", EVENT_FILES, ids=[p.name for p in EVENT_FILES])
def test_replay_json_of_every_event_file(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "replay", "--json", str(path))
    assert code == 0, err
    (item,) = json.loads(out)
    assert_replay_shape(item)
    assert Path(item["event"]).resolve() == path.resolve()
    for inv in item["invocations"]:
        assert inv["error"] is None, f"{inv['function']}: {inv['error']}"
    expect = EXPECTED.get(path.name)
    if expect is None:
        return  # an event outside the story: its detector's own tests say what it must find
    assert item["rules"] == [expect.rule]
    (inv,) = item["invocations"]
    assert inv["function"] == expect.function
    if expect.applied:
        assert item["applied"] == {"call": expect.applied, "status": APPLIED, "detail": "", "created": []}
        # Replay's own set-up call is not the handler's (which may make the same call once, to undo it).
        assert inv["api_calls"].count(expect.applied) == (expect.applied in expect.writes)
    assert writes(inv["api_calls"]) == expect.writes
    assert inv["findings"], "the owner must hear about this event"
    for finding, note in zip(inv["findings"], inv["notifications"], strict=True):
        assert note["subject"].startswith(f"[{finding['severity']}] ")
        assert f"finding type: {finding['id']}" in note["message"]
    succeeded = [a for a in inv["actions"] if a["status"] == "succeeded"]
    assert bool(succeeded) == bool(expect.writes)


@pytest.mark.parametrize("name", ["admin-policy-attached-to-group.json", "admin-role-mfa-removed.json",
                                  "trail-stopped.json"])
def test_replay_remediates_in_the_account_and_notify_mode_does_not(name: str) -> None:
    path = EVENTS_DIR / name
    if not path.is_file():
        pytest.fail(f"{name} is missing from events/")
    event = load_event_file(path)
    mode = {"trail-stopped.json": "TrailMode"}.get(name, "AdminDriftMode")
    for value in ("notify", "remediate", "notify"):  # also: no setting leaks from one account to the next
        with baseline_account({mode: value}) as guardrail:
            replay = replay_in(guardrail, name, event)
            iam = boto3.client("iam", region_name=REGION)
            settings = load_settings({**guardrail.functions["SetupFunction"].environment, "AWS_REGION": REGION})
            if name == "admin-policy-attached-to-group.json":
                fixed = group_policies(iam) == [ASSUME_POLICY]
            elif name == "admin-role-mfa-removed.json":
                fixed = baseline.trust_requires_mfa(iam.get_role(RoleName="admin-mfa")["Role"]
                                                    ["AssumeRolePolicyDocument"], settings)
            else:
                fixed = boto3.client("cloudtrail", region_name=REGION).get_trail_status(Name=TRAIL)["IsLogging"]
        (invocation,) = replay.invocations
        assert replay.applied is not None and replay.applied.status == APPLIED
        assert fixed is (value == "remediate"), (value, invocation.api_calls)
        assert bool(writes(invocation.api_calls)) is (value == "remediate")
        assert invocation.notifications


def test_a_pattern_changed_in_the_template_changes_what_replay_invokes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    event = write_event(tmp_path / "stop.json", stop_logging_event())
    code, out, _ = cli(capsys, "replay", "--json", str(event))
    (item,) = json.loads(out)
    assert code == 0 and item["rules"] == ["TrailTamper"]
    assert [i["function"] for i in item["invocations"]] == ["TrailGuardFunction"]

    copy = template_copy(tmp_path, "eventName: [StopLogging, DeleteTrail, UpdateTrail, PutEventSelectors]",
                         "eventName: [DeleteTrail, UpdateTrail, PutEventSelectors]")
    code, out, _ = cli(capsys, "replay", "--json", "--template", str(copy), str(event))
    (item,) = json.loads(out)
    assert code == 0 and item["rules"] == [] and item["invocations"] == []
    assert item["applied"]["status"] == APPLIED  # the trail was stopped, and nothing noticed
    code, out, _ = cli(capsys, "replay", "--template", str(copy), str(event))
    assert "no rule matched: no function invoked" in out


def test_a_function_that_is_missing_or_fails_to_import_is_an_error_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "app.py").write_text('raise RuntimeError("boom at import")\n')
    event = write_event(tmp_path / "stop.json", stop_logging_event())
    for code_uri, message in ((str(broken) + "/", "boom at import"), ("no_such_dir/", "cannot load")):
        copy = template_copy(tmp_path, "CodeUri: functions/trail_guard/", f"CodeUri: {code_uri}")
        code, out, err = cli(capsys, "replay", "--json", "--template", str(copy), str(event), str(event))
        assert code == 0, err
        items = json.loads(out)
        assert len(items) == 2
        for item in items:
            (inv,) = item["invocations"]
            assert inv["function"] == "TrailGuardFunction" and message in inv["error"]
            assert inv["api_calls"] == [] and inv["notifications"] == []
        code, out, _ = cli(capsys, "replay", "--template", str(copy), str(event))
        assert code == 0 and "TrailGuardFunction: error: cannot load" in out


def test_each_function_gets_its_own_environment_and_each_account_its_own_parameters(tmp_path: Path) -> None:
    """Lambda runs each function in its own container: a cached Settings must not leak across."""
    code = tmp_path / "probe"
    code.mkdir()
    (code / "app.py").write_text(
        "from guardrail_core.runtime import settings\n"
        "def lambda_handler(event, context):\n"
        "    return {'status': 'handled', 'reason': settings().mode}\n"
    )
    copy = tmp_path / "template.yaml"
    text = TEMPLATE_PATH.read_text()
    for function in ("admin_drift", "trail_guard"):
        text = text.replace(f"CodeUri: functions/{function}/", f"CodeUri: {code}/")
    copy.write_text(text)
    seen = []
    for params in ({"TrailMode": "notify"}, {"AdminDriftMode": "notify"}):
        with baseline_account(params, converge=False, template=copy) as guardrail:
            for function in ("TrailGuardFunction", "AdminDriftFunction", "TrailGuardFunction"):
                seen.append(guardrail.invoke(function, {}).result["reason"])
    assert seen == ["notify", "remediate", "notify", "remediate", "notify", "remediate"]


def test_bad_files_stop_replay_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_event(tmp_path / "good.json", stop_logging_event())
    broken = tmp_path / "broken.json"
    broken.write_text('{"detail-type": "AWS API Call via CloudTrail",')
    record = tmp_path / "record.json"
    record.write_text(json.dumps(retarget(corpus_records("StopLogging")[0][1])))
    listing = tmp_path / "list.json"
    listing.write_text("[]")

    code, out, err = cli(capsys, "replay", str(good), str(broken))
    assert code == 2 and out == ""
    assert re.fullmatch(rf"guardrail replay: {re.escape(str(broken))}: not valid JSON: .+ line 1 column \d+ .+\n", err)
    code, out, err = cli(capsys, "replay", "--json", str(record), str(listing), str(tmp_path / "absent.json"))
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert "record.json: not an EventBridge event: missing 'detail-type', 'source', 'detail'" in lines[0]
    assert "bare CloudTrail record" in lines[0]
    assert "list.json: not an EventBridge event" in lines[1]
    assert "absent.json: cannot read" in lines[2]


def test_bad_parameters_and_templates_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = write_event(tmp_path / "stop.json", stop_logging_event())
    for args, message in ((["--param", "AdminDriftMode=sometimes"], "not one of ['remediate', 'notify']"),
                          (["--param", "NoSuchParameter=1"], "unknown parameters: ['NoSuchParameter']"),
                          (["--template", str(tmp_path / "none.yaml")], "template not found")):
        code, out, err = cli(capsys, "replay", *args, str(event))
        assert code == 2 and out == "" and message in err


# --- reproducing the recorded call --------------------------------------------------------


def corpus_event(event_name: str, index: int = 0, **params: Any) -> dict[str, Any]:
    record = retarget(corpus_records(event_name)[index][1])
    if params:
        record["requestParameters"] = {**(record.get("requestParameters") or {}), **params}
    return envelope(record)


def test_real_recorded_calls_are_reproduced_on_the_local_account() -> None:
    """Real CloudTrail records (corpus): camelCase parameters, JSON-string documents, nested selectors."""
    with local_aws():
        create_seed_account()
        iam = boto3.client("iam", region_name=REGION)
        cloudtrail = boto3.client("cloudtrail", region_name=REGION)

        done = apply_recorded_call(corpus_event("AttachUserPolicy", userName="BOB"))  # names are case-insensitive
        assert done is not None and done.status == APPLIED and done.call == "iam:AttachUserPolicy"
        assert [p["PolicyName"] for p in iam.list_attached_user_policies(UserName="bob")["AttachedPolicies"]] \
            == ["AdministratorAccess"]

        selectors = corpus_event("PutEventSelectors", trailName=TRAIL)
        done = apply_recorded_call(selectors)
        assert done is not None and done.status == APPLIED, done
        recorded = selectors["detail"]["requestParameters"]["eventSelectors"][0]
        applied = cloudtrail.get_event_selectors(TrailName=TRAIL)["EventSelectors"][0]
        assert applied["ReadWriteType"] == recorded["readWriteType"]
        assert applied["IncludeManagementEvents"] == recorded["includeManagementEvents"]

        update = next(envelope(retarget(r)) for _, r in corpus_records("UpdateTrail")
                      if (r.get("requestParameters") or {}).get("isMultiRegionTrail") is False)
        update["detail"]["requestParameters"]["name"] = TRAIL
        assert apply_recorded_call(update).status == APPLIED  # type: ignore[union-attr]
        assert cloudtrail.describe_trails(trailNameList=[TRAIL])["trailList"][0]["IsMultiRegionTrail"] is False

        stop = stop_logging_event()
        assert apply_recorded_call(stop).status == APPLIED  # type: ignore[union-attr]
        assert cloudtrail.get_trail_status(Name=TRAIL)["IsLogging"] is False


def test_a_recorded_call_that_cannot_or_should_not_be_reproduced_says_why() -> None:
    with local_aws():
        create_seed_account()
        refused = corpus_event("AttachUserPolicy", userName="bob", policyArn="arn:aws:iam::aws:policy/NoSuchPolicy")
        missing_policy = apply_recorded_call(refused)  # an AWS-managed policy that does not exist: not invented
        assert missing_policy is not None and missing_policy.status == FAILED
        assert missing_policy.line.startswith("could not apply iam:AttachUserPolicy: NoSuchEntity")

        failed = next(envelope(retarget(r)) for _, r in corpus_records(event_source="iam.amazonaws.com")
                      if r.get("errorCode") and recorded_write(envelope(r)))
        skipped = apply_recorded_call(failed)
        assert skipped is not None and skipped.status == SKIPPED and "the recorded call failed" in skipped.detail

        elsewhere = envelope(corpus_records("StopLogging")[0][1])  # another (anonymised) account
        other = apply_recorded_call(elsewhere)
        assert other is not None and other.status == SKIPPED and "local account is 123456789012" in other.detail

        sign_in = envelope(retarget(corpus_records("ConsoleLogin")[0][1]))
        assert apply_recorded_call(sign_in) is None  # nothing to reproduce
        assert boto3.client("cloudtrail", region_name=REGION).get_trail_status(Name=TRAIL)["IsLogging"] is True


def test_a_successful_call_proves_what_it_names_existed() -> None:
    """A fresh account lacks the owner's names: replay creates them first, and says so."""
    with local_aws():
        create_seed_account()
        iam = boto3.client("iam", region_name=REGION)
        done = apply_recorded_call(corpus_event("AttachUserPolicy", userName="nobody"))
        assert done is not None and done.status == APPLIED and done.created == ("user nobody",)
        assert done.line == "created: user nobody; applied: iam:AttachUserPolicy"
        assert iam.list_attached_user_policies(UserName="nobody")["AttachedPolicies"]

        group = corpus_event("AttachUserPolicy")
        group["detail"]["eventName"] = "AttachGroupPolicy"
        group["detail"]["requestParameters"] = {"groupName": "developers",
                                                "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}
        done = apply_recorded_call(group)
        assert done is not None and done.status == APPLIED and done.created == ("group developers",)
        assert done.to_json()["created"] == ["group developers"]

        role = copy.deepcopy(group)
        role["detail"]["eventName"] = "AttachRolePolicy"
        role["detail"]["requestParameters"] = {"roleName": "ops-automation",
                                               "policyArn": "arn:aws:iam::123456789012:policy/team/ops-admin"}
        done = apply_recorded_call(role)
        assert done is not None and done.status == APPLIED
        assert done.created[0] == "role ops-automation" and done.created[1].startswith("policy ops-admin")
        assert iam.get_policy(PolicyArn="arn:aws:iam::123456789012:policy/team/ops-admin")["Policy"]["Path"] == "/team/"

        detach = copy.deepcopy(group)
        detach["detail"]["eventName"] = "DetachGroupPolicy"
        detach["detail"]["requestParameters"] = {"groupName": "testers",
                                                 "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}
        done = apply_recorded_call(detach)
        assert done is not None and done.status == APPLIED
        assert done.created == ("group testers", "attachment of ReadOnlyAccess to group testers")

        trail = apply_recorded_call(corpus_event("DeleteTrail", name="no-such-trail"))
        assert trail is not None and trail.status == APPLIED and trail.created == ("trail no-such-trail",)


def test_url_encoded_policy_documents_are_decoded_as_iam_stores_them() -> None:
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    with local_aws():
        create_seed_account()
        put = corpus_event("AttachUserPolicy")
        put["detail"]["eventName"] = "PutGroupPolicy"
        put["detail"]["requestParameters"] = {"groupName": "developers", "policyName": "everything",
                                              "policyDocument": urllib.parse.quote(json.dumps(document))}
        done = apply_recorded_call(put)
        assert done is not None and done.status == APPLIED and done.created == ("group developers",)
        stored = boto3.client("iam").get_group_policy(GroupName="developers", PolicyName="everything")
        assert stored["PolicyDocument"] == document


def test_every_write_in_the_corpus_is_applied_or_explained() -> None:
    """No real record crashes replay: each is applied, refused by the account, or skipped with a reason."""
    seen = set()
    with local_aws():
        create_seed_account()
        for source in ("iam.amazonaws.com", "cloudtrail.amazonaws.com"):
            for file, record in corpus_records(event_source=source):
                event = envelope(retarget(record))
                if recorded_write(event) is None:
                    continue
                done = apply_recorded_call(event)
                assert done is not None and done.status in {APPLIED, FAILED, SKIPPED}, file
                assert done.status == APPLIED or done.detail, file
                seen.add(done.status)
    assert seen == {APPLIED, FAILED, SKIPPED}


def test_state_changes_name_every_leaf_that_differs() -> None:
    before = {"users": {"phoebe": {"mfa": True}, "bob": {"mfa": False}}, "trails": {"t": {"logging": True}}}
    after = {"users": {"phoebe": {"mfa": False}, "bob": {"mfa": False}}, "trails": {"t": {"logging": True}}}
    assert state.changes(before, after) == [{"what": "users.phoebe.mfa", "before": True, "after": False}]
    assert state.changes(after, after) == []

