"""`guardrail demo`: the seed account, the setup, then the scenarios in events/ as one story.

Everything runs in ONE local account, in order, so the end state shows what the guardrail
left behind: drift it undid is gone, drift it only reported (by the template's defaults)
is still there. Event files that are not part of the story are replayed afterwards, each
in its own fresh baseline account, so they cannot change the story's ending.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail_cli import state
from guardrail_cli.local import Invocation, LocalGuardrail
from guardrail_cli.replay import (
    InputError,
    Replay,
    display_path,
    invocation_json,
    load_event_file,
    replay_each,
    replay_in,
)
from guardrail_cli.testing import EVENTS_DIR, baseline_account


@dataclass(frozen=True)
class Scenario:
    file: str  # name in events/
    title: str


STORY = (
    Scenario("admin-policy-attached-to-group.json",
             "Someone attaches AdministratorAccess to the administrators group again"),
    Scenario("admin-role-mfa-removed.json",
             "Someone removes the MFA condition from the admin role's trust policy"),
    Scenario("mfa-device-deactivated.json",
             "An administrator's MFA device is deactivated"),
    Scenario("signin-iam-user-without-mfa.json",
             "An IAM user signs in to the console without MFA"),
    Scenario("root-console-signin.json",
             "Someone signs in to the console as the root user"),
    Scenario("trail-stopped.json",
             "Someone stops the CloudTrail trail"),
)


@dataclass
class Step:
    scenario: Scenario
    path: str
    replay: Replay | None = None
    skipped: str = ""  # why it was not played

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"title": self.scenario.title, "file": self.path, "skipped": self.skipped or None}
        if self.replay:
            data.update(self.replay.to_json())
        return data


@dataclass
class DemoResult:
    parameters: dict[str, str]
    template: str
    seed: dict[str, Any] = field(default_factory=dict)
    setup: Invocation | None = None
    after_setup: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    checks: list[state.Check] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    more: list[Replay] = field(default_factory=list)
    more_skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        setup = invocation_json(self.setup) if self.setup else None
        if setup is not None and self.setup is not None and isinstance(self.setup.result, Mapping):
            setup["plan"] = self.setup.result.get("plan", [])
            setup["trail"] = self.setup.result.get("trail", "")
        return {
            "template": self.template,
            "parameters": self.parameters,
            "seed": self.seed,
            "setup": setup,
            "scenarios": [step.to_json() for step in self.steps],
            "final": {
                "state": self.final,
                "checks": [c.to_json() for c in self.checks],
                "changed_since_setup": self.changed,
            },
            "more_events": [r.to_json() for r in self.more],
            "more_events_skipped": self.more_skipped,
        }


def story_steps(events_dir: Path) -> list[Step]:
    return [Step(s, display_path(events_dir / s.file)) for s in STORY]


def other_event_files(events_dir: Path) -> list[Path]:
    story = {s.file for s in STORY}
    return sorted(p for p in events_dir.glob("*.json") if p.name not in story)


def play(
    guardrail: LocalGuardrail,
    result: DemoResult,
    events_dir: Path,
    progress: Callable[[str, Any], None] = lambda kind, item: None,
) -> None:
    """Seed state -> setup -> each story scenario, in the given (seeded, unconverged) account."""
    result.seed = state.snapshot(guardrail)
    progress("seed", result.seed)
    result.setup = guardrail.invoke("SetupFunction", {})
    result.after_setup = state.snapshot(guardrail)
    progress("setup", result.setup)
    for step in story_steps(events_dir):
        path = events_dir / step.scenario.file
        if not path.is_file():
            step.skipped = f"{step.path} is not there yet"
        else:
            try:
                step.replay = replay_in(guardrail, step.path, load_event_file(path))
            except InputError as exc:
                step.skipped = str(exc)
        result.steps.append(step)
        progress("step", step)
    result.final = state.snapshot(guardrail)
    mfa = guardrail.functions.get("MfaDriftFunction")
    quarantine = mfa.environment.get("QUARANTINE_POLICY_ARN", "").rsplit("/", 1)[-1] if mfa else ""
    result.checks = state.checks(result.final, guardrail.stack.params, quarantine)
    result.changed = state.changes(result.after_setup, result.final)
    progress("final", result)


def run(
    parameters: Mapping[str, str] | None = None,
    template: Path | None = None,
    events_dir: Path = EVENTS_DIR,
    progress: Callable[[str, Any], None] = lambda kind, item: None,
) -> DemoResult:
    """The whole demo; `progress` is told about each part as soon as it is done."""
    params = dict(parameters or {})
    with baseline_account(params, converge=False, template=template) as guardrail:
        result = DemoResult(parameters=dict(guardrail.stack.params), template=display_path(guardrail.stack.path))
        play(guardrail, result, events_dir, progress)
    others = []
    for path in other_event_files(events_dir):
        try:
            others.append((display_path(path), load_event_file(path)))
        except InputError as exc:
            result.more_skipped.append(str(exc))
    for replay in replay_each(others, params, template):
        result.more.append(replay)
        progress("more", replay)
    return result
