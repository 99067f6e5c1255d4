"""Run every cell of a sweep, each in its own worker, resuming what the store already holds.

A cell already stored for the same config (`RunConfig.key`) and the same
`hardware_key` is not measured again — whatever its status, so rerunning a
finished sweep measures nothing and gives the same verdict — unless `force`
(measure everything) or `retry_failed` (measure the failed ones again).
Each new record is appended to the store the moment its cell ends, so an
interrupted sweep keeps every finished cell and the rerun continues from there.

Cells run through an executor: local worker processes today (one at a time,
so cells never compete for the machine they measure; each forked from one
pre-imported zygote per sweep, see `bench/zygote.py`). A cluster executor
(Ray, one task per cell pinned to the node with the needed accelerator) fits
the same seam.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from .errors import BackendUnavailable, UserError
from .isolation import check_cells, run_isolated
from .launchers import Launcher, ZygoteLauncher
from .record import Record
from .resources import check_memory_limit
from .cell_check import check_config
from .runner import RunObserver
from .store import Store
from .sweep_file import SweepCell, SweepPlan
from .walltime import Timeline

# How long the check of every cell may take before the cells are left to check themselves.
CHECK_TIMEOUT_S = 600.0

Action = Literal["ran", "stored", "skipped"]


class Executor(Protocol):
    def run(self, cell: SweepCell, observer: RunObserver) -> Record: ...


class LocalWorkers:
    """One worker process per cell, with the cell's timeout, forked from a pre-imported zygote by default.

    The zygote starts at the first use (the cells' check, or the first cell)
    and lives until `close()`; pass `launchers.ColdLauncher()` to start every
    cell in a fresh interpreter. Each record's `metadata.wall_s` runs from
    where the previous cell's ended (the first: from `timeline`'s marks, the
    command's start), so the cells' parts add up to the sweep's wall time.
    """

    def __init__(self, launcher: Launcher | None = None, timeline: Timeline | None = None) -> None:
        self.launcher = launcher if launcher is not None else ZygoteLauncher()
        self._timeline = timeline

    def run(self, cell: SweepCell, observer: RunObserver) -> Record:
        timeline, self._timeline = self._timeline or _since_last(), None
        record = run_isolated(
            cell.config, timeout_s=cell.timeout_s, observer=observer, memory_limit_bytes=cell.memory_limit_bytes,
            launcher=self.launcher, timeline=timeline,
        )
        self._timeline = _since_last()
        return record

    def check(self, configs: list) -> list[dict] | None:
        """The runtime checks of `configs` (`bench/cell_check.py`), started the way the cells will be."""
        return check_cells(configs, self.launcher, CHECK_TIMEOUT_S, self._timeline)

    def close(self) -> None:
        self.launcher.close()


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


def _since_last() -> Timeline:
    timeline = Timeline()
    timeline.mark("sweep")
    return timeline


def unavailable_cells(plan: SweepPlan, workers: "LocalWorkers | None" = None) -> dict[int, str]:
    """Check every cell before anything runs; return the ones this machine cannot run, with why.

    Bad input (an option value, a precision the backend refuses) raises
    `UserError` here, so a sweep never fails halfway on something it could
    have refused up front. A backend or device missing on this machine is not
    bad input — the same file runs elsewhere — so those cells are skipped.
    What needs the runtimes is checked by `workers` (`bench/cell_check.py`,
    once per distinct config, where the cells will run; without `workers`, by
    workers started for it and closed after).
    """
    missing: dict[int, str] = {}
    for index, cell in enumerate(plan.cells):
        try:
            check_config(cell.config)
            if cell.memory_limit_bytes is not None:
                check_memory_limit(cell.memory_limit_bytes, cell.config.device, "memory_limit")
        except BackendUnavailable as err:  # a plugin backend that does not load
            missing[index] = str(err)
        except UserError as err:
            raise UserError(f"{cell.origin}: {err}", key=err.key) from None
    own = LocalWorkers() if workers is None else None
    try:
        missing.update(_runtime_checks(plan, workers or own, set(missing)))
    finally:
        if own is not None:
            own.close()
    return missing


def _runtime_checks(plan: SweepPlan, workers: "LocalWorkers", known: set[int]) -> dict[int, str]:
    cells = [(index, cell) for index, cell in enumerate(plan.cells) if index not in known]
    configs = {cell.config.key(): cell.config for _, cell in cells}  # one check per distinct config
    if not configs:
        return {}
    results = workers.check(list(configs.values()))
    if results is None:
        return {}  # the check itself died: each cell's worker checks again before it measures
    by_key = dict(zip(configs, results))
    missing: dict[int, str] = {}
    for index, cell in cells:
        result = by_key[cell.config.key()]
        if result.get("exit_code") == BackendUnavailable.exit_code:
            missing[index] = str(result["message"])
        elif result.get("exit_code") == UserError.exit_code:
            raise UserError(f"{cell.origin}: {result['message']}", key=result.get("key"))
    return missing


def stored_records(store: Store, hardware_key: str) -> dict[str, Record]:
    """The latest stored record of each config measured on this hardware, by config key."""
    from .config import config_key

    latest: dict[str, Record] = {}
    for record in store.records(hardware_key=hardware_key):
        latest[config_key(record.config)] = record  # oldest first, so the last one wins
    return latest


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

    Without an `executor`, cells run in `LocalWorkers`, closed (its zygote
    shut down) when the sweep ends, however it ends.
    """
    owned = LocalWorkers() if executor is None else None
    executor = executor or owned
    try:
        if skip is None:
            skip = unavailable_cells(plan, executor if isinstance(executor, LocalWorkers) else None)
        stored = {} if force else stored_records(store, hardware_key)
        results: list[CellResult] = []
        for index, cell in enumerate(plan.cells):
            previous = stored.get(cell.config.key())
            if index in skip:
                result = CellResult(cell, "skipped", note=skip[index])
            elif previous is not None and not (retry_failed and previous.status == "failed"):
                result = CellResult(cell, "stored", previous)
            else:
                result = _measure(executor, store, index, cell, progress)
            results.append(result)
            progress.cell_done(index, result)
        return results
    finally:
        if owned is not None:
            owned.close()


def _measure(executor: Executor, store: Store, index: int, cell: SweepCell, progress: SweepProgress) -> CellResult:
    """Run one cell and store its record; a worker's refusal stores nothing and the sweep goes on."""
    try:
        record = executor.run(cell, progress.cell_started(index, cell))
    except BackendUnavailable as err:
        return CellResult(cell, "skipped", note=str(err))
    except UserError as err:
        return CellResult(cell, "skipped", note=f"refused: {err}", refused=True)
    store.append(record)
    return CellResult(cell, "ran", record)


def verdict(results: list[CellResult]) -> int:
    """Exit status: 2 when a worker refused a cell's input, else 1 when any cell is failed or invalid, else 0."""
    if any(r.refused for r in results):
        return UserError.exit_code
    return 1 if any(r.record is not None and r.record.status != "ok" for r in results) else 0

