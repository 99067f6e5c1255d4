"""`aigcbench report [--where K=V ...] [--store URL] [-o FILE.html|.md|.json|.csv]`: which configuration wins.

Stdout is the answer table (one row per workload × size × scenario); `-o`
also writes the full report, its format chosen by the suffix.
"""

from __future__ import annotations


from pathlib import Path
from typing import Any, List, Optional

import typer

from .app import app, stdout_console, user_errors
from .reading import STORE_HELP, WHERE_HELP

FORMATS = ("html", "md", "json", "csv")


@app.command("report")
def report_command(
    where: List[str] = typer.Option([], "--where", "-w", help=WHERE_HELP),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write the report: .html (self-contained, charts), .md (PR comment), "
        ".json (the analysis), .csv (one row per record).", show_default=False,
    ),
) -> None:
    """Rank the stored configurations per workload × size × scenario and say which wins, beyond the noise.

    A winner is named only when the 95 % confidence intervals of the medians
    do not overlap; invalid records never win. Exit 0, or 2 for bad input
    (unknown -o suffix, missing folder, a selection that matches nothing).
    """
    with user_errors():
        from ...reports import report as analysis
        from ..ceilings import without_ceilings
        from ..store import Store
        from .reading import check_output, load_records, write_text_atomic
        from ...reports.select import parse_where

        suffix = check_output(output, FORMATS)
        records, url = load_records(where, store, samples=False)
        records = without_ceilings(records, parse_where(where))  # machine peaks, not a workload
        with Store.open(store) as opened:  # `url` is for showing: its password is masked
            result = analysis.analyse(records, opened.samples_of, selection=parse_where(where).describe(), store=url)
        # Logs and CI capture stdout without a terminal: give the table room there.
        console = stdout_console()
        console.print(answer_table(result))
        if output is not None and suffix is not None:
            write_text_atomic(output, _render(suffix, result, records), "-o")
            console.print(f"report written to {output}", highlight=False, markup=False)


def _render(suffix: str, result: Any, records: list[Any]) -> str:
    import json

    from ...reports import report as analysis

    if suffix == "json":
        return json.dumps(analysis.to_json(result), indent=2, ensure_ascii=False) + "\n"
    if suffix == "csv":
        return analysis.records_frame(records).to_csv(index=False)
    if suffix == "md":
        from ...reports.report_markdown import render_markdown

        return render_markdown(result)
    from ...bench.record import utc_now
    from ...reports.report_html import render_html

    return render_html(result, generated_at=utc_now())


def answer_table(result: Any) -> Any:
    """The answer as a rich table: per group the verdict, the leader(s), its headline and its speed-up."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from ...reports.report import headline_text

    table = Table(title="aigcbench report — the answer", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("group", "verdict", "configuration", "hardware", "headline", "vs eager fp32"):
        table.add_column(column, overflow="fold")
    for group in result.groups:
        verdict = group.verdict
        leaders = [group.row(c) for c in verdict.leaders]
        if not leaders:
            table.add_row(escape(group.title), "no valid result", "—", "—", "—", "—")
            continue
        best = leaders[0]
        kind = {"winner": f"winner, {verdict.margin:.2g}× runner-up" if verdict.margin else "winner",
                "only": "only valid", "indistinguishable": f"{len(leaders)} indistinguishable"}[verdict.kind]
        table.add_row(
            escape(group.title), kind, escape(", ".join(r.name for r in leaders)),
            escape(", ".join(dict.fromkeys(r.hardware for r in leaders))), escape(headline_text(group, best)),
            f"{best.speedup:.2f}×" if best.speedup is not None else "—",
        )
    return table
