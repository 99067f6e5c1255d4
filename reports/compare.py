"""The CI regression gate: which cells got worse between a base and a new set of records.

Cells are matched by `select.cell_key` (the config without labels, plus the
hardware key). Several records of one cell on one side are reruns: their raw
samples are pooled. Per matched cell and per metric:

* **A metric with raw samples** (`Metric.raw`: per-call latencies, per-call
  rates) is compared by its distributions. It *regressed* when **both** a
  two-sided Mann–Whitney U test (`scipy.stats.mannwhitneyu`) rejects at
  p < `ALPHA` (0.001) **and** the relative shift — the Hodges–Lehmann
  estimate of new − base divided by the base median — is worse than the
  threshold in the metric's bad direction (asv and pyperf's lesson: on a noisy
  machine significance alone flags every rerun, a ratio alone flags noise).
  Improved is the mirror image; significant but within the threshold is
  `noise`; fewer than `MIN_SAMPLES` samples on a side is `insufficient`
  (never a regression). The test and the estimate measure a *location shift*
  of the whole distribution: for a tail metric such as `latency_p99_s`, whose
  raw samples are the same latencies, that is the shift of the distribution,
  not of its tail.
* **A metric without raw samples** (cold start, memory, one number per run)
  is compared value against value, against the threshold only, and labelled
  `threshold only`. It can fail the gate only when the user asked for it with
  `--metric` (`threshold_only_gates=True`): one number per run cannot tell a
  change from the 10–30 % the development machines vary between runs, so a
  default gate on it would flag reruns of the same configuration — the one
  thing the gate must never do.
* **Status**: a cell with an `invalid` or `failed` record on the new side whose
  base records are all `ok` regressed, whatever its numbers, with the record's
  reason. Broken on both sides is listed, not a new regression; broken only in
  the base is `recovered` (an improvement). Metrics are still compared over the
  `ok` records of each side, so a flaky base rerun does not hide a slowdown.

The Hodges–Lehmann estimate is the median of all pairwise differences
new − base. With m·n pairs that is quadratic, so each side is first thinned
deterministically to at most `HL_MAX_SAMPLES` evenly spaced order statistics
(the sample's own quantiles: the shape of the distribution is kept, and the
same input always gives the same answer). Its confidence interval is the
distribution-free one from the Mann–Whitney order statistics (Hollander &
Wolfe): the k-th smallest and k-th largest pairwise differences, with k from
the normal approximation of U's null distribution at the *original* sample
sizes (applied as a fraction of the thinned pairs). Its level is
`CONFIDENCE` = 1 − `ALPHA`, the test's own, so a significant shift's interval
excludes zero. The relative interval divides by the base median and ignores
that median's own uncertainty (small next to the shift's at these sizes).

Everything here is a pure function from records to frozen results; rendering
is `reports/compare_render.py`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np

from ..bench.errors import UserError
from ..bench.record import Record
from . import metrics as metric_registry
from .metrics import Metric
from .select import cell_key, cell_label, group_by_cell as group_cells

ALPHA = 0.001
CONFIDENCE = 1.0 - ALPHA
MIN_SAMPLES = 5
HL_MAX_SAMPLES = 2000
DEFAULT_THRESHOLD = 0.05

Verdict = Literal["regressed", "improved", "noise", "unchanged", "insufficient", "threshold only", "not measured"]
Method = Literal["mann-whitney", "threshold", "none"]
StatusChange = Literal["regressed", "recovered", "broken"]
CellVerdict = Literal["regressed", "improved", "broken", "unchanged"]


# ----------------------------------------------------------------------------- thresholds

@dataclass(frozen=True)
class Thresholds:
    """The relative shift (0.05 = 5 %) beyond which a change counts, by default and per metric."""

    default: float = DEFAULT_THRESHOLD
    per_metric: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_metric", MappingProxyType(dict(self.per_metric)))

    def of(self, metric: str) -> float:
        return self.per_metric.get(metric, self.default)


_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")


def parse_percent(text: str, flag: str = "--threshold") -> float:
    """`5%` or `5` (a bare number is percent) as the fraction 0.05; refuses ≤ 0, ≥ 100 % and bare `0.05`.

    A bare number below 1 is refused because it is the one ambiguous spelling:
    `0.05` may mean 5 % (a fraction) or 0.05 %; write `5%` or `0.05%`.
    """
    match = _PERCENT.match(text)
    if not match:
        raise UserError(f"{flag} {text!r}: expected a percentage such as 5% (or NAME=5% for one metric)")
    number, percent = float(match.group(1)), match.group(2)
    if not percent and 0 < number < 1:
        raise UserError(f"{flag} {text!r}: ambiguous; write {number * 100:g}% for a fraction or {number:g}% for "
                        "that many percent")
    if not 0 < number < 100:
        raise UserError(f"{flag} {text!r}: must be more than 0% and less than 100%")
    return number / 100.0


def parse_thresholds(items: Sequence[str], compared: Sequence[str]) -> Thresholds:
    """Repeated `--threshold` items: one default (`5%`) and per-metric overrides (`latency_p99_s=10%`).

    A metric named in an override must be one of the `compared` metrics: a
    threshold for a metric nobody compares is almost always a forgotten `--metric`.
    """
    default: float | None = None
    per_metric: dict[str, float] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep:
            if default is not None:
                raise UserError(f"--threshold {item!r}: a default threshold was already given")
            default = parse_percent(item)
            continue
        name = name.strip()
        metric_registry.get(name)  # unknown name: UserError listing the known ones
        if name not in compared:
            raise UserError(f"--threshold {item!r}: {name} is not compared (compared: {', '.join(compared)}); "
                            f"add --metric {name}")
        if name in per_metric:
            raise UserError(f"--threshold {item!r}: a threshold for {name} was already given")
        per_metric[name] = parse_percent(value, f"--threshold {name}")
    return Thresholds(DEFAULT_THRESHOLD if default is None else default, per_metric)


# ----------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Shift:
    """Hodges–Lehmann shift new − base in the samples' unit, with its distribution-free interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    thinned: bool  # True when a side had more than HL_MAX_SAMPLES samples


