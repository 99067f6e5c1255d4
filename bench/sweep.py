"""Run every cell of a sweep, each in its own worker, resuming what the store already holds.

A cell already stored for the same config (`RunConfig.key`) and the same
`hardware_key` is not measured again — whatever its status, so rerunning a
finished sweep measures nothing and gives the same verdict — unless `force`
(measure everything) or `retry_failed` (measure the failed ones again).
Each new record is appended to the store the moment its cell ends, so an
interrupted sweep keeps every finished cell and the rerun continues from there.

A cell run in another interpreter (`python = ...`, `bench/interpreters.py`)
is another measurement of the same config: resume matches the interpreter too.

Cells run through an executor: local worker processes (`bench/local_executor.py`:
one at a time, so cells never compete for the machine they measure; each
forked from a pre-imported zygote, see `bench/zygote.py`), or a cluster's
(Ray, one task per cell pinned to the node with the needed accelerator),
behind the same seam: `Executor`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

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
    """Where and how cells run: `LocalWorkers` (this machine, one at a time) or a cluster's."""

    def skipped(self, cell: SweepCell, hardware_key: str) -> str | None: ...

    def check(self, cells: list[SweepCell]) -> list[dict | None]: ...

    def run(self, cell: SweepCell, observer: RunObserver) -> Record: ...

    def close(self) -> None: ...


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
        except BackendUnavailable as err:  # a plugin backend that does not load
            missing[index] = str(err)
            continue
        except UserError as err:
            raise UserError(f"{cell.origin}: {err}", key=err.key) from None
        why = executor.skipped(cell, hardware_key)
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


def previous_record(stored: dict[str, dict[str | None, Record]], cell: SweepCell) -> Record | None:
    """The stored record that already measured `cell`: same config and hardware, run in the same interpreter."""
    held = stored.get(cell.config.key())
    if not held:
        return None
    return held.get(cell_interpreter(cell), held.get(None))


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
            skip = unavailable_cells(plan, executor, hardware_key)
        stored = {} if force else stored_records(store, hardware_key)
        results: list[CellResult] = []
        for index, cell in enumerate(plan.cells):
            previous = previous_record(stored, cell)
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

