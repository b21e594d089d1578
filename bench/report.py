"""The benchmark's pure half: call counting, budgets, the memory recommendation, the table.

Nothing here touches AWS, moto or a subprocess, so tests/test_bench.py checks it directly.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# --- budgets; change one only with a note in the README's Performance section ----------------
ADMIN_SCENARIO = "admin-policy-attached-to-group.json"
ROOT_SCENARIO = "root-console-signin.json"
ROOT_MAX_IAM = 0
ALERTS_PER_EVENT = 1  # both named scenarios: exactly one email
COLD_START_MAX_RATIO = 1.5  # x `python -c "import boto3"`
PACKAGE_MAX_KB = 256.0  # our own code, zipped, per function
# The shared layer: raised from 256 KB in round 2, when the policy analyzer, the lockout guard,
# the heartbeat, the inventory and the subscription check doubled the package (219 KB of source
# to 389 KB); what the size protects, cold start, keeps its own budget below (README, Performance).
LAYER_MAX_KB = 512.0
# The sweep may make 7 IAM/SNS calls plus one per flagged user (its DynamoDB records aside): the
# credential report (generate, poll, get), the account summary, the publish, and since round 2 one
# GetAccountAuthorizationDetails page for the digest's admin inventory (issue 12; one per 100
# principals) and GetGroup for the "no one can reach admin" check (issue 15; the members' devices
# are read only when the report shows none of them with MFA).
SWEEP_BASE_CALLS = 7
MEMORY_HEADROOM = 1.5  # MemorySize must be >= 1.5 x the estimated peak
LAMBDA_MIN_MB = 128
MEMORY_STEP_MB = 64  # recommend round sizes

# Time to fix (issue 16), at LATENCY_MS per AWS call, DynamoDB included.
LATENCY_MS = 25.0
ADMIN_FIX_MAX_RATIO = 1.0  # admin group restored no later than Cloud Custodian restores it, same run
ADMIN_TOTAL_MAX_RATIO = 1.2  # whole invocation, lockout guard and alert included
# Sequential round trips before the remediation write (or, where the guardrail only alerts,
# before the alert), per event file; DEFAULT_ROUNDS for any file not named here.
DEFAULT_ROUNDS = 3
ROUNDS: dict[str, int] = {
    ADMIN_SCENARIO: 3,
    # Alert-only, and each read needs the one before it: DescribeTrails finds the trail the event
    # names (by name or ARN, any region), then its status and its selectors, re-read rather than
    # taken from the event, then the alert.
    "trail-event-selectors-narrowed.json": 5,
    # The daily sweep (alert-only, nothing is open while it runs): the credential report is
    # generated, polled and fetched in a line, flagged users are confirmed, the admin group's
    # members checked for MFA (issue 15), then the digest.
    "mfa-sweep-scheduled.json": 8,
    # Alert-only: the user's devices, then (without MFA) the password, then whether anyone else in
    # the admin group still has MFA (GetGroup, then the members' devices at once: issue 15's
    # "no one can reach admin" finding), then the alert.
    "mfa-device-deactivated.json": 4,
}

class _Call(Protocol):
    @property
    def service(self) -> str: ...

    @property
    def kind(self) -> str: ...


@dataclass
class CallCounts:
    """One invocation's (or one scenario's) AWS calls, split as the budgets need them."""

    read: int = 0
    write: int = 0
    publish: int = 0
    idempotency: int = 0
    iam: int = 0  # IAM reads + writes (a subset of read + write)

    @classmethod
    def of(cls, calls: Iterable[_Call]) -> CallCounts:
        counts = cls()
        for call in calls:
            kind = call.kind
            setattr(counts, kind, getattr(counts, kind) + 1)
            if call.service == "iam":
                counts.iam += 1
        return counts

    @property
    def total(self) -> int:
        """What the budgets count: every call except the idempotency records."""
        return self.read + self.write + self.publish

    def __add__(self, other: CallCounts) -> CallCounts:
        return CallCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def astuple(counts: CallCounts) -> tuple[int, ...]:
    return (counts.read, counts.write, counts.publish, counts.idempotency, counts.iam)


@dataclass
class ScenarioRow:
    """One function invoked for one event file (an event can reach several functions)."""

    scenario: str  # file name in events/
    function: str  # logical id, or "-" when no function ran
    status: str  # "ok", "no rule matched", "n/a: ...", "error: ..."
    warm: CallCounts | None = None  # second invocation in the same container
    cold_extra: int | None = None  # calls the first invocation made beyond the warm one
    median_ms: float | None = None
    runs: int = 0
    state: str = ""  # what each timed run judged: see STATE_NOTES
    outcome: str = ""  # the handler's own verdict, e.g. "handled, 1 finding"

    @property
    def measured(self) -> bool:
        return self.status == "ok" and self.warm is not None


STATE_NOTES = {
    "drift": "the recorded write was re-applied before every run: each run undid or reported real drift",
    "as-left": "re-applying the write failed after the first run: later runs judged the account as left",
    "no write": "the event records no write (sign-in, failed call, schedule): nothing to re-create",
    "not applied": "the local account could not make the recorded write: every run judged an unchanged account",
}


@dataclass
class Check:
    """One budget, measured: ok is None when it could not be measured (n/a)."""

    budget: str
    limit: str
    measured: str
    ok: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "ok", False: "BROKEN", None: "n/a"}[self.ok]


@dataclass
class Results:
    """Everything one run measured (written to bench/results.json)."""

    publish_ms: float | None = None
    scenarios: list[ScenarioRow] = field(default_factory=list)
    cold_start: list[dict[str, Any]] = field(default_factory=list)  # name, ratio, ms, rss_mb, note
    cold_start_info: list[dict[str, Any]] = field(default_factory=list)  # powertools extras
    boto3_ms: float | None = None
    cold_python: str = ""  # the interpreter version the cold starts ran on
    boto3_rss_mb: float | None = None
    packages: list[dict[str, Any]] = field(default_factory=list)  # name, kb, source
    sweep: list[dict[str, Any]] = field(default_factory=list)  # users, flagged, calls..., ms
    memory: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = LATENCY_MS
    latency: list[LatencyRow] = field(default_factory=list)  # ours and Cloud Custodian's, per event file
    custodian_version: str = ""
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def broken(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["broken"] = [asdict(c) for c in self.broken]
        return data


# --- statistics -------------------------------------------------------------------------


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


# --- budgets ----------------------------------------------------------------------------


def scenario_totals(rows: Iterable[ScenarioRow]) -> dict[str, CallCounts]:
    """Calls per event file, summed over every function it reached (measured rows only)."""
    totals: dict[str, CallCounts] = {}
    for row in rows:
        if row.measured and row.warm is not None:
            totals[row.scenario] = totals.get(row.scenario, CallCounts()) + row.warm
    return totals


def check_calls(rows: Sequence[ScenarioRow]) -> list[Check]:
    """The call budgets that stay counts: each named event sends exactly one alert, and the root
    sign-in alert makes no IAM call when warm. (How long the account stays open is judged by
    round trips in line, `check_latency`, not by the number of calls.) A named scenario that
    did not run is n/a, not a pass."""
    totals = scenario_totals(rows)
    checks = []
    named = ((ADMIN_SCENARIO, None, "restore the admin group"),
             (ROOT_SCENARIO, ROOT_MAX_IAM, "root sign-in alert (warm)"))
    for scenario, max_iam, what in named:
        limit = (f"{max_iam} IAM + " if max_iam is not None else "") + f"{ALERTS_PER_EVENT} publish"
        counts = totals.get(scenario)
        if counts is None:
            why = next((r.status for r in rows if r.scenario == scenario), "events/" + scenario + " missing")
            checks.append(Check(f"{what}: calls", limit, "n/a", None, why))
            continue
        excess = []
        if max_iam is not None and counts.iam > max_iam:
            excess.append(f"{counts.iam - max_iam} IAM call(s) over")
        if counts.publish != ALERTS_PER_EVENT:
            excess.append(f"{counts.publish} publishes instead of {ALERTS_PER_EVENT}")
        checks.append(Check(f"{what}: calls", limit, f"{counts.iam} IAM + {counts.publish} publish",
                            not excess, "; ".join(excess)))
    return checks


def check_max(budget: str, value: float | None, limit: float, unit: str = "", why_na: str = "") -> Check:
    """value <= limit; None means it could not be measured."""
    if value is None:
        return Check(budget, f"<= {limit:g}{unit}", "n/a", None, why_na)
    over = value - limit
    note = f"{over:.2f}{unit} over ({value / limit:.0%} of the budget)" if over > 0 else ""
    return Check(budget, f"<= {limit:g}{unit}", f"{value:.2f}{unit}", over <= 0, note)


def sweep_limit(flagged: int) -> int:
    return SWEEP_BASE_CALLS + flagged


def recommend_memory(peak_mb: float, headroom: float = MEMORY_HEADROOM) -> int:
    """The smallest round MemorySize (MB) that holds the peak with the given headroom."""
    need = peak_mb * headroom
    return max(LAMBDA_MIN_MB, math.ceil(need / MEMORY_STEP_MB) * MEMORY_STEP_MB)


# --- time to fix: call timelines -------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One AWS call on the invocation's clock (ms from the handler's start)."""

    name: str  # "iam:DetachGroupPolicy"
    kind: str  # read | write | publish | idempotency (recorder.Call.kind)
    started: float
    ended: float

    @classmethod
    def of(cls, call: Any, origin: float) -> Span:
        """From a recorder.Call (perf_counter seconds), relative to `origin` (seconds)."""
        return cls(call.name, call.kind, (call.started - origin) * 1000, (call.ended - origin) * 1000)


