"""The PyTorch backend on a CUDA device: synchronisation, device time, device memory, fidelity.

Marked `gpu`: deselected by default, run with `pytest -m gpu` on a machine with
a CUDA device; elsewhere each test skips with the reason.
"""

from __future__ import annotations

import pytest

from aigcbench.bench.config import RunConfig
from aigcbench.bench.runner import run_cell
from aigcbench.bench.stopping import StopRule, WarmupRule

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device visible to torch {torch.__version__}")


@pytest.mark.parametrize("workload", ["dcgan", "vae", "ddpm"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_pytorch_on_cuda_records_device_time_memory_and_passes_fidelity(workload: str, precision: str) -> None:
    config = RunConfig(
        workload=workload, backend="pytorch", size="tiny", device="cuda", precision=precision, steps=2,
        stop=StopRule(min_duration_s=0.2, min_iterations=20), warmup=WarmupRule(iterations=3, duration_s=0),
    )
    record = run_cell(config)
    assert record.status == "ok", record.reason
    metrics = record.metrics
    device = metrics["device_latency_s"]
    assert len(record.samples["device_latency_s"]) == metrics["iterations"]
    # The host clock brackets synchronized work, so it can never be shorter than the GPU's own time.
    assert metrics["latency_s"]["p50"] >= device["p50"] * 0.99
    assert metrics["peak_device_memory_allocated_bytes"] > 0
    assert metrics["device_memory_source"] == "torch.cuda"
    assert record.backend["options"]["precision_run"] == precision
