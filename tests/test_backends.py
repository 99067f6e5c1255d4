"""Backend contract: the same tests for every registered backend, no per-name cases.

Each backend is checked on every workload (tiny) at every precision it
declares: prepare a session, call it on the workload's example inputs, and
compare with eager fp32 — the fidelity gate in miniature. A backend that is
unavailable on this machine is skipped with its own reason. fp32 runs by
default; the reduced precisions, and compiling backends on multi-component
pipelines, are `slow` (a cold compile per component and precision, minutes on
2 cores) and run with `pytest -m slow`.
"""

from __future__ import annotations

import functools

import pytest
import torch

from aigcbench.backends import registry as backends
from aigcbench.backends import onnx_export
from aigcbench.backends.base import PRECISIONS, PrepareContext
from aigcbench.bench.errors import UserError
from aigcbench.bench.fidelity import relative_l2
from aigcbench.workloads import registry as workloads


@functools.lru_cache(maxsize=None)
def _component_count(workload: str) -> int:
    return len(workloads.build(workload, "tiny", seed=3, steps=2).components())


def _slow(backend: str, workload: str, precision: str) -> bool:
    """Reduced precisions; and a compiling backend on a pipeline of several components.

    A compile or an export costs seconds to a minute per component on 2 cores, so the default run
    compiles every single-component workload on every backend (each compile path, whole) and leaves
    the multi-component pipelines' compiles to `-m slow`; eager backends run everything.
    """
    if precision != "fp32":
        return True
    plugin = backends.get(backend)
    return bool(getattr(plugin, "compiles", False)) and plugin.available() is None and _component_count(workload) > 1


def _cases():
    for backend in backends.names():
        for workload in workloads.names():
            for precision in PRECISIONS:
                marks = (pytest.mark.slow,) if _slow(backend, workload, precision) else ()
                yield pytest.param(backend, workload, precision, id=f"{backend}-{workload}-{precision}", marks=marks)


def _usable(name: str, precision: str):
    backend = backends.get(name)
    reason = backend.available()
    if reason is not None:
        pytest.skip(f"{name} unavailable here: {reason}")
    if precision not in backend.precisions:
        pytest.skip(f"{name} does not declare {precision}")
    try:
        backend.check("cpu", precision)
    except UserError as exc:
        pytest.skip(f"{name} cannot run {precision} on this cpu: {exc}")
    return backend


class TestBackendContract:
    @pytest.mark.parametrize(("backend_name", "workload_name", "precision"), list(_cases()))
    def test_session_matches_eager_fp32(self, backend_name: str, workload_name: str, precision: str) -> None:
        backend = _usable(backend_name, precision)
        refusal = workloads.get(workload_name).graph_refusal
        if backend.input_format == "onnx" and refusal:
            pytest.skip(f"{workload_name} declines a graph export: {refusal}")  # the run exits 2 instead: the workload's tests
        workload = workloads.build(workload_name, "tiny", seed=3, steps=2)
        for component, module in workload.components().items():
            inputs = workload.example_inputs(component, 2)
            with torch.inference_mode():
                # A backend that does not compute the model (null) must return its first input.
                expected = module(*inputs) if backend.computes_model else inputs[0]
            graph = module
            if backend.input_format == "onnx":
                graph = onnx_export.export(module, workload.example_inputs(component, 2), workload.identity(component))
            session = backend.prepare(graph, inputs, precision, "cpu", {}, PrepareContext(batch_size=2))
            try:
                with torch.inference_mode():
                    out = session(*(t.to(session.device) for t in inputs))
                session.synchronize()
                assert out.dtype == (torch.float32 if backend.computes_model else expected.dtype)
                assert out.device == session.device
                assert out.shape == expected.shape
                assert relative_l2(out, expected) <= (workload.tolerances[precision] if backend.computes_model else 0)
                assert session.info["precision_run"] == precision
            finally:
                session.close()

    @pytest.mark.parametrize("backend_name", backends.names())
    def test_describes_itself(self, backend_name: str) -> None:
        described = backends.describe(backend_name)
        assert described["name"] == backend_name
        assert isinstance(described["available"], bool)
        assert (described["reason"] is None) == described["available"]
        assert set(described["precisions"]) <= set(PRECISIONS)

    @pytest.mark.parametrize("backend_name", backends.names())
    def test_refuses_an_unknown_precision(self, backend_name: str) -> None:
        backend = backends.get(backend_name)
        if backend.available() is not None:
            pytest.skip(backend.available())
        with pytest.raises(UserError, match="int3"):
            backend.check("cpu", "int3")


def test_unknown_backend_lists_the_valid_names() -> None:
    with pytest.raises(UserError, match="choose from: .*pytorch"):
        backends.get("nope")


def test_a_missing_runtime_names_the_extra_that_installs_it() -> None:
    backend = backends.get("onnxruntime")
    assert backend.missing_library("onnxruntime") is None
    reason = backend.missing_library("no_such_runtime_module")
    assert reason.startswith("no_such_runtime_module is not installed (pip install 'aigcbench[onnx]')")