def thin(values: Sequence[float], limit: int = HL_MAX_SAMPLES) -> np.ndarray:
    """The sorted sample, or `limit` of its order statistics evenly spaced in rank (mid-rank quantiles)."""
    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    if n <= limit:
        return ordered
    return ordered[((np.arange(limit) + 0.5) * n / limit).astype(np.int64)]


def hodges_lehmann(base: Sequence[float], new: Sequence[float], confidence: float = CONFIDENCE) -> Shift:
    """Median of the pairwise differences new − base, and its Mann–Whitney order-statistic interval."""
    from scipy.stats import norm

    m, n = len(base), len(new)
    if not (m and n):
        raise ValueError("hodges_lehmann needs samples on both sides")
    b, w = thin(base), thin(new)
    differences = np.subtract.outer(w, b).ravel()
    count = len(differences)
    # k-th smallest difference (1-based) bounds the interval; normal approximation of U at the original sizes.
    z = float(norm.ppf(0.5 + confidence / 2))
    k = math.floor(m * n / 2 - z * math.sqrt(m * n * (m + n + 1) / 12))
    fraction = (max(k, 1) - 1) / (m * n - 1) if m * n > 1 else 0.0
    lo = round(fraction * (count - 1))
    hi = count - 1 - lo
    mid = sorted({(count - 1) // 2, count // 2, lo, hi})
    part = np.partition(differences, mid)
    estimate = (part[(count - 1) // 2] + part[count // 2]) / 2
    return Shift(float(estimate), float(part[lo]), float(part[hi]), confidence,
                 thinned=max(m, n) > HL_MAX_SAMPLES)


def mann_whitney_p(base: Sequence[float], new: Sequence[float]) -> float:
    """Two-sided Mann–Whitney U p-value (scipy picks exact or asymptotic with tie correction)."""
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(new, base, alternative="two-sided").pvalue)


# ----------------------------------------------------------------------------- one metric

@dataclass(frozen=True)
class MetricComparison:
    """One metric of one cell: the two central values, the relative shift with its interval, the verdict.

    `base`/`new` are the medians of the pooled raw samples (method
    `mann-whitney`) or the median of the records' values (method
    `threshold`). `shift`, `low`, `high` are relative to the base (0.1 =
    +10 %); `p_value` is None without a test. `gates` says whether a
    `regressed` verdict fails the gate.
    """

    metric: Metric
    method: Method
    verdict: Verdict
    threshold: float
    base: float | None = None
    new: float | None = None
    base_n: int = 0
    new_n: int = 0
    shift: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    thinned: bool = False
    gates: bool = True

    @property
    def regressed(self) -> bool:
        return self.verdict == "regressed" and self.gates

    @property
    def improved(self) -> bool:
        return self.verdict == "improved"


def _beyond(metric: Metric, shift: float, threshold: float) -> Verdict | None:
    """`regressed` / `improved` when the shift passes the threshold in the metric's bad / good direction."""
    worse = shift if metric.direction == "lower" else -shift
    return "regressed" if worse > threshold else "improved" if worse < -threshold else None


def compare_samples(metric: Metric, base: Sequence[float], new: Sequence[float], threshold: float) -> MetricComparison:
    """The distribution test: Mann–Whitney at `ALPHA` and the Hodges–Lehmann shift against `threshold`."""
    common = dict(metric=metric, method="mann-whitney", threshold=threshold, base_n=len(base), new_n=len(new),
                  base=float(np.median(base)), new=float(np.median(new)))
    if common["base"] == 0:
        return MetricComparison(verdict="insufficient", **common)
    hl = hodges_lehmann(base, new)
    scale = abs(common["base"])
    relative = dict(shift=hl.estimate / scale, low=hl.low / scale, high=hl.high / scale, thinned=hl.thinned)
    if min(len(base), len(new)) < MIN_SAMPLES:
        return MetricComparison(verdict="insufficient", **common, **relative)
    p = mann_whitney_p(base, new)
    shift = relative["shift"]
    verdict: Verdict = "unchanged" if p >= ALPHA else _beyond(metric, shift, threshold) or "noise"
    return MetricComparison(verdict=verdict, p_value=p, **common, **relative)


def compare_values(metric: Metric, base: float, new: float, threshold: float, *, gates: bool) -> MetricComparison:
    """One number per side: the relative change against `threshold` only (see the module docstring)."""
    common = dict(metric=metric, method="threshold", threshold=threshold, base=base, new=new, gates=gates)
    if base == 0:
        return MetricComparison(verdict="insufficient", **common)
    shift = (new - base) / abs(base)
    verdict: Verdict = (_beyond(metric, shift, threshold) or "unchanged") if gates else "threshold only"
    return MetricComparison(verdict=verdict, shift=shift, **common)


def compare_metric(metric: Metric, base: Sequence[Record], new: Sequence[Record], threshold: float, *,
                   threshold_only_gates: bool = False) -> MetricComparison:
    """One metric over the `ok` records of each side: pooled raw samples when both sides have them."""
    base_raw = [v for r in base for v in metric.raw(r)]
    new_raw = [v for r in new for v in metric.raw(r)]
    if base_raw and new_raw:
        return compare_samples(metric, base_raw, new_raw, threshold)
    base_values = [v for v in map(metric.value, base) if v is not None]
    new_values = [v for v in map(metric.value, new) if v is not None]
    if base_values and new_values:
        return compare_values(metric, float(np.median(base_values)), float(np.median(new_values)), threshold,
                              gates=threshold_only_gates)
    return MetricComparison(metric=metric, method="none", verdict="not measured", threshold=threshold,
                            base=float(np.median(base_values)) if base_values else None,
                            new=float(np.median(new_values)) if new_values else None)


# ----------------------------------------------------------------------------- one cell, all cells

@dataclass(frozen=True)
class SideStatus:
    """How one side of a cell ended: `ok` when every record is, else the first broken record's status and reason."""

    status: str
    reason: str | None
    records: int
    broken: int  # records that are invalid or failed


def side_status(records: Sequence[Record]) -> SideStatus:
    broken = [r for r in records if r.status != "ok"]
    if not broken:
        return SideStatus("ok", None, len(records), 0)
    return SideStatus(broken[0].status, broken[0].reason, len(records), len(broken))


@dataclass(frozen=True)
class CellComparison:
    """One cell measured on both sides: the status change (if any) and one comparison per metric."""

    key: str
    label: str
    item: str  # the workload's unit of work, for formatting rates
    base: SideStatus
    new: SideStatus
    status_change: StatusChange | None
    metrics: tuple[MetricComparison, ...]

    @property
    def regressed_metrics(self) -> tuple[MetricComparison, ...]:
        return tuple(m for m in self.metrics if m.regressed)

    @property
    def verdict(self) -> CellVerdict:
        if self.status_change == "regressed" or self.regressed_metrics:
            return "regressed"
        if self.status_change == "recovered" or any(m.improved for m in self.metrics):
            return "improved"
        if self.status_change == "broken":
            return "broken"
        return "unchanged"


@dataclass(frozen=True)
class UnmatchedCell:
    """A cell only one side measured: listed, never silently dropped, never a regression."""

    key: str
    label: str
    side: Literal["base", "new"]
    records: int
    status: str


@dataclass(frozen=True)
class Comparison:
    """The whole answer: matched cells (regressions first), cells only one side has, and the gate's exit code."""

    cells: tuple[CellComparison, ...]
    only_base: tuple[UnmatchedCell, ...]
    only_new: tuple[UnmatchedCell, ...]
    metrics: tuple[str, ...]
    thresholds: Thresholds

    def _with(self, verdict: CellVerdict) -> tuple[CellComparison, ...]:
        return tuple(c for c in self.cells if c.verdict == verdict)

    @property
    def regressions(self) -> tuple[CellComparison, ...]:
        return self._with("regressed")

    @property
    def improvements(self) -> tuple[CellComparison, ...]:
        return self._with("improved")

    @property
    def unchanged(self) -> tuple[CellComparison, ...]:
        return self._with("unchanged")

    @property
    def broken(self) -> tuple[CellComparison, ...]:
        return self._with("broken")

    @property
    def verdict_code(self) -> int:
        """1 when any cell regressed (the caller must act), else 0."""
        return 1 if self.regressions else 0


_ORDER: dict[str, int] = {"regressed": 0, "improved": 1, "broken": 2, "unchanged": 3}


def _status_change(base: SideStatus, new: SideStatus) -> StatusChange | None:
    if new.broken and not base.broken:
        return "regressed"
    if new.broken and base.broken:
        return "broken"
    if base.broken:
        return "recovered"
    return None


def compare_cell(base: Sequence[Record], new: Sequence[Record], metrics: Sequence[Metric], thresholds: Thresholds,
                 *, threshold_only_gates: bool = False) -> CellComparison:
    """One cell: status first, then each metric over the `ok` records (when both sides have some)."""
    base_status, new_status = side_status(base), side_status(new)
    base_ok = [r for r in base if r.status == "ok"]
    new_ok = [r for r in new if r.status == "ok"]
    compared: tuple[MetricComparison, ...] = ()
    if base_ok and new_ok:
        compared = tuple(
            compare_metric(m, base_ok, new_ok, thresholds.of(m.name), threshold_only_gates=threshold_only_gates)
            for m in metrics
        )
    first = base[0]
    return CellComparison(
        key=cell_key(first), label=cell_label(first), item=str(first.workload.get("unit") or "item"),
        base=base_status, new=new_status, status_change=_status_change(base_status, new_status), metrics=compared,
    )


def _unmatched(cells: Mapping[str, list[Record]], keys: Iterable[str], side: Literal["base", "new"]) -> tuple[
        UnmatchedCell, ...]:
    found = [UnmatchedCell(k, cell_label(cells[k][0]), side, len(cells[k]), side_status(cells[k]).status) for k in keys]
    return tuple(sorted(found, key=lambda u: u.label))


def compare(
    base: Iterable[Record],
    new: Iterable[Record],
    metrics: Sequence[str] = metric_registry.DEFAULT_COMPARE,
    thresholds: Thresholds = Thresholds(),
    *,
    threshold_only_gates: bool = False,
) -> Comparison:
    """Match `base` and `new` by cell key and compare every matched cell on `metrics`.

    `threshold_only_gates` lets a metric without raw samples fail the gate
    (the CLI sets it when the user named the metrics with `--metric`).
    """
    chosen = [metric_registry.get(name) for name in metrics]
    base_cells, new_cells = group_cells(base), group_cells(new)
    matched = [
        compare_cell(base_cells[k], new_cells[k], chosen, thresholds, threshold_only_gates=threshold_only_gates)
        for k in base_cells if k in new_cells
    ]
    matched.sort(key=lambda c: (_ORDER[c.verdict], c.label))
    return Comparison(
        cells=tuple(matched),
        only_base=_unmatched(base_cells, [k for k in base_cells if k not in new_cells], "base"),
        only_new=_unmatched(new_cells, [k for k in new_cells if k not in base_cells], "new"),
        metrics=tuple(metrics),
        thresholds=thresholds,
    )
