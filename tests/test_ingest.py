"""`aigcbench import` / `export`: round trips, idempotence, pytest-benchmark files, all-or-nothing refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.record import SCHEMA_VERSION, write_json
from aigcbench.bench.store import Store
from aigcbench.reports.ingest import read_records

from .records import real_record, synthetic_record

runner = CliRunner()

TINY_BENCHMARK = '''
import pytest

@pytest.mark.parametrize("n", [10, 1000])
def test_sum(benchmark, n):
    benchmark(sum, range(n))
'''


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def refused(result, expected: str) -> None:
    """Exit 2 with exactly one stderr line containing `expected`."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and expected in lines[0], result.stderr


def stored(path: Path) -> list[dict]:
    with Store.open(str(path)) as store:
        return [r.to_dict() for r in store.records()]


@pytest.fixture
def source(tmp_path) -> Path:
    """A store holding a real record and a few synthetic ones with labels."""
    path = tmp_path / "source.db"
    records = [real_record(), *(synthetic_record(labels={"branch": b, "commit": c})
                                for b, c in (("main", "a1"), ("main", "b2"), ("dev", "c3")))]
    with Store.open(str(path)) as store:
        store.append_many(records)
    return path


def test_export_then_import_gives_identical_records(tmp_path, source):
    out = tmp_path / "all.jsonl"
    result = invoke("export", "--store", source, "-o", out)
    assert result.exit_code == 0, result.output
    assert "exported 4 records" in result.stdout
    assert len(out.read_text().splitlines()) == 4
    target = tmp_path / "target.db"
    result = invoke("import", out, "--store", target)
    assert result.exit_code == 0, result.output
    assert "imported 4 records from 1 file" in result.stdout
    assert stored(target) == stored(source)  # samples included

    again = invoke("import", out, "--store", target)
    assert again.exit_code == 0 and "imported 0 records" in again.stdout and "(4 already stored)" in again.stdout
    assert len(stored(target)) == 4


def test_export_writes_only_the_selection(tmp_path, source):
    out = tmp_path / "main.jsonl"
    assert invoke("export", "--store", source, "--where", "branch=main", "-o", out).exit_code == 0
    assert [json.loads(line)["labels"]["commit"] for line in out.read_text().splitlines()] == ["a1", "b2"]


def test_json_and_list_files_from_run_and_sweep_import(tmp_path):
    one, many = synthetic_record(), [synthetic_record(), synthetic_record()]
    write_json(one, tmp_path / "run.json")
    write_json(many, tmp_path / "sweep.json")
    target = tmp_path / "t.db"
    result = invoke("import", tmp_path / "run.json", tmp_path / "sweep.json", "--store", target)
    assert result.exit_code == 0 and "imported 3 records from 2 files" in result.stdout
    assert stored(target) == [r.to_dict() for r in (one, *many)]


@pytest.fixture(scope="module")
def benchmark_json(tmp_path_factory) -> Path:
    """The file a real `pytest --benchmark-json` run writes for two tiny benchmarks."""
    folder = tmp_path_factory.mktemp("pytest-benchmark")
    (folder / "test_tiny.py").write_text(TINY_BENCHMARK)
    out = folder / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "test_tiny.py", "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}",
         "--benchmark-min-rounds=5", "--benchmark-max-time=0.01", "--benchmark-warmup=off"],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_pytest_benchmark_file_imports_one_record_per_benchmark(tmp_path, benchmark_json):
    raw = json.loads(benchmark_json.read_text())
    target = tmp_path / "t.db"
    result = invoke("import", benchmark_json, "--store", target)
    assert result.exit_code == 0, result.output
    assert "imported 2 records" in result.stdout
    with Store.open(str(target)) as store:
        records = store.records()
    by_name = {r.workload["name"]: r for r in records}
    assert set(by_name) == {b["fullname"] for b in raw["benchmarks"]}
    for bench in raw["benchmarks"]:
        record = by_name[bench["fullname"]]
        assert record.status == "ok" and record.backend["name"] == "pytest-benchmark"
        assert list(record.samples["latency_s"]) == bench["stats"]["data"]  # the raw timings, untouched
        assert record.metrics["latency_s"]["n"] == bench["stats"]["rounds"]
        assert record.metrics["latency_s"]["min"] == bench["stats"]["min"]
        assert record.backend["options"] == bench["params"]
    assert records[0].environment["hardware_key"].endswith(f"-{raw['machine_info']['cpu']['count']}c")

    again = invoke("import", benchmark_json, "--store", target)
    assert again.exit_code == 0 and "imported 0 records" in again.stdout
    assert len(stored(target)) == 2