def critical_path(spans: Iterable[Span], before: float) -> int:
    """Round trips that had to happen one after another before the moment `before` (ms).

    The longest chain of calls c1, c2, ..., ck in which each ends before the next starts and
    ck ends by `before`: calls that overlap in time (made concurrently) count once, calls
    made in a line count each. Interval scheduling by end time; O(n^2), n is small."""
    done = sorted((s for s in spans if s.ended <= before), key=lambda s: (s.ended, s.started))
    depth: list[tuple[float, int]] = []  # (end, longest chain ending with that call)
    for span in done:
        longest = max((d for end, d in depth if end <= span.started), default=0)
        depth.append((span.ended, longest + 1))
    return max((d for _, d in depth), default=0)


@dataclass(frozen=True)
class Timeline:
    """One invocation at a fixed latency per call: what the owner's account pays.

    `fix_ms`: when the remediation write (the first call that changes the account, idempotency
    records and the alert excepted) had returned: the account is closed. `alert_ms`: when the
    first publish had returned. `rounds`: sequential round trips before the write began
    (before the alert, when nothing is written)."""

    calls: int  # every call, idempotency records included
    rounds: int
    fix_ms: float | None
    alert_ms: float | None
    total_ms: float
    write: str | None  # the remediation write's name

    @classmethod
    def of(cls, spans: Sequence[Span], total_ms: float) -> Timeline:
        ordered = sorted(spans, key=lambda s: s.started)
        write = next((s for s in ordered if s.kind == "write"), None)
        alert = next((s for s in ordered if s.kind == "publish"), None)
        decisive = write or alert
        return cls(len(ordered), critical_path(ordered, decisive.started) if decisive else 0,
                   write.ended if write else None, alert.ended if alert else None, total_ms,
                   write.name if write else None)


