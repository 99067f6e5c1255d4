"""A `Comparison` as text: a rich table for the terminal and GitHub-flavoured Markdown for a PR comment.

Both renderings are built from the same rows (`rows`), so the terminal and the
pull-request comment always say the same thing: regressions first, then
improvements, cells broken on both sides, and the unchanged; then the cells
only one side measured; then the one-line verdict. User text (labels, failure
reasons) is never markup: rich gets `Text` objects, Markdown gets `render.md`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .compare import ALPHA, CONFIDENCE, CellComparison, Comparison, MetricComparison, SideStatus, UnmatchedCell
from .render import md

COLUMNS: tuple[str, ...] = ("cell", "metric", "base", "new", "shift [CI]", "p", "verdict")


@dataclass(frozen=True)
class Row:
    """One line of the table, already as text; `regressed` picks the emphasis."""

    cells: tuple[str, ...]
    regressed: bool = False


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def summary(comparison: Comparison) -> str:
    """`2 regressions, 1 improvement, 14 unchanged in 17 cells (3 only in base, 0 only in new)`."""
    c = comparison
    parts = [_plural(len(c.regressions), "regression"), _plural(len(c.improvements), "improvement"),
             f"{len(c.unchanged)} unchanged"]
    if c.broken:
        parts.append(f"{len(c.broken)} failed on both sides")
    return (f"{', '.join(parts)} in {_plural(len(c.cells), 'cell')} "
            f"({len(c.only_base)} only in base, {len(c.only_new)} only in new)")


def method_note(comparison: Comparison) -> str:
    """How the verdicts were reached, with the thresholds in force."""
    t = comparison.thresholds
    overrides = "".join(f"; {name} {pct(value)}" for name, value in t.per_metric.items())
    return (f"regressed = Mann–Whitney U p < {ALPHA:g} and Hodges–Lehmann median shift worse than the threshold "
            f"({pct(t.default)}{overrides}); intervals at {CONFIDENCE:.1%}; an invalid or failed new record regresses")


def pct(fraction: float, sign: bool = False) -> str:
    """A fraction as percent: a threshold as given (5%, 2.5%), a signed shift to one decimal (+10.3%)."""
    return f"{fraction * 100:+.1f}%" if sign else f"{fraction * 100:g}%"


def _shift(m: MetricComparison) -> str:
    if m.shift is None:
        return "—"
    if m.low is None or m.high is None:
        return pct(m.shift, sign=True)
    return f"{pct(m.shift, sign=True)} [{pct(m.low, sign=True)}, {pct(m.high, sign=True)}]"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return "<1e-300" if value == 0 else f"{value:.2g}"


def _verdict(m: MetricComparison) -> str:
    if m.verdict == "noise":
        return f"noise (significant, within ±{pct(m.threshold)})"
    text = {"regressed": "REGRESSED", "insufficient": "insufficient samples",
            "threshold only": "no samples (threshold only)"}.get(m.verdict, m.verdict)
    if m.method == "threshold" and m.verdict in ("regressed", "improved", "unchanged"):
        text += " (threshold only)"
    return text


def _value(m: MetricComparison, value: float | None, n: int, item: str) -> str:
    shown = m.metric.format(value, item)
    return f"{shown} (n={n})" if m.method == "mann-whitney" else shown


def _side(side: SideStatus) -> str:
    if not side.broken:
        return "ok"
    if side.records == 1:
        return side.status
    return f"{side.broken} of {side.records} {side.status}"


def _status_row(cell: CellComparison) -> Row:
    broken = cell.new if cell.new.broken else cell.base
    verdict = {"regressed": "REGRESSED", "broken": "failed on both sides", "recovered": "recovered"}[
        cell.status_change or "broken"]
    if cell.status_change != "recovered":
        verdict += f": {broken.reason}"
    return Row(("", "status", _side(cell.base), _side(cell.new), "—", "—", verdict),
               regressed=cell.status_change == "regressed")


def cell_title(cell: CellComparison) -> str:
    """The cell's label, and how many records each side pooled when that is more than one."""
    if cell.base.records == 1 and cell.new.records == 1:
        return cell.label
    return f"{cell.label} (pooled {cell.base.records} base + {cell.new.records} new records)"


