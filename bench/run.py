"""`make bench`: measure the guardrail on the local stand-in account and enforce its budgets.

One run, one report (stdout, and bench/results.json), exit 1 when a budget is broken:

0. Time to fix, side by side with Cloud Custodian: the --reps timed runs of every scenario
   are made with a fixed round trip per AWS call (--latency-ms, 25 ms; DynamoDB included;
   guardrail_cli.recorder.simulated_latency, the one place), and each call's start and end
   recorded. Per run: calls, sequential round trips before the remediation write (the
   critical path: the longest chain of calls, each ending before the next starts, that ends
   before the write starts; before the alert where nothing is written), and ms to the
   write's answer, to the alert's, and to the handler's return. After each of the
   guardrail's runs, Cloud Custodian's cloudtrail-mode policy for the same event (where it
   has one: bench/custodian.py, in .venv-c7n, same shim) makes its run, so load from
   elsewhere hits both alike; ratios are run by run.
1. AWS calls per event: every events/*.json, each function it routes to, in a fresh
   baseline account; the write the event records is made first (guardrail_cli.apply) so
   remediation has something real to undo. Counted on the SECOND invocation in the same
   container (warm: what resolve-once-per-container caches such as the account alias are
   for); the first invocation's extra calls show in the "cold" column.
2. Warm handler time: median CPU time (sleeps excluded) of the --reps invocations per row, each with a new event
   id (so idempotency never short-circuits) and the recorded write re-applied before it (so
   each run undoes or reports real drift), as a ratio to one bare sns.publish on the same
   moto account. Absolute times on moto mean little; the ratio shows how much work a
   handler does beyond the one call every alert needs.
3. Cold start: CPU time of a fresh `python -S` from its start to the end of importing each
   handler module from the sam build layout (function dir, layer dir, then boto3/Powertools; the template's environment;
   with the .pyc the layer's build ships, unchecked-hash, for 3.13), median of --cold-runs
   rounds, as a ratio to `python -c "import boto3"` run first and last in the same round. --cold-python
   picks the interpreter (make bench: 3.13, the runtime's). The same fully precompiled,
   and Powertools' Tracer, Parser (pydantic) and idempotency, are measured for information.
4. Package size: .aws-sam/build/<LogicalId>/ zipped with deflate, as sam deploy uploads it.
5. MFA sweep scaling: 10 ... 5,000 users, half without MFA, all past the grace period.
6. Memory: peak RSS (VmHWM) of a subprocess running every scenario and the largest sweep in
   one account, minus one that makes the same account and writes without running a handler;
   added to a bare boto3 process, that is the estimate for one Lambda container.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# `python bench/run.py` puts bench/ first, not the repo; and this checkout's code is measured, whatever
# the virtualenv's editable installs point at (worktrees share one).
for _path in (REPO / "tools", REPO / "layers" / "guardrail_core", REPO):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.report import (  # noqa: E402
    COLD_START_MAX_RATIO,
    CUSTODIAN,
    LATENCY_MS,
    LAYER_MAX_KB,
    MEMORY_HEADROOM,
    PACKAGE_MAX_KB,
    STATE_NOTES,
    CallCounts,
    Check,
    LatencyRow,
    Results,
    ScenarioRow,
    Span,
    Timeline,
    check_calls,
    check_latency,
    check_max,
    median,
    recommend_memory,
    render,
    repeated_reads,
    summarize_outcome,
    sweep_limit,
)
from guardrail_cli.apply import APPLIED, FAILED, Applied, apply_recorded_call  # noqa: E402
from guardrail_cli.local import ACCOUNT_ID, REGION, Invocation, LocalGuardrail  # noqa: E402
from guardrail_cli.recorder import record_calls, simulated_latency  # noqa: E402
from guardrail_cli.replay import InputError, load_event_file  # noqa: E402
from guardrail_cli.template import Function, Stack  # noqa: E402
from guardrail_cli.testing import EVENTS_DIR, baseline_account  # noqa: E402

BUILD_DIR = REPO / ".aws-sam" / "build"
RESULTS_PATH = REPO / "bench" / "results.json"
SWEEP_FUNCTION = "MfaSweepFunction"
SWEEP_EVENT = EVENTS_DIR / "mfa-sweep-scheduled.json"
SCHEDULED = "Scheduled Event"
# Functions the powertools extras are measured on top of (the first that exists).
REFERENCE_FUNCTIONS = ("AdminDriftFunction", "RootActivityFunction", "MfaDriftFunction", "SetupFunction")


def fresh(event: Mapping[str, Any]) -> dict[str, Any]:
    """The same change made again: a new EventBridge delivery (new envelope id) of a new CloudTrail
    record (new `detail.eventID`), so neither duplicate check short-circuits the run."""
    out = {**event, "id": str(uuid.uuid4())}
    detail = event.get("detail")
    if isinstance(detail, Mapping) and "eventID" in detail:
        out["detail"] = {**detail, "eventID": str(uuid.uuid4())}
    return out


def scheduled_event() -> dict[str, Any]:
    """What EventBridge Scheduler delivers when events/mfa-sweep-scheduled.json is absent."""
    if SWEEP_EVENT.is_file():
        return load_event_file(SWEEP_EVENT)
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": SCHEDULED, "source": "aws.scheduler",
            "account": ACCOUNT_ID, "time": "2026-11-29T08:00:00Z", "region": REGION,
            "resources": [f"arn:aws:scheduler:{REGION}:{ACCOUNT_ID}:schedule/default/account-guardrail-mfa-sweep"],
            "detail": {}}


def has_code(function: Function | None) -> bool:
    return function is not None and function.module_path.is_file()


# --- 1 and 2: calls and warm time per scenario ----------------------------------------------------------


def targets(router: LocalGuardrail, event: Mapping[str, Any]) -> list[str]:
    """The functions EventBridge would invoke for this event (a schedule: the scheduled functions)."""
    found = list(dict.fromkeys(rule.function for rule in router.route(event)))
    if not found and event.get("detail-type") == SCHEDULED:
        found = list(router.stack.schedules())
    return found


def state_of(applied: Sequence[Applied | None]) -> str:
    """What the timed runs judged (keys of report.STATE_NOTES), from what each re-apply did."""
    first = applied[0] if applied else None
    if first is None or first.status not in (APPLIED, FAILED):
        return "no write"
    if first.status == FAILED:
        return "not applied"
    return "drift" if all(a is not None and a.status == APPLIED for a in applied) else "as-left"


class Custodian:
    """Cloud Custodian's policies in their own interpreter (bench/custodian.py in .venv-c7n),
    driven one run at a time so that its runs interleave with the guardrail's."""

    def __init__(self, python: str) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="bench-c7n-", suffix=".log", delete=False)  # noqa: SIM115
        self.child = subprocess.Popen([python, str(REPO / "bench" / "custodian.py")], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=REPO)
        self.version = ""

    def request(self, **request: Any) -> dict[str, Any]:
        assert self.child.stdin is not None and self.child.stdout is not None
        self.child.stdin.write(json.dumps(request) + "\n")
        self.child.stdin.flush()
        line = self.child.stdout.readline()
        if not line:
            return {"ok": False, "error": f"Custodian's process ended: {self.log_tail()}"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def log_tail(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-300:].replace("\n", " | ")

    def open(self, scenario: str) -> LatencyRow | None:
        """Custodian's row for this event file, or None when it has no equivalent policy."""
        reply = self.request(op="open", scenario=scenario)
        if reply.get("error") == "no Custodian equivalent":
            return None
        self.version = str(reply.get("version", self.version))
        status = "ok" if reply.get("ok") else f"error: {reply.get('error')}"
        return LatencyRow(scenario, CUSTODIAN, status, note=str(reply.get("does", "")))

    def run(self, row: LatencyRow, latency: float) -> None:
        if row.status != "ok":
            return
        reply = self.request(op="run", latency=latency)
        if not reply.get("ok"):
            row.status = f"error: {reply.get('error')}"
            row.runs.clear()
            return
        spans = [Span(name, kind, start, end) for name, kind, start, end in reply["calls"]]
        row.runs.append(Timeline.of(spans, float(reply["total_ms"])))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.request(op="close")
        if self.child.stdin is not None:
            self.child.stdin.close()
        self.child.wait(timeout=30)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def timeline_of(invocation: Invocation) -> Timeline:
    spans = [Span.of(call, invocation.started) for call in invocation.calls]
    return Timeline.of(spans, (invocation.ended - invocation.started) * 1000)


def measure_function(g: LocalGuardrail, function_id: str, scenario: str, event: Mapping[str, Any],
                     reps: int, latency: float, custodian: Custodian | None = None,
                     ) -> tuple[ScenarioRow, LatencyRow, LatencyRow | None]:
    """Cold invocation, warm invocation (counted), then `reps` timed warm invocations at `latency`
    seconds per AWS call, each followed by a run of Custodian's policy for the same event."""
    account = g.stack.account_id
    theirs = custodian.open(scenario) if custodian is not None else None
    timed = LatencyRow(scenario, function_id)

    def failed(status: str) -> tuple[ScenarioRow, LatencyRow, LatencyRow | None]:
        timed.status = status
        return ScenarioRow(scenario, function_id, status), timed, theirs

    applied = [apply_recorded_call(event, account)]
    cold = g.invoke(function_id, fresh(event))
    if cold.error:
        return failed(f"error: {cold.error[:100]}")
    applied.append(apply_recorded_call(event, account))
    warm = g.invoke(function_id, fresh(event))
    if warm.error:
        return failed(f"error (warm): {warm.error[:100]}")
    warm_counts = CallCounts.of(warm.calls)
    times = []
    for _ in range(reps):
        applied.append(apply_recorded_call(event, account))
        delivery = fresh(event)
        with simulated_latency(latency):
            started = time.process_time()  # CPU: moto runs in this process; other processes' load does not count
            run = g.invoke(function_id, delivery)
            times.append((time.process_time() - started) * 1000)
        if run.error:
            return failed(f"error (timed run): {run.error[:100]}")
        timed.runs.append(timeline_of(run))
        timed.repeated = list(dict.fromkeys(timed.repeated + repeated_reads(run.calls)))
        if custodian is not None and theirs is not None:
            custodian.run(theirs, latency)
    timed.note = summarize_outcome(warm.result)
    return (ScenarioRow(scenario, function_id, "ok", warm=warm_counts,
                        cold_extra=CallCounts.of(cold.calls).total - warm_counts.total,
                        median_ms=median(times), runs=len(times), state=state_of(applied),
                        outcome=summarize_outcome(warm.result)), timed, theirs)


def load_scenarios() -> list[tuple[str, dict[str, Any] | str]]:
    """(file name, event or the reason it cannot be replayed) for every events/*.json."""
    out: list[tuple[str, dict[str, Any] | str]] = []
    for path in sorted(EVENTS_DIR.glob("*.json")):
        try:
            out.append((path.name, load_event_file(path)))
        except InputError as exc:
            out.append((path.name, f"n/a: {exc}"))
    return out


def run_scenarios(reps: int, latency: float, custodian: Custodian | None,
                  ) -> tuple[list[ScenarioRow], list[LatencyRow]]:
    router = LocalGuardrail()
    rows: list[ScenarioRow] = []
    timed: list[LatencyRow] = []
    scenarios = load_scenarios()
    if not scenarios:
        return [ScenarioRow("events/*.json", "-", "n/a: no event files yet")], timed
    for name, event in scenarios:
        if isinstance(event, str):
            rows.append(ScenarioRow(name, "-", event))
            continue
        functions = targets(router, event)
        if not functions:
            rows.append(ScenarioRow(name, "-", "no rule matched (nothing runs)"))
        theirs: LatencyRow | None = None
        for index, function_id in enumerate(functions):
            if not has_code(router.functions.get(function_id)):
                rows.append(ScenarioRow(name, function_id, f"n/a: functions/ has no code for {function_id} yet"))
                timed.append(LatencyRow(name, function_id, f"n/a: no code for {function_id} yet"))
                continue
            with baseline_account() as g:  # each function its own account: EventBridge fans out in parallel
                row, mine, custodian_row = measure_function(g, function_id, name, event, reps, latency,
                                                            custodian if index == 0 else None)
            rows.append(row)
            timed.append(mine)
            theirs = theirs or custodian_row
        if theirs is not None:
            timed.append(theirs)
    return rows, timed


def bare_publish_ms(samples: int = 50) -> list[float]:
    """One sns.publish of an alert-sized message on a baseline account, recorded like a handler's."""
    import boto3

    with baseline_account() as g:
        sns = boto3.client("sns", region_name=g.stack.region)
        topic = g.stack.ref("AlertTopic")
        message = json.dumps({"default": "x" * 1500, "email": "y" * 1500})
        sns.publish(TopicArn=topic, Message=message, MessageStructure="json", Subject="warm-up")
        times = []
        with record_calls():
            for _ in range(samples):
                started = time.process_time()
                sns.publish(TopicArn=topic, Message=message, MessageStructure="json", Subject="bench")
                times.append((time.process_time() - started) * 1000)
    return times


# --- 3: cold start -------------------------------------------------------------------------------------------

# The child reports the CPU time it spent from its start to the end of the import (what Lambda's
# init phase costs; exiting the interpreter, ~40 ms more, is not part of a cold start) and its
# peak RSS as VmHWM (ru_maxrss would not do: Linux carries the parent's peak over fork + exec).
CHILD = ("{statement}\nimport sys as _s, time as _t\n"
         "_s.stdout.write('\\nCPU_MS=%f RSS_KB=%s' % (_t.process_time() * 1000, [\n"
         "    l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]))")


def lambda_environment(function: Function | None) -> dict[str, str]:
    """The process environment Lambda gives the function (no PYTHONPATH from the caller)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "AWS_", "POWERTOOLS_"))}
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    if function is not None:
        env.update(function.environment)
        env.update({"AWS_LAMBDA_FUNCTION_NAME": function.name,
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory)})
    return env


def code_dirs(function: Function, layer_source: Path) -> tuple[Path, Path, str]:
    """(function dir, layer python dir, where from): the sam build output when it is there."""
    built_function = BUILD_DIR / function.logical_id
    built_layer = BUILD_DIR / "SharedLayer" / "python"
    if (built_function / function.module_path.name).is_file() and built_layer.is_dir():
        return built_function, built_layer, "sam build"
    return function.code_uri, layer_source, "source (no sam build)"


@dataclass(frozen=True)
class Interpreter:
    """The Python the cold starts run on: ideally the Lambda runtime's version (see --cold-python)."""

    executable: str
    version: str
    site_paths: tuple[str, ...]  # where its boto3 and Powertools live

    @classmethod
    def of(cls, executable: str) -> Interpreter:
        executable = str(Path(executable).absolute())  # the children run elsewhere; keep the venv's symlink
        code = ("import json, sys, sysconfig; p = sysconfig.get_paths(); "
                "print(json.dumps(['%d.%d' % sys.version_info[:2], p['purelib'], p['platlib']]))")
        version, purelib, platlib = json.loads(subprocess.run([executable, "-c", code], capture_output=True,
                                                              text=True, check=True).stdout)
        return cls(executable, version, tuple(dict.fromkeys([purelib, platlib])))

    def precompiled(self, directory: Path, into: Path) -> Path:
        """A copy of `directory` with .pyc files that need no source check (what shipping bytecode would give)."""
        copy = into / f"{len(list(into.iterdir()))}-{directory.name}"
        shutil.copytree(directory, copy, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([self.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                        str(copy)], check=True, capture_output=True)
        return copy


class Spec:
    """One statement to run in a fresh interpreter: `python -S`, so the dev venv's site hooks
    (editable-install finders, ~50 ms here) do not count; the import path is set explicitly, as
    Lambda's is: the function dir, the layer dir, then boto3 and Powertools (site-packages)."""

    def __init__(self, python: Interpreter, name: str, statement: str, env: Mapping[str, str],
                 paths: Sequence[Path] = (), note: str = "") -> None:
        self.python, self.name, self.statement, self.note = python, name, statement, note
        self.env = {**env, "PYTHONPATH": os.pathsep.join([*map(str, paths), *python.site_paths])}
        self.paths = list(paths)
        self.cwd = paths[0] if paths else REPO
        self.ms: list[float] = []  # CPU
        self.wall_ms: list[float] = []
        self.rss_kb: list[int] = []
        self.error = ""

    def run(self) -> None:
        """One fresh interpreter. Its CPU time is what counts: on a shared machine the wall time of
        the same import varied by half between runs; CPU time is what the init phase spends on a
        Lambda core of its own. Wall time (start to exit) is kept for the record."""
        started = time.perf_counter()
        done = subprocess.run([self.python.executable, "-S", "-c", CHILD.format(statement=self.statement)],
                              env=self.env, cwd=self.cwd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            self.error = lines[-1][:100] if lines else f"exit {done.returncode}"
            return
        self.wall_ms.append((time.perf_counter() - started) * 1000)
        report = dict(item.split("=") for item in done.stdout.rsplit("\n", 1)[-1].split())
        self.ms.append(float(report["CPU_MS"]))
        self.rss_kb.append(int(report["RSS_KB"]))

    @property
    def median_ms(self) -> float | None:
        return None if self.error else median(self.ms)

    def ratios(self, base: Spec) -> list[float]:
        """This run / the reference run of the same round, per round (run back to back, so a burst
        of load from elsewhere inflates both sides of a ratio alike)."""
        if self.error or base.error:
            return []
        return [mine / theirs for mine, theirs in zip(self.ms, base.ms, strict=False) if theirs]

    def ratio_to(self, base: Spec) -> float | None:
        return median(self.ratios(base))

    def result(self, base: Spec) -> dict[str, Any]:
        if self.error:
            return {"name": self.name, "ratio": None, "ms": None, "rss_mb": None, "note": f"failed: {self.error}"}
        ratios = self.ratios(base)
        return {"name": self.name, "ratio": median(ratios), "ms": self.median_ms,
                "range": f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else None,
                "wall_ms": median(self.wall_ms), "rss_mb": round(max(self.rss_kb) / 1024, 1), "note": self.note}


def measure_interleaved(base: Spec, specs: Sequence[Spec], runs: int) -> None:
    """Round-robin, so load from other processes hits every spec alike: each round runs the
    reference (`base`) first and last, and keeps the mean of the two as the round's reference,
    so the specs run late in a round are not compared with a moment long gone. A first,
    uncounted pass warms the file cache (site-packages and the layer are shared by all)."""
    for spec in [base, *specs[:1]]:
        spec.run()
        spec.ms.clear()
        spec.wall_ms.clear()
    for _ in range(runs):
        base.run()
        for spec in specs:
            if not spec.error:
                spec.run()
        base.run()
        if len(base.ms) >= 2 and not base.error:
            last = base.ms.pop()
            base.ms[-1] = (base.ms[-1] + last) / 2


INFO_ROUNDS = 5  # rounds for the columns shown for information (fully precompiled, Powertools extras)
EXTRAS = {  # Powertools features the lead chose not to use (or imports lazily): their price, for the record
    "Tracer": "from aws_lambda_powertools import Tracer\nTracer()",
    "parser (pydantic)": ("from aws_lambda_powertools.utilities.parser import parse\n"
                          "from aws_lambda_powertools.utilities.parser.models import EventBridgeModel"),
    "idempotency": ("from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, "
                    "idempotent_function"),
}


def cold_start(stack: Stack, runs: int, python: Interpreter,
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(per function, Powertools extras, the boto3 reference)."""
    layer_source = stack.path.parent / str(stack.resources["SharedLayer"]["Properties"]["ContentUri"])
    functions = stack.functions()
    base = Spec(python, "python -c 'import boto3'", "import boto3", lambda_environment(None))
    shipped: dict[str, Spec] = {}
    with_pyc: dict[str, Spec] = {}
    with tempfile.TemporaryDirectory(prefix="bench-pyc-") as tmp:
        for function_id, function in functions.items():
            if not has_code(function):
                continue
            function_dir, layer_dir, source = code_dirs(function, layer_source)
            statement = f"import {function.handler.rsplit('.', 1)[0]}"
            env = lambda_environment(function)
            shipped[function_id] = Spec(python, function_id, statement, env, [function_dir, layer_dir], source)
            with_pyc[function_id] = Spec(python, function_id, statement, env,
                                         [python.precompiled(function_dir, Path(tmp)),
                                          python.precompiled(layer_dir, Path(tmp))])
        reference = next((shipped[n] for n in REFERENCE_FUNCTIONS if n in shipped), next(iter(shipped.values()), None))
        extras: list[Spec] = []
        if reference is not None:  # priced on top of a real handler: alone, they would share no boto3 import
            for label, code in EXTRAS.items():
                extras.append(Spec(python, f"{reference.name} + {label}", f"{reference.statement}\n{code}",
                                   lambda_environment(functions[reference.name]), reference.paths))
        measure_interleaved(base, list(shipped.values()), runs)  # the budget: every function, `runs` rounds
        info_base = Spec(python, "python -c 'import boto3'", "import boto3", lambda_environment(None))
        measure_interleaved(info_base, [*with_pyc.values(), *extras], INFO_ROUNDS)  # for the record
        base.rss_kb += info_base.rss_kb
    rows = []
    for function_id in functions:
        if function_id not in shipped:
            rows.append({"name": function_id, "ratio": None, "ms": None, "rss_mb": None, "note": "n/a: no code yet"})
            continue
        row = shipped[function_id].result(base)
        row["ratio_pyc"] = with_pyc[function_id].ratio_to(info_base)
        rows.append(row)
    info = []
    reference_ms = reference.median_ms if reference else None
    for spec in extras:
        row = spec.result(info_base)
        if reference is not None and row["ms"] and reference_ms:
            row["note"] = f"{row['ms'] - reference_ms:+.0f} ms over {reference.name} alone"
        info.append(row)
    return rows, info, {"ms": base.median_ms, "rss_mb": round(max(base.rss_kb) / 1024, 1) if base.rss_kb else None,
                        "python": python.version}


# --- 4: package size ----------------------------------------------------------------------------------------


def zipped_kb(directory: Path) -> tuple[float, int]:
    """Size of the directory zipped with deflate, as sam deploy uploads it (KB, files)."""
    buffer = BytesIO()
    files = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():  # the layer ships its precompiled .pyc: they count
                archive.write(path, path.relative_to(directory))
                files += 1
    return len(buffer.getvalue()) / 1024, files


def package_sizes(stack: Stack) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    layer_source = stack.path.parent / str(stack.resources["SharedLayer"]["Properties"]["ContentUri"])
    artifacts: list[tuple[str, Path, Path | None]] = [  # name, source dir, file that proves a build has the code
        (function_id, function.code_uri, Path(function.module_path.name) if has_code(function) else None)
        for function_id, function in stack.functions().items()
    ]
    artifacts.append(("SharedLayer", layer_source, Path("python")))
    for name, source_dir, marker in artifacts:
        if marker is None:
            rows.append({"name": name, "kb": None, "files": None, "source": "n/a: no code yet"})
            continue
        built = BUILD_DIR / name
        directory, source = (built, "sam build") if (built / marker).exists() else (source_dir, "source (no sam build)")
        kb, files = zipped_kb(directory)
        rows.append({"name": name, "kb": round(kb, 1), "files": files, "source": source})
    return rows


# --- 5: sweep scaling ---------------------------------------------------------------------------------------


def add_users(count: int, older_than: timedelta = timedelta(days=30)) -> int:
    """`count` console users, every other one without MFA, created before the grace period.

    Straight into moto's IAM backend (5,000 users through the API would take minutes); the
    credential report reads the same objects. Returns how many have no MFA.
    """
    from moto.iam.models import iam_backends

    backend = iam_backends[ACCOUNT_ID]["global"]
    created = datetime.now(UTC).replace(tzinfo=None) - older_than  # moto keeps naive UTC
    without = 0
    for index in range(count):
        name = f"bench-user-{index:05d}"
        user = backend.create_user(region_name=REGION, user_name=name)
        backend.create_login_profile(name, "Bench-password-1!")
        if index % 2:
            user.enable_mfa_device(f"arn:aws:iam::{ACCOUNT_ID}:mfa/{name}", "123456", "654321")
        else:
            without += 1
        user.create_date = created
    return without


@contextmanager
def polls_counted() -> Iterator[list[float]]:
    """The sweep sleeps between credential-report polls; moto's report is ready at the second
    call whatever the wait, so count the waits (real, and billed, in Lambda) instead of sleeping."""
    waited: list[float] = []
    try:
        from guardrail_core import mfa_sweep
    except ImportError:
        yield waited
        return
    saved = mfa_sweep.sleep
    mfa_sweep.sleep = waited.append
    try:
        yield waited
    finally:
        mfa_sweep.sleep = saved


def sweep_once(g: LocalGuardrail, users: int) -> dict[str, Any]:
    flagged = add_users(users)
    with polls_counted() as waited:
        started, cpu_started = time.perf_counter(), time.process_time()
        invocation = g.invoke(SWEEP_FUNCTION, fresh(scheduled_event()))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    counts = CallCounts.of(invocation.calls)
    result = invocation.result if isinstance(invocation.result, Mapping) else {}
    sweep = result.get("sweep") if isinstance(result.get("sweep"), Mapping) else {}
    note = invocation.error or ""
    if sweep:
        offenders = sweep.get("offenders", [])
        note = f"reported {len(offenders)} without MFA"
        if sweep.get("unchecked"):
            note += f", {sweep['unchecked']} listed unconfirmed (per-run cap)"
    if waited:
        note += f"; + {sum(waited):g} s polling wait in Lambda"
    # The budget counts what IAM's and SNS's rate limits see (CallCounts.total leaves out the
    # sweep's own DynamoDB records, once per run and once per quarantined user: their own column).
    return {"users": users, "flagged": flagged, "calls": counts.total, "limit": sweep_limit(flagged),
            "read": counts.read, "write": counts.write, "publish": counts.publish,
            "idempotency": counts.idempotency, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "note": note,
            "error": invocation.error}


def sweep_scaling(stack: Stack, sizes: Sequence[int]) -> list[dict[str, Any]]:
    if not has_code(stack.functions().get(SWEEP_FUNCTION)):
        return [{"users": n, "note": f"n/a: no code for {SWEEP_FUNCTION} yet"} for n in sizes]
    rows = []
    for users in sizes:
        with baseline_account() as g:
            rows.append(sweep_once(g, users))
    return rows


# --- 6: memory ----------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (resets at exec), else ru_maxrss (which may include the parent's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def probe(mode: str, sweep_users: int) -> int:
    """Child process: in one account, make every scenario's recorded write and run its functions
    (mode "handlers"), or only make the writes (mode "moto"), then add `sweep_users` users and
    sweep (or not); print the peak RSS. The difference between the modes is what the handlers cost."""
    run_handlers = mode == "handlers"
    router = LocalGuardrail()
    with baseline_account(converge=run_handlers) as g, polls_counted():
        for _name, event in load_scenarios():
            if isinstance(event, str):
                continue
            for function_id in targets(router, event):
                if not has_code(router.functions.get(function_id)):
                    continue
                apply_recorded_call(event, ACCOUNT_ID)
                if run_handlers:
                    g.invoke(function_id, fresh(event))
                    apply_recorded_call(event, ACCOUNT_ID)
                    g.invoke(function_id, fresh(event))
        if sweep_users and has_code(router.functions.get(SWEEP_FUNCTION)):
            if run_handlers:
                sweep_once(g, sweep_users)
            else:
                add_users(sweep_users)
    print(json.dumps({"mode": mode, "peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


def run_probes(sweep_users: int) -> dict[str, float | None]:
    """Both probes at once (peak memory does not depend on the CPU they share)."""
    children = {
        mode: subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--probe", mode, "--sweep-users",
                                str(sweep_users)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO)
        for mode in ("handlers", "moto")
    }
    peaks: dict[str, float | None] = {}
    for mode, child in children.items():
        out, err = child.communicate(timeout=600)
        if child.returncode != 0:
            print(f"memory probe {mode} failed:\n{err[-2000:]}", file=sys.stderr)
            peaks[mode] = None
            continue
        peaks[mode] = float(json.loads(out.strip().splitlines()[-1])["peak_rss_mb"])
    return peaks


def memory(stack: Stack, boto3_rss_mb: float | None, imports: list[dict[str, Any]],
           sweep_users: int) -> tuple[dict[str, Any], Check]:
    peaks = run_probes(sweep_users)
    handlers, moto = peaks["handlers"], peaks["moto"]
    memory_size = min(f.memory for f in stack.functions().values())  # Globals, unless a function overrides it
    import_peaks = [c["rss_mb"] for c in imports if c.get("rss_mb")]
    rows: list[tuple[str, float | None]] = [
        ("every scenario + the largest sweep, handlers run (moto in-process)", handlers),
        ("the same account and writes, no handler run (baseline)", moto),
        ("difference: what the handlers add", None if handlers is None or moto is None else
         round(handlers - moto, 1)),
        ("python -c 'import boto3'", boto3_rss_mb),
        ("largest single handler import (cold start above)", max(import_peaks) if import_peaks else None),
    ]
    data: dict[str, Any] = {"rows": rows, "memory_size_mb": memory_size}
    if handlers is None or moto is None or boto3_rss_mb is None:
        return data, Check("memory: peak x 1.5 <= MemorySize", f"{memory_size} MB", "n/a", None,
                           "a memory probe failed")
    estimate = round(boto3_rss_mb + max(0.0, handlers - moto), 1)
    recommended = recommend_memory(estimate)
    rows.append(("estimate for one container: boto3 + what the handlers add", estimate))
    data.update(estimate_mb=estimate, recommended_mb=recommended)
    data["summary"] = (f"Template MemorySize {memory_size} MB; estimated peak {estimate} MB (every detector's code "
                       f"and the largest sweep in one process, so an upper bound; the Lambda runtime's own "
                       f"bootstrap is not included). Smallest round size with {MEMORY_HEADROOM}x room: "
                       f"{recommended} MB. Lambda allots CPU in proportion to memory (1,769 MB = 1 vCPU), so a "
                       f"smaller size can stretch the CPU-bound import; compare Init Duration in the REPORT "
                       f"log lines before changing it.")
    needed = estimate * MEMORY_HEADROOM
    return data, Check(f"memory: peak x {MEMORY_HEADROOM} <= MemorySize", f"<= {memory_size} MB",
                       f"{needed:.0f} MB", needed <= memory_size,
                       "" if needed <= memory_size else f"{needed - memory_size:.0f} MB over")


# --- the run ------------------------------------------------------------------------------------------------


@contextmanager
def step(title: str) -> Iterator[None]:
    started = time.perf_counter()
    print(f"bench: {title} ...", file=sys.stderr, flush=True)
    yield
    print(f"bench: {title} done in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)


def quiet() -> None:
    """Powertools warns, per invocation, about things that do not apply off Lambda (empty metrics)."""
    warnings.filterwarnings("ignore", category=UserWarning, module=r"aws_lambda_powertools\.")


def run(reps: int, cold_runs: int, sweep_sizes: Sequence[int], memory_sweep: int, cold_python: str,
        latency_ms: float = LATENCY_MS, custodian_python: str | None = None) -> Results:
    started = time.perf_counter()
    results = Results(latency_ms=latency_ms)
    stack = Stack(account_id=ACCOUNT_ID, region=REGION)
    publish_times: list[float] = []
    with step("bare sns.publish"):
        publish_times += bare_publish_ms()
    custodian = Custodian(custodian_python) if custodian_python else None
    with step(f"scenarios ({reps} timed runs each at {latency_ms:g} ms per call"
              f"{', with Cloud Custodian' if custodian else ''})"), polls_counted():
        try:
            results.scenarios, results.latency = run_scenarios(reps, latency_ms / 1000, custodian)
        finally:
            if custodian is not None:
                results.custodian_version = custodian.version
                custodian.close()
    with step("bare sns.publish again"):
        publish_times += bare_publish_ms()
    results.publish_ms = median(publish_times)
    python = Interpreter.of(cold_python)
    with step(f"cold start on Python {python.version} ({cold_runs} runs each)"):
        results.cold_start, results.cold_start_info, boto3 = cold_start(stack, cold_runs, python)
    results.boto3_ms, results.boto3_rss_mb, results.cold_python = boto3["ms"], boto3["rss_mb"], python.version
    with step("package sizes"):
        results.packages = package_sizes(stack)
    with step(f"sweep scaling {list(sweep_sizes)}"):
        results.sweep = sweep_scaling(stack, sweep_sizes)
    with step("memory probes"):
        results.memory, memory_check = memory(stack, results.boto3_rss_mb, results.cold_start, memory_sweep)

    results.checks = check_latency(results.latency) + check_calls(results.scenarios)
    for row in results.cold_start:
        results.checks.append(check_max(f"{row['name']}: cold start", row.get("ratio"), COLD_START_MAX_RATIO, "x",
                                        row.get("note", "")))
    for package in results.packages:
        size_limit = LAYER_MAX_KB if package["name"].endswith("Layer") else PACKAGE_MAX_KB
        results.checks.append(check_max(f"{package['name']}: zipped", package.get("kb"), size_limit, " KB",
                                        package.get("source", "")))
    for sweep in results.sweep:
        limit = sweep.get("limit")
        results.checks.append(
            check_max(f"sweep {sweep['users']} users: calls", sweep.get("calls") if not sweep.get("error") else None,
                      float(limit) if limit is not None else 0.0, "", sweep.get("error") or sweep.get("note", ""))
            if limit is not None else Check(f"sweep {sweep['users']} users: calls", "5 + flagged", "n/a", None,
                                            sweep.get("note", "")))
    results.checks.append(memory_check)
    states = {r.state for r in results.scenarios if r.state}
    results.notes += [f"state '{s}': {STATE_NOTES[s]}" for s in sorted(states) if s in STATE_NOTES]
    results.notes.append("calls are counted on the second invocation in a container (warm); 'cold' is what the "
                         "first one added (e.g. the account alias, resolved once per container)")
    results.notes.append("section 1: idempotency records (DynamoDB) are shown apart and excluded from the call "
                         "counts; section 0 counts them, and their round trips, like any other call")
    results.notes.append("cold start 'with .pyc': functions and layer fully precompiled; the layer's build "
                         "(layers/guardrail_core/Makefile) already ships its .pyc, the tiny app.py files are compiled "
                         "at each cold start (Lambda's code directories are read-only)")
    results.seconds = time.perf_counter() - started
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=11,
                        help="timed warm invocations per scenario, each at --latency-ms per call and followed by "
                             "Cloud Custodian's run where it has a policy for the event (default 11)")
    parser.add_argument("--cold-runs", type=int, default=21,
                        help="fresh interpreters per module, interleaved with the boto3 baseline (default 21)")
    parser.add_argument("--latency-ms", type=float, default=LATENCY_MS,
                        help=f"simulated round trip per AWS call in the timed runs (default {LATENCY_MS:g})")
    default_c7n = REPO / ".venv-c7n" / "bin" / "python"
    parser.add_argument("--custodian-python", default=str(default_c7n) if default_c7n.exists() else None,
                        help="interpreter with c7n and moto installed (make bench: .venv-c7n); 'none' to skip "
                             "Cloud Custodian (its comparisons are then n/a)")
    parser.add_argument("--cold-python", default=sys.executable,
                        help="interpreter for the cold starts, with boto3 and Powertools installed; the Lambda "
                             "runtime's version (3.13) gives the honest numbers (default: this one)")
    parser.add_argument("--sweep-sizes", default="10,100,1000,5000", help="users per sweep run")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help="where to write the results")
    parser.add_argument("--probe", choices=["handlers", "moto"], help=argparse.SUPPRESS)
    parser.add_argument("--sweep-users", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    args = parse_args(argv)
    quiet()
    if args.probe:
        return probe(args.probe, args.sweep_users)
    sizes = [int(s) for s in args.sweep_sizes.split(",") if s.strip()]
    custodian = None if (args.custodian_python or "none") == "none" else args.custodian_python
    results = run(args.reps, args.cold_runs, sizes, max(sizes, default=0), args.cold_python, args.latency_ms,
                  custodian)
    given = list(sys.argv[1:] if argv is None else argv)
    out(render(results, "bench/run.py " + " ".join(given) if given else "make bench"))
    args.json.write_text(json.dumps(results.to_json(), indent=2, default=str) + "\n")
    return 1 if results.broken else 0


if __name__ == "__main__":
    sys.exit(main())
