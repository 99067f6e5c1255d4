"""`aigcbench compare`: the statistics of the gate, its verdicts on records, its rendering and its CLI.

The gate's two promises are tested on a real latency distribution
(`real_record()`: 5316 samples of a real tiny run, heavy right tail and all):
reruns of one configuration are not flagged, a real slowdown is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.record import write_json
from aigcbench.bench.store import Store
from aigcbench.reports import metrics
from aigcbench.reports.compare import (
    HL_MAX_SAMPLES, Thresholds, compare, compare_samples, hodges_lehmann, mann_whitney_p, parse_percent,
    parse_thresholds, thin,
)
from aigcbench.reports.compare_render import markdown_report, rich_report, rich_verdict, summary
from tests.records import real_record, synthetic_record

LATENCY = metrics.get("latency_p50_s")
THROUGHPUT = metrics.get("throughput_items_per_s")
runner = CliRunner()


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return np.asarray(real_record().samples["latency_s"], dtype=float)


def draw(real: np.ndarray, rng: np.random.Generator, n: int = 300, factor: float = 1.0) -> np.ndarray:
    """`n` latencies resampled from the real run, scaled by `factor`, with 1 % per-call jitter."""
    return rng.choice(real, n) * factor * rng.normal(1.0, 0.01, n)


# ----------------------------------------------------------------------------- the gate's two promises

def test_aa_reruns_are_flagged_at_most_one_percent(real: np.ndarray) -> None:
    rng = np.random.default_rng(20261201)
    flagged = sum(compare_samples(LATENCY, draw(real, rng), draw(real, rng), 0.05).regressed for _ in range(500))
    assert flagged / 500 <= 0.01


def test_drift_between_runs_is_not_flagged_at_five_percent(real: np.ndarray) -> None:
    # Machine noise between runs: one whole side scaled by a random ±2 %; significant often, never beyond 5 %.
    rng = np.random.default_rng(7)
    verdicts = [
        compare_samples(LATENCY, draw(real, rng), draw(real, rng, factor=rng.uniform(0.98, 1.02)), 0.05).verdict
        for _ in range(300)
    ]
    assert verdicts.count("regressed") / len(verdicts) <= 0.01
    assert "noise" in verdicts  # the drift is detectable; the threshold is what keeps it out of the gate


@pytest.mark.parametrize("factor, share", [(1.10, 0.99), (1.20, 1.0)])
def test_a_slowdown_is_caught(real: np.ndarray, factor: float, share: float) -> None:
    rng = np.random.default_rng(11)
    caught = sum(
        compare_samples(LATENCY, draw(real, rng), draw(real, rng, factor=factor), 0.05).regressed for _ in range(100)
    )
    assert caught / 100 >= share


def test_throughput_drop_is_a_regression_and_a_gain_an_improvement(real: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    base = draw(real, rng)
    slower, faster = draw(real, rng, factor=1.2), draw(real, rng, factor=0.8)
    drop = compare_samples(THROUGHPUT, 1 / base, 1 / slower, 0.05)
    gain = compare_samples(THROUGHPUT, 1 / base, 1 / faster, 0.05)
    assert drop.verdict == "regressed" and drop.shift < -0.05
    assert gain.verdict == "improved" and gain.shift > 0.05


# ----------------------------------------------------------------------------- the estimator and the test

def test_hodges_lehmann_is_the_median_of_pairwise_differences() -> None:
    base, new = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    # new − base: -1 0 1 1 2 3 3 4 5
    assert hodges_lehmann(base, new).estimate == 2.0
    rng = np.random.default_rng(5)
    a, b = rng.gamma(2.0, size=40), rng.gamma(2.5, size=60)
    assert hodges_lehmann(a, b).estimate == pytest.approx(np.median(np.subtract.outer(b, a)))


def test_hodges_lehmann_interval_uses_the_mann_whitney_order_statistics() -> None:
    # m = n = 10, 95 %: the tabulated critical U is 23, so the interval is the 24th smallest and 24th largest difference.
    rng = np.random.default_rng(9)
    a, b = rng.normal(size=10), rng.normal(0.5, size=10)
    ordered = np.sort(np.subtract.outer(b, a).ravel())
    shift = hodges_lehmann(a, b, confidence=0.95)
    assert (shift.low, shift.high) == (ordered[23], ordered[100 - 24])


@pytest.mark.parametrize("n", [200, 5316])
def test_an_exact_shift_is_recovered_and_inside_its_interval(real: np.ndarray, n: int) -> None:
    base = real[:n]
    c = 2.5e-5
    shift = hodges_lehmann(base, base + c)
    assert shift.estimate == pytest.approx(c, rel=1e-6)
    assert shift.low <= c <= shift.high
    assert shift.thinned == (n > HL_MAX_SAMPLES)


def test_thinning_keeps_order_statistics_deterministically(real: np.ndarray) -> None:
    thinned = thin(real)
    assert len(thinned) == HL_MAX_SAMPLES and np.all(np.diff(thinned) >= 0)
    assert np.array_equal(thinned, thin(real[::-1]))
    assert np.median(thinned) == pytest.approx(np.median(real), rel=0.01)
    assert np.array_equal(thin([3.0, 1.0, 2.0]), [1.0, 2.0, 3.0])


def test_mann_whitney_p_is_scipys(real: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    a, b = draw(real, rng, 80), draw(real, rng, 90, factor=1.05)
    assert mann_whitney_p(a, b) == scipy.stats.mannwhitneyu(b, a, alternative="two-sided").pvalue
    assert compare_samples(LATENCY, a, b, 0.05).p_value == mann_whitney_p(a, b)


def test_too_few_samples_are_insufficient_not_a_regression() -> None:
    result = compare_samples(LATENCY, [1.0, 1.0, 1.1, 1.0], [9.0, 9.0, 9.1, 9.0], 0.05)
    assert result.verdict == "insufficient" and not result.regressed and result.p_value is None


# ----------------------------------------------------------------------------- records and cells

def _records(real: np.ndarray, seed: int, factor: float = 1.0, **kwargs) -> object:
    return synthetic_record(draw(real, np.random.default_rng(seed), factor=factor), **kwargs)


@pytest.mark.parametrize("status", ["invalid", "failed"])
def test_a_broken_new_record_regresses_with_its_reason(real: np.ndarray, status: str) -> None:
    result = compare([_records(real, 1)], [_records(real, 2, status=status, reason=f"{status}: why")])
    (cell,) = result.regressions
    assert cell.status_change == "regressed" and cell.new.reason == f"{status}: why"
    assert result.verdict_code == 1
    assert f"REGRESSED: {status}: why" in markdown_report(result)


def test_broken_on_both_sides_is_listed_not_a_new_regression(real: np.ndarray) -> None:
    result = compare([_records(real, 1, status="failed")], [_records(real, 2, status="failed")])
    assert [c.verdict for c in result.cells] == ["broken"] and result.verdict_code == 0
    assert "1 failed on both sides" in summary(result)


def test_a_recovered_cell_is_an_improvement(real: np.ndarray) -> None:
    result = compare([_records(real, 1, status="failed")], [_records(real, 2)])
    assert [c.verdict for c in result.cells] == ["improved"] and result.verdict_code == 0


def test_unmatched_cells_are_listed_and_do_not_fail(real: np.ndarray) -> None:
    base = [_records(real, 1), _records(real, 2, backend="onnxruntime")]
    new = [_records(real, 3), _records(real, 4, backend="openvino"), _records(real, 5, hardware_key="other")]
    result = compare(base, new)
    assert [u.label.split(" · ")[1] for u in result.only_base] == ["onnxruntime cpu fp32"]
    assert len(result.only_new) == 2 and result.verdict_code == 0
    assert summary(result) == "0 regressions, 0 improvements, 1 unchanged in 1 cell (1 only in base, 2 only in new)"


def test_reruns_are_pooled(real: np.ndarray) -> None:
    result = compare([_records(real, 1), _records(real, 2)], [_records(real, 3, factor=1.2)])
    (cell,) = result.cells
    assert (cell.base.records, cell.new.records) == (2, 1)
    latency = cell.metrics[0]
    assert (latency.base_n, latency.new_n) == (600, 300) and latency.regressed


def test_labels_do_not_split_a_cell(real: np.ndarray) -> None:
    result = compare([_records(real, 1, labels={"commit": "aaa"})], [_records(real, 2, labels={"commit": "bbb"})])
    assert len(result.cells) == 1 and not result.only_base and not result.only_new


def test_per_metric_threshold(real: np.ndarray) -> None:
    base, new = [_records(real, 1)], [_records(real, 2, factor=1.08)]
    strict = compare(base, new)
    assert [m.verdict for m in strict.cells[0].metrics] == ["regressed", "regressed"]
    relaxed = compare(base, new, thresholds=parse_thresholds(["latency_p50_s=10%"], metrics.DEFAULT_COMPARE))
    assert [m.verdict for m in relaxed.cells[0].metrics] == ["noise", "regressed"]


def test_a_metric_without_samples_gates_only_when_asked(real: np.ndarray) -> None:
    base = [_records(real, 1, cold_start={"total": 0.35})]
    new = [_records(real, 2, cold_start={"total": 0.70})]
    default = compare(base, new, ["cold_start_total_s"])
    (m,) = default.cells[0].metrics
    assert m.verdict == "threshold only" and m.shift == pytest.approx(1.0) and default.verdict_code == 0
    asked = compare(base, new, ["cold_start_total_s"], threshold_only_gates=True)
    assert asked.cells[0].metrics[0].method == "threshold" and asked.verdict_code == 1


# ----------------------------------------------------------------------------- thresholds

@pytest.mark.parametrize("text, fraction", [("5%", 0.05), ("5", 0.05), ("2.5%", 0.025), ("0.5%", 0.005)])
def test_threshold_grammar(text: str, fraction: float) -> None:
    assert parse_percent(text) == pytest.approx(fraction)


@pytest.mark.parametrize("text", ["0", "0%", "100%", "150", "-5%", "0.05", "five", "5%%", ""])
def test_bad_thresholds_are_refused(text: str) -> None:
    with pytest.raises(UserError):
        parse_percent(text)


def test_threshold_items() -> None:
    parsed = parse_thresholds(["3%", "throughput_items_per_s=10%"], metrics.DEFAULT_COMPARE)
    assert parsed == Thresholds(0.03, {"throughput_items_per_s": 0.10})
    assert parsed.of("latency_p50_s") == 0.03 and parsed.of("throughput_items_per_s") == 0.10
    for items in (["5%", "6%"], ["nope=5%"], ["latency_p99_s=5%"], ["latency_p50_s=5%", "latency_p50_s=6%"]):
        with pytest.raises(UserError):
            parse_thresholds(items, metrics.DEFAULT_COMPARE)


# ----------------------------------------------------------------------------- rendering

def test_markdown_starts_with_the_summary_and_escapes_user_text(real: np.ndarray) -> None:
    evil = "a|b <script>x</script>"
    base = [_records(real, 1, backend=evil)]
    new = [_records(real, 2, backend=evil, status="failed", reason="boom | <img src=x>")]
    text = markdown_report(compare(base, new))
    first = text.splitlines()[0]
    assert "1 regression, 0 improvements, 0 unchanged in 1 cell" in first
    assert "<script>" not in text and "<img" not in text and "a\\|b" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "status" in line]
    assert len(rows) == 1 and rows[0].count(" | ") == 6  # the cell's `|` did not split it


def test_rich_report_lists_regressions_first_then_unmatched(real: np.ndarray) -> None:
    from rich.console import Console

    base = [_records(real, 1), _records(real, 2, backend="zzz-slow"), _records(real, 3, backend="gone")]
    new = [_records(real, 4), _records(real, 5, backend="zzz-slow", factor=1.3)]
    result = compare(base, new)
    wide, narrow = Console(width=300, record=True), Console(width=60, record=True)
    wide.print(rich_report(result))
    for line in rich_verdict(result):
        narrow.print(line, soft_wrap=True)  # never wrapped, however narrow the console: CI logs grep these
    text = wide.export_text() + narrow.export_text()
    assert text.index("zzz-slow") < text.index("pytorch cpu") < text.index("only in base") < text.index("gone")
    assert "1 regression, 0 improvements, 1 unchanged in 2 cells (1 only in base, 0 only in new)" in text
    assert "regressed: dcgan tiny · zzz-slow cpu fp32 · latency b1 · test-cpu-2c — latency_p50_s +" in text


# ----------------------------------------------------------------------------- CLI

def _files(tmp_path: Path, real: np.ndarray, factor: float) -> tuple[str, str]:
    a, b = tmp_path / "base.json", tmp_path / "new.json"
    write_json(_records(real, 1), a)
    write_json([_records(real, 2, factor=factor)], b)
    return str(a), str(b)


def test_cli_reruns_pass(tmp_path: Path, real: np.ndarray) -> None:
    result = runner.invoke(app, ["compare", *_files(tmp_path, real, 1.0)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "0 regressions, 0 improvements, 1 unchanged in 1 cell" in result.stdout


def test_cli_slowdown_fails_naming_the_cell(tmp_path: Path, real: np.ndarray) -> None:
    files = _files(tmp_path, real, 1.2)
    result = runner.invoke(app, ["compare", *files], catch_exceptions=False)
    assert result.exit_code == 1
    assert "regressed: dcgan tiny · pytorch cpu fp32 · latency b1 · test-cpu-2c" in result.stdout
    kept = runner.invoke(app, ["compare", *files, "--no-fail"], catch_exceptions=False)
    assert kept.exit_code == 0 and "1 regression" in kept.stdout


def test_cli_writes_markdown(tmp_path: Path, real: np.ndarray) -> None:
    out = tmp_path / "comment.md"
    result = runner.invoke(app, ["compare", *_files(tmp_path, real, 1.2), "--markdown", str(out), "--no-fail"],
                           catch_exceptions=False)
    assert result.exit_code == 0
    assert out.read_text().splitlines()[0].startswith("❌ **1 regression")


def test_cli_json_lines_input(tmp_path: Path, real: np.ndarray) -> None:
    lines = tmp_path / "base.jsonl"
    lines.write_text("".join(json.dumps(_records(real, s).to_dict()) + "\n" for s in (1, 2)))
    _, new = _files(tmp_path, real, 1.0)
    result = runner.invoke(app, ["compare", str(lines), new], catch_exceptions=False)
    assert result.exit_code == 0 and "pooled 2 base + 1 new records" in result.stdout


def test_cli_selections_from_the_store(store_path: Path, real: np.ndarray) -> None:
    with Store.open(str(store_path)) as store:
        for seed in (1, 2):
            store.append(_records(real, seed, labels={"commit": "aaa"}))
        store.append(_records(real, 3, factor=1.2, labels={"commit": "bbb"}))
    args = ["compare", "--base", "commit=aaa", "--new", "commit=bbb", "--store", str(store_path)]
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 1 and "regressed: dcgan tiny" in result.stdout
    assert "pooled 2 base + 1 new records" in result.stdout
    missing = runner.invoke(app, [*args[:4], "commit=ccc", *args[5:]], catch_exceptions=False)
    assert missing.exit_code == 2 and "--new commit=ccc: no record matches" in missing.stderr


def _bad_inputs(tmp_path: Path, real: np.ndarray) -> dict[str, list[str]]:
    a, b = _files(tmp_path, real, 1.0)
    (tmp_path / "text.json").write_text("not json {")
    (tmp_path / "bench.json").write_text(json.dumps({"hello": "world"}))
    future = _records(real, 1).to_dict() | {"schema_version": 99}
    (tmp_path / "future.json").write_text(json.dumps(future))
    write_json(_records(real, 1, backend="other"), tmp_path / "other.json")
    out = str(tmp_path / "out.md")
    return {
        "cannot read": ["compare", a, str(tmp_path / "missing.json"), "--markdown", out],
        "not valid JSON": ["compare", a, str(tmp_path / "text.json"), "--markdown", out],
        "neither an aigcbench record": ["compare", str(tmp_path / "bench.json"), b, "--markdown", out],
        "schema_version 99 is not supported": ["compare", a, str(tmp_path / "future.json"), "--markdown", out],
        "no cell is in both sets": ["compare", a, str(tmp_path / "other.json"), "--markdown", out],
        "unknown metric": ["compare", a, b, "--metric", "latency_p51_s", "--markdown", out],
        "ambiguous": ["compare", a, b, "--threshold", "0.05", "--markdown", out],
        "not both": ["compare", a, b, "--base", "commit=aaa", "--markdown", out],
        "--new missing": ["compare", "--base", "commit=aaa", "--markdown", out],
        "expected two files": ["compare", a, "--markdown", out],
        "unknown format": ["compare", a, b, "--markdown", str(tmp_path / "out.html")],
    }


def test_cli_bad_inputs_exit_2_with_one_line_and_write_nothing(tmp_path: Path, real: np.ndarray) -> None:
    for expected, args in _bad_inputs(tmp_path, real).items():
        result = runner.invoke(app, args, catch_exceptions=False)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2, (expected, result.output)
        assert len(lines) == 1 and expected in lines[0], (expected, result.stderr)
        assert not result.stdout.strip(), expected
    assert not list(tmp_path.glob("*.md")) and not list(tmp_path.glob(".out*"))


def test_cli_entry_point_refuses_without_traceback(tmp_path: Path) -> None:
    code = "from aigcbench.bench.cli import app; app()"
    done = subprocess.run([sys.executable, "-c", code, "compare", "--threshold", "0%", "a.json", "b.json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "--threshold" in done.stderr

