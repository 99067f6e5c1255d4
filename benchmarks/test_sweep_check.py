"""Checking a sweep file: 1 000 against 10 000 cells, and the registry lookups with and without their cache.

Issue 10: checking one cell used to cost ~26 ms, nearly all of it
`importlib.metadata.entry_points()` reached once per cell through the
backend registry, so a 10 000-cell file took minutes to refuse or accept.
The entry points are now read once per process; the target is well under a
second for 10 000 cells. Figures compare within this one run only (this
machine varies 10–30 % between runs): the 10 000-cell check should cost
about ten times the 1 000-cell one, and a cached registry lookup should cost
a small fraction of an uncached one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aigcbench.backends import registry as backends
from aigcbench.bench import plugins
from aigcbench.bench.sweep import unavailable_cells
from aigcbench.bench.sweep_file import load_sweep

from timing import timed


def _sweep(folder: Path, cells: int) -> Path:
    """A matrix of `cells` cells on two backends, with an exclude (of 2) and an override matched against each."""
    path = folder / f"sweep-{cells}.toml"
    seeds = list(range(cells // 2))
    path.write_text(
        '[defaults]\nworkload = "dcgan"\nsize = "tiny"\n'
        f'[matrix]\nbackend = ["pytorch", "null"]\nseed = {seeds}\n'
        '[[exclude]]\nbackend = "null"\nseed = [0, 1]\n'
        '[[override]]\nwhere = { backend = "null" }\nset = { duration = 0.5, timeout = "10m" }\n'
    )
    return path


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("sweeps")
    files = {cells: _sweep(folder, cells) for cells in (1_000, 10_000)}
    load_sweep(files[1_000])  # imports the workloads and backends once, outside the figures
    return files


def test_checking_1000_and_10000_cells(sweeps: dict[int, Path], overhead_lines: list[str]) -> None:
    lines = ["checking a sweep file (load_sweep, then the preflight of `aigcbench sweep`), one run:"]
    for cells, path in sweeps.items():
        plan = None

        def load(path: Path = path) -> None:
            nonlocal plan
            plan = load_sweep(path)

        timed(lines, f"load_sweep, a {cells:,}-cell matrix", load)
        assert plan is not None and len(plan.cells) == cells - 2
        timed(lines, f"preflight of every cell, a {cells:,}-cell matrix", lambda: unavailable_cells(plan))
    overhead_lines.extend(lines)


def test_registry_lookups_cached_and_uncached(overhead_lines: list[str]) -> None:
    rounds = 200

    def lookups(clear: bool) -> None:
        for _ in range(rounds):
            if clear:
                plugins.clear_cache()
            backends.names()

    lines = [f"backend registry names(), {rounds} lookups, one run:"]
    uncached = timed(lines, "each one reading the entry points (the old cost)", lambda: lookups(True))
    cached = timed(lines, "read once, then cached", lambda: lookups(False))
    lines.append(f"  {'cached / uncached':<58} {cached / uncached:9.5f}")
    overhead_lines.extend(lines)


def test_load_sweep_of_10000_cells(benchmark, sweeps: dict[int, Path]) -> None:
    plan = benchmark.pedantic(load_sweep, args=(sweeps[10_000],), rounds=3, iterations=1)
    assert len(plan.cells) == 10_000 - 2