def test_pytest_benchmark_without_raw_data_says_so(tmp_path, benchmark_json):
    raw = json.loads(benchmark_json.read_text())
    for bench in raw["benchmarks"]:
        del bench["stats"]["data"]
    path = tmp_path / "summary-only.json"
    path.write_text(json.dumps(raw))
    records = read_records(path, "pytest-benchmark")
    assert len(records) == 2
    for record, bench in zip(records, raw["benchmarks"]):
        assert record.metrics["latency_s"]["p50"] == bench["stats"]["median"]
        assert record.samples["latency_s"] == []
        assert any("no raw timings" in w for w in record.warnings)


def test_cell_key_is_stable_across_commits(tmp_path, benchmark_json):
    from aigcbench.reports.select import cell_key

    raw = json.loads(benchmark_json.read_text())
    first = read_records(benchmark_json)
    raw["commit_info"]["id"], raw["datetime"] = "0123abcd", "2030-01-01T00:00:00+00:00"
    later = tmp_path / "later.json"
    later.write_text(json.dumps(raw))
    second = read_records(later)
    assert [cell_key(r) for r in first] == [cell_key(r) for r in second]
    assert {r.run_id for r in first}.isdisjoint(r.run_id for r in second)
    assert second[0].labels["commit"] == "0123abcd"


def test_half_valid_file_imports_nothing(tmp_path, source):
    good = [synthetic_record(), synthetic_record()]
    bad = {**synthetic_record().to_dict(), "status": "splendid"}
    path = tmp_path / "half.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in (good[0].to_dict(), bad, good[1].to_dict())) + "\n")
    before = stored(source)
    refused(invoke("import", path, "--store", source), f"{path}: line 2")
    assert stored(source) == before


def test_a_bad_second_file_imports_nothing_from_the_first(tmp_path, source):
    fine = tmp_path / "fine.json"
    write_json(synthetic_record(), fine)
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": 1, "run_id": ')
    before = stored(source)
    refused(invoke("import", fine, broken, "--store", source), f"{broken}: not valid JSON")
    assert stored(source) == before


def test_future_schema_version_is_refused(tmp_path, source):
    path = tmp_path / "future.json"
    path.write_text(json.dumps({**synthetic_record().to_dict(), "schema_version": SCHEMA_VERSION + 1}))
    refused(invoke("import", path, "--store", source), f"schema_version {SCHEMA_VERSION + 1}")


@pytest.mark.parametrize(("content", "expected"), [
    ("just some notes\n", "not valid JSON"),
    ('{"hello": "world"}', "neither an aigcbench record nor a pytest-benchmark file"),
    ("", "empty file"),
])
def test_files_of_neither_format_are_refused(tmp_path, source, content, expected):
    path = tmp_path / "notes.json"
    path.write_text(content)
    refused(invoke("import", path, "--store", source), expected)


def test_forcing_the_wrong_format_is_refused(tmp_path, benchmark_json):
    record = tmp_path / "r.json"
    write_json(synthetic_record(), record)
    refused(invoke("import", record, "--format", "pytest-benchmark", "--store", tmp_path / "t.db"),
            "not a pytest-benchmark JSON file")
    refused(invoke("import", benchmark_json, "--format", "aigcbench", "--store", tmp_path / "t.db"),
            "is a pytest-benchmark file")
    refused(invoke("import", record, "--format", "csv", "--store", tmp_path / "t.db"), "--format 'csv'")


@pytest.mark.parametrize(("name", "expected"), [
    ("out.txt", "unknown format"), ("missing/out.jsonl", "does not exist"), ("folder.jsonl", "is a directory"),
])
def test_export_refuses_bad_outputs_and_writes_nothing(tmp_path, source, name, expected):
    (tmp_path / "folder.jsonl").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    refused(invoke("export", "--store", source, "-o", tmp_path / name), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
