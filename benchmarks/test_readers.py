"""The readers over a big store: report and history over 100 000 records, compare of 1 000 cells.

Each figure is printed next to a bare `SELECT count(*)` on the same store in
the same run (this machine varies 10–30 % between runs; only figures of one
run compare). The store is generated once and cached under `.benchmarks/`.
Targets (issue 8): report and history ≤ 5 s each, compare of 1 000 cells ≤ 2 s.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.reports.compare import compare

from reader_store import generated_store, record
from timing import timed

TOTAL = 100_000
runner = CliRunner()


@pytest.fixture(scope="module")
def store() -> str:
    folder = Path(".benchmarks")
    folder.mkdir(exist_ok=True)
    return str(generated_store(folder, TOTAL))


def _cli(*args: str) -> None:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_readers_over_100k_records(store: str, overhead_lines: list[str], tmp_path: Path) -> None:
    lines = [f"readers over a store of {TOTAL} records ({store}), one run:"]

    def count() -> None:
        with sqlite3.connect(store) as conn:
            assert conn.execute("SELECT count(*) FROM records").fetchone()[0] == TOTAL

    timed(lines, "bare SELECT count(*)", count)
    timed(lines, "report (latest commit: 100 cells)", lambda: _cli(
        "report", "--store", store, "--where", "commit=c00999", "-o", str(tmp_path / "r.html")))
    timed(lines, "report --where workload=dcgan (20 cells × 1000 reruns)", lambda: _cli(
        "report", "--store", store, "--where", "workload=dcgan", "-o", str(tmp_path / "w.html")))
    timed(lines, "history --where workload=dcgan (20 cells × 1000 commits)", lambda: _cli(
        "history", "--store", store, "--where", "workload=dcgan", "-o", str(tmp_path / "h.html")))
    timed(lines, "history over the whole store (100 cells × 1000 commits)", lambda: _cli(
        "history", "--store", store, "-o", str(tmp_path / "all.json")))
    overhead_lines.extend(lines)


def test_compare_of_1000_cells(overhead_lines: list[str]) -> None:
    rng = np.random.default_rng(1)
    base, new = [], []
    for cell in range(1000):
        # One hardware key per cell keeps the 1 000 cell keys distinct.
        for side, factor in ((base, 1.0), (new, 1.10 if cell % 100 == 0 else 1.0)):
            latencies = (0.001 * factor * rng.lognormal(0, 0.05, 300)).tolist()
            side.append(record("dcgan", "pytorch", f"hw-{cell}", 0, latencies))
    lines: list[str] = []
    result = None

    def run() -> None:
        nonlocal result
        result = compare(base, new)

    timed(lines, "compare of 1000 matched cells (300 samples a side)", run)
    assert len(result.regressions) == 10
    overhead_lines.extend(lines)
