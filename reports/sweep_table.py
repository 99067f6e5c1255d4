"""The summary printed at the end of `aigcbench sweep`: one row per cell, what happened to it.

Pure functions of the cell results; the records are never changed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from rich import box
from rich.markup import escape
from rich.table import Table

from ..bench.record import Record
from ..workloads.params import variant
from . import units

_STATUS_STYLE = {"ok": "green", "invalid": "bold red", "failed": "bold red"}


def cell_label(config: Any) -> str:
    """workload size · backend device precision · scenario batch, as one short string."""
    return (
        f"{config.workload} {config.size}{variant(config.mode, config.params)} · "
        f"{config.backend} {config.device} {config.precision} · "
        f"{config.scenario} b{config.effective_batch_size}"
    )


def placed_label(cell: Any) -> str:
    """`cell_label`, plus where the cell runs when its sweep says: its environment, its hardware.

    Two cells of an A/B differ only there, so without it their rows would read the same.
    An environment is named by its folder (`.../envs/onnxruntime-1.24/bin/python` -> onnxruntime-1.24).
    """
    label = cell_label(cell.config)
    python = getattr(cell, "python", None)
    if python:
        parts = Path(python).parts
        label += f" · env {parts[-3] if len(parts) >= 3 and parts[-2] == 'bin' else python}"
    if getattr(cell, "hardware", None):
        label += f" · on {cell.hardware}"
    return label


def headline(record: Record) -> str:
    """The one number a reader wants from a record: capacity for a server search, else p50 and rate."""
    m = record.metrics
    unit = record.workload.get("unit", "item")
    if m.get("capacity_items_per_s") is not None:
        return f"capacity {units.rate(m['capacity_items_per_s'], unit)}"
    latency = m.get("latency_s") or {}
    if not latency:
        return "—"
    return f"p50 {units.seconds(latency.get('p50'))}, {units.rate(m.get('throughput_items_per_s'), unit)}"


def sweep_table(results: Iterable[Any], title: str) -> Table:
    """Rows of `CellResult`s: cell, action (ran / stored / skipped), status, headline, reason."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("#", "cell", "action", "status", "result", "reason"):
        table.add_column(column, justify="right" if column == "#" else "left", overflow="fold")
    for index, result in enumerate(results, 1):
        record: Record | None = result.record
        if record is None:
            status, shown, reason = "—", "—", result.note or ""
        else:
            style = _STATUS_STYLE[record.status]
            status, shown, reason = f"[{style}]{record.status}[/]", headline(record), record.reason or ""
        table.add_row(str(index), placed_label(result.cell), result.action, status, shown, escape(reason))
    return table


def sweep_counts(results: Iterable[Any]) -> dict[str, int]:
    """How many cells are ok / invalid / failed / skipped, and how many were measured now."""
    counts = {"ok": 0, "invalid": 0, "failed": 0, "skipped": 0, "ran": 0, "stored": 0}
    for result in results:
        counts[result.action] += 1
        if result.record is not None:
            counts[result.record.status] += 1
    return counts
