"""The `guardrail` command: run the guardrail on a local stand-in account (no AWS account).

    guardrail demo [--json]                  the seed account, setup, then the scenarios in events/
    guardrail replay FILE... [--json]        each EventBridge event against a fresh baseline account

Both read template.yaml (rules, environment, parameters) and call the real handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from guardrail_cli import demo, render
from guardrail_cli.local import ACCOUNT_ID, REGION
from guardrail_cli.replay import display_path, load_event_files, replay_each
from guardrail_cli.template import TEMPLATE_PATH, Stack

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SHOWN_PARAMETERS = ("AdminDriftMode", "MfaMode", "TrailMode", "KillSwitch")


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name.strip(), value


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of the readable timeline")
    common.add_argument("--param", dest="params", action="append", type=_parameter, default=[],
                        metavar="Name=Value", help="a template parameter other than its default (repeatable), "
                                                   "e.g. --param AdminDriftMode=notify")
    common.add_argument("--template", type=Path, default=TEMPLATE_PATH, metavar="PATH",
                        help="the SAM template to take rules, environment and defaults from (default: %(default)s)")
    common.add_argument("--logs", action="store_true", help="also print each function's own log lines")
    top = argparse.ArgumentParser(
        prog="guardrail",
        description="Run account-guardrail on a local stand-in AWS account (moto, in-process): "
                    "the template's own EventBridge rules, the real handlers, no AWS account needed.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="{demo,replay}")
    commands.add_parser("demo", parents=[common], help="seed account -> setup -> the scenarios in events/, "
                                                       "in one account, with the emails and the final state",
                        description="Create the seed account, run the setup function, then replay the "
                                    "scenarios in events/ one after the other in that account.")
    replay = commands.add_parser("replay", parents=[common], help="replay EventBridge event files, each against "
                                                                  "a fresh account in the baseline state",
                                 description="Replay each FILE (an EventBridge event) against its own fresh "
                                             "account in the baseline state. A successful IAM or CloudTrail "
                                             "write the event records is made on that account first.")
    replay.add_argument("files", nargs="+", type=Path, metavar="FILE")
    return top


def _color(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _check_stack(template: Path, params: dict[str, str]) -> str | None:
    """One line saying why the template or parameters cannot be used, or None."""
    if not template.is_file():
        return f"template not found: {template}"
    try:
        Stack(account_id=ACCOUNT_ID, region=REGION, parameters=params, path=template).check()
    except (ValueError, OSError) as exc:  # YAML errors, invalid parameters, missing resources
        return f"{exc} (template {display_path(template)})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with warnings.catch_warnings():
        # Powertools' notes about running outside Lambda (no metrics, no remaining-time context).
        warnings.filterwarnings("ignore", category=UserWarning, module=r"aws_lambda_powertools(\.|$)")
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    params = dict(args.params)
    problem = _check_stack(args.template, params)
    if problem:
        print(f"guardrail: {problem}", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stdout
    style = render.Style(color=not args.json and _color(out))
    template = args.template.resolve()
    try:
        if args.command == "demo":
            return run_demo(params, template, args.json, args.logs, style, out)
        return run_replay(args.files, params, template, args.json, args.logs, style, out)
    except RuntimeError as exc:  # e.g. the setup function could not reach the baseline
        print(f"guardrail: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _emit(out: TextIO, lines: Sequence[str]) -> None:
    out.write("\n".join(lines) + "\n\n")
    out.flush()


def run_replay(files: Sequence[Path], params: dict[str, str], template: Path, as_json: bool, logs: bool,
               style: render.Style, out: TextIO) -> int:
    events, errors = load_event_files(files)
    if errors:  # check every file before replaying any: nothing half-done
        for error in errors:
            print(f"guardrail replay: {error}", file=sys.stderr)
        return EXIT_USAGE
    results = []
    for replay in replay_each(events, params, template):
        if as_json:
            results.append(replay.to_json())
        else:
            lines = render.replay_lines(replay, style, logs=logs, show_path=False)
            _emit(out, [render.heading(replay.path, style), *lines])
    if as_json:
        json.dump(results, out, indent=2)
        out.write("\n")
    return EXIT_OK


def run_demo(params: dict[str, str], template: Path, as_json: bool, logs: bool, style: render.Style,
             out: TextIO) -> int:
    started = time.monotonic()
    numbers = iter(range(1, len(demo.STORY) + 1))
    more_started: list[bool] = []

    def progress(kind: str, item: Any) -> None:
        if as_json:
            return
        if kind == "seed":
            _emit(out, render.seed_lines(item, style))
        elif kind == "setup":
            _emit(out, render.setup_lines(item, style, logs=logs))
        elif kind == "step":
            _emit(out, render.step_lines(next(numbers), item, style, logs=logs))
        elif kind == "final":
            _emit(out, render.final_lines(item, style))
        elif kind == "more":
            if not more_started:
                more_started.append(True)
                out.write(render.heading("More events in events/ (each replayed in a fresh baseline account)",
                                         style) + "\n")
            _emit(out, render.more_lines(item, style))

    if not as_json:
        stack = Stack(account_id=ACCOUNT_ID, region=REGION, parameters=params, path=template)
        shown = ", ".join(f"{name}={stack.params[name]}" for name in SHOWN_PARAMETERS if name in stack.params)
        _emit(out, [style.bold("account-guardrail demo") + ": a local stand-in account (moto, in-process), "
                    "the template's own rules, the real handlers",
                    f"{render.INDENT}{style.dim('template'.ljust(render.LABEL))}{display_path(template)}",
                    f"{render.INDENT}{style.dim('parameters'.ljust(render.LABEL))}{shown}"
                    + ("" if params else " (the template's defaults)")])
    result = demo.run(params, template, progress=progress)
    if as_json:
        json.dump(result.to_json(), out, indent=2)
        out.write("\n")
        return EXIT_OK
    for skipped in result.more_skipped:
        out.write(f"{render.INDENT}skipped {skipped}\n")
    played = sum(step.replay is not None for step in result.steps)
    out.write(f"Done in {time.monotonic() - started:.1f} s: setup and {played} of {len(result.steps)} scenarios "
              f"in one local account, {len(result.more)} more event(s) on their own.\n"
              f"Replay any event on a fresh account: guardrail replay events/<file>.json "
              f"[--param AdminDriftMode=notify] [--json]\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
