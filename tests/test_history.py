"""`aigcbench history`: points per commit, change points on realistic noise, and the command's outputs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.record import write_json
from aigcbench.reports import history, history_render, metrics
from tests.records import synthetic_record

LATENCY = metrics.get("latency_p50_s")
THROUGHPUT = metrics.get("throughput_items_per_s")
START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
runner = CliRunner()


def sha(seed: int, i: int) -> str:
    return hashlib.sha1(f"{seed}-{i}".encode()).hexdigest()


def series(seed: int, n: int = 30, step_at: int | None = None, factor: float = 1.15, noise: float = 0.03,
           base: float = 0.1, **kwargs) -> list:
    """One record per commit, hourly; p50 latency = base × (1 + ~3 % noise), × factor from commit `step_at` on."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        value = base * float(np.exp(noise * rng.normal())) * (factor if step_at is not None and i >= step_at else 1)
        records.append(synthetic_record(
            [value * 0.99, value, value * 1.01], labels={"commit": sha(seed, i), "branch": "main"},
            created_at=START + dt.timedelta(hours=i), **kwargs,
        ))
    return records


def only_cell(records, metric=LATENCY) -> history.CellHistory:
    result = history.analyse(records, metric)
    assert len(result.cells) == 1
    return result.cells[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_15_percent_step_is_found_at_its_commit(seed: int) -> None:
    k = 17
    cell = only_cell(series(seed, step_at=k))
    assert len(cell.change_points) == 1
    change = cell.change_points[0]
    assert (change.after_commit, change.before_commit) == (sha(seed, k), sha(seed, k - 1))
    assert change.after == sha(seed, k)[:7] and change.index == k
    assert change.relative_step == pytest.approx(0.15, abs=0.03)
    assert change.kind == "regression"  # latency went up
    assert [(s.start, s.end) for s in cell.segments] == [(0, k - 1), (k, 29)]


def test_noise_alone_gives_almost_no_change_point() -> None:
    found = sum(len(only_cell(series(seed)).change_points) for seed in range(100, 120))
    assert found <= 1


def test_direction_decides_regression_or_improvement() -> None:
    faster = series(3, step_at=15, factor=0.85)  # latency drops: throughput rises
    slower = series(4, step_at=15, factor=1.15)  # latency rises: throughput drops
    assert [c.kind for c in only_cell(faster, LATENCY).change_points] == ["improvement"]
    assert [c.kind for c in only_cell(slower, THROUGHPUT).change_points] == ["regression"]
    assert only_cell(slower, THROUGHPUT).change_points[0].relative_step < 0


def test_points_follow_created_at_not_insertion_order() -> None:
    records = series(5, step_at=12)
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    cell = only_cell(shuffled)
    assert [p.commit for p in cell.points] == [sha(5, i) for i in range(30)]
    assert cell.change_points[0].after_commit == sha(5, 12)


def test_one_point_per_commit_and_marked_points_are_not_analysed() -> None:
    records = series(6, n=12)
    commit = sha(6, 3)
    again = [synthetic_record([v] * 3, labels={"commit": commit}, created_at=START + dt.timedelta(days=3))
             for v in (0.5, 0.7)]
    broken = synthetic_record([0.01], labels={"commit": "deadbeef99"}, status="invalid",
                              created_at=START + dt.timedelta(minutes=90))
    cell = only_cell([*records, *again, broken])
    point = next(p for p in cell.points if p.commit == commit)
    # The first measurement places the commit; its value is the median of its three records.
    assert point.count == 3 and point.records == 3
    assert point.value == pytest.approx(float(np.median([records[3].metrics["latency_s"]["p50"], 0.5, 0.7])))
    marked = cell.points[2]
    assert (marked.commit, marked.status, marked.value) == ("deadbeef99", "invalid", None)
    assert cell.marked == 1 and len(cell.points) == 13


def test_short_series_and_unlabelled_runs() -> None:
    records = [synthetic_record([v] * 3, created_at=START + dt.timedelta(hours=i), run_id=sha(0, i)[:32])
               for i, v in enumerate((0.1, 0.1, 0.2, 0.2))]
    cell = only_cell(records)
    assert cell.change_points == () and "too few" in (cell.note or "")
    assert [p.name for p in cell.points] == [f"run {sha(0, i)[:7]}" for i in range(4)]


def test_outputs_escape_user_strings() -> None:
    records = series(7, n=8)
    odd = synthetic_record([0.1] * 3, labels={"commit": "<i>x</i>$y"}, created_at=START + dt.timedelta(days=2))
    result = history.analyse([*records, odd], LATENCY)
    html = history_render.to_html(result)
    assert "<i>x" not in html and "&lt;i&gt;x" in html and "<svg" in html
    assert "http" not in html
    assert "<i>" not in history_render.to_markdown(result)


# ----------------------------------------------------------------------------- CLI

@pytest.fixture
def filled_store(tmp_path: Path, store_path: Path) -> Path:
    """A store filled the way another machine's results arrive: JSON files, `aigcbench import`."""
    records = series(8, step_at=20)
    other = series(9, hardware_key="other-cpu")
    files = []
    for name, part in (("a.json", records[:15]), ("b.json", records[15:] + other)):
        write_json(part, tmp_path / name)
        files.append(str(tmp_path / name))
    result = runner.invoke(app, ["import", *files, "--store", str(store_path)])
    assert result.exit_code == 0, result.output
    return store_path


def test_history_command_names_the_step(filled_store: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["history", "--store", str(filled_store), "--where", "branch=main"])
    assert result.exit_code == 0, result.output
    assert f"at {sha(8, 20)[:7]} (after {sha(8, 19)[:7]})" in result.output
    assert "2 cells" in result.output and "1 change point" in result.output


@pytest.mark.parametrize("suffix", ["html", "md", "json"])
def test_history_command_writes_each_format(filled_store: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"history.{suffix}"
    result = runner.invoke(app, ["history", "--store", str(filled_store), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert sha(8, 20)[:7] in text and "http" not in text
    if suffix == "html":
        assert text.count("<svg") == 2
    if suffix == "json":
        data = json.loads(text)
        assert data["schema_version"] == history.SCHEMA_VERSION
        changes = [c for cell in data["cells"] for c in cell["change_points"]]
        assert [c["after_commit"] for c in changes] == [sha(8, 20)]
        assert sum(len(cell["points"]) for cell in data["cells"]) == 60


@pytest.mark.parametrize("args", [["-o", "{tmp}/history.pdf"], ["--metric", "latency_p42_s", "-o", "{tmp}/h.md"],
                                  ["-o", "{tmp}/missing/h.md"]])
def test_history_command_refuses_bad_input(filled_store: Path, tmp_path: Path, args: list[str]) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    before = sorted(tmp_path.rglob("*"))
    result = runner.invoke(app, ["history", "--store", str(filled_store), *args])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before