@dataclass
class LatencyRow:
    """One function (or Cloud Custodian's policy) for one event file, over several runs."""

    scenario: str
    who: str  # a function's logical id, or "Cloud Custodian"
    status: str = "ok"
    runs: list[Timeline] = field(default_factory=list)
    note: str = ""
    repeated: list[str] = field(default_factory=list)  # reads made twice in one invocation (any run)

    @property
    def measured(self) -> bool:
        return self.status == "ok" and bool(self.runs)

    @property
    def calls(self) -> int | None:
        return max(r.calls for r in self.runs) if self.runs else None

    @property
    def rounds(self) -> int | None:
        """The median run's (the higher middle value). Not the worst: on a loaded machine a thread
        that starts its call late, after a sibling's answer, adds a round the code does not have."""
        return statistics.median_high(r.rounds for r in self.runs) if self.runs else None

    def _median(self, values: Iterable[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return median(present) if len(present) == len(self.runs) and present else None

    @property
    def fix_ms(self) -> float | None:
        return self._median(r.fix_ms for r in self.runs)

    @property
    def alert_ms(self) -> float | None:
        return self._median(r.alert_ms for r in self.runs)

    @property
    def total_ms(self) -> float | None:
        return self._median(r.total_ms for r in self.runs)

    @property
    def writes(self) -> bool:
        return any(r.write for r in self.runs)


def repeated_reads(calls: Iterable[Any]) -> list[str]:
    """Reads made again with the same parameters in one invocation (recorder.Call objects): each
    costs a round trip and can see a different answer than the first. Names, in order."""
    seen: set[str] = set()
    repeated = []
    for call in calls:
        if call.kind != "read":
            continue
        key = call.name + json.dumps(call.params, sort_keys=True, default=str)
        if key in seen:
            repeated.append(call.name)
        seen.add(key)
    return repeated


def paired_ratio(ours: Sequence[float | None], theirs: Sequence[float | None]) -> float | None:
    """Median of run-by-run ratios (runs interleaved, so load from elsewhere hits both alike)."""
    pairs = [a / b for a, b in zip(ours, theirs, strict=False) if a is not None and b]
    return median(pairs)


def check_latency(rows: Sequence[LatencyRow]) -> list[Check]:
    """Round trips in line before each scenario's fix (or alert), and the admin group's
    restore against Cloud Custodian's, run by run."""
    checks: list[Check] = []
    ours = [r for r in rows if r.who != CUSTODIAN]
    for row in ours:
        budget = ROUNDS.get(row.scenario, DEFAULT_ROUNDS)
        before = "the write" if row.writes else "the alert"
        name = f"{row.scenario} ({row.who}): rounds before {before}"
        if not row.measured or row.rounds is None:
            checks.append(Check(name, f"<= {budget}", "n/a", None if row.status.startswith("n/a") else False,
                                row.status))
            continue
        if not any(r.write or r.alert_ms is not None for r in row.runs):
            checks.append(Check(name, f"<= {budget}", "n/a", None, "the timed runs wrote and sent nothing"))
            continue
        checks.append(Check(name, f"<= {budget}", str(row.rounds), row.rounds <= budget,
                            f"{row.rounds - budget} over" if row.rounds > budget else ""))
        checks.append(Check(f"{row.scenario} ({row.who}): reads repeated", "0", str(len(row.repeated)),
                            not row.repeated, ", ".join(row.repeated)))
    admin = [r for r in ours if r.scenario == ADMIN_SCENARIO and r.measured and r.writes]
    custodian = next((r for r in rows if r.who == CUSTODIAN and r.scenario == ADMIN_SCENARIO), None)
    measures: tuple[tuple[str, float, Callable[[Timeline], float | None]], ...] = (
        ("time to fix", ADMIN_FIX_MAX_RATIO, lambda t: t.fix_ms),
        ("whole invocation", ADMIN_TOTAL_MAX_RATIO, lambda t: t.total_ms))
    for what, limit, pick in measures:
        name = f"restore the admin group: {what} x Cloud Custodian"
        if custodian is None:  # bench/run.py --no-custodian
            checks.append(Check(name, f"<= {limit:.2f}x", "n/a", None, "Cloud Custodian not run"))
            continue
        if not admin or not custodian.measured:  # a side that ran and failed fails the budget
            why = custodian.status if not custodian.measured else "the guardrail wrote nothing"
            checks.append(Check(name, f"<= {limit:.2f}x", "n/a", False, why))
            continue
        value = paired_ratio([pick(t) for t in admin[0].runs], [pick(t) for t in custodian.runs])
        checks.append(check_max(name, value, limit, "x"))
    return checks


CUSTODIAN = "Cloud Custodian"


# --- rendering --------------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text columns; numbers right-aligned, None shown as n/a."""
    cells = [[_cell(v) for v in row] for row in rows]
    numeric = [all(_is_number(row[i]) for row in rows if row[i] is not None) and any(
        row[i] is not None for row in rows) for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str], header: bool = False) -> str:
        parts = [v.rjust(w) if numeric[i] and not header else v.ljust(w)
                 for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return "  ".join(parts).rstrip()

    out = [line(headers, header=True), line(["-" * w for w in widths], header=True)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _x(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}x"


def render(results: Results, command: str = "make bench") -> str:
    """The one report `make bench` prints: a table per measurement, then every budget."""
    out: list[str] = [f"account-guardrail benchmark ({command}, moto in-process, {results.seconds:.0f} s)", ""]
    if results.latency:
        out += [render_latency(results), ""]

    out.append(f"1-2. AWS calls per event (warm container) and warm handler CPU time, median, as a ratio to "
               f"one bare sns.publish ({_cell(results.publish_ms)} ms)")
    rows = []
    for r in results.scenarios:
        w = r.warm
        rows.append([r.scenario, r.function,
                     w.read if w else None, w.write if w else None, w.publish if w else None,
                     w.idempotency if w else None, w.total if w else None,
                     (f"+{r.cold_extra}" if r.cold_extra else "0") if r.cold_extra is not None else None,
                     _x(ratio(r.median_ms, results.publish_ms)), r.state or None,
                     r.outcome if r.status == "ok" else r.status])
    out.append(render_table(["scenario", "function", "read", "write", "publish", "idem", "total",
                             "cold", "time/publish", "state", "outcome"], rows))
    out.append("")

    out.append(f"3. Cold start on Python {results.cold_python or '?'}: CPU time of a fresh interpreter importing "
               f"the handler module, median (python -c 'import boto3' = {_cell(results.boto3_ms)} ms, "
               f"{_cell(results.boto3_rss_mb)} MB)")
    out.append(render_table(["module", "x boto3", "rounds", "CPU ms", "with .pyc", "RSS MB", "note"],
                            [[c["name"], _x(c.get("ratio")), c.get("range"), c.get("ms"), _x(c.get("ratio_pyc")),
                              c.get("rss_mb"), c.get("note", "")]
                             for c in results.cold_start + results.cold_start_info]))
    out.append("")

    out.append("4. Package size (each artifact sam build produced, zipped with deflate as sam deploy does)")
    out.append(render_table(["artifact", "KB", "files", "from"],
                            [[p["name"], p.get("kb"), p.get("files"), p.get("source", "")]
                             for p in results.packages]))
    out.append("")

    out.append("5. MFA sweep scaling (half the users without MFA, all past the grace period)")
    out.append(render_table(["users", "flagged", "IAM+SNS calls", "budget", "read", "write", "publish",
                             "DynamoDB", "wall s", "CPU s", "note"],
                            [[s["users"], s.get("flagged"), s.get("calls"), s.get("limit"), s.get("read"),
                              s.get("write"), s.get("publish"), s.get("idempotency"), s.get("seconds"),
                              s.get("cpu_seconds"),
                              s.get("note", "")] for s in results.sweep]))
    out.append("")

    mem = results.memory
    out.append("6. Memory (peak RSS, MB)")
    out.append(render_table(["process", "MB"], [[k, v] for k, v in mem.get("rows", [])]))
    if mem.get("summary"):
        out.append(mem["summary"])
    out.append("")

    out.append("Budgets")
    out.append(render_table(["budget", "limit", "measured", "verdict", "note"],
                            [[c.budget, c.limit, c.measured, c.verdict, c.note] for c in results.checks]))
    for note in results.notes:
        out.append(f"note: {note}")
    broken = results.broken
    out.append("")
    out.append(f"{len(broken)} budget(s) broken" if broken else "all measured budgets met")
    return "\n".join(out)


def latency_table(results: Results) -> list[list[Any]]:
    """Per event file: a line per function it reaches, then Cloud Custodian's line (ratios are
    ours / Custodian's, against the function that wrote, else the first)."""
    theirs = {r.scenario: r for r in results.latency if r.who == CUSTODIAN}
    ours: dict[str, list[LatencyRow]] = {}
    for row in results.latency:
        if row.who != CUSTODIAN:
            ours.setdefault(row.scenario, []).append(row)
    lines: list[list[Any]] = []
    for scenario, mine in ours.items():
        lines += [_latency_line(row, None) for row in mine]
        if scenario in theirs:
            main = next((r for r in mine if r.writes), mine[0])
            lines.append(_latency_line(theirs[scenario], main))
    return lines


def _latency_line(row: LatencyRow, ours: LatencyRow | None) -> list[Any]:
    def versus(pick: Callable[[Timeline], float | None]) -> str | None:  # ours / theirs, on Custodian's line
        if ours is None or not row.measured or not ours.measured:
            return None
        return _x(paired_ratio([pick(t) for t in ours.runs], [pick(t) for t in row.runs]))

    if not row.measured:
        return [row.scenario if ours is None else "", row.who, None, None, None, None, None, None, None, None,
                row.status]
    return [row.scenario if ours is None else "", row.who, row.calls, row.rounds, row.fix_ms, row.alert_ms,
            row.total_ms, versus(lambda t: t.fix_ms), versus(lambda t: t.alert_ms), versus(lambda t: t.total_ms),
            row.note]


def render_latency(results: Results) -> str:
    runs = max((len(r.runs) for r in results.latency), default=0)
    head = (f"0. Time to fix at {results.latency_ms:g} ms per AWS call (DynamoDB included), median of {runs} "
            f"warm runs; Cloud Custodian {results.custodian_version or '(not run)'} in cloudtrail mode on the same "
            "events, runs interleaved. rounds: sequential round trips before the remediation write (before the "
            "alert where nothing is written; median run); fix/alert/total: ms from the handler's start to the write's "
            "answer, the first publish's answer, the return; ours/c7n: run-by-run ratio")
    table = render_table(["scenario", "who", "calls", "rounds", "fix ms", "alert ms", "total ms",
                          "fix ours/c7n", "alert ours/c7n", "total ours/c7n", "note"], latency_table(results))
    return head + "\n" + table


def summarize_outcome(result: Any) -> str:
    """The handler's verdict in a few words: 'handled, 1 finding', 'ignored: other account'."""
    if not isinstance(result, Mapping):
        return "no result"
    status = str(result.get("status", "?"))
    findings = result.get("findings")
    if isinstance(findings, list) and status == "handled":
        return f"handled, {len(findings)} finding{'s' if len(findings) != 1 else ''}"
    reason = str(result.get("reason") or "")
    return f"{status}: {reason}"[:60] if reason else status
