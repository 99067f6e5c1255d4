"""The CLI contract: commands, exit codes, one-line errors, the JSON record's fields."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aigcbench.workloads.registry import names as workload_names
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.record import SCHEMA_VERSION
from aigcbench.bench.store import Store

runner = CliRunner()
AIGCBENCH = [sys.executable, "-c", "from aigcbench.bench.cli import app; app()"]
# Short but real measurements: tiny models, a handful of calls.
FAST = ["--size", "tiny", "--duration", "0", "--min-iterations", "3", "--warmup", "1", "--warmup-duration", "0"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real entry point in a subprocess (the App's own error handling included)."""
    return subprocess.run(
        AIGCBENCH + list(args), capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_help_lists_commands_and_does_not_import_torch() -> None:
    code = "import sys; from aigcbench.bench.cli import app; sys.argv=['aigcbench','--help']\n" \
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n" \
        "heavy = [m for m in ('torch', 'diffusers', 'onnxruntime', 'openvino', 'tensorrt') if m in sys.modules]\n" \
        "print('HEAVY', heavy)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "run" in out.stdout and "list" in out.stdout and "env" in out.stdout and "sweep" in out.stdout
    assert "HEAVY []" in out.stdout


def test_option_help_keeps_bracketed_defaults() -> None:
    result = invoke("run", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())  # help is wrapped to the terminal width
    assert "[default: 1 for latency, 8 for throughput]" in text
    assert "[default: $AIGCBENCH_STORE or ./aigcbench.db]" in text


def test_list_backends_json_shows_pytorch_available() -> None:
    result = invoke("list", "backends", "--json")
    assert result.exit_code == 0
    backends = {b["name"]: b for b in json.loads(result.stdout)}
    assert backends["pytorch"]["available"] is True
    assert backends["pytorch"]["reason"] is None
    assert set(backends["pytorch"]["precisions"]) == {"fp32", "fp16", "bf16"}


def test_list_workloads_json_names_the_three_references() -> None:
    result = invoke("list", "workloads", "--json")
    assert result.exit_code == 0
    workloads = {w["name"]: w for w in json.loads(result.stdout)}
    assert {"dcgan", "vae", "ddpm"} <= set(workloads)
    assert workloads["ddpm"]["iterative"] is True
    assert workloads["dcgan"]["unit"] == "image"


def test_list_table_shows_both() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    assert "pytorch" in result.stdout and "ddpm" in result.stdout


def test_env_json_has_a_hardware_key() -> None:
    result = invoke("env", "--json")
    assert result.exit_code == 0
    env = json.loads(result.stdout)
    assert env["hardware_key"] and env["cpu"]["logical_cores"] >= 1 and env["memory_bytes"] > 0


def test_run_writes_the_contract_record_and_stores_it(tmp_path: Path, store_path: Path) -> None:
    out = tmp_path / "r.json"
    result = invoke(
        "run", "--workload", "dcgan", "--backend", "pytorch", *FAST,
        "--label", "branch=main", "--json", str(out), "--store", str(store_path),
    )
    assert result.exit_code == 0, result.stdout
    assert "p50" in result.stdout and "stored in" in result.stdout
    record = json.loads(out.read_text())
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["status"] == "ok"
    assert set(record["workload"]) >= {"name", "size", "unit", "params", "flops_per_item"}
    assert set(record["backend"]) >= {"name", "version", "device", "precision", "options"}
    assert set(record["scenario"]) >= {"name", "batch_size"}
    assert set(record["environment"]) >= {"hardware_key", "cpu", "gpus", "memory_bytes", "packages"}
    metrics = record["metrics"]
    for key in ("p50", "p90", "p99", "mean", "stdev", "min", "max", "iqr"):
        assert metrics["latency_s"][key] > 0 or key in ("stdev", "iqr")
    assert metrics["throughput_items_per_s"] > 0
    assert metrics["peak_host_memory_bytes"] > 0
    assert metrics["cold_start_s"]["prepare"] >= 0 and metrics["cold_start_s"]["first_call"] > 0
    assert metrics["fidelity"]["passed"] is True and metrics["fidelity"]["max_rel_error"] == pytest.approx(0, abs=1e-4)
    assert metrics["energy_j_per_item"] is None and metrics["energy_source"].startswith("unavailable: ")
    assert len(record["samples"]["latency_s"]) == metrics["iterations"] >= 3
    assert record["labels"] == {"branch": "main"}
    assert isinstance(record["warnings"], list)
    with Store.open(str(store_path)) as store:
        stored = store.records()
    assert [r.run_id for r in stored] == [record["run_id"]]


def test_run_ddpm_reports_per_step_denoiser_latency(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = invoke("run", "-w", "ddpm", "-b", "pytorch", *FAST, "--steps", "2", "--no-store", "--json", str(out))
    assert result.exit_code == 0, result.stdout
    record = json.loads(out.read_text())
    per_step = record["samples"]["component_latency_s"]["denoiser"]
    assert len(per_step) == 2 * record["metrics"]["iterations"]
    assert record["workload"]["calls_per_batch"] == {"denoiser": 2}
    assert set(record["metrics"]["fidelity"]["rel_error"]) == {"denoiser_step", "output"}


def test_throughput_scenario_counts_items(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = invoke("run", "-w", "vae", "-b", "pytorch", *FAST, "--scenario", "throughput", "--batch-size", "3",
                    "--no-store", "--json", str(out))
    assert result.exit_code == 0, result.stdout
    m = json.loads(out.read_text())["metrics"]
    assert m["items"] == 3 * m["iterations"]
    assert m["throughput_items_per_s"] == pytest.approx(m["items"] / m["loop_wall_s"])


def test_steps_on_a_non_iterative_workload_is_a_recorded_warning(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = invoke("run", "-w", "dcgan", "-b", "pytorch", *FAST, "--steps", "2", "--no-store", "--json", str(out))
    assert result.exit_code == 0
    assert "--steps ignored: dcgan is not iterative" in json.loads(out.read_text())["warnings"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-w", "nope", "-b", "pytorch"], f"unknown workload 'nope'; choose from: {', '.join(workload_names())}"),
        (["-w", "dcgan", "-b", "nope"], "unknown backend 'nope'"),
        (["-w", "dcgan", "-b", "pytorch", "--batch-size", "0"], "--batch-size must be from 1 to 65536, got 0"),
        (["-w", "dcgan", "-b", "pytorch", "--precision", "fp64"], "--precision 'fp64'"),
        (["-w", "ddpm", "-b", "pytorch", "--steps", "0"], "--steps must be from 1 to 10000, got 0"),
        (["-w", "dcgan", "-b", "pytorch", "--duration", "-1"], "--duration must be from 0 to 604800 s, got -1"),
        (["-w", "dcgan", "-b", "pytorch", "--size", "huge"], "--size 'huge'"),
        (["-w", "dcgan", "-b", "pytorch", "--scenario", "burst"], "--scenario 'burst'"),
        (["-w", "dcgan", "-b", "pytorch", "--label", "novalue"], "--label 'novalue'"),
        (["-w", "dcgan", "-b", "pytorch", "--option", "bogus=1", "--size", "tiny"], "has no option 'bogus'"),
        (["-w", "dcgan", "-b", "pytorch", "--option", "threads=zero"], "--option threads=zero: expected an integer"),
        (["-w", "dcgan", "-b", "onnxruntime", "--option", "exporter=jit"], "--option exporter=jit: choose from dynamo"),
        (["-w", "dcgan", "-b", "openvino", "--option", "hint=fastest"], "--option hint=fastest: choose from"),
        (["-w", "dcgan", "-b", "torch-compile", "--option", "mode=fast"], "--option mode=fast: choose from"),
        (["-w", "dcgan", "-b", "openvino", "--precision", "int8"], "--precision 'int8'"),
        (["-w", "ddpm", "-b", "pytorch", "--scheduler", "euler", "--size", "tiny"], "euler"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], expected: str, store_path: Path) -> None:
    result = runner.invoke(app, ["run", *args, "--store", str(store_path)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not store_path.exists()  # nothing was measured or stored


def test_missing_cuda_device_is_unavailable_exit_3() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = runner.invoke(app, ["run", "-w", "dcgan", "-b", "pytorch", "--device", "cuda", "--no-store"])
    assert result.exit_code == 3
    assert "no CUDA device" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_real_entry_point_parse_errors_are_one_line_too() -> None:
    done = cli("run", "-w", "dcgan", "-b", "pytorch", "--batch-size", "abc")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--batch-size" in done.stderr and "Traceback" not in done.stderr


def test_real_entry_point_refuses_a_foreign_store_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.db"
    foreign.write_text("my precious notes\n")
    done = cli("run", "-w", "dcgan", "-b", "pytorch", "--size", "tiny", "--store", str(foreign))
    assert done.returncode == 2, done.stderr
    assert "not an aigcbench store" in done.stderr and done.stderr.count("\n") == 1
    assert foreign.read_text() == "my precious notes\n"
