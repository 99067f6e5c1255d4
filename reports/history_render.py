"""A `History` as text: a rich table for the terminal, Markdown for a CI job summary, JSON, one HTML page.

Nothing here decides anything: `reports/history.py` found the points and the
change points; this turns them into text. Long histories are capped where a
person reads them (`TABLE_ROWS`, `MARKDOWN_ROWS`, `HTML_ROWS`, `CHARTS`): the
cells shown first are those with regressions, then other change points, then
the longest series (`history.ranked`), and the cap is said where it applies.
JSON is never capped.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .history import SCHEMA_VERSION, CellHistory, ChangePoint, History, ranked
from .metrics import get

TABLE_ROWS = 50
MARKDOWN_ROWS = 200
HTML_ROWS = 500
CHARTS = 50
SPARK_POINTS = 40
_BARS = "▁▂▃▄▅▆▇█"


def step_text(change: ChangePoint) -> str:
    """`+15.0 % at a1b2c3d (after 9f8e7d6)`: the step, the commit that brought it, the one before."""
    return f"{percent(change.relative_step)} at {change.after} (after {change.before})"


def percent(step: float | None) -> str:
    return "—" if step is None else f"{step * 100:+.1f} %"


def summary_line(history: History) -> str:
    """One line: how many cells and points, how many change points of which kind, what was read."""
    improvements = history.change_points - history.regressions
    plural = "s" if len(history.cells) != 1 else ""
    return (
        f"{len(history.cells)} cell{plural}, {history.points} points of {history.metric_label}; "
        f"{history.change_points} change point{'s' if history.change_points != 1 else ''} "
        f"({history.regressions} regression{'s' if history.regressions != 1 else ''}, "
        f"{improvements} improvement{'s' if improvements != 1 else ''}); selection: {history.selection}"
    )


def _latest(history: History, cell: CellHistory) -> str:
    latest = cell.latest
    return get(history.metric).format(latest.value if latest else None, cell.item)


def _capped(history: History, rows: int) -> tuple[list[CellHistory], int]:
    cells = ranked(history.cells)
    return cells[:rows], max(0, len(cells) - rows)


# ----------------------------------------------------------------------------- terminal

def rich_table(history: History, rows: int = TABLE_ROWS) -> Any:
    """A rich `Table`: one row per cell (capped at `rows`), change points coloured by kind."""
    from rich.table import Table
    from rich.text import Text

    shown, hidden = _capped(history, rows)
    table = Table(title=f"history of {history.metric_label}", title_justify="left")
    for name, justify in (("cell", "left"), ("points", "right"), ("latest", "right"), ("change points", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for cell in shown:
        changes = Text()
        for i, change in enumerate(cell.change_points):
            changes.append(("\n" if i else "") + f"{step_text(change)} {change.kind}",
                           style="red" if change.kind == "regression" else "green")
        if not cell.change_points:
            changes.append(cell.note or "none", style="dim")
        marked = f" ({cell.marked} marked)" if cell.marked else ""
        # Text(), not markup: labels and commits are user strings and may hold [brackets].
        table.add_row(Text(cell.label), f"{len(cell.points)}{marked}", _latest(history, cell), changes)
    if hidden:
        table.caption = f"{hidden} more cells without a regression not shown; -o FILE.json has them all"
    return table


# ----------------------------------------------------------------------------- JSON

def to_json(history: History) -> str:
    """The whole analysis, every cell and point (schema_version 1)."""
    return json.dumps(as_dict(history), indent=2, allow_nan=False) + "\n"


def as_dict(history: History) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "schema_version": SCHEMA_VERSION,
        "metric": {"name": history.metric, "label": history.metric_label, "unit": history.unit,
                   "direction": history.direction},
        "selection": history.selection,
        "method": {"search": "PELT (ruptures.KernelCPD, linear kernel) on log(value) / MAD noise",
                   "min_segment": history.min_size, "penalty": f"{history.penalty:g} * log(n)",
                   "confirm": f"Welch t-test p < {history.alpha:g}"},
        "summary": {"cells": len(history.cells), "points": history.points,
                    "change_points": history.change_points, "regressions": history.regressions},
        "cells": [
            {"key": c.key, "label": c.label, "item": c.item, "note": c.note,
             "points": [{**asdict(p), "run_ids": list(p.run_ids)} for p in c.points],
             "segments": [asdict(s) for s in c.segments],
             "change_points": [asdict(cp) for cp in c.change_points]}
            for c in history.cells
        ],
    }


# ----------------------------------------------------------------------------- Markdown

def sparkline(cell: CellHistory, points: int = SPARK_POINTS) -> str:
    """The latest `points` values as block characters (`·` for a marked point), lowest ▁, highest █."""
    recent = cell.points[-points:]
    values = [p.value for p in recent if p.value is not None]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low

    def bar(value: float | None) -> str:
        if value is None:
            return "·"
        return _BARS[int((value - low) / span * (len(_BARS) - 1)) if span else 0]

    return "".join(bar(p.value) for p in recent)


def to_markdown(history: History, rows: int = MARKDOWN_ROWS) -> str:
    """GitHub Markdown: the summary, one row per cell, then every change point shown in a table."""
    from .render import md

    shown, hidden = _capped(history, rows)
    lines = [f"## History of {md(history.metric_label)}", "", md(summary_line(history)), "",
             "| cell | points | latest | trend | change points |", "|---|---:|---:|---|---|"]
    for cell in shown:
        changes = "<br>".join(md(f"{step_text(c)} {c.kind}") for c in cell.change_points)
        trend = f"`{sparkline(cell)}`" if cell.latest else ""
        lines.append(f"| {md(cell.label)} | {len(cell.points)} | {md(_latest(history, cell))} | {trend} | "
                     f"{changes or md(cell.note or 'none')} |")
    if hidden:
        lines += ["", f"{hidden} more cells without a regression not shown; `-o FILE.json` has them all."]
    changed = [(cell, c) for cell in shown for c in cell.change_points]
    if changed:
        lines += ["", "### Change points", "",
                  "| cell | before → after | median before | median after | step | p | verdict |",
                  "|---|---|---:|---:|---:|---:|---|"]
        metric = get(history.metric)
        for cell, c in changed:
            lines.append(
                f"| {md(cell.label)} | {md(c.before)} → {md(c.after)} | {md(metric.format(c.median_before, cell.item))} "
                f"| {md(metric.format(c.median_after, cell.item))} | {md(percent(c.relative_step))} "
                f"| {c.p_value:.1g} | {'**regression**' if c.kind == 'regression' else 'improvement'} |"
            )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- HTML

def to_html(history: History, charts: int = CHARTS, rows: int = HTML_ROWS) -> str:
    """One self-contained page (extends base.html.j2): the summary table, then a chart per cell (capped)."""
    from .render import environment, svg

    shown, hidden = _capped(history, rows)
    metric = get(history.metric)
    drawn = ranked(history.cells)[:charts]
    sections = [
        {"cell": cell, "svg": svg(chart(cell, metric)), "latest": _latest(history, cell),
         "changes": [_change_row(c, metric, cell.item) for c in cell.change_points]}
        for cell in drawn
    ]
    return environment().get_template("history.html.j2").render(
        history=history, summary=summary_line(history), rows=[_row(history, c) for c in shown],
        hidden_rows=hidden, sections=sections, hidden_charts=len(history.cells) - len(drawn),
    )


def _row(history: History, cell: CellHistory) -> dict[str, Any]:
    return {"label": cell.label, "points": len(cell.points), "marked": cell.marked,
            "latest": _latest(history, cell), "note": cell.note,
            "changes": [(f"{step_text(c)} {c.kind}", c.kind) for c in cell.change_points]}


def _change_row(c: ChangePoint, metric: Any, item: str) -> dict[str, Any]:
    return {"before": c.before, "after": c.after, "kind": c.kind, "step": percent(c.relative_step),
            "median_before": metric.format(c.median_before, item), "median_after": metric.format(c.median_after, item),
            "p": f"{c.p_value:.1g}"}


def chart(cell: CellHistory, metric: Any) -> Any:
    """The metric over the cell's points: x = point order (tick labels = short commits), y = the value.

    Segment medians are drawn as steps; each change point is a vertical line
    between its two commits, annotated "before → after, +15.0 %". Points
    without a value (invalid, failed, no such metric) are marked × on the axis.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig = Figure(figsize=(7.5, 2.9))
    ax = fig.add_subplot()
    valued = [(i, p.value) for i, p in enumerate(cell.points) if p.value is not None]
    ax.plot([i for i, _ in valued], [v for _, v in valued], marker="o", markersize=3, linewidth=1,
            color="#1f5fa8", label=metric.label)
    for k, segment in enumerate(cell.segments):
        ax.hlines(segment.median, segment.start - 0.4, segment.end + 0.4, colors="#d9822b", linewidth=2,
                  label="segment median" if k == 0 else None)
    marked = [i for i, p in enumerate(cell.points) if p.value is None]
    if marked:
        # On the axis (y in axes coordinates): they have no value to plot, but their place in the order matters.
        ax.plot(marked, [0.03] * len(marked), "x", color="#a32020", transform=ax.get_xaxis_transform(),
                label="invalid / failed / no value")
    for change in cell.change_points:
        _mark(ax, cell, change)
    _ticks(ax, cell, metric, FuncFormatter, MaxNLocator)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _mark(ax: Any, cell: CellHistory, change: ChangePoint) -> None:
    before = next(i for i in range(change.index - 1, -1, -1) if cell.points[i].value is not None)
    x = (before + change.index) / 2
    colour = "#a32020" if change.kind == "regression" else "#1d7a3a"
    ax.axvline(x, color=colour, linestyle="--", linewidth=1)
    text = _plain(f"{change.before} → {change.after}, {percent(change.relative_step)}")
    ax.annotate(text, (x, 0.97), xycoords=("data", "axes fraction"), xytext=(3, 0), textcoords="offset points",
                ha="left", va="top", fontsize=7, color=colour,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})


def _ticks(ax: Any, cell: CellHistory, metric: Any, FuncFormatter: Any, MaxNLocator: Any) -> None:
    names = [_plain(p.name) for p in cell.points]
    ax.xaxis.set_major_locator(MaxNLocator(nbins=min(len(names), 20), integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: names[int(x)] if 0 <= int(x) < len(names) else ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: metric.format(y, cell.item)))
    ax.set_xlim(-0.6, max(len(names) - 0.4, 0.6))
    ax.tick_params(axis="x", labelsize=7, labelrotation=45)
    ax.set_xlabel("commit (oldest → newest)")
    ax.set_ylabel(_plain(metric.label))


def _plain(text: str) -> str:
    """A user string drawn as itself: `$` would start matplotlib mathtext."""
    return text.replace("$", r"\$")


__all__: Sequence[str] = (
    "rich_table", "summary_line", "step_text", "to_json", "as_dict", "to_markdown", "sparkline", "to_html",
)
