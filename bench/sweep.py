"""Run every cell of a sweep, each in its own worker, resuming what the store already holds.

A cell already stored for the same config (`RunConfig.key`) and the same
`hardware_key` (on a cluster: that of a node the cell may run on) is not
measured again — whatever its status, so rerunning a finished sweep measures
nothing and gives the same verdict — unless `force` (measure everything) or
`retry_failed` (measure the failed ones again).
Each new record is appended to the store the moment its cell ends, so an
interrupted sweep keeps every finished cell and the rerun continues from there.

A cell run in another interpreter (`python = ...`, `bench/interpreters.py`)
is another measurement of the same config: resume matches the interpreter too.

Cells run through an executor: local worker processes (`bench/local_executor.py`:
one at a time, so cells never compete for the machine they measure; each
forked from a pre-imported zygote, see `bench/zygote.py`), or a cluster's
(`bench/ray_executor.py`: one Ray task per cell, pinned to a node that has
what it needs, one per node at a time, the nodes in parallel), behind the
same seam: `Executor`. The sweep never asks which executor it holds.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Literal, Protocol, Union

from .errors import BackendUnavailable, UserError
from .local_executor import LocalWorkers, cell_interpreter
from .record import Record
from .resources import check_memory_limit
from .cell_check import check_config
from .runner import RunObserver
from .store import Store
from .sweep_file import SweepCell, SweepPlan

Action = Literal["ran", "stored", "skipped"]


class Executor(Protocol):
    """Where and how cells run: `LocalWorkers` (this machine, one at a time) or `RayExecutor` (a cluster's nodes).

    `skipped` says why a cell cannot run at all (before any check), or raises
    `UserError` for a cell nothing could ever run; `check` runs the cells'
    preflight where they will run; `run` measures one cell. Two more are
    optional, with the defaults of an executor of this machine's cells:

    * `placements(cell, hardware_key) -> [(hardware_key, interpreter), ...]`:
      the machines the cell may be measured on, where a stored record of it
      counts for resume (default: this machine, in the cell's interpreter);
    * `run_cells(cells, progress) -> iterator of (index, outcome)`: run many
      `(index, cell)` pairs, yielding each record (or the `BackendUnavailable`
      / `UserError` refusing it) as it ends, calling `progress.cell_started`
      for each; closing the iterator stops what still runs (default: one at
      a time through `run`, in order).
    """

    def skipped(self, cell: SweepCell, hardware_key: str) -> str | None: ...

    def check(self, cells: list[SweepCell]) -> list[dict | None]: ...

    def run(self, cell: SweepCell, observer: RunObserver) -> Record: ...

    def close(self) -> None: ...


# What measuring a cell gives: its record, or the worker's refusal of its input (nothing stored).
Outcome = Union[Record, BackendUnavailable, UserError]


@dataclass(frozen=True)
class CellResult:
    cell: SweepCell
    action: Action
    record: Record | None = None
    note: str | None = None  # why a cell was skipped
    refused: bool = False  # skipped because its worker refused the input: the sweep exits 2


class SweepProgress(Protocol):
    def cell_started(self, index: int, cell: SweepCell) -> RunObserver: ...

    def cell_done(self, index: int, result: CellResult) -> None: ...


def unavailable_cells(plan: SweepPlan, workers: "Executor | None" = None, hardware_key: str | None = None) -> dict[int, str]:
    """Check every cell before anything runs; return the ones this machine cannot run, with why.

    Bad input (an option value, a precision the backend refuses) raises
    `UserError` here, so a sweep never fails halfway on something it could
    have refused up front. A backend or device missing on this machine is not
    bad input — the same file runs elsewhere — so those cells are skipped, as
    are cells the executor cannot place (pinned to other hardware).
    What needs the runtimes is checked by `workers` (`bench/cell_check.py`,
    once per distinct config and interpreter, where the cells will run;
    without `workers`, by local workers started for it and closed after).
    """
    own = LocalWorkers() if workers is None else None
    executor = workers or own
    try:
        missing = _declared_checks(plan, executor, hardware_key or _hardware_key())
        missing.update(_runtime_checks(plan, executor, set(missing)))
    finally:
        if own is not None:
            own.close()
    return missing


def _hardware_key() -> str:
    from .probes.environment import fingerprint

    return fingerprint()["hardware_key"]


def _declared_checks(plan: SweepPlan, executor: "Executor", hardware_key: str) -> dict[int, str]:
    missing: dict[int, str] = {}
    for index, cell in enumerate(plan.cells):
        try:
            check_config(cell.config)
            if cell.memory_limit_bytes is not None:
                check_memory_limit(cell.memory_limit_bytes, cell.config.device, "memory_limit")
            why = executor.skipped(cell, hardware_key)  # a cluster refuses what none of its nodes has
        except BackendUnavailable as err:  # a plugin backend that does not load
            missing[index] = str(err)
            continue
        except UserError as err:
            raise UserError(f"{cell.origin}: {err}", key=err.key) from None
        if why is not None:
            missing[index] = why
    return missing


def _runtime_checks(plan: SweepPlan, workers: "Executor", known: set[int]) -> dict[int, str]:
    cells = [(index, cell) for index, cell in enumerate(plan.cells) if index not in known]
    if not cells:
        return {}
    results = workers.check([cell for _, cell in cells])
    missing: dict[int, str] = {}
    for (index, cell), result in zip(cells, results):
        if result is None:
            continue  # its check died: the cell's worker checks again before it measures
        if result.get("exit_code") == BackendUnavailable.exit_code:
            missing[index] = str(result["message"])
        elif result.get("exit_code") == UserError.exit_code:
            raise UserError(f"{cell.origin}: {result['message']}", key=result.get("key"))
    return missing


def stored_records(store: Store, hardware_key: str) -> dict[str, dict[str | None, Record]]:
    """The latest stored record of each config measured on this hardware: by config key, then interpreter.

    The interpreter is the record's `environment.executable`; None for a record
    of an aigcbench that did not record it (it ran in the one interpreter there was).
    """
    from .config import config_key

    latest: dict[str, dict[str | None, Record]] = {}
    for record in store.records(hardware_key=hardware_key):  # oldest first, so the last one wins
        latest.setdefault(config_key(record.config), {})[record.environment.get("executable")] = record
    return latest


def previous_record(stored: dict[str, dict[str | None, Record]], cell: SweepCell,
                    python: str | None = None) -> Record | None:
    """The stored record that already measured `cell`: same config and hardware, run in the same interpreter.

    `python`: the interpreter it runs in (default: the one it runs in here).
    """
    held = stored.get(cell.config.key())
    if not held:
        return None
    return held.get(python or cell_interpreter(cell), held.get(None))


def stored_cells(
    store: Store, plan: SweepPlan, executor: "Executor", hardware_key: str, skip: dict[int, str] | None = None
) -> dict[int, Record]:
    """The stored record that already measured each cell, by index: the latest `previous_record` over the
    machines the executor may place it on (their hardware, the interpreter it would run in there).

    Locally that is this machine's `hardware_key` and the cell's interpreter
    here; on a cluster, every node the cell fits (`Executor.placements`).
    """
    skip = skip or {}
    places = {i: _placements(executor, cell, hardware_key) for i, cell in enumerate(plan.cells) if i not in skip}
    by_hardware = {hw: stored_records(store, hw) for hw in dict.fromkeys(hw for p in places.values() for hw, _ in p)}
    found: dict[int, Record] = {}
    for index, where in places.items():
        held = [previous_record(by_hardware[hw], plan.cells[index], python) for hw, python in where]
        held = [record for record in held if record is not None]
        if held:
            found[index] = max(held, key=lambda record: record.created_at)
    return found


def _placements(executor: "Executor", cell: SweepCell, hardware_key: str) -> list[tuple[str, str]]:
    """Where a stored record of `cell` counts: the executor's say, else this machine in the cell's interpreter."""
    placements = getattr(executor, "placements", None)
    if placements is not None:
        return placements(cell, hardware_key)
    return [(hardware_key, cell_interpreter(cell))]


def run_sweep(
    plan: SweepPlan,
    store: Store,
    hardware_key: str,
    progress: SweepProgress,
    *,
    force: bool = False,
    retry_failed: bool = False,
    executor: Executor | None = None,
    skip: dict[int, str] | None = None,
) -> list[CellResult]:
    """Measure the cells not already stored; every result is stored as soon as it exists.

    Progress goes out in the cells' order as far as the executor allows: a
    stored or skipped cell when the sweep reaches it, a measured one when its
    record arrives (locally, in order; on a cluster, as nodes finish).
    Without an `executor`, cells run in `LocalWorkers`, closed (its zygote
    shut down) when the sweep ends, however it ends.
    """
    owned = LocalWorkers() if executor is None else None
    executor = executor or owned
    try:
        if skip is None:
            skip = unavailable_cells(plan, executor, hardware_key)
        stored = {} if force else stored_cells(store, plan, executor, hardware_key, skip)
        decided: dict[int, CellResult] = {}
        todo: list[tuple[int, SweepCell]] = []
        for index, cell in enumerate(plan.cells):
            previous = stored.get(index)
            if index in skip:
                decided[index] = CellResult(cell, "skipped", note=skip[index])
            elif previous is not None and not (retry_failed and previous.status == "failed"):
                decided[index] = CellResult(cell, "stored", previous)
            else:
                todo.append((index, cell))
        return _in_order(len(plan.cells), decided, _measured(executor, store, todo, progress), progress)
    finally:
        if owned is not None:
            owned.close()


def _in_order(count: int, decided: dict[int, CellResult], measured: Iterator[tuple[int, CellResult]],
              progress: SweepProgress) -> list[CellResult]:
    """Every cell's result, in order; each one reported the moment it is known."""
    results: dict[int, CellResult] = {}
    with contextlib.closing(measured):  # leaving early (Ctrl-C) stops what the executor still runs
        for index in range(count):
            if index in decided:
                results[index] = decided[index]
                progress.cell_done(index, decided[index])
            while index not in results:
                arrived = next(measured, None)
                if arrived is None:
                    raise RuntimeError(f"the executor gave no outcome for cell {index + 1}")
                results[arrived[0]] = arrived[1]
                progress.cell_done(*arrived)
    return [results[index] for index in range(count)]


def _measured(executor: Executor, store: Store, todo: list[tuple[int, SweepCell]],
              progress: SweepProgress) -> Iterator[tuple[int, CellResult]]:
    """Run the cells to measure, storing each record as it arrives; yield (index, result)."""
    run_cells = getattr(executor, "run_cells", None)
    outcomes = run_cells(todo, progress) if run_cells is not None else _one_at_a_time(executor, todo, progress)
    cells = dict(todo)
    with contextlib.closing(outcomes):
        for index, outcome in outcomes:
            yield index, _kept(store, cells[index], outcome)


def _one_at_a_time(executor: Executor, todo: list[tuple[int, SweepCell]],
                   progress: SweepProgress) -> Iterator[tuple[int, Outcome]]:
    """What an executor offering only `run` does: each cell in turn, in order."""
    for index, cell in todo:
        try:
            outcome: Outcome = executor.run(cell, progress.cell_started(index, cell))
        except (BackendUnavailable, UserError) as err:
            outcome = err
        yield index, outcome


def _kept(store: Store, cell: SweepCell, outcome: Outcome) -> CellResult:
    """Store a cell's record; a worker's refusal stores nothing and the sweep goes on."""
    if isinstance(outcome, BackendUnavailable):
        return CellResult(cell, "skipped", note=str(outcome))
    if isinstance(outcome, UserError):
        return CellResult(cell, "skipped", note=f"refused: {outcome}", refused=True)
    store.append(outcome)
    return CellResult(cell, "ran", outcome)


def verdict(results: list[CellResult]) -> int:
    """Exit status: 2 when a worker refused a cell's input, else 1 when any cell is failed or invalid, else 0."""
    if any(r.refused for r in results):
        return UserError.exit_code
    return 1 if any(r.record is not None and r.record.status != "ok" for r in results) else 0

