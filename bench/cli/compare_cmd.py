"""`aigcbench compare`: the CI regression gate between a base and a new set of records."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from ..errors import UserError
from .app import app, stdout_console, user_errors
from .reading import STORE_HELP

THRESHOLD_HELP = (
    "Relative shift of the median that counts as a change: 5% or 5 (a bare number is percent; 0 < x < 100; "
    "a bare 0.05 is refused as ambiguous). NAME=10% sets it for one compared metric. Repeatable [default: 5%]."
)
SELECTION_HELP = "KEY=VALUE (repeatable, the --where grammar: commit=abc, branch=main, backend=a,b...)"


@app.command("compare")
def compare_command(
    files: Optional[List[Path]] = typer.Argument(
        None, metavar="BASE.json NEW.json",
        help="Two files of aigcbench records: one record, a list of records, or JSON lines.",
    ),
    base: List[str] = typer.Option([], "--base", help=f"Base records from the store: {SELECTION_HELP}."),
    new: List[str] = typer.Option([], "--new", help=f"New records from the store: {SELECTION_HELP}."),
    threshold: List[str] = typer.Option([], "--threshold", "-t", help=THRESHOLD_HELP),
    metric: List[str] = typer.Option(
        [], "--metric", "-m",
        help="Metric to compare, repeatable: latency_p99_s, cold_start_total_s... (an unknown name lists them all) "
             "[default: latency_p50_s, throughput_items_per_s]. "
             "Naming a metric without raw samples (cold start, memory) lets its threshold-only change fail the gate.",
    ),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Also write the report as Markdown (a PR comment)."),
    no_fail: bool = typer.Option(False, "--no-fail", help="Report regressions but exit 0."),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
) -> None:
    """Compare NEW with BASE cell by cell; exit 1 if any cell regressed.

    Cells are matched by configuration and hardware; reruns of one cell on a
    side are pooled. A metric regressed when BOTH a two-sided Mann–Whitney U
    test on the raw samples rejects at p < 0.001 AND the Hodges–Lehmann shift
    of the median is worse than the threshold; a cell whose new record is
    invalid or failed regressed too. Cells only one side has are listed and
    never fail the gate.

    Exit 0 no regression (or --no-fail), 1 a regression (named on stdout),
    2 bad input (missing or malformed file, no cell in both sets, unknown
    metric, bad threshold).
    """
    with user_errors():
        from ...reports import metrics as registry
        from ...reports.compare import compare, parse_thresholds
        from ...reports.compare_render import markdown_report, no_match_message, rich_report, rich_verdict
        from .reading import check_output, write_text_atomic

        # Everything that can be refused is refused before any input is read.
        names = list(dict.fromkeys(metric)) or list(registry.DEFAULT_COMPARE)
        for name in names:
            registry.get(name)
        thresholds = parse_thresholds(threshold, names)
        sources = _check_sources(files or [], base, new)
        check_output(markdown, ("md", "markdown"), "--markdown")

        (base_records, base_holds), (new_records, new_holds) = (_load(source, store) for source in sources)
        comparison = compare(base_records, new_records, names, thresholds, threshold_only_gates=bool(metric))
        if not comparison.cells:
            raise UserError(no_match_message(comparison, base_holds, new_holds))
        if markdown is not None:
            write_text_atomic(markdown, markdown_report(comparison), "--markdown")

        console = stdout_console()
        console.print(rich_report(comparison))
        for line in rich_verdict(comparison):
            console.print(line, soft_wrap=True)
        if markdown is not None:
            console.print(f"markdown written to {markdown}")
    if comparison.verdict_code and not no_fail:
        raise typer.Exit(comparison.verdict_code)


def _check_sources(files: list[Path], base: list[str], new: list[str]) -> tuple[tuple[str, Any], tuple[str, Any]]:
    """Two files or two selections, never a mix; selections parsed (and refused) here, before reading."""
    from ...reports.select import parse_where

    if files and (base or new):
        raise UserError("give either BASE.json NEW.json or --base/--new selections, not both")
    if files:
        if len(files) != 2:
            raise UserError(f"expected two files (BASE.json NEW.json), got {len(files)}")
        return ("file", files[0]), ("file", files[1])
    if not (base and new):
        missing = "--new" if base else "--base" if new else "--base and --new"
        raise UserError(f"nothing to compare: give BASE.json NEW.json, or both --base and --new ({missing} missing)")
    parse_where(base, "--base")
    parse_where(new, "--new")
    return ("--base", base), ("--new", new)


def _load(source: tuple[str, Any], store: str | None) -> tuple[list[Any], str]:
    """The records of one side and a few words on where they came from (for the no-match message)."""
    kind, value = source
    if kind == "file":
        records = read_record_file(value)
        return records, f"({value})"
    from .reading import load_records

    try:
        records, _url = load_records(value, store)
    except UserError as exc:
        raise UserError(f"{kind} {' '.join(value)}: {exc}") from None
    return records, f"({' '.join(value)})"


def read_record_file(path: Path) -> list[Any]:
    """Records of one file: aigcbench JSON (object, list, JSON lines) or pytest-benchmark JSON.

    `reports.ingest.read_records` refuses (UserError) a missing file, text that
    is not JSON, documents of neither format and a schema_version it does not read.
    """
    from ...reports.ingest import read_records

    return list(read_records(path))
