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


def test_a_cuda_cell_in_a_worker_finds_a_server_capacity_with_gpu_energy_and_state() -> None:
    """The whole issue-4 path on a GPU: worker process, server search, NVML energy and GPU state."""
    from aigcbench.bench.isolation import run_isolated

    class Quiet:
        def stage(self, text: str) -> None:
            pass

        def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
            pass

    config = RunConfig.from_options({
        "workload": "dcgan", "backend": "pytorch", "size": "tiny", "device": "cuda", "scenario": "server",
        "slo_p99": "20ms", "find_max_rate": True, "duration": 1.0, "warmup": 3, "warmup_duration": 0,
    })
    record = run_isolated(config, timeout_s=300, observer=Quiet())
    assert record.status == "ok", record.reason
    metrics = record.metrics
    assert metrics["capacity_items_per_s"] > 0 and metrics["server"]["capacity_samples"] >= 662
    if metrics["energy_j"] is not None:  # a GPU without NVML (no nvidia-ml-py) says why instead
        assert metrics["energy_source"] in ("nvml-energy-counter", "nvml-power-sampling")
        assert metrics["energy_j_per_item"] > 0 and metrics["mean_power_w"] > 0
    else:
        assert metrics["energy_source"].startswith("unavailable: ")
    assert metrics["gpu_state_source"] == "nvml" or metrics["gpu_state_source"].startswith("unavailable: ")
    assert record.metadata["worker"]["exit_code"] == 0
