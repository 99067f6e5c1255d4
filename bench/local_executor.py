"""The local executor: each cell in a worker process of its own on this machine, one at a time.

Cells never compete for the machine they measure. Each worker is forked from
a pre-imported zygote (`bench/zygote.py`) of the interpreter the cell runs in:
the one running aigcbench, or another environment's (`bench/interpreters.py`),
which gets a zygote of its own, started at its first cell. A cell pinned to
`hardware` other than this machine's is not this machine's to measure: it is
skipped, as a cell of a backend this machine lacks is.
"""

from __future__ import annotations

import sys

from .isolation import check_cells, run_isolated
from .launchers import ColdLauncher, Launcher, ZygoteLauncher
from .record import Record
from .runner import RunObserver
from .sweep_file import SweepCell
from .walltime import Timeline

# How long the check of every cell may take before the cells are left to check themselves.
CHECK_TIMEOUT_S = 600.0


def cell_interpreter(cell: SweepCell) -> str:
    """The interpreter `cell`'s worker runs in: its own `python`, else its backend's environment, else this one."""
    from ..backends import registry as backend_registry
    from .interpreters import interpreter_for

    return interpreter_for(getattr(backend_registry.get(cell.config.backend), "environment", None), cell.python)


def pinned_elsewhere(cell: SweepCell, hardware_key: str) -> str | None:
    """Why a cell pinned to other hardware is not measured here, or None."""
    if cell.hardware is None or cell.hardware == hardware_key:
        return None
    return f"pinned to hardware {cell.hardware!r}; this machine is {hardware_key!r} (--executor ray places it)"


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
        self._others: dict[str, Launcher] = {}  # launchers of other interpreters, by path

    def launcher_for(self, python: str) -> Launcher:
        """The launcher of `python`'s workers: this one's own, or one started for that interpreter."""
        if python == getattr(self.launcher, "python", sys.executable):
            return self.launcher
        if python not in self._others:
            if isinstance(self.launcher, ZygoteLauncher):
                self._others[python] = ZygoteLauncher(python, preload=self.launcher.preload)
            else:
                self._others[python] = ColdLauncher(python)
        return self._others[python]

    def skipped(self, cell: SweepCell, hardware_key: str) -> str | None:
        """Why this executor cannot run `cell` at all (before any check), or None."""
        return pinned_elsewhere(cell, hardware_key)

    def run(self, cell: SweepCell, observer: RunObserver) -> Record:
        timeline, self._timeline = self._timeline or since_last(), None
        record = run_isolated(
            cell.config, timeout_s=cell.timeout_s, observer=observer, memory_limit_bytes=cell.memory_limit_bytes,
            launcher=self.launcher_for(cell_interpreter(cell)), timeline=timeline,
        )
        self._timeline = since_last()
        return record

    def check(self, cells: list[SweepCell]) -> list[dict | None]:
        """The runtime checks of `cells` (`bench/cell_check.py`), each in the interpreter it will run in.

        One check process per interpreter, for its distinct configs; a cell whose
        check gave nothing (the check process died) is None: its worker checks again.
        """
        groups: dict[str, dict[str, object]] = {}
        for cell in cells:
            groups.setdefault(cell_interpreter(cell), {})[cell.config.key()] = cell.config
        results: dict[tuple[str, str], dict] = {}
        for python, configs in groups.items():
            found = check_cells(list(configs.values()), self.launcher_for(python), CHECK_TIMEOUT_S, self._timeline)
            if found is not None:
                results.update(((python, key), result) for key, result in zip(configs, found))
        return [results.get((cell_interpreter(cell), cell.config.key())) for cell in cells]

    def close(self) -> None:
        for launcher in (self.launcher, *self._others.values()):
            launcher.close()
        self._others.clear()


def since_last() -> Timeline:
    timeline = Timeline()
    timeline.mark("sweep")
    return timeline
