"""`aigcbench report -o FILE.md`: the analysis as GitHub-flavoured Markdown for a pull-request comment.

The answer lines first, then one ranking table per comparison group. No
images: a PR comment cannot inline SVG and links to files beside it break once
the comment is posted, so the charts stay in the HTML report. Every user string
is escaped (`render.md`); invalid rows are struck out (`~~...~~`).
"""

from __future__ import annotations

from . import render
from .report import RANKING_COLUMNS, Group, Report, answer, headline_column, ranking_cells

_STRUCK = frozenset({"hardware", "backend", "device", "precision", "batch", "headline"})
_RIGHT = frozenset({"rank", "batch", "runs"})


def _table(group: Group) -> list[str]:
    headers = [headline_column(group) if c == "headline" else c for c in RANKING_COLUMNS]
    lines = ["| " + " | ".join(render.md(h) for h in headers) + " |",
             "|" + "|".join("---:" if c in _RIGHT else "---" for c in RANKING_COLUMNS) + "|"]
    for row in group.rows:
        cells = []
        for column, text in ranking_cells(group, row).items():
            shown = render.md(text)
            if row.status == "invalid" and column in _STRUCK and shown:
                shown = f"~~{shown}~~"
            elif row.rank == 1 and group.verdict.kind in ("winner", "only") and column == "backend":
                shown = f"**{shown}**"
            cells.append(shown)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: Report) -> str:
    """The whole report as Markdown text."""
    lines = ["## aigcbench report", "",
             f"{report.records} records · selection: {render.md(report.selection)}", ""]
    lines += [f"- {render.md(answer(g))}" for g in report.groups]
    lines += ["", "A winner is declared only when the 95 % CIs of the median do not overlap "
              "(capacity: beyond the search tolerance); invalid records are struck out and never win.", ""]
    for group in report.groups:
        lines += [f"### {render.md(group.title)}", "", *_table(group), ""]
    return "\n".join(lines)
