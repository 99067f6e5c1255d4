"""Which configuration wins, on what evidence: the analysis behind `aigcbench report`.

Pure functions from records to frozen results; nothing here prints or draws.

* Records are grouped into *comparison groups* (workload × size × scenario).
  Within a group there is one `Row` per cell (`select.cell_key`): reruns of a
  cell are counted, and the newest `ok` one gives the numbers (else the newest
  `invalid`, else the newest `failed`, so a cell that never succeeded still shows why).
* Rows are ranked by the group's headline metric (`metrics.headline`:
  capacity for a server search, throughput offline, p50 latency otherwise)
  in that metric's direction. Invalid and failed rows are never ranked; they
  stay in the table, after the ranked ones.
* A winner is declared only beyond the noise. For a metric with raw samples
  each row carries a distribution-free 95 % confidence interval of the median
  (the order-statistic interval from the binomial, `scipy.stats.quantile_test`);
  when the leader's interval overlaps another's, the leaders are
  indistinguishable. Capacity has no samples: it is a search result good to the
  search's own tolerance (stored with the record, else 5 %), so a leader must
  beat the runner-up by more than that.
* Speed-up is against eager PyTorch fp32 (`pytorch`, `fp32`) on the same
  hardware, device and batch size, oriented so that > 1 is better.

`analyse` needs raw samples only for the record that shows each cell; records
loaded without samples get them from `load_samples(run_ids)` (the CLI passes
`Store.samples_of`), called once for just those runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from ..bench.record import Record
from . import metrics
from .select import cell_key, cell_label, group_by_cell, normalise_timestamp

SCHEMA_VERSION = 1
CI_LEVEL = 0.95
DEFAULT_CAPACITY_TOLERANCE = 0.05
BASELINE = ("pytorch", "fp32")  # eager PyTorch fp32: what every speed-up is measured against

VerdictKind = Literal["winner", "indistinguishable", "only", "none"]
_STATUS_ORDER = {"ok": 0, "invalid": 1, "failed": 2}


@dataclass(frozen=True)
class Interval:
    """A confidence interval [low, high] at `level` (0.95 = 95 %)."""

    low: float
    high: float
    level: float = CI_LEVEL

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high


@dataclass(frozen=True)
class Row:
    """One cell of a comparison group, as its chosen record measured it (values in SI units)."""

    cell: str
    run_id: str
    label: str
    hardware: str
    backend: str
    device: str
    precision: str
    batch: int
    status: str
    reason: str | None
    runs: int
    labels: tuple[tuple[str, str], ...]
    rank: int | None = None
    headline: float | None = None
    ci: Interval | None = None
    p50_s: float | None = None
    p99_s: float | None = None
    throughput: float | None = None
    capacity: float | None = None
    capacity_tolerance: float | None = None
    peak_host_memory_bytes: float | None = None
    cold_start_s: float | None = None
    cold_start_parts_s: tuple[tuple[str, float], ...] = ()
    energy_j_per_item: float | None = None
    fidelity_error: float | None = None
    speedup: float | None = None

    @property
    def name(self) -> str:
        """The configuration in words: backend, device when not the CPU, precision, batch."""
        device = "" if self.device == "cpu" else f" {self.device}"
        return f"{self.backend}{device} {self.precision} batch {self.batch}"


@dataclass(frozen=True)
class Verdict:
    """Who leads a group and whether that is beyond the noise.

    `leaders` are cell keys: the winner alone, or every cell indistinguishable
    from the leader (leader first). `margin` is how much better the leader is
    than the runner-up (> 1, oriented by the metric's direction); `basis` says
    what separated them: the medians' confidence intervals or the capacity search's tolerance.
    """

    kind: VerdictKind
    leaders: tuple[str, ...] = ()
    runner_up: str | None = None
    margin: float | None = None
    basis: Literal["ci", "tolerance"] | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class Group:
    """A workload × size × scenario and its rows: ranked first, then invalid, then failed."""

    workload: str
    size: str
    scenario: str
    unit: str
    metric: str
    rows: tuple[Row, ...]
    verdict: Verdict

    @property
    def title(self) -> str:
        return f"{self.workload} {self.size} ({self.scenario})"

    def row(self, cell: str) -> Row:
        return next(r for r in self.rows if r.cell == cell)


@dataclass(frozen=True)
class Report:
    """The whole analysis: every group, and what it was computed from."""

    groups: tuple[Group, ...]
    records: int
    selection: str = "all records"
    store: str = ""
    schema_version: int = SCHEMA_VERSION
    # The record each row shows, by run id, with its raw samples: what the charts draw.
    shown: Mapping[str, Record] = dataclasses.field(default_factory=dict, repr=False, compare=False)


# ----------------------------------------------------------------------------- statistics

def median_ci(samples: Sequence[float], level: float = CI_LEVEL) -> Interval | None:
    """Distribution-free CI of the median: order statistics chosen from the binomial (None when too few samples)."""
    import numpy as np
    from scipy.stats import quantile_test

    values = np.asarray([s for s in samples if math.isfinite(s)], dtype=float)
    if values.size == 0:
        return None
    ci = quantile_test(values, q=float(np.median(values)), p=0.5).confidence_interval(level)
    if not (math.isfinite(ci.low) and math.isfinite(ci.high)):
        return None  # fewer than six samples: no order statistics reach 95 %
    return Interval(float(ci.low), float(ci.high), level)


def oriented_ratio(metric: metrics.Metric, value: float, other: float) -> float | None:
    """How many times better `value` is than `other` (> 1 better), in the metric's direction."""
    if value <= 0 or other <= 0:
        return None
    return other / value if metric.direction == "lower" else value / other


# ----------------------------------------------------------------------------- cells

def _chosen(records: Sequence[Record]) -> Record:
    """The record a cell is shown by: the best status, newest first (insertion order breaks a tie)."""
    indexed = list(enumerate(records))
    best = min(_STATUS_ORDER[r.status] for r in records)
    return max(((i, r) for i, r in indexed if _STATUS_ORDER[r.status] == best),
               key=lambda pair: (normalise_timestamp(pair[1].created_at), pair[0]))[1]


def _group_key(record: Record) -> tuple[str, str, str]:
    return (str(record.workload.get("name")), str(record.workload.get("size")), str(record.scenario.get("name")))


def _group_metric(chosen: Sequence[Record]) -> metrics.Metric:
    """The metric that ranks a group: the headline of its usable records (capacity wins if any has it)."""
    usable = [r for r in chosen if r.status == "ok"] or list(chosen)
    names = {metrics.headline(r).name for r in usable}
    for name in ("capacity_items_per_s", "throughput_items_per_s"):
        if name in names:
            return metrics.get(name)
    return metrics.get("latency_p50_s")


def _row(cell: str, record: Record, runs: int, metric: metrics.Metric) -> Row:
    m = metrics.METRICS
    b = record.backend
    value = metric.value(record)
    parts = tuple((p, v) for p in metrics.COLD_START_PARTS if (v := m[f"cold_start_{p}_s"].value(record)) is not None)
    return Row(
        cell=cell, run_id=record.run_id, label=cell_label(record),
        hardware=str(record.environment.get("hardware_key")), backend=str(b.get("name")),
        device=str(b.get("device")), precision=str(b.get("precision")),
        batch=int(record.scenario.get("batch_size") or 1), status=record.status, reason=record.reason, runs=runs,
        labels=tuple(sorted((str(k), str(v)) for k, v in record.labels.items())),
        headline=value if record.status != "failed" else None,
        ci=median_ci(metric.raw(record)) if record.status == "ok" and metric.samples else None,
        p50_s=m["latency_p50_s"].value(record), p99_s=m["latency_p99_s"].value(record),
        throughput=m["throughput_items_per_s"].value(record), capacity=m["capacity_items_per_s"].value(record),
        capacity_tolerance=m["capacity_search_tolerance"].value(record),
        peak_host_memory_bytes=m["peak_host_memory_bytes"].value(record),
        cold_start_s=m["cold_start_total_s"].value(record), cold_start_parts_s=parts,
        energy_j_per_item=m["energy_j_per_item"].value(record), fidelity_error=m["fidelity_max_rel_error"].value(record),
    )


# ----------------------------------------------------------------------------- ranking

def _ranked(rows: Sequence[Row], metric: metrics.Metric) -> list[Row]:
    """Ranked rows (ok with a headline value) best first, then every other row in status order."""
    rankable = [r for r in rows if r.status == "ok" and r.headline is not None]
    sign = 1.0 if metric.direction == "lower" else -1.0
    rankable.sort(key=lambda r: (sign * r.headline, r.label))  # type: ignore[operator]
    rest = sorted((r for r in rows if r not in rankable), key=lambda r: (_STATUS_ORDER[r.status], r.label))
    return [dataclasses.replace(r, rank=i) for i, r in enumerate(rankable, 1)] + rest


def _with_speedups(rows: Sequence[Row], metric: metrics.Metric) -> list[Row]:
    """Each ok row's headline against eager PyTorch fp32 on the same hardware, device and batch."""
    baselines = {(r.hardware, r.device, r.batch): r.headline for r in rows
                 if (r.backend, r.precision) == BASELINE and r.status == "ok" and r.headline is not None}
    out = []
    for r in rows:
        base = baselines.get((r.hardware, r.device, r.batch))
        ok = r.status == "ok" and r.headline is not None and base is not None
        out.append(dataclasses.replace(r, speedup=oriented_ratio(metric, r.headline, base) if ok else None))
    return out


def verdict(rows: Sequence[Row], metric: metrics.Metric) -> Verdict:
    """Winner, indistinguishable leaders, the only valid cell, or none (rows ranked, best first)."""
    ranked = [r for r in rows if r.rank is not None]
    if not ranked:
        return Verdict("none")
    leader = ranked[0]
    if len(ranked) == 1:
        return Verdict("only", (leader.cell,))
    runner = ranked[1]
    margin = oriented_ratio(metric, leader.headline, runner.headline)  # type: ignore[arg-type]
    if metric.samples is None:
        tolerance = max(r.capacity_tolerance or DEFAULT_CAPACITY_TOLERANCE for r in (leader, runner))
        tied = [r for r in ranked[1:]
                if (oriented_ratio(metric, leader.headline, r.headline) or math.inf) - 1 <= tolerance]  # type: ignore[arg-type]
        basis: Literal["ci", "tolerance"] = "tolerance"
    else:
        tolerance = None
        # A row without an interval (too few samples) cannot be told apart from anything.
        tied = [r for r in ranked[1:] if leader.ci is None or r.ci is None or leader.ci.overlaps(r.ci)]
        basis = "ci"
    if tied:
        return Verdict("indistinguishable", (leader.cell, *(r.cell for r in tied)), runner.cell, margin, basis, tolerance)
    return Verdict("winner", (leader.cell,), runner.cell, margin, basis, tolerance)


SampleLoader = Callable[[list[str]], Mapping[str, Mapping[str, Any]]]


def analyse(records: Sequence[Record], load_samples: SampleLoader | None = None, *,
            selection: str = "all records", store: str = "") -> Report:
    """The report's analysis; `load_samples` fills in raw samples of records loaded without them."""
    chosen = {key: (_chosen(group), len(group)) for key, group in group_by_cell(records).items()}
    missing = [r.run_id for r, _ in chosen.values() if r.status != "failed" and not r.samples]
    loaded = load_samples(missing) if load_samples is not None and missing else {}
    by_group: dict[tuple[str, str, str], list[tuple[str, Record, int]]] = defaultdict(list)
    shown: dict[str, Record] = {}
    for key, (record, runs) in chosen.items():
        if record.run_id in loaded:
            record = dataclasses.replace(record, samples=loaded[record.run_id])
        shown[record.run_id] = record
        by_group[_group_key(record)].append((key, record, runs))
    groups = []
    for (workload, size, scenario), cells in sorted(by_group.items()):
        metric = _group_metric([r for _, r, _ in cells])
        rows = _with_speedups(_ranked([_row(k, r, n, metric) for k, r, n in cells], metric), metric)
        unit = str(cells[0][1].workload.get("unit") or "item")
        groups.append(Group(workload, size, scenario, unit, metric.name, tuple(rows), verdict(rows, metric)))
    return Report(tuple(groups), len(records), selection, store, shown=shown)


# ----------------------------------------------------------------------------- the answer in words

def format_ci(group: Group, row: Row) -> str:
    """'95 % CI 12.1ms–12.6ms', or '' when the row has no interval."""
    if row.ci is None:
        return ""
    metric = metrics.get(group.metric)
    return f"95 % CI {metric.format(row.ci.low, group.unit)}–{metric.format(row.ci.high, group.unit)}"


def headline_text(group: Group, row: Row) -> str:
    """The headline value with its name and interval: 'p50 12.3ms (95 % CI 12.1ms–12.6ms)'."""
    metric = metrics.get(group.metric)
    short = {"latency_p50_s": "p50", "throughput_items_per_s": "throughput",
             "capacity_items_per_s": "capacity under SLO"}.get(metric.name, metric.label)
    ci = format_ci(group, row)
    return f"{short} {metric.format(row.headline, group.unit)}" + (f" ({ci})" if ci else "")


def _speedup_text(row: Row) -> str:
    if row.speedup is None:
        return "no eager PyTorch fp32 baseline"
    if (row.backend, row.precision) == BASELINE:
        return "eager PyTorch fp32 itself"
    return f"{row.speedup:.2f}× eager PyTorch"


def answer(group: Group) -> str:
    """The group's answer in one sentence, the way the report opens."""
    v = group.verdict
    if v.kind == "none":
        counts = defaultdict(int)
        for r in group.rows:
            counts[r.status] += 1
        shown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return f"{group.title}: no valid result ({shown})"
    leader = group.row(v.leaders[0])
    if v.kind == "indistinguishable":
        why = ("95 % CIs of the median overlap" if v.basis == "ci"
               else f"capacities within the {v.tolerance:.0%} search tolerance")
        names = ", ".join(f"{group.row(c).name} on {group.row(c).hardware}" for c in v.leaders)
        return f"{group.title}: leaders indistinguishable ({why}): {names}; best measured {headline_text(group, leader)}"
    text = (f"on {leader.hardware}, {group.title}: {leader.name} — {_speedup_text(leader)}, "
            f"{headline_text(group, leader)}")
    if v.kind == "only":
        return text + "; the only valid configuration"
    runner = group.row(v.runner_up)  # type: ignore[arg-type]
    beyond = ("CIs of the median do not overlap" if v.basis == "ci"
              else f"beyond the {v.tolerance:.0%} search tolerance")
    return text + f"; {v.margin:.2f}× the runner-up {runner.name} on {runner.hardware} ({beyond})"


RANKING_COLUMNS: tuple[str, ...] = (
    "rank", "hardware", "backend", "device", "precision", "batch", "headline", "p50", "p99", "throughput",
    "vs eager fp32", "peak host mem", "cold start", "energy/item", "runs", "status", "fidelity error", "labels",
)
NUMERIC_COLUMNS = frozenset({"rank", "batch", "headline", "p50", "p99", "throughput", "vs eager fp32",
                             "peak host mem", "cold start", "energy/item", "runs", "fidelity error"})


def ranking_cells(group: Group, row: Row) -> dict[str, str]:
    """One ranking-table row as text, keyed by `RANKING_COLUMNS` (HTML and Markdown escape it themselves)."""
    m, unit = metrics.METRICS, group.unit
    metric = m[group.metric]
    headline = metric.format(row.headline, unit) + (f" ({format_ci(group, row)})" if row.ci else "")
    status = row.status if row.status == "ok" else f"{row.status}: {row.reason}"
    error = row.fidelity_error
    return {
        "rank": str(row.rank) if row.rank is not None else "—", "hardware": row.hardware, "backend": row.backend,
        "device": row.device, "precision": row.precision, "batch": str(row.batch), "headline": headline,
        "p50": m["latency_p50_s"].format(row.p50_s), "p99": m["latency_p99_s"].format(row.p99_s),
        "throughput": m["throughput_items_per_s"].format(row.throughput, unit),
        "vs eager fp32": f"{row.speedup:.2f}×" if row.speedup is not None else "—",
        "peak host mem": m["peak_host_memory_bytes"].format(row.peak_host_memory_bytes),
        "cold start": m["cold_start_total_s"].format(row.cold_start_s),
        "energy/item": m["energy_j_per_item"].format(row.energy_j_per_item, unit),
        "runs": str(row.runs), "status": status,
        "fidelity error": "—" if error is None else f"{error:.2e}",
        "labels": " ".join(f"{k}={v}" for k, v in row.labels),
    }


def headline_column(group: Group) -> str:
    """The ranking table's headline header: the metric, its direction, and the interval when there is one."""
    metric = metrics.get(group.metric)
    arrow = "lower is better" if metric.direction == "lower" else "higher is better"
    return f"{metric.label} ({arrow}{'; 95 % CI of the median' if metric.samples else ''})"


# ----------------------------------------------------------------------------- data for notebooks

def to_json(report: Report) -> dict[str, Any]:
    """The analysis as plain JSON data (`schema_version`, `groups` with `rows`, `verdict` and `answer`)."""
    groups = []
    for g in report.groups:
        data = dataclasses.asdict(g)
        data["rows"] = [{**dataclasses.asdict(r), "name": r.name, "labels": dict(r.labels),
                         "cold_start_parts_s": dict(r.cold_start_parts_s)} for r in g.rows]
        data["answer"] = answer(g)
        groups.append(data)
    return {"schema_version": report.schema_version, "selection": report.selection, "store": report.store,
            "records": report.records, "answer": [answer(g) for g in report.groups], "groups": groups}


def records_frame(records: Iterable[Record]) -> Any:
    """One row per record: what identifies it, its labels (`label.KEY`), and every registry metric as a column."""
    import pandas as pd

    from .select import record_columns

    rows = []
    for r in records:
        row: dict[str, Any] = {"run_id": r.run_id, "created_at": r.created_at, "cell": cell_key(r),
                               **record_columns(r), "reason": r.reason}
        row.update({f"label.{k}": v for k, v in sorted(r.labels.items())})
        row.update({name: metric.value(r) for name, metric in metrics.METRICS.items()})
        rows.append(row)
    return pd.DataFrame(rows)
