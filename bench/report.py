"""The benchmark's pure half: call counting, budgets, the memory recommendation, the table.

Nothing here touches AWS, moto or a subprocess, so tests/test_bench.py checks it directly.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# --- budgets (issue 8); change one only with a note in the README's Performance section ----
MAX_CALLS = 5  # per scenario, every function it triggers, idempotency records excluded
ADMIN_SCENARIO = "admin-policy-attached-to-group.json"
ADMIN_MAX_IAM = 2
ROOT_SCENARIO = "root-console-signin.json"
ROOT_MAX_IAM = 0
ALERTS_PER_EVENT = 1  # both named scenarios: exactly one email
COLD_START_MAX_RATIO = 1.5  # x `python -c "import boto3"`
PACKAGE_MAX_KB = 256.0  # our own code, zipped, per artifact
SWEEP_BASE_CALLS = 5  # the sweep may make 5 calls plus one per flagged user
MEMORY_HEADROOM = 1.5  # MemorySize must be >= 1.5 x the estimated peak
LAMBDA_MIN_MB = 128
MEMORY_STEP_MB = 64  # recommend round sizes


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
    """The per-event call budgets; a named scenario that did not run is n/a, not a pass."""
    totals = scenario_totals(rows)
    checks = []
    named = ((ADMIN_SCENARIO, ADMIN_MAX_IAM, "restore the admin group"),
             (ROOT_SCENARIO, ROOT_MAX_IAM, "root sign-in alert (warm)"))
    for scenario, max_iam, what in named:
        limit = f"<= {max_iam} IAM + {ALERTS_PER_EVENT} publish" if max_iam else f"0 IAM + {ALERTS_PER_EVENT} publish"
        counts = totals.get(scenario)
        if counts is None:
            why = next((r.status for r in rows if r.scenario == scenario), "events/" + scenario + " missing")
            checks.append(Check(f"{what}: calls", limit, "n/a", None, why))
            continue
        excess = []
        if counts.iam > max_iam:
            excess.append(f"{counts.iam - max_iam} IAM call(s) over")
        if counts.publish != ALERTS_PER_EVENT:
            excess.append(f"{counts.publish} publishes instead of {ALERTS_PER_EVENT}")
        checks.append(Check(f"{what}: calls", limit, f"{counts.iam} IAM + {counts.publish} publish",
                            not excess, "; ".join(excess)))
    for scenario, counts in sorted(totals.items()):
        over = counts.total - MAX_CALLS
        checks.append(Check(f"{scenario}: calls", f"<= {MAX_CALLS} (no idempotency)", str(counts.total),
                            over <= 0, f"{over} over" if over > 0 else ""))
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
    out.append(render_table(["users", "flagged", "calls", "budget", "read", "write", "publish", "wall s",
                             "CPU s", "note"],
                            [[s["users"], s.get("flagged"), s.get("calls"), s.get("limit"), s.get("read"),
                              s.get("write"), s.get("publish"), s.get("seconds"), s.get("cpu_seconds"),
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