def cell_rows(cell: CellComparison) -> list[Row]:
    rows = [_status_row(cell)] if cell.status_change else []
    for m in cell.metrics:
        rows.append(Row(("", m.metric.name, _value(m, m.base, m.base_n, cell.item),
                         _value(m, m.new, m.new_n, cell.item), _shift(m), _p(m.p_value), _verdict(m)),
                        regressed=m.regressed))
    if not rows:
        rows.append(Row(("", "—", "", "", "", "", "nothing to compare")))
    first = rows[0]
    rows[0] = Row((cell_title(cell), *first.cells[1:]), first.regressed)
    return rows


def rows(comparison: Comparison) -> list[Row]:
    """Every matched cell's rows, regressions first (the order `compare` sorted them in)."""
    return [row for cell in comparison.cells for row in cell_rows(cell)]


def regression_lines(comparison: Comparison) -> list[str]:
    """One line per regressed cell, naming it and why (what a CI log reader looks for)."""
    lines = []
    for cell in comparison.regressions:
        why = [f"{m.metric.name} {_shift(m)} (p={_p(m.p_value)})" for m in cell.regressed_metrics]
        if cell.status_change == "regressed":
            why.insert(0, f"{cell.new.status}: {cell.new.reason}")
        lines.append(f"regressed: {cell_title(cell)} — {'; '.join(why)}")
    return lines


def _unmatched_text(cell: UnmatchedCell) -> str:
    status = "" if cell.status == "ok" else f", {cell.status}"
    return f"{cell.label} ({_plural(cell.records, 'record')}{status})"


# ----------------------------------------------------------------------------- rich

def rich_report(comparison: Comparison) -> RenderableType:
    """The table, the cells only one side has, and how the verdicts were reached, for a console."""
    table = Table(title="aigcbench compare", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("base", "new", "p") else "left")
    for row in rows(comparison):
        style = "bold red" if row.regressed else ""
        table.add_row(*(Text(text, style=style) for text in row.cells))
    parts: list[RenderableType] = [table]
    for title, cells in (("only in base", comparison.only_base), ("only in new", comparison.only_new)):
        if cells:
            parts.append(Text(f"{title}:", style="bold"))
            parts.extend(Text(f"  {_unmatched_text(c)}") for c in cells)
    parts.append(Text(method_note(comparison), style="dim"))
    return Group(*parts)


def rich_verdict(comparison: Comparison) -> list[Text]:
    """The one-line verdict and one line per regressed cell; print them with `soft_wrap=True`.

    Kept apart from the table so a console never wraps them: a CI log is
    searched for these lines, and a cell label broken across two lines is not found.
    """
    lines = [Text(summary(comparison), style="bold red" if comparison.regressions else "bold")]
    return lines + [Text(line, style="red") for line in regression_lines(comparison)]


# ----------------------------------------------------------------------------- markdown

def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(md(c) for c in cells) + " |"


def markdown_report(comparison: Comparison) -> str:
    """GitHub-flavoured Markdown for a pull-request comment: the summary line first, then the table."""
    verdict = "❌" if comparison.regressions else "✅"
    lines = [f"{verdict} **{md(summary(comparison))}**", ""]
    lines.extend(f"- {md(line)}" for line in regression_lines(comparison))
    if comparison.regressions:
        lines.append("")
    lines += [_md_row(COLUMNS), "|" + "|".join("---:" if c in ("base", "new", "p") else "---" for c in COLUMNS) + "|"]
    for row in rows(comparison):
        cells = list(row.cells)
        if row.regressed:
            cells[-1] = f"**{md(cells[-1])}**"
            lines.append("| " + " | ".join([*(md(c) for c in cells[:-1]), cells[-1]]) + " |")
        else:
            lines.append(_md_row(cells))
    for title, unmatched in (("Only in base", comparison.only_base), ("Only in new", comparison.only_new)):
        if unmatched:
            lines += ["", f"{title}:", *(f"- {md(_unmatched_text(c))}" for c in unmatched)]
    lines += ["", f"<sub>{md(method_note(comparison))}</sub>", ""]
    return "\n".join(lines)


def no_match_message(comparison: Comparison, base_holds: str, new_holds: str) -> str:
    """One line for exit 2 when no cell is in both sets: what each side holds."""
    def listed(cells: Sequence[UnmatchedCell], where: str) -> str:
        shown = "; ".join(c.label for c in cells[:3]) + ("; …" if len(cells) > 3 else "")
        return f"{where} holds {_plural(len(cells), 'cell')} ({shown or 'none'})"

    return (f"no cell is in both sets: {listed(comparison.only_base, 'base ' + base_holds)}, "
            f"{listed(comparison.only_new, 'new ' + new_holds)}")
