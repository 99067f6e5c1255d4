"""`aigcbench sweep FILE.toml`: measure a matrix of cells, one worker process each, resumable."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from ..sweep_text import DEFAULT_MAX_CELLS
from ..outputs import check_output
from .app import app, stdout_console, user_errors


@app.command("sweep")
def sweep_command(
    file: Path = typer.Argument(..., help="Sweep file (TOML); see sweeps/ for examples."),
    store: Optional[str] = typer.Option(
        None, help="Store: a SQLite path or a SQLAlchemy URL [default: $AIGCBENCH_STORE or ./aigcbench.db]."
    ),
    force: bool = typer.Option(False, "--force", help="Measure every cell, even those already stored."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Measure again the cells stored as failed."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the cells and what would run; measure nothing."),
    label: List[str] = typer.Option([], "--label", "-l", help="Label KEY=VALUE added to every cell (repeatable)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write every cell's record to this JSON file."),
    max_cells: int = typer.Option(
        DEFAULT_MAX_CELLS, "--max-cells", help="Refuse a sweep of more cells than this, before building any."
    ),
) -> None:
    """Run every cell of FILE in its own worker process and store each record as it finishes.

    Cells already stored for the same config on this hardware are skipped
    (--force measures them again). Exit 0 when every cell is ok, 1 when any
    is failed or invalid, 2 for a malformed file (nothing runs), 130 on Ctrl-C
    (finished cells stay stored).
    """
    from ...workloads.registry import model_modules
    from ..walltime import command_timeline

    timeline = command_timeline()
    with user_errors():
        from ..launchers import ZygoteLauncher
        from ..sweep import LocalWorkers
        from ..sweep_file import load_sweep

        plan = _with_labels(load_sweep(file, max_cells=max_cells), label)
        check_output(json_path, None, "--json")  # before anything is measured
        launcher = ZygoteLauncher(preload=model_modules(c.config.workload for c in plan.cells))
        launcher.spawn()  # it imports torch while the cells' names and options are checked here
        workers = LocalWorkers(launcher, timeline)
        try:
            results = _sweep(plan, workers, store, dry_run, force, retry_failed)
        finally:
            workers.close()
        if results is None:
            return
        _summary(results, plan, json_path)
    from ..sweep import verdict

    code = verdict(results)
    if code:
        raise typer.Exit(code)


def _with_labels(plan, label: List[str]):
    from ..config import parse_pairs

    extra = parse_pairs(label, "--label")
    if not extra:
        return plan
    cells = tuple(
        dataclasses.replace(c, config=dataclasses.replace(c.config, labels={**c.config.labels, **extra}))
        for c in plan.cells
    )
    return dataclasses.replace(plan, cells=cells)


def _sweep(plan, workers, store: Optional[str], dry_run: bool, force: bool, retry_failed: bool):
    """Check every cell (where the cells run), then measure what is not stored; None for --dry-run."""
    from ..probes.environment import fingerprint
    from ..store import Store
    from ..sweep import run_sweep, stored_records, unavailable_cells
    from .sweep_progress import SweepDisplay

    hardware_key = fingerprint()["hardware_key"]
    skip = _checked(plan, lambda p: unavailable_cells(p, workers, hardware_key))
    console = stdout_console()
    if dry_run:
        stored = {}
        if Store.exists(store):
            with Store.open(store) as opened:
                stored = stored_records(opened, hardware_key)
        _print_plan(console, plan, skip, stored, force, retry_failed)
        return None
    opened = Store.open(store)
    try:
        console.print(f"sweep {plan.name}: {len(plan.cells)} cells on {hardware_key}, store {opened.url}")
        display = SweepDisplay(len(plan.cells))
        try:
            with display:
                return run_sweep(
                    plan, opened, hardware_key, display, force=force, retry_failed=retry_failed, skip=skip,
                    executor=workers,
                )
        except KeyboardInterrupt:
            done = display.finished
            typer.echo(
                f"aigcbench: interrupted; {done} of {len(plan.cells)} cells finished and are stored in "
                f"{opened.url} (rerun to continue)",
                err=True,
            )
            raise typer.Exit(130)
    finally:
        opened.close()


def _summary(results, plan, json_path: Optional[Path]) -> None:
    from ...reports.sweep_table import sweep_counts, sweep_table
    from ..record import write_json

    console = stdout_console()
    console.print(sweep_table(results, f"sweep {plan.name}"))
    counts = sweep_counts(results)
    console.print(
        f"{counts['ok']} ok, {counts['invalid']} invalid, {counts['failed']} failed, {counts['skipped']} skipped "
        f"({counts['ran']} measured now, {counts['stored']} already stored)"
    )
    records = [r.record for r in results if r.record is not None]
    if json_path is not None:
        write_json(records, json_path)
        console.print(f"{len(records)} records written to {json_path}")


def _checked(plan, unavailable_cells) -> dict[int, str]:
    """Preflight every cell; a refusal names the file and the cell before anything runs."""
    from ..errors import UserError as Refused

    try:
        return unavailable_cells(plan)
    except Refused as err:
        raise UserError(f"{plan.path}: {err}") from None


def _print_plan(console, plan, skip, stored, force: bool, retry_failed: bool) -> None:
    from ...reports.sweep_table import cell_label
    from ..sweep import previous_record

    for index, cell in enumerate(plan.cells):
        previous = previous_record(stored, cell)
        if index in skip:
            action = f"skip ({skip[index]})"
        elif previous is not None and not force and not (retry_failed and previous.status == "failed"):
            action = f"stored ({previous.status})"
        else:
            action = f"run (timeout {cell.timeout_s:g} s)"
        console.print(f"{index + 1:3d}. {cell_label(cell.config)}  [{cell.origin}]  {action}")
