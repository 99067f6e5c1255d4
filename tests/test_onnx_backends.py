"""ONNX Runtime and OpenVINO specifics; the shared behaviour is in test_backends.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from aigcbench.backends import onnx_export
from aigcbench.backends import registry as backends
from aigcbench.backends.base import PrepareContext
from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.workloads import registry as workloads

runner = CliRunner()
FAST = ["--size", "tiny", "--duration", "0", "--min-iterations", "3", "--warmup", "1", "--warmup-duration", "0",
        "--no-store"]


def _require(name: str):
    backend = backends.get(name)
    if backend.available():
        pytest.skip(backend.available())
    return backend


def _graph(workload_name: str = "dcgan"):
    workload = workloads.build(workload_name, "tiny", 0, steps=2)
    component, module = next(iter(workload.components().items()))
    graph = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    return workload, component, module, graph


def test_same_onnx_config_twice_hits_the_export_cache(tmp_path: Path) -> None:
    _require("onnxruntime")
    records = []
    for run in range(2):
        out = tmp_path / f"r{run}.json"
        result = runner.invoke(app, ["run", "-w", "ddpm", "-b", "onnxruntime", "--steps", "2", "--seed", "11", *FAST,
                                     "--json", str(out)])
        assert result.exit_code == 0, result.stdout
        records.append(json.loads(out.read_text()))
    first, second = (r["backend"]["options"]["export"] for r in records)
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert first["sha256"] == second["sha256"]
    exports = [r["metrics"]["cold_start_s"]["export"] for r in records]
    assert exports[1] < exports[0] / 10


@pytest.mark.parametrize("backend_name", ["onnxruntime", "openvino"])
def test_bad_option_values_are_one_line_errors(backend_name: str) -> None:
    backend = _require(backend_name)
    workload, component, module, graph = _graph()
    key = "graph_optimization_level" if backend_name == "onnxruntime" else "hint"
    with pytest.raises(UserError, match=f"--option {key}=fastest: choose from"):
        backend.prepare(graph, workload.example_inputs(component, 1), "fp32", "cpu", {key: "fastest"}, PrepareContext())


def test_onnxruntime_records_its_settings() -> None:
    backend = _require("onnxruntime")
    workload, component, module, graph = _graph()
    session = backend.prepare(graph, workload.example_inputs(component, 1), "fp32", "cpu",
                              {"intra_op_threads": "1", "graph_optimization_level": "basic"}, PrepareContext())
    assert session.info["providers"] == ["CPUExecutionProvider"]
    assert session.info["intra_op_threads"] == 1 and session.info["graph_optimization_level"] == "basic"


def test_onnxruntime_refuses_bf16_and_a_missing_cuda_provider() -> None:
    backend = _require("onnxruntime")
    with pytest.raises(UserError, match="supports precisions fp32, fp16"):
        backend.check("cpu", "bf16")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        from aigcbench.bench.errors import BackendUnavailable

        with pytest.raises(BackendUnavailable, match="no CUDA execution provider"):
            backend.check("cuda", "fp32")


def test_openvino_throughput_hint_splits_the_batch_across_requests() -> None:
    backend = _require("openvino")
    workload, component, module, graph = _graph("vae")
    inputs = workload.example_inputs(component, 4)
    session = backend.prepare(graph, inputs, "fp32", "cpu", {"infer_requests": "2"},
                              PrepareContext(scenario="throughput", batch_size=4))
    assert session.info["performance_hint"] == "throughput"
    assert session.info["infer_requests"] == 2
    out = session(*inputs)
    with torch.inference_mode():
        expected = module(*inputs)
    assert out.shape == expected.shape
    assert float((out - expected).norm() / expected.norm()) < 1e-4
    assert session(*workload.example_inputs(component, 1)).shape[0] == 1  # another batch compiles its own variant


def test_openvino_latency_hint_records_what_it_compiled() -> None:
    backend = _require("openvino")
    workload, component, module, graph = _graph()
    session = backend.prepare(graph, workload.example_inputs(component, 1), "fp32", "cpu", {}, PrepareContext())
    info = session.info
    assert info["performance_hint"] == "latency" and info["inference_precision_hint"] == "f32"
    assert info["precision_run"] == "fp32" and info["num_streams"] >= 1 and info["execution_devices"]


def test_openvino_low_precision_follows_the_cpu_capabilities(tmp_path: Path) -> None:
    backend = _require("openvino")
    import openvino as ov

    capabilities = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["run", "-w", "dcgan", "-b", "openvino", "--precision", "bf16", *FAST, "--json", str(out)])
    if "BF16" in capabilities:
        assert result.exit_code == 0, result.stdout
        record = json.loads(out.read_text())
        assert record["backend"]["options"]["precision_run"] == "bf16"
        assert record["metrics"]["fidelity"]["max_rel_error"] is not None
    else:  # this CPU cannot compute bf16: unavailable here (one line) rather than silently run in f32
        assert result.exit_code == 3
        assert "OPTIMIZATION_CAPABILITIES" in result.stderr and "BF16" in result.stderr


def test_openvino_refuses_a_cuda_device() -> None:
    backend = _require("openvino")
    with pytest.raises(UserError, match="runs on cpu, gpu"):
        backend.check("cuda", "fp32")
