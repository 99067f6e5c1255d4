"""NVML-based probes: power-sampling energy, per-process device memory, GPU clocks and throttling.

The development machine has no GPU and no NVML library, so NVML is an object
with the few functions the probes call, scripted per test; the sampler's clock
is scripted too, so integrals are checked exactly. The checks against a real
GPU are marked `gpu` (run with `pytest -m gpu`) and skip with the reason
elsewhere.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest

from aigcbench.bench.probes.device_memory import DeviceMemoryProbe
from aigcbench.bench.probes.energy import EnergyProbe, NvmlPowerMeter
from aigcbench.bench.probes.gpu_state import GpuStateProbe, decode_clock_event_reasons, throttle_warnings
from aigcbench.bench.probes.nvml import NvmlGpu

NO_POLL = 3600.0  # the sampler thread never fires in a test: samples are only at enter and exit
MIB = 1 << 20
W = 1000  # milliwatts per watt, the unit nvmlDeviceGetPowerUsage reports


@pytest.fixture(autouse=True)
def _nvml_index_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without CUDA in torch the GPU is found through CUDA_VISIBLE_DEVICES; keep it unset.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


class FakeNvml:
    """A scripted stand-in for pynvml: one GPU whose readings come from `state`.

    A test changes `state` inside the measured region to script the "after"
    reading, puts a function name in `failing` to make it raise NVMLError, or
    in `missing` to make it absent (a binding older than the function).
    """

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        def __str__(self) -> str:
            return "Not Supported"

    def __init__(self, **state: Any) -> None:
        self.state: dict[str, Any] = {
            "energy_mj": None,  # list of readings, popped; None = counter not supported
            "power_mw": 250 * W,  # int, or a zero-argument callable
            "processes": [],  # list of objects with pid and usedGpuMemory, or a callable
            "sm_mhz": 1980,
            "mem_mhz": 2619,
            "max_sm_mhz": 1980,
            "temp_c": 40,
            "limit_mw": 700 * W,
            "reasons": 0,
            **state,
        }
        self.failing: set[str] = set()
        self.missing: set[str] = set()
        self.calls: list[str] = []
        self.init_calls = 0
        self.shutdown_calls = 0

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        return object.__getattribute__(self, name)

    def _answer(self, name: str, value: Any) -> Any:
        self.calls.append(name)
        if name in self.failing:
            raise self.NVMLError_NotSupported()
        return value() if callable(value) else value

    def nvmlInit(self) -> None:
        self.init_calls += 1

    def nvmlShutdown(self) -> None:
        self.shutdown_calls += 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"handle-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return f"handle-{uuid}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        readings = self.state["energy_mj"]
        if readings is None:
            self.failing.add("nvmlDeviceGetTotalEnergyConsumption")
        return self._answer("nvmlDeviceGetTotalEnergyConsumption", lambda: readings.pop(0))

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return self._answer("nvmlDeviceGetPowerUsage", self.state["power_mw"])

    def nvmlDeviceGetComputeRunningProcesses(self, handle: str) -> list[Any]:
        return self._answer("nvmlDeviceGetComputeRunningProcesses", self.state["processes"])

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: str) -> list[Any]:
        return self._answer("nvmlDeviceGetComputeRunningProcesses_v2", self.state["processes"])

    def nvmlDeviceGetClockInfo(self, handle: str, clock_type: int) -> int:
        return self._answer("nvmlDeviceGetClockInfo", self.state[{1: "sm_mhz", 2: "mem_mhz"}[clock_type]])

    def nvmlDeviceGetMaxClockInfo(self, handle: str, clock_type: int) -> int:
        assert clock_type == 1  # NVML_CLOCK_SM
        return self._answer("nvmlDeviceGetMaxClockInfo", self.state["max_sm_mhz"])

    def nvmlDeviceGetTemperature(self, handle: str, sensor: int) -> int:
        assert sensor == 0  # NVML_TEMPERATURE_GPU
        return self._answer("nvmlDeviceGetTemperature", self.state["temp_c"])

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: str) -> int:
        return self._answer("nvmlDeviceGetEnforcedPowerLimit", self.state["limit_mw"])

    def nvmlDeviceGetPowerManagementLimit(self, handle: str) -> int:
        return self._answer("nvmlDeviceGetPowerManagementLimit", self.state["limit_mw"])

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: str) -> int:
        return self._answer("nvmlDeviceGetCurrentClocksEventReasons", self.state["reasons"])

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: str) -> int:
        return self._answer("nvmlDeviceGetCurrentClocksThrottleReasons", self.state["reasons"])


def scripted_clock(times_ns: list[int]) -> Callable[[], int]:
    """A clock returning `times_ns` in order; reading it more often than scripted fails the test."""
    ticks: Iterator[int] = iter(times_ns)
    return lambda: next(ticks)


# ----------------------------------------------------------- energy: power sampling


def test_energy_falls_back_to_power_sampling_when_the_counter_is_not_supported() -> None:
    nvml = FakeNvml(energy_mj=None, power_mw=250 * W)
    clock = scripted_clock([1_000_000_000, 3_000_000_000])  # enter at 1 s, exit at 3 s
    with EnergyProbe("cuda:0", nvml=nvml, power_poll_interval_s=NO_POLL, clock=clock) as probe:
        pass
    result = probe.result(elapsed_s=2.0)
    assert result["energy_source"] == "nvml-power-sampling"
    assert result["energy_scope"] == "gpu-board"
    assert result["energy_j"] == pytest.approx(250 * 2.0, abs=1e-9)
    assert result["mean_power_w"] == pytest.approx(250.0, abs=1e-9)
    assert result["energy_samples"] == 2
    assert result["energy_sample_interval_s"] == NO_POLL
    assert nvml.init_calls == nvml.shutdown_calls == 1


def test_power_sampling_integrates_a_ramp_exactly_with_the_trapezoid_rule() -> None:
    # Piecewise-linear power is what the trapezoid rule integrates without error.
    powers = iter([100 * W, 200 * W, 300 * W, 300 * W, 0])
    nvml = FakeNvml(power_mw=lambda: next(powers))
    clock = scripted_clock([0, 1_000_000_000, 3_000_000_000, 3_500_000_000, 3_500_000_001])
    meter = NvmlPowerMeter(NvmlGpu(nvml, "h", FakeNvml.NVMLError), poll_interval_s=NO_POLL, clock=clock)
    meter.start()
    meter.sample()
    meter.sample()
    meter.sample()
    energy = meter.stop()
    meter.close()
    # 0-1 s: 100→200 W = 150 J; 1-3 s: 200→300 W = 500 J; 3-3.5 s: 300 W = 150 J; 1 ns down to 0: 150 µJ
    assert energy == pytest.approx(150 + 500 + 150 + 300 * 0.5e-9, abs=1e-9)
    assert meter.details()["energy_samples"] == 5


def test_power_sampling_thread_samples_between_enter_and_exit() -> None:
    # Each sample reads the clock once; at 1 ms per tick and a constant 100 W the
    # integral must equal 100 W x (samples - 1) ms whatever the thread's timing was.
    enough = threading.Event()
    calls = itertools.count(1)

    def power_mw() -> int:
        if next(calls) >= 5:
            enough.set()
        return 100 * W

    ticks = itertools.count(0, 1_000_000)
    nvml = FakeNvml(power_mw=power_mw)
    with EnergyProbe("cuda", nvml=nvml, power_poll_interval_s=0.001, clock=lambda: next(ticks)) as probe:
        assert enough.wait(30), "the sampler thread never sampled"
    result = probe.result()
    assert result["energy_samples"] >= 5
    assert result["energy_j"] == pytest.approx(100 * (result["energy_samples"] - 1) * 1e-3, abs=1e-9)
    assert "aigcbench-nvml-power" not in {t.name for t in threading.enumerate()}
    assert nvml.init_calls == nvml.shutdown_calls == 1


def test_a_failed_power_sample_mid_region_makes_energy_unavailable() -> None:
    failed = threading.Event()
    calls = itertools.count(1)

    def power_mw() -> int:
        if next(calls) >= 3:
            failed.set()
            raise FakeNvml.NVMLError("GPU is lost")
        return 100 * W

    ticks = itertools.count(0, 1_000_000)
    nvml = FakeNvml(power_mw=power_mw)
    with EnergyProbe("cuda", nvml=nvml, power_poll_interval_s=0.001, clock=lambda: next(ticks)) as probe:
        assert failed.wait(30)
    result = probe.result(elapsed_s=1.0)
    assert result["energy_j"] is None and result["mean_power_w"] is None
    assert result["energy_source"] == "unavailable: NVML power reading failed (nvmlDeviceGetPowerUsage: GPU is lost)"
    assert nvml.shutdown_calls == nvml.init_calls == 1


def test_the_energy_counter_is_preferred_to_power_sampling() -> None:
    nvml = FakeNvml(energy_mj=[10_000, 12_500])
    with EnergyProbe("cuda", nvml=nvml, clock=scripted_clock([])) as probe:
        pass
    assert probe.result(elapsed_s=0.5) == {
        "energy_j": 2.5,
        "energy_source": "nvml-energy-counter",
        "mean_power_w": 5.0,
        "energy_scope": "gpu-board",
    }
    assert "nvmlDeviceGetPowerUsage" not in nvml.calls


def test_energy_is_unavailable_when_counter_and_power_both_fail() -> None:
    nvml = FakeNvml(energy_mj=None)
    nvml.failing.add("nvmlDeviceGetPowerUsage")
    with EnergyProbe("cuda", nvml=nvml) as probe:
        pass
    result = probe.result(elapsed_s=1.0)
    assert result == {
        "energy_j": None,
        "energy_source": (
            "unavailable: NVML total-energy counter not readable (nvmlDeviceGetTotalEnergyConsumption: "
            "Not Supported; it needs a Volta or newer GPU), "
            "and NVML power reading failed (nvmlDeviceGetPowerUsage: Not Supported)"
        ),
        "mean_power_w": None,
        "energy_scope": None,
    }
    assert nvml.init_calls == nvml.shutdown_calls == 1


def test_energy_names_a_power_function_missing_from_the_binding() -> None:
    nvml = FakeNvml(energy_mj=None)
    nvml.missing.add("nvmlDeviceGetPowerUsage")
    with EnergyProbe("cuda", nvml=nvml) as probe:
        pass
    assert "nvmlDeviceGetPowerUsage is not in this NVML binding" in probe.result()["energy_source"]


def test_energy_probe_rejects_a_non_positive_power_interval() -> None:
    with pytest.raises(ValueError, match="power_poll_interval_s"):
        EnergyProbe("cuda", power_poll_interval_s=0)


# ---------------------------------------------------------- device memory: NVML


def _proc(pid: int, used: int | None) -> SimpleNamespace:
    return SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)


def test_device_memory_reports_this_process_from_nvml_as_the_larger_reading() -> None:
    me = os.getpid()
    nvml = FakeNvml(processes=[_proc(me + 1, 9 * MIB), _proc(me, 700 * MIB)])
    with DeviceMemoryProbe("cuda:0", nvml=nvml) as probe:
        nvml.state["processes"] = [_proc(me, 900 * MIB), _proc(me + 1, 9 * MIB)]
    result = probe.result()
    assert result["device_memory_process_bytes"] == 900 * MIB
    assert result["device_memory_process_source"] == "nvml-process"
    assert nvml.init_calls == nvml.shutdown_calls == 1


def test_device_memory_keeps_the_enter_reading_when_memory_was_freed() -> None:
    nvml = FakeNvml(processes=[_proc(1234, 900 * MIB)])
    with DeviceMemoryProbe("cuda", nvml=nvml, pid=1234) as probe:
        nvml.state["processes"] = [_proc(1234, 300 * MIB)]
    assert probe.result()["device_memory_process_bytes"] == 900 * MIB


def test_device_memory_sums_one_process_across_mig_instances() -> None:
    nvml = FakeNvml(processes=[_proc(7, 100 * MIB), _proc(7, 50 * MIB)])
    with DeviceMemoryProbe("cuda", nvml=nvml, pid=7) as probe:
        pass
    assert probe.result()["device_memory_process_bytes"] == 150 * MIB


def test_device_memory_says_why_this_process_is_not_listed() -> None:
    nvml = FakeNvml(processes=[_proc(1, 5 * MIB), _proc(2, 5 * MIB)])
    with DeviceMemoryProbe("cuda", nvml=nvml, pid=4242) as probe:
        pass
    result = probe.result()
    assert result["device_memory_process_bytes"] is None
    assert result["device_memory_process_source"] == (
        "unavailable: this process (pid 4242) is not among the 2 compute processes NVML lists on the GPU "
        "(inside a container NVML reports host PIDs)"
    )


@pytest.mark.parametrize("used", [None, 2**64 - 1])
def test_device_memory_when_nvml_reports_the_value_not_available(used: int | None) -> None:
    # pynvml turns NVML_VALUE_NOT_AVAILABLE into None; older releases pass the raw all-ones value.
    nvml = FakeNvml(processes=[_proc(7, used)])
    with DeviceMemoryProbe("cuda", nvml=nvml, pid=7) as probe:
        pass
    result = probe.result()
    assert result["device_memory_process_bytes"] is None
    assert result["device_memory_process_source"].startswith("unavailable: NVML reports this process's memory")


def test_device_memory_falls_back_to_an_older_process_query() -> None:
    # A driver older than the newest struct version answers "Function Not Found".
    nvml = FakeNvml(processes=[_proc(7, 64 * MIB)])
    nvml.failing.add("nvmlDeviceGetComputeRunningProcesses")
    nvml.missing.add("nvmlDeviceGetComputeRunningProcesses_v3")
    with DeviceMemoryProbe("cuda", nvml=nvml, pid=7) as probe:
        pass
    assert probe.result()["device_memory_process_bytes"] == 64 * MIB
    assert "nvmlDeviceGetComputeRunningProcesses_v2" in nvml.calls


def test_device_memory_process_list_unreadable() -> None:
    nvml = FakeNvml()
    nvml.failing.update({"nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2"})
    with DeviceMemoryProbe("cuda", nvml=nvml, pid=7) as probe:
        pass
    source = probe.result()["device_memory_process_source"]
    assert source.startswith("unavailable: NVML process list not readable (")
    assert "nvmlDeviceGetComputeRunningProcesses_v3 is not in this NVML binding" in source


def test_device_memory_torch_and_nvml_figures_are_independent() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch sees CUDA here; this checks the NVML figure without it")
    nvml = FakeNvml(processes=[_proc(7, 64 * MIB)])
    with DeviceMemoryProbe("cuda", nvml=nvml, pid=7) as probe:
        pass
    result = probe.result()
    assert result["peak_device_memory_allocated_bytes"] is None
    assert result["device_memory_source"] == "unavailable: cuda requested but torch.cuda is not available"
    assert result["device_memory_process_bytes"] == 64 * MIB


def test_device_memory_on_cpu_never_opens_nvml() -> None:
    nvml = FakeNvml()
    with DeviceMemoryProbe("cpu", nvml=nvml) as probe:
        pass
    result = probe.result()
    assert result["device_memory_process_bytes"] is None
    assert result["device_memory_process_source"] == "unavailable: cpu is not a CUDA device"
    assert nvml.init_calls == 0


# ------------------------------------------------------------------- GPU state


def test_decode_clock_event_reasons() -> None:
    assert decode_clock_event_reasons(0) == []
    assert decode_clock_event_reasons(0x1FF) == [
        "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
        "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "display_clock_setting",
    ]
    assert decode_clock_event_reasons(0x48) == ["hw_slowdown", "hw_thermal_slowdown"]
    assert decode_clock_event_reasons(0x1000 | 0x4) == ["sw_power_cap", "unknown_0x1000"]


def test_gpu_state_reads_before_and_after_and_stays_quiet_when_clean() -> None:
    nvml = FakeNvml(sm_mhz=1980, temp_c=61, reasons=0)
    with GpuStateProbe("cuda:0", nvml=nvml) as probe:
        nvml.state.update(temp_c=66)
    result = probe.result()
    assert result["gpu_state_source"] == "nvml"
    assert result["gpu_state"]["before"] == {
        "sm_clock_mhz": 1980,
        "memory_clock_mhz": 2619,
        "max_sm_clock_mhz": 1980,
        "temperature_c": 61,
        "power_limit_w": 700.0,
        "clock_event_reasons": [],
        "clock_event_reasons_mask": 0,
        "unreadable": {},
    }
    assert result["gpu_state"]["after"]["temperature_c"] == 66
    assert probe.warnings() == []
    assert nvml.init_calls == nvml.shutdown_calls == 1


def test_gpu_state_warns_when_the_loop_throttled() -> None:
    nvml = FakeNvml(sm_mhz=1980, temp_c=61, reasons=0)
    with GpuStateProbe("cuda", nvml=nvml) as probe:
        nvml.state.update(sm_mhz=1410, temp_c=83, reasons=0x40)
    assert probe.result()["gpu_state"]["after"]["clock_event_reasons"] == ["hw_thermal_slowdown"]
    # One sentence: the clock drop is shown inside the throttle warning, not repeated.
    assert probe.warnings() == [
        "GPU throttled during the measured loop: hw_thermal_slowdown (SM clock 1980 → 1410 MHz, 61 → 83 °C)"
    ]


def test_gpu_state_warns_when_the_gpu_was_already_throttled_before_the_loop() -> None:
    nvml = FakeNvml(sm_mhz=1500, temp_c=70, reasons=0x4 | 0x1)
    with GpuStateProbe("cuda", nvml=nvml) as probe:
        nvml.state.update(sm_mhz=1500, reasons=0x1)
    assert probe.warnings() == [
        "GPU already throttled when the measured loop started: sw_power_cap (SM clock 1500 → 1500 MHz, 70 → 70 °C)"
    ]


def test_gpu_state_warns_on_a_clock_drop_without_a_reason() -> None:
    nvml = FakeNvml(sm_mhz=1980, temp_c=60)
    with GpuStateProbe("cuda", nvml=nvml) as probe:
        nvml.state.update(sm_mhz=1700, temp_c=75)  # -14 %
    assert probe.warnings() == [
        "GPU SM clock fell 14 % during the measured loop with no throttle reason reported "
        "(SM clock 1980 → 1700 MHz, 60 → 75 °C)"
    ]


@pytest.mark.parametrize(
    ("after_mhz", "after_reasons"),
    [
        (1800, 0),  # -9 %: within the noise of boost clocks
        (1980, 0x1 | 0x2 | 0x10 | 0x100),  # idle and configured caps are not throttling
        (345, 0x1),  # the GPU dropping to idle clocks once the loop's work ended
    ],
)
def test_gpu_state_does_not_warn_about_what_is_not_throttling(after_mhz: int, after_reasons: int) -> None:
    before = {"sm_clock_mhz": 1980, "temperature_c": 60, "clock_event_reasons": []}
    after = {
        "sm_clock_mhz": after_mhz,
        "temperature_c": 60,
        "clock_event_reasons": decode_clock_event_reasons(after_reasons),
    }
    assert throttle_warnings(before, after) == []


def test_a_failing_query_leaves_only_its_field_empty() -> None:
    nvml = FakeNvml()
    nvml.failing.add("nvmlDeviceGetTemperature")
    nvml.missing.add("nvmlDeviceGetEnforcedPowerLimit")
    with GpuStateProbe("cuda", nvml=nvml) as probe:
        pass
    result = probe.result()
    after = result["gpu_state"]["after"]
    assert result["gpu_state_source"] == "nvml"
    assert after["temperature_c"] is None
    assert after["unreadable"] == {"temperature_c": "nvmlDeviceGetTemperature: Not Supported"}
    assert after["power_limit_w"] == 700.0  # from nvmlDeviceGetPowerManagementLimit
    assert after["sm_clock_mhz"] == 1980


def test_throttle_reasons_fall_back_to_the_pre_r535_query() -> None:
    nvml = FakeNvml(reasons=0x4)
    nvml.missing.add("nvmlDeviceGetCurrentClocksEventReasons")
    with GpuStateProbe("cuda", nvml=nvml) as probe:
        pass
    assert probe.result()["gpu_state"]["before"]["clock_event_reasons"] == ["sw_power_cap"]
    assert "nvmlDeviceGetCurrentClocksThrottleReasons" in nvml.calls


def test_gpu_state_unavailable_when_every_query_fails() -> None:
    nvml = FakeNvml()
    nvml.failing.update(
        {
            "nvmlDeviceGetClockInfo", "nvmlDeviceGetMaxClockInfo", "nvmlDeviceGetTemperature",
            "nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPowerManagementLimit",
            "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons",
        }
    )
    with GpuStateProbe("cuda", nvml=nvml) as probe:
        pass
    result = probe.result()
    assert result["gpu_state"] is None
    assert result["gpu_state_source"].startswith("unavailable: every NVML query failed: ")
    assert probe.warnings() == []
    assert nvml.init_calls == nvml.shutdown_calls == 1


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_gpu_state_on_a_device_without_nvml(device: str) -> None:
    nvml = FakeNvml()
    with GpuStateProbe(device, nvml=nvml) as probe:
        pass
    assert probe.result() == {
        "gpu_state": None,
        "gpu_state_source": f"unavailable: {device} is not a CUDA device (no GPU clocks to read)",
    }
    assert probe.warnings() == []
    assert nvml.init_calls == 0


def test_gpu_state_when_nvml_init_fails() -> None:
    nvml = FakeNvml()

    def init() -> None:
        raise FakeNvml.NVMLError("Driver Not Loaded")

    nvml.nvmlInit = init  # type: ignore[method-assign]
    with GpuStateProbe("cuda", nvml=nvml) as probe:
        pass
    assert probe.result()["gpu_state_source"] == "unavailable: NVML init failed: Driver Not Loaded"


def test_gpu_state_without_the_nvml_library() -> None:
    try:
        import pynvml  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pynvml is installed here")
    with GpuStateProbe("cuda") as probe:
        pass
    assert probe.result()["gpu_state_source"] == "unavailable: no NVML library (pip install nvidia-ml-py)"


def test_gpu_state_result_needs_the_region_to_end() -> None:
    with pytest.raises(RuntimeError):
        GpuStateProbe("cpu").result()


# -------------------------------------------------------------------- real GPU


def _require_cuda_and_nvml() -> Any:
    """The real pynvml module, or skip saying what is missing."""
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    import torch

    if not torch.cuda.is_available():
        pytest.skip(f"no CUDA device visible to torch {torch.__version__}")
    return pynvml


def _matmul_loop(seconds: float) -> None:
    import torch

    a = torch.randn(4096, 4096, device="cuda")
    start = time.perf_counter_ns()
    while time.perf_counter_ns() - start < seconds * 1e9:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


class _NoEnergyCounter:
    """Real pynvml with the energy counter refused, as on a pre-Volta GPU."""

    def __init__(self, pynvml: Any) -> None:
        self._pynvml = pynvml

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pynvml, name)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        raise self._pynvml.NVMLError(self._pynvml.NVML_ERROR_NOT_SUPPORTED)


@pytest.mark.gpu
def test_power_sampling_agrees_with_the_energy_counter_on_a_real_gpu() -> None:
    pynvml = _require_cuda_and_nvml()
    _matmul_loop(1.0)  # settle the 1-s averaged power reading at the loop's level first
    start = time.perf_counter_ns()
    with EnergyProbe("cuda") as counter, EnergyProbe("cuda", nvml=_NoEnergyCounter(pynvml)) as sampled:
        _matmul_loop(2.0)
    elapsed_s = (time.perf_counter_ns() - start) / 1e9
    by_counter, by_sampling = counter.result(elapsed_s=elapsed_s), sampled.result(elapsed_s=elapsed_s)
    assert by_sampling["energy_source"] == "nvml-power-sampling", by_sampling
    assert by_sampling["energy_j"] > 0 and by_sampling["energy_samples"] >= 3
    if by_counter["energy_source"] == "nvml-energy-counter":
        # Same board, same window: two sources of one quantity must roughly agree.
        assert 0.7 < by_sampling["energy_j"] / by_counter["energy_j"] < 1.3, (by_counter, by_sampling)


@pytest.mark.gpu
def test_gpu_state_reads_clocks_on_a_real_gpu() -> None:
    _require_cuda_and_nvml()
    with GpuStateProbe("cuda") as probe:
        _matmul_loop(0.5)
    result = probe.result()
    assert result["gpu_state_source"] == "nvml", result
    for moment in ("before", "after"):
        reading = result["gpu_state"][moment]
        assert reading["sm_clock_mhz"] > 0 and reading["memory_clock_mhz"] > 0, reading
        assert reading["max_sm_clock_mhz"] >= reading["sm_clock_mhz"], reading
        assert reading["temperature_c"] > 0, reading
        assert isinstance(reading["clock_event_reasons"], list), reading
    assert all(isinstance(w, str) for w in probe.warnings())


@pytest.mark.gpu
def test_device_memory_process_reading_on_a_real_gpu() -> None:
    _require_cuda_and_nvml()
    import torch

    with DeviceMemoryProbe("cuda") as probe:
        block = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda")
        torch.cuda.synchronize()
    del block
    result = probe.result()
    source = result["device_memory_process_source"]
    if source == "nvml-process":
        # NVML counts the CUDA context too, so it sees at least what torch reserved.
        assert result["device_memory_process_bytes"] >= 256 * MIB
    else:
        # In a container with its own PID namespace NVML lists host PIDs: a reason, never a number.
        assert source.startswith("unavailable: ") and result["device_memory_process_bytes"] is None
