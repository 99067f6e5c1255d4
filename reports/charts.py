"""The report's charts: matplotlib figures drawn from a `report.Group` (and raw samples where a chart needs them).

Each chart function returns a `Chart`: a title, a `matplotlib.figure.Figure`
or None, and a one-line note saying why a chart was skipped (one batch size
only, no baseline...) or what it leaves out (cells beyond `MAX_CELLS`).
Figures are built with `Figure` directly, never pyplot; `render.svg` turns one
into inline SVG and frees it.

Only the latency distribution needs raw samples; it reads them through the
metric registry from the records it is given, which are the few the chart
draws (the leading `MAX_CELLS` of the ranking).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import matplotlib
from matplotlib.figure import Figure

from ..bench.record import Record
from . import metrics
from .report import BASELINE, Group, Row

MAX_CELLS = 12  # a chart with more boxes or bars than this stops being readable
WIDTH_IN = 7.2
_OK, _INVALID, _FRONT = "#1f5fa8", "#a32020", "#d9822b"


# Matplotlib 3.10 renamed `vert=False` to `orientation="horizontal"` and deprecated the old name.
_HORIZONTAL_BOX = ({"orientation": "horizontal"} if tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10)
                   else {"vert": False})


@dataclass(frozen=True)
class Chart:
    """One chart of a group: its figure, or None and a note saying why there is none."""

    title: str
    figure: Any = None
    note: str = ""


def _name(row: Row, group: Group) -> str:
    several = len({r.hardware for r in group.rows}) > 1
    text = row.name + (f" · {row.hardware}" if several else "")
    return text + (" (invalid)" if row.status == "invalid" else "")


def _capped(rows: Sequence[Row]) -> tuple[list[Row], str]:
    shown = list(rows[:MAX_CELLS])
    left = len(rows) - len(shown)
    return shown, (f"showing the leading {len(shown)} of {len(rows)} cells" if left else "")


def _horizontal(count: int) -> tuple[Figure, Any]:
    fig = Figure(figsize=(WIDTH_IN, 1.0 + 0.32 * max(count, 2)), layout="constrained")
    return fig, fig.add_subplot()


def latency_distribution(group: Group, records: Mapping[str, Record]) -> Chart:
    """Box plots of each cell's raw per-call latencies (ok and invalid cells), best ranked on top."""
    title = "Latency distribution (raw samples)"
    metric = metrics.get("latency_p50_s")
    rows = [r for r in group.rows if r.status != "failed" and r.run_id in records and metric.raw(records[r.run_id])]
    if not rows:
        return Chart(title, note="no raw latency samples in these records")
    rows, note = _capped(rows)
    fig, ax = _horizontal(len(rows))
    data = [[s * 1e3 for s in metric.raw(records[r.run_id])] for r in reversed(rows)]
    boxes = ax.boxplot(data, showfliers=False, whis=(1, 99), patch_artist=True, widths=0.6, **_HORIZONTAL_BOX)
    for patch, row in zip(boxes["boxes"], reversed(rows)):
        patch.set(facecolor=("#f3d4d4" if row.status == "invalid" else "#d6e4f5"), edgecolor="#333333")
    ax.set_yticks(range(1, len(rows) + 1), [_name(r, group) for r in reversed(rows)])
    ax.set_xlabel("latency per call (ms); box: quartiles, whiskers: p1–p99")
    ax.grid(axis="x", alpha=0.3)
    return Chart(title, fig, note)


