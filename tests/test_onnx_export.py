"""The shared ONNX export: cached by content, rebuilt when corrupt, legacy fallback recorded."""

from __future__ import annotations

import pytest
import torch

from aigcbench.backends import onnx_export
from aigcbench.workloads import registry

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _component(name: str = "dcgan", seed: int = 0):
    workload = registry.build(name, "tiny", seed, steps=2)
    component, module = next(iter(workload.components().items()))
    return workload, component, module


def _run(graph: onnx_export.OnnxGraph, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    session = ort.InferenceSession(str(graph.path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)}
    return torch.from_numpy(session.run(None, feed)[0])


def test_second_export_is_a_cache_hit_of_the_same_graph() -> None:
    workload, component, module = _component(seed=31)  # a seed no other test exports
    first = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    second = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert first.sha256 == second.sha256 and first.path == second.path
    assert first.exporter == "dynamo" and first.opset == 18 and first.fallback_reason is None


@pytest.mark.parametrize("batch", [1, 3])
def test_graph_has_a_dynamic_batch_and_matches_eager(batch: int) -> None:
    workload, component, module = _component("ddpm")
    graph = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    inputs = workload.example_inputs(component, batch)
    with torch.inference_mode():
        expected = module(*inputs)
    out = _run(graph, inputs)
    assert out.shape == expected.shape
    assert float((out - expected).norm() / expected.norm()) < 1e-5


def test_a_corrupt_entry_is_detected_and_rebuilt() -> None:
    workload, component, module = _component()
    graph = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    victim = max(graph.path.parent.iterdir(), key=lambda p: p.stat().st_size)  # the weights
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    rebuilt = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    assert rebuilt.cache_hit is False
    assert rebuilt.sha256 == graph.sha256  # the export itself is deterministic
    inputs = workload.example_inputs(component, 2)
    with torch.inference_mode():
        assert torch.allclose(_run(rebuilt, inputs), module(*inputs), atol=1e-5)


def test_different_weights_never_share_an_entry() -> None:
    workload_a, component, module_a = _component(seed=0)
    workload_b, _, module_b = _component(seed=1)
    a = onnx_export.export(module_a, workload_a.example_inputs(component, 2), workload_a.identity(component))
    b = onnx_export.export(module_b, workload_b.example_inputs(component, 2), workload_b.identity(component))
    assert a.key != b.key and a.sha256 != b.sha256


def test_dynamo_failure_falls_back_to_legacy_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("simulated dynamo exporter failure\nwith a second line")

    monkeypatch.setattr(onnx_export, "_dynamo_export", broken)
    workload, component, module = _component(seed=5)
    graph = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    assert graph.exporter == "legacy"
    assert graph.fallback_reason == "RuntimeError: simulated dynamo exporter failure"
    inputs = workload.example_inputs(component, 3)
    with torch.inference_mode():
        assert torch.allclose(_run(graph, inputs), module(*inputs), atol=1e-5)


def test_legacy_exporter_can_be_chosen() -> None:
    workload, component, module = _component("ddpm", seed=2)
    graph = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component), exporter="legacy")
    assert graph.exporter == "legacy" and graph.input_names == ("sample", "timestep")
    dynamo = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
    assert dynamo.key != graph.key
