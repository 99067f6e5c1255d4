"""`aigcbench report`: winners only beyond the noise, invalid never wins, four outputs, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.store import Store
from aigcbench.reports import report
from tests.records import synthetic_record

SCRIPT = "<script>alert(1)</script>"


def _samples(median: float, seed: int, n: int = 200) -> list[float]:
    return list(np.random.default_rng(seed).normal(median, median * 0.03, n))


def _fill(path: Path, records: list) -> str:
    with Store.open(str(path)) as store:
        for r in records:
            store.append(r)
    return str(path)


def _report(records: list) -> report.Report:
    return report.analyse(records)


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_clear_winner_declared_with_speedup_against_eager_fp32() -> None:
    result = _report([synthetic_record(_samples(0.020, 1), backend="pytorch"),
                      synthetic_record(_samples(0.010, 2), backend="openvino")])
    group, = result.groups
    assert group.verdict.kind == "winner"
    winner = group.row(group.verdict.leaders[0])
    assert winner.backend == "openvino"
    base = group.rows[1]
    assert winner.speedup == pytest.approx(base.p50_s / winner.p50_s)
    assert base.speedup == pytest.approx(1.0)
    assert winner.ci.high < base.ci.low
    assert f"{winner.speedup:.2f}× eager PyTorch" in report.answer(group)


def test_same_distribution_is_indistinguishable() -> None:
    same = _samples(0.010, 3, 400)
    result = _report([synthetic_record(same[::2], backend="openvino"),
                      synthetic_record(same[1::2], backend="onnxruntime"),
                      synthetic_record(_samples(0.030, 4), backend="pytorch")])
    group, = result.groups
    assert group.verdict.kind == "indistinguishable"
    assert {group.row(c).backend for c in group.verdict.leaders} == {"openvino", "onnxruntime"}
    assert "indistinguishable" in report.answer(group)


def test_invalid_fastest_never_wins_and_failed_shows_reason() -> None:
    result = _report([
        synthetic_record(_samples(0.001, 5), backend="tensorrt", status="invalid", fidelity_error=0.5),
        synthetic_record(_samples(0.020, 6), backend="pytorch"),
        synthetic_record([], backend="torch_compile", status="failed", reason="RuntimeError: no compiler"),
    ])
    group, = result.groups
    assert group.row(group.verdict.leaders[0]).backend == "pytorch"
    assert group.verdict.kind == "only"
    invalid = next(r for r in group.rows if r.status == "invalid")
    assert invalid.rank is None and invalid.fidelity_error == 0.5
    failed = next(r for r in group.rows if r.status == "failed")
    assert failed.reason == "RuntimeError: no compiler"
    cells = report.ranking_cells(group, invalid)
    assert cells["fidelity error"] == "5.00e-01"
    assert "no compiler" in report.ranking_cells(group, failed)["status"]


def test_newest_ok_rerun_gives_the_numbers_and_runs_are_counted() -> None:
    old = synthetic_record(_samples(0.030, 7), created_at="2026-11-01T00:00:00+00:00")
    new = synthetic_record(_samples(0.010, 8), created_at="2026-11-02T00:00:00+00:00")
    group, = _report([new, old]).groups
    row, = group.rows
    assert row.runs == 2 and row.run_id == new.run_id


def test_no_baseline_gives_no_speedup() -> None:
    group, = _report([synthetic_record(_samples(0.01, 9), backend="openvino")]).groups
    assert group.rows[0].speedup is None
    assert report.ranking_cells(group, group.rows[0])["vs eager fp32"] == "—"


def test_capacity_winner_needs_more_than_search_tolerance() -> None:
    def server(backend: str, capacity: float) -> object:
        return synthetic_record(_samples(0.01, 10), backend=backend, scenario="server", extra_metrics={
            "capacity_items_per_s": capacity, "server": {"search": {"tolerance": 0.1}}})
    close, = _report([server("a", 100.0), server("b", 95.0)]).groups
    assert close.verdict.kind == "indistinguishable" and close.verdict.basis == "tolerance"
    far, = _report([server("a", 100.0), server("b", 80.0)]).groups
    assert far.verdict.kind == "winner" and far.row(far.verdict.leaders[0]).backend == "a"


def _mixed_store(path: Path) -> tuple[str, int]:
    records = [
        synthetic_record(_samples(0.020, 11), backend="pytorch"),
        synthetic_record(_samples(0.020, 12), backend="pytorch"),  # a rerun of the same cell
        synthetic_record(_samples(0.010, 13), backend="openvino", labels={"note": SCRIPT}),
        synthetic_record(_samples(0.002, 14), backend="tensorrt", status="invalid", fidelity_error=0.5),
        synthetic_record([], backend="torch_compile", status="failed"),
        *(synthetic_record(_samples(0.01 * b, 15 + b, 60), backend=be, scenario="throughput", batch_size=b)
          for b in (1, 4) for be in ("pytorch", "openvino")),
    ]
    return _fill(path, records), len(records)


def test_all_four_outputs_written_and_parse(tmp_path: Path) -> None:
    store, count = _mixed_store(tmp_path / "s.db")
    for suffix in ("html", "md", "json", "csv"):
        out = tmp_path / f"report.{suffix}"
        result = _cli("report", "--store", store, "-o", str(out))
        assert result.exit_code == 0, result.output
        assert str(out) in result.output
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["schema_version"] == report.SCHEMA_VERSION and len(data["groups"]) == 2
    assert all(g["rows"] and g["answer"] for g in data["groups"])
    frame = pd.read_csv(tmp_path / "report.csv")
    assert len(frame) == count and "latency_p50_s" in frame.columns
    html = (tmp_path / "report.html").read_text()
    assert "<svg" in html and "http://" not in html and "https://" not in html
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = (tmp_path / "report.md").read_text()
    assert SCRIPT not in md and "~~tensorrt~~" in md and "RuntimeError" in md


def test_stdout_is_the_answer_table(tmp_path: Path) -> None:
    store, _ = _mixed_store(tmp_path / "s.db")
    result = _cli("report", "--store", store, "--where", "scenario=latency")
    assert result.exit_code == 0, result.output
    assert "openvino" in result.output and "throughput)" not in result.output


@pytest.mark.parametrize("name", ["report.pdf", "missing/report.html", "."])
def test_bad_output_refused_before_reading(tmp_path: Path, name: str) -> None:
    store, _ = _mixed_store(tmp_path / "s.db")
    before = sorted(tmp_path.rglob("*"))
    result = _cli("report", "--store", store, "-o", str(tmp_path / name))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert sorted(tmp_path.rglob("*")) == before


def test_selection_matching_nothing_exits_2(tmp_path: Path) -> None:
    store, _ = _mixed_store(tmp_path / "s.db")
    out = tmp_path / "r.html"
    result = _cli("report", "--store", store, "--where", "workload=nope", "-o", str(out))
    assert result.exit_code == 2 and "no record matches" in result.output
    assert not out.exists()
