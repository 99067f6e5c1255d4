"""`aigcbench sweep FILE.toml`: measure a matrix of cells, one worker process each, resumable."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from ..sweep_text import DEFAULT_MAX_CELLS
from ..outputs import check_output
from .app import app, stdout_console, user_errors


class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


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
    executor: ExecutorName = typer.Option(
        ExecutorName.local, "--executor",
        help="Where cells run: local (worker processes on this machine, one at a time) or ray (one task per cell "
             "on a Ray cluster's nodes, pinned by `hardware`; needs aigcbench[ray]).",
    ),
    ray_address: Optional[str] = typer.Option(
        None, "--ray-address",
        help="The Ray cluster to join (HOST:PORT of its head) [default: $RAY_ADDRESS, else the cluster `ray start` "
             "started on this machine, else a local one-node cluster started for the sweep].",
    ),
) -> None:
    """Run every cell of FILE in its own worker process and store each record as it finishes.

    Cells already stored for the same config on this hardware (with --executor
    ray: the hardware of a node they may run on) are skipped (--force
    measures them again). Exit 0 when every cell is ok, 1 when any is failed
    or invalid, 2 for a malformed file or a cell the cluster cannot place
    (nothing runs), 130 on Ctrl-C (finished cells stay stored).
    """
    from ..walltime import command_timeline

    timeline = command_timeline()
    with user_errors():
        from ..sweep_file import load_sweep

        if ray_address is not None and executor is not ExecutorName.ray:
            raise UserError("--ray-address needs --executor ray", key="ray_address")
        plan = _with_labels(load_sweep(file, max_cells=max_cells), label)
        check_output(json_path, None, "--json")  # before anything is measured
        _refuse_a_bad_store(store)
        workers, where, note = EXECUTORS[executor](plan, timeline, ray_address)
        try:
            results = _sweep(plan, workers, (where, note), store, dry_run, force, retry_failed)
        finally:
            workers.close()
        if results is None:
            return
        _summary(results, plan, json_path)
    from ..sweep import verdict

    code = verdict(results)
    if code:
        raise typer.Exit(code)


def _refuse_a_bad_store(store: Optional[str]) -> None:
    """A store already there that this command may not open is said now, before the workers start (a zygote
    imports torch, a Ray cluster is joined: seconds): opened and closed again, sending nothing it spooled yet.

    A store that is not there yet is left to be made once every cell has passed its checks.
    """
    from ..store import Store

    if Store.exists(store):
        Store.open(store, send_spooled=False).close()


def _local(plan, timeline, ray_address: Optional[str]):
    """Worker processes here, forked from a zygote that imports the sweep's models while the cells are checked.

    Nothing to name or note: the sweep runs on this machine's hardware key.
    """
    from ...workloads.registry import model_modules
    from ..launchers import ZygoteLauncher
    from ..local_executor import LocalWorkers

    launcher = ZygoteLauncher(preload=model_modules(c.config.workload for c in plan.cells))
    launcher.spawn()  # it imports torch while the cells' names and options are checked here
    return LocalWorkers(launcher, timeline), None, None


def _ray(plan, timeline, ray_address: Optional[str]):
    """Ray tasks on a cluster's nodes, where, and a note of its nodes: joined (or started) now, so that a dead
    address is said before anything else."""
    from ..probes.environment import fingerprint
    from ..ray_executor import RayExecutor

    executor = RayExecutor(ray_address, fingerprint()["hardware_key"])
    return executor, f"the Ray cluster at {executor.connection.address}", executor.note


# The one list of executors: --executor's choices (ExecutorName) and what each builds.
EXECUTORS = {ExecutorName.local: _local, ExecutorName.ray: _ray}


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


def _sweep(plan, workers, place: tuple, store: Optional[str], dry_run: bool, force: bool, retry_failed: bool):
    """Check every cell (where the cells run), then measure what is not stored; None for --dry-run.

    `place`: where the cells run (None: this machine) and a note for stderr
    about it, said once every cell has passed its checks (a refusal stays one line).
    """
    from ..probes.environment import fingerprint
    from ..store import Store
    from ..sweep import run_sweep, stored_cells, unavailable_cells
    from .sweep_progress import SweepDisplay

    hardware_key = fingerprint()["hardware_key"]
    skip = _checked(plan, lambda p: unavailable_cells(p, workers, hardware_key))
    where, note = place
    if note:
        typer.echo(f"aigcbench: {note}", err=True)
    console = stdout_console()
    if dry_run:
        stored = {}
        if Store.exists(store):
            with Store.open(store) as opened:
                stored = stored_cells(opened, plan, workers, hardware_key, skip)
        _print_plan(console, plan, skip, stored, force, retry_failed)
        return None
    opened = Store.open(store)
    try:
        console.print(f"sweep {plan.name}: {len(plan.cells)} cells on {where or hardware_key}, store {opened.url}")
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
    from ...reports.sweep_table import placed_label

    for index, cell in enumerate(plan.cells):
        previous = stored.get(index)
        if index in skip:
            action = f"skip ({skip[index]})"
        elif previous is not None and not force and not (retry_failed and previous.status == "failed"):
            action = f"stored ({previous.status})"
        else:
            action = f"run (timeout {cell.timeout_s:g} s)"
        console.print(f"{index + 1:3d}. {placed_label(cell)}  [{cell.origin}]  {action}")