def throughput_vs_batch(group: Group) -> Chart:
    """Throughput against batch size: one line per hardware × backend × precision."""
    title = "Throughput against batch size"
    series: dict[tuple[str, str, str, str], list[tuple[int, float]]] = {}
    for r in group.rows:
        if r.status == "ok" and r.throughput is not None:
            series.setdefault((r.hardware, r.backend, r.device, r.precision), []).append((r.batch, r.throughput))
    if not any(len({b for b, _ in points}) > 1 for points in series.values()):
        return Chart(title, note="skipped: each configuration was measured at one batch size only")
    fig = Figure(figsize=(WIDTH_IN, 3.6), layout="constrained")
    ax = fig.add_subplot()
    several = len({k[0] for k in series}) > 1
    for (hardware, backend, device, precision), points in sorted(series.items()):
        points.sort()
        label = f"{backend}{'' if device == 'cpu' else ' ' + device} {precision}" + (f" · {hardware}" if several else "")
        ax.plot([b for b, _ in points], [t for _, t in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel(f"throughput ({group.unit}/s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return Chart(title, fig)


def pareto_front(rows: Sequence[Row]) -> list[Row]:
    """Cells no other cell beats on both p50 latency (lower) and throughput (higher), fastest first."""
    points = sorted((r for r in rows if r.p50_s is not None and r.throughput is not None),
                    key=lambda r: (r.p50_s, -r.throughput))  # type: ignore[operator]
    front: list[Row] = []
    for r in points:
        if not front or r.throughput > front[-1].throughput:  # type: ignore[operator]
            front.append(r)
    return front


def latency_throughput(group: Group) -> Chart:
    """Each ok cell as a point (p50 latency, throughput); the Pareto front drawn and labelled."""
    title = "Latency–throughput trade-off (Pareto front highlighted)"
    rows = [r for r in group.rows if r.status == "ok" and r.p50_s is not None and r.throughput is not None]
    if len(rows) < 2:
        return Chart(title, note="skipped: fewer than two valid cells with latency and throughput")
    front = pareto_front(rows)
    fig = Figure(figsize=(WIDTH_IN, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter([r.p50_s * 1e3 for r in rows], [r.throughput for r in rows], color=_OK, alpha=0.6, label="cell")
    ax.plot([r.p50_s * 1e3 for r in front], [r.throughput for r in front], color=_FRONT, marker="o",
            linewidth=2, label="Pareto front")
    for r in front[:MAX_CELLS]:
        ax.annotate(_name(r, group), (r.p50_s * 1e3, r.throughput), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("p50 latency per call (ms)")
    ax.set_ylabel(f"throughput ({group.unit}/s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Chart(title, fig)


def _bars(group: Group, title: str, rows: Sequence[Row], value: Callable[[Row], float], xlabel: str,
          reference: float | None = None) -> Chart:
    rows, note = _capped(rows)
    fig, ax = _horizontal(len(rows))
    shown = list(reversed(rows))
    ax.barh(range(len(shown)), [value(r) for r in shown],
            color=[_INVALID if r.status == "invalid" else _OK for r in shown])
    ax.set_yticks(range(len(shown)), [_name(r, group) for r in shown])
    if reference is not None:
        ax.axvline(reference, color="#333333", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    return Chart(title, fig, note)


def capacity(group: Group) -> Chart:
    """Server capacity under the SLO, one bar per cell that has one."""
    rows = [r for r in group.rows if r.status == "ok" and r.capacity is not None]
    if not rows:
        return Chart("Capacity under SLO", note="skipped: no server capacity search in these records")
    return _bars(group, "Capacity under SLO", rows, lambda r: r.capacity, f"capacity ({group.unit}/s) at p99 ≤ SLO")


def speedups(group: Group) -> Chart:
    """Speed-up against eager PyTorch fp32 on the same hardware and batch (dashed line: 1×)."""
    title = "Speed-up against eager PyTorch fp32"
    rows = [r for r in group.rows if r.speedup is not None]
    if not any((r.backend, r.precision) != BASELINE for r in rows):
        return Chart(title, note="skipped: no eager PyTorch fp32 baseline next to another configuration")
    return _bars(group, title, rows, lambda r: r.speedup, "× eager PyTorch fp32 (> 1 is better)", reference=1.0)


def cold_start(group: Group) -> Chart:
    """Cold start of each cell, stacked by part (build, export, prepare, first call)."""
    title = "Cold start by part"
    rows = [r for r in group.rows if r.status != "failed" and r.cold_start_parts_s]
    if not rows:
        return Chart(title, note="skipped: no cold-start parts in these records")
    rows, note = _capped(rows)
    fig, ax = _horizontal(len(rows))
    shown = list(reversed(rows))
    left = [0.0] * len(shown)
    for part in metrics.COLD_START_PARTS:
        widths = [dict(r.cold_start_parts_s).get(part, 0.0) for r in shown]
        if any(widths):
            ax.barh(range(len(shown)), widths, left=left, label=part.replace("_", " "))
            left = [a + b for a, b in zip(left, widths)]
    ax.set_yticks(range(len(shown)), [_name(r, group) for r in shown])
    ax.set_xlabel("seconds")
    ax.legend(fontsize=7, ncols=len(metrics.COLD_START_PARTS), loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return Chart(title, fig, note)


def for_group(group: Group, records: Mapping[str, Record]) -> list[Chart]:
    """Every chart of a group, in the report's order; `records` by run id, with raw samples."""
    return [latency_distribution(group, records), speedups(group), throughput_vs_batch(group),
            latency_throughput(group), capacity(group), cold_start(group)]
