"""Probes: environment fingerprint, host and device memory, energy.

Hardware that the development machine lacks (RAPL, NVML) is faked: a RAPL
powercap tree under tmp_path and an object with the few NVML functions used.
The real-hardware checks are marked `gpu` and run with `pytest -m gpu`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aigcbench.bench.probes.device_memory import DeviceMemoryProbe
from aigcbench.bench.probes.energy import EnergyProbe, RaplDomain, RaplMeter, wrapped_delta_uj
from aigcbench.bench.probes.environment import (
    cpu_info,
    fingerprint,
    git_commit,
    hardware_key,
    os_info,
)
from aigcbench.bench.probes.host_memory import HostMemoryProbe

MB = 1_000_000

# ---------------------------------------------------------------- hardware_key


@pytest.mark.parametrize(
    ("cpu_model", "cores", "gpus", "expected"),
    [
        (
            "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz",
            16,
            ["NVIDIA H200"],
            "intel-xeon-platinum-8480-16c+1x-nvidia-h200",
        ),
        ("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", 12, [], "intel-core-i7-8700-12c"),
        ("AMD EPYC 9B14 96-Core Processor", 2, [], "amd-epyc-9b14-2c"),
        ("AMD EPYC 9B14 96-Core Processor", 2, ["NVIDIA L4"] * 2, "amd-epyc-9b14-2c+2x-nvidia-l4"),
        ("AMD EPYC", 2, [], "amd-epyc-2c"),
        ("", 4, [], "unknown-cpu-4c"),
    ],
)
def test_hardware_key_slugs(cpu_model: str, cores: int, gpus: list[str], expected: str) -> None:
    assert hardware_key(cpu_model, cores, gpus) == expected


def test_hardware_key_ignores_gpu_order() -> None:
    # Mixed GPUs enumerate in PCI order, which differs between identical hosts.
    a = hardware_key("AMD EPYC 9654 96-Core Processor", 8, ["NVIDIA L4", "NVIDIA H100 80GB HBM3", "NVIDIA L4"])
    b = hardware_key("AMD EPYC 9654 96-Core Processor", 8, ["NVIDIA L4", "NVIDIA L4", "NVIDIA H100 80GB HBM3"])
    assert a == b == "amd-epyc-9654-8c+1x-nvidia-h100-80gb-hbm3+2x-nvidia-l4"


def test_hardware_key_is_a_slug() -> None:
    key = hardware_key("Weird (TM) CPU!! @ 9.9 GHz", 3, ["GPU/With Spaces"])
    assert re.fullmatch(r"[a-z0-9-]+(\+\d+x-[a-z0-9-]+)*", key), key


# ----------------------------------------------------------------- fingerprint


def test_fingerprint_keys_and_types() -> None:
    env = fingerprint()
    json.dumps(env)  # a record is JSON: every value must serialize
    cpu = env["cpu"]
    assert isinstance(cpu["model"], str) and cpu["model"]
    assert isinstance(cpu["arch"], str)
    assert isinstance(cpu["flags"], list)
    assert isinstance(cpu["logical_cores"], int) and cpu["logical_cores"] >= 1
    if hasattr(os, "sched_getaffinity"):
        assert cpu["affinity_cores"] == len(os.sched_getaffinity(0))
    assert isinstance(env["memory_bytes"], int) and env["memory_bytes"] > 2**28
    assert set(env["os"]) == {"system", "release", "distro"}
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["executable"] == sys.executable
    assert set(env["packages"]) == {
        "torch", "diffusers", "numpy", "onnx", "onnxruntime", "openvino", "tensorrt", "nvidia-ml-py", "aigcbench",
        "tensorflow", "onnx2tf", "ai-edge-litert", "ray",
    }
    assert env["packages"]["torch"] == importlib.metadata.version("torch")
    assert isinstance(env["gpus"], list)
    if env["gpus"]:
        assert env["gpu_source"] == "nvml"
        assert set(env["gpus"][0]) == {"index", "name", "memory_bytes", "driver_version", "compute_capability", "uuid"}
    else:
        assert env["gpu_source"].startswith("unavailable: ")
    cores = cpu["affinity_cores"] or cpu["logical_cores"]
    assert env["hardware_key"] == hardware_key(cpu["model"], cores, [g["name"] for g in env["gpus"]])


def test_fingerprint_is_cached_but_returns_copies() -> None:
    first = fingerprint()
    first["cpu"]["model"] = "mutated by a caller"
    second = fingerprint()
    assert second["cpu"]["model"] != "mutated by a caller"
    assert second == fingerprint()


def test_cpu_info_keeps_only_performance_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse avx2 fma avx512f avx512_bf16 amx_tile amx_bf16 amx_int8\n\n"
        "processor\t: 1\nmodel name\t: ignored second cpu\n"
    )
    info = cpu_info(cpuinfo)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["vendor"] == "GenuineIntel"
    assert info["flags"] == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "fma"]


def test_os_info_reads_pretty_name(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    assert os_info(release)["distro"] == "Debian GNU/Linux 12 (bookworm)"
    assert os_info(tmp_path / "absent")["distro"] is None


def test_probe_modules_import_no_heavy_library() -> None:
    # `aigcbench --help` imports these modules; torch alone costs seconds.
    code = (
        "import sys\n"
        "import aigcbench.bench.probes.environment, aigcbench.bench.probes.host_memory\n"
        "import aigcbench.bench.probes.device_memory, aigcbench.bench.probes.energy\n"
        "import aigcbench.bench.probes.gpu_state, aigcbench.bench.probes.nvml\n"
        "print([m for m in ('torch', 'pynvml', 'onnxruntime', 'openvino') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------- git

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@needs_git
def test_git_commit_outside_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stop git from finding a repository above tmp_path (a CI checkout may contain /tmp).
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert git_commit(tmp_path) is None


@needs_git
def test_git_commit_in_a_fresh_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tmp_path, check=True, capture_output=True,
        )

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    git("add", "a.txt")
    git("commit", "-q", "-m", "first")

    clean = git_commit(tmp_path)
    assert clean is not None and re.fullmatch(r"[0-9a-f]{40}", clean)

    (tmp_path / "untracked.txt").write_text("new\n")
    assert git_commit(tmp_path) == clean  # untracked files do not change the committed code

    (tmp_path / "a.txt").write_text("two\n")
    assert git_commit(tmp_path) == f"{clean}-dirty"


# ----------------------------------------------------------------- host memory


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


@pytest.mark.parametrize("method", ["auto", "sampling"])
def test_host_memory_probe_sees_an_allocation_freed_inside_the_region(method: str) -> None:
    baseline = _rss()
    with HostMemoryProbe(interval_s=0.005, method=method) as probe:
        block = b"\x01" * (200 * MB)  # filled, so every page is resident
        time.sleep(0.1)  # many sampling intervals while the block is held
        del block  # freed before exit: only the peak mark or the sampler can have seen it
    result = probe.result()
    assert result["peak_host_memory_bytes"] - baseline >= 150 * MB
    if method == "sampling":
        assert result["host_memory_source"] == "psutil-rss-sampling"
        assert result["host_memory_sample_interval_s"] == 0.005
    if sys.platform.startswith("linux") and method == "sampling":
        assert result["process_peak_rss_bytes"] >= 150 * MB
    assert not probe.sampler_alive
    assert "aigcbench-host-memory" not in {t.name for t in threading.enumerate()}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM reset is Linux-only")
def test_host_memory_peak_mark_is_reset_at_the_region_start() -> None:
    # A large allocation *before* the region must not count as the region's peak.
    block = b"\x01" * (300 * MB)
    del block
    with HostMemoryProbe(method="vmhwm") as probe:
        pass
    result = probe.result()
    assert result["host_memory_source"] == "linux-vmhwm-reset"
    assert result["peak_host_memory_bytes"] <= _rss() + 10 * MB


def test_host_memory_probe_stops_promptly() -> None:
    # A sleeping sampler would hold exit for its whole interval; an Event wakes at once.
    start = time.perf_counter()
    with HostMemoryProbe(interval_s=30.0, method="sampling") as probe:
        pass
    assert time.perf_counter() - start < 2.0
    assert not probe.sampler_alive
    assert probe.result()["peak_host_memory_bytes"] > 0


def test_host_memory_probe_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        HostMemoryProbe(interval_s=0)


# --------------------------------------------------------------- device memory


def test_device_memory_probe_on_cpu_says_why() -> None:
    with DeviceMemoryProbe("cpu") as probe:
        pass
    assert probe.result() == {
        "peak_device_memory_allocated_bytes": None,
        "peak_device_memory_reserved_bytes": None,
        "device_memory_source": "unavailable: cpu device (host memory is reported separately)",
        "device_memory_process_bytes": None,
        "device_memory_process_source": "unavailable: cpu is not a CUDA device",
    }


def test_device_memory_probe_on_mps_says_why() -> None:
    with DeviceMemoryProbe("mps") as probe:
        pass
    assert probe.result()["device_memory_source"] == "unavailable: mps has no device memory counter"
    assert probe.result()["peak_device_memory_allocated_bytes"] is None


def test_device_memory_probe_result_needs_the_region_to_end() -> None:
    with pytest.raises(RuntimeError):
        DeviceMemoryProbe("cpu").result()


# ---------------------------------------------------------------- energy: RAPL

NO_POLL = 3600.0  # the poller never fires during a test, so readings are only enter and exit


def _zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int) -> Path:
    path = root / zone
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path / "energy_uj"


def _fake_rapl(root: Path) -> dict[str, Path]:
    return {
        "pkg0": _zone(root, "intel-rapl:0", "package-0", 1_000_000, 262_143_328_850),
        "pkg1": _zone(root, "intel-rapl:1", "package-1", 9_000_000, 10_000_000),
        # Subzone and platform zone: they overlap the packages and must not be added.
        "core0": _zone(root, "intel-rapl:0:0", "core", 0, 10_000_000),
        "psys": _zone(root, "intel-rapl:2", "psys", 0, 10_000_000),
    }


def test_energy_probe_sums_rapl_packages_across_a_wraparound(tmp_path: Path) -> None:
    counters = _fake_rapl(tmp_path)
    with EnergyProbe("cpu", powercap_root=tmp_path, rapl_poll_interval_s=NO_POLL) as probe:
        counters["pkg0"].write_text("3500000\n")  # +2.5 J
        counters["pkg1"].write_text("500000\n")  # wrapped: 10 - 9 + 0.5 = +1.5 J
        counters["core0"].write_text("7000000\n")
        counters["psys"].write_text("7000000\n")
    assert probe.result(elapsed_s=2.0) == {
        "energy_j": 4.0,
        "energy_source": "rapl",
        "mean_power_w": 2.0,
        "energy_scope": "cpu-package",
    }
    assert probe.result()["mean_power_w"] is None  # no elapsed time from the harness, no power


def test_rapl_meter_polling_catches_more_than_one_wrap(tmp_path: Path) -> None:
    counter = _zone(tmp_path, "intel-rapl:0", "package-0", 900, 1000)
    meter = RaplMeter([RaplDomain(counter, 1000)], poll_interval_s=NO_POLL)
    meter.start()
    for value in (100, 800, 50):  # wraps, climbs, wraps again
        counter.write_text(f"{value}\n")
        meter.poll()
    assert meter.stop() == pytest.approx((200 + 700 + 250) / 1e6)


def test_wrapped_delta() -> None:
    assert wrapped_delta_uj(10, 30, 100) == 20
    assert wrapped_delta_uj(90, 5, 100) == 15


def test_energy_probe_reports_an_unreadable_rapl_counter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counters = _fake_rapl(tmp_path)
    # Tests may run as root, which reads a mode-0400 file anyway: refuse it explicitly.
    real_read_text = pathlib.Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self == counters["pkg1"]:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    with EnergyProbe("cpu", powercap_root=tmp_path, rapl_poll_interval_s=NO_POLL) as probe:
        pass
    result = probe.result(elapsed_s=1.0)
    assert result["energy_j"] is None and result["mean_power_w"] is None and result["energy_scope"] is None
    assert result["energy_source"].startswith("unavailable: ")
    assert "permission denied" in result["energy_source"]
    assert str(counters["pkg1"]) in result["energy_source"]


def test_energy_probe_without_powercap_says_why(tmp_path: Path) -> None:
    with EnergyProbe("cpu", powercap_root=tmp_path / "absent") as probe:
        pass
    result = probe.result(elapsed_s=1.0)
    assert result["energy_j"] is None and result["mean_power_w"] is None
    assert result["energy_source"] == f"unavailable: no RAPL powercap ({tmp_path / 'absent'} absent) and not a CUDA device"


def test_energy_probe_with_powercap_but_no_package_zone(tmp_path: Path) -> None:
    _zone(tmp_path, "intel-rapl:0", "psys", 0, 1000)
    with EnergyProbe("cpu", powercap_root=tmp_path) as probe:
        pass
    assert probe.result()["energy_source"].startswith("unavailable: no RAPL package zone")


@pytest.mark.skipif(Path("/sys/class/powercap").exists(), reason="this host has powercap")
def test_real_cpu_energy_is_unavailable_on_a_host_without_powercap() -> None:
    with EnergyProbe("cpu") as probe:
        sum(range(10_000))
    result = probe.result(elapsed_s=0.01)
    assert result["energy_j"] is None
    assert result["energy_source"].startswith("unavailable: ")


def test_real_cpu_energy_is_a_number_or_a_reason() -> None:
    with EnergyProbe("cpu") as probe:
        sum(range(10_000))
    result = probe.result(elapsed_s=0.01)
    if result["energy_j"] is None:
        assert result["energy_source"].startswith("unavailable: ")
    else:
        assert result["energy_source"] == "rapl" and result["energy_j"] >= 0


def test_energy_probe_result_needs_the_region_to_end() -> None:
    with pytest.raises(RuntimeError):
        EnergyProbe("cpu").result()


# ---------------------------------------------------------------- energy: NVML


class FakeNvml:
    """The few pynvml functions EnergyProbe calls, with a scripted energy counter (mJ)."""

    class NVMLError(Exception):
        pass

    def __init__(self, readings_mj: list[int], *, supported: bool = True) -> None:
        self.readings_mj = list(readings_mj)
        self.supported = supported
        self.init_calls = 0
        self.shutdown_calls = 0
        self.handles_requested: list[object] = []

    def nvmlInit(self) -> None:
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self.handles_requested.append(index)
        return f"handle-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self.handles_requested.append(uuid)
        return f"handle-{uuid}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.supported:
            raise self.NVMLError("Not Supported")
        return self.readings_mj.pop(0)


def test_energy_probe_reads_the_nvml_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = FakeNvml([1000, 6000])
    with EnergyProbe("cuda:0", nvml=nvml) as probe:
        pass
    assert probe.result(elapsed_s=2.5) == {
        "energy_j": 5.0,
        "energy_source": "nvml-energy-counter",
        "mean_power_w": 2.0,
        "energy_scope": "gpu-board",
    }
    assert nvml.init_calls == nvml.shutdown_calls == 1


def _torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_energy_probe_follows_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    if _torch_sees_cuda():
        pytest.skip("torch sees CUDA here, so the GPU is matched by UUID instead")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    nvml = FakeNvml([0, 10])
    with EnergyProbe("cuda:1", nvml=nvml):
        pass
    assert nvml.handles_requested == [5]


def test_energy_probe_reports_an_unsupported_nvml_counter() -> None:
    # This fake has no nvmlDeviceGetPowerUsage, so the power-sampling fallback fails too
    # (tests/test_gpu_probes.py covers the fallback itself).
    nvml = FakeNvml([], supported=False)
    with EnergyProbe("cuda", nvml=nvml) as probe:
        pass
    result = probe.result(elapsed_s=1.0)
    assert result["energy_j"] is None
    assert result["energy_source"].startswith("unavailable: NVML total-energy counter not readable")
    assert "nvmlDeviceGetPowerUsage is not in this NVML binding" in result["energy_source"]
    assert nvml.shutdown_calls == nvml.init_calls == 1


def test_energy_probe_on_cuda_without_nvml_library() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pynvml is installed here")
    with EnergyProbe("cuda") as probe:
        pass
    assert probe.result()["energy_source"] == "unavailable: no NVML library (pip install nvidia-ml-py)"


# ------------------------------------------------------------------ real GPU


def _require_cuda() -> None:
    pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    if not _torch_sees_cuda():
        pytest.skip("torch.cuda.is_available() is False: no CUDA device or a CPU-only torch build")


@pytest.mark.gpu
def test_nvml_energy_of_a_matmul_loop_is_positive() -> None:
    _require_cuda()
    import torch

    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter_ns()
    with EnergyProbe("cuda") as probe:
        # About two seconds of work: the NVML counter updates every few tens of ms,
        # and the power-sampling fallback's reading is a 1-s average on recent GPUs.
        while time.perf_counter_ns() - start < 2_000_000_000:
            for _ in range(20):
                a = (a @ a).clamp_(-1, 1)
            torch.cuda.synchronize()
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    result = probe.result(elapsed_s=elapsed_s)
    assert result["energy_source"] in {"nvml-energy-counter", "nvml-power-sampling"}, result
    assert result["energy_scope"] == "gpu-board"
    assert result["energy_j"] > 0
    assert 1 < result["mean_power_w"] < 2000


@pytest.mark.gpu
def test_device_memory_probe_sees_a_cuda_allocation() -> None:
    _require_cuda()
    import torch

    with DeviceMemoryProbe("cuda") as probe:
        block = torch.empty(256 * MB, dtype=torch.uint8, device="cuda")
        del block
    result = probe.result()
    assert result["device_memory_source"] == "torch.cuda"
    assert result["peak_device_memory_allocated_bytes"] >= 256 * MB
    assert result["peak_device_memory_reserved_bytes"] >= result["peak_device_memory_allocated_bytes"]
