"""`aigcbench report -o FILE.html`: the analysis as one self-contained HTML page.

The page opens with the answer (one sentence per comparison group), then the
evidence for each group: its ranking table and its charts as inline SVG. All
text goes through the jinja2 template with autoescape on, so a label such as
`<script>` is shown, never run; nothing on the page refers to another file or
to the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from markupsafe import Markup

from ..bench.record import Record
from . import charts, render
from .report import (NUMERIC_COLUMNS, RANKING_COLUMNS, Group, Report, answer, headline_column, ranking_cells)

# Struck out on an invalid row: what it claims to be, not why it is invalid.
_CONFIG_COLUMNS = frozenset({"hardware", "backend", "device", "precision", "batch", "headline", "p50", "p99",
                             "throughput", "vs eager fp32"})


@dataclass(frozen=True)
class ChartView:
    title: str
    svg: Markup | None
    note: str


@dataclass(frozen=True)
class GroupView:
    group: Group
    answer: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (row class, ((cell class, text), ...))
    charts: tuple[ChartView, ...]


def _row_class(group: Group, cell: str, status: str) -> str:
    if status != "ok":
        return status
    return "winner" if group.verdict.kind in ("winner", "only") and group.verdict.leaders[0] == cell else ""


def _cell_class(column: str) -> str:
    classes = [c for c, on in (("num", column in NUMERIC_COLUMNS), ("config", column in _CONFIG_COLUMNS),
                               ("wrap", column in ("status", "labels"))) if on]
    return " ".join(classes)


def group_view(group: Group, records: Mapping[str, Record]) -> GroupView:
    """A group made ready for the template: text cells with their classes, and its charts as SVG."""
    headers = tuple(headline_column(group) if c == "headline" else c for c in RANKING_COLUMNS)
    rows = tuple(
        (_row_class(group, row.cell, row.status),
         tuple((_cell_class(c), text) for c, text in ranking_cells(group, row).items()))
        for row in group.rows
    )
    views = tuple(ChartView(c.title, render.svg(c.figure) if c.figure is not None else None, c.note)
                  for c in charts.for_group(group, records))
    return GroupView(group, answer(group), headers, rows, views)


def render_html(report: Report, generated_at: str) -> str:
    """The report page; the charts draw the raw samples of the records the rows show (`report.shown`)."""
    template = render.environment().get_template("report.html.j2")
    return template.render(report=report, groups=[group_view(g, report.shown) for g in report.groups],
                           generated_at=generated_at)
