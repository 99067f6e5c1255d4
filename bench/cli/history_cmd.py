"""`aigcbench history [--where K=V ...] [--metric NAME] [--store URL] [-o FILE.html|.md|.json]`.

Per cell, one metric over commits with its change points (see
`reports/history.py` for the method). A report, not a gate: exit 0 whatever
it finds, 2 for bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app, stdout_console, user_errors
from .reading import STORE_HELP, WHERE_HELP

FORMATS = ("html", "md", "json")


@app.command("history")
def history_command(
    where: List[str] = typer.Option([], "--where", "-w", help=WHERE_HELP),
    metric: Optional[str] = typer.Option(
        None, "--metric", "-m", help="Metric to follow: throughput_items_per_s, latency_p99_s... "
        "(an unknown name lists them all) [default: latency_p50_s].", show_default=False,
    ),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Also write the history: .html (charts, change points marked), "
        ".md (a CI job summary), .json (the analysis).", show_default=False,
    ),
) -> None:
    """Follow a metric over commits, per cell, and mark where it stepped (change points).

    Records of one `commit` label are one point (their median); points are
    ordered by when they were measured; only ok records give values. Each
    change point names the commit before and after it, the step in percent,
    and whether it is a regression or an improvement. Exit 0, or 2 for bad
    input (unknown metric or -o suffix, missing folder, no matching record).
    """
    with user_errors():
        from ...reports import history, history_render, metrics
        from ...reports.select import parse_where
        from .reading import check_output, load_records, write_text_atomic

        suffix = check_output(output, FORMATS)
        chosen = metrics.get(metric or metrics.DEFAULT_HISTORY)
        records, _url = load_records(where, store, samples=False)
        result = history.analyse(records, chosen, selection=parse_where(where).describe())
        # Logs and CI capture stdout without a terminal: give the table room there.
        console = stdout_console()
        console.print(history_render.rich_table(result))
        console.print(history_render.summary_line(result), markup=False, highlight=False)
        if output is not None:
            render = {"html": history_render.to_html, "md": history_render.to_markdown,
                      "json": history_render.to_json}[suffix or ""]
            write_text_atomic(output, render(result), "-o")
            console.print(f"history written to {output}", markup=False, highlight=False)
