"""Energy over exactly the measured region, in joules, with its source and scope named.

The source is chosen by the device the work runs on, best first:

* CUDA devices — NVML's total-energy counter of the GPU the device maps to
  (`nvmlDeviceGetTotalEnergyConsumption`, millijoules since the driver loaded,
  Volta and newer). Source `"nvml-energy-counter"`, scope `"gpu-board"`: the
  whole board (GPU, HBM, VRMs), not the server at the wall. The counter updates
  every few tens of milliseconds, so regions shorter than about a second read
  coarsely.
* CUDA devices whose counter cannot be read (pre-Volta GPUs, some vGPU/MIG
  setups) — NVML's board power (`nvmlDeviceGetPowerUsage`, milliwatts) sampled
  every `power_poll_interval_s` (0.05 s) on a background thread and integrated
  with the trapezoid rule. Source `"nvml-power-sampling"`, same `"gpu-board"`
  scope. This is an estimate built from a reading that is itself smoothed: on
  Ampere (except GA100) and newer GPUs NVML documents the value as the average
  over the last second (older GPUs report an instantaneous value), so the
  integral describes a window shifted about half a second earlier than the
  region. The error is roughly half a second times the difference between the
  power just before the region and at its end: near zero after a warm-up at
  the same load, a few percent of a ten-second loop that starts from idle, and
  large for a region under a second or two. Polling faster than the sensor
  updates only repeats values, costing one NVML call per interval, hence
  50 ms rather than 1 ms. The number of samples is reported (`energy_samples`,
  `energy_sample_interval_s`) so a reader can judge the figure.
* Everything else — Linux RAPL through powercap
  (`/sys/class/powercap/intel-rapl:N/energy_uj`, one zone per CPU package;
  AMD Zen exposes the same interface), summed over packages. Source `"rapl"`,
  scope `"cpu-package"`: cores, caches and uncore of the sockets, not DRAM and
  not the wall. The counters wrap at `max_energy_range_uj`; a wrap between two
  readings is undone, and a background thread re-reads them every
  `rapl_poll_interval_s` so that a long region cannot hide a second wrap.

When nothing can be read the values are None and `energy_source` says
`"unavailable: <what was tried and why it failed>"` — a missing counter is
never replaced by a guess (DESIGN.md, Probe).

Elapsed time. Mean power needs the region's duration, and the harness owns the
clock (DESIGN.md principle 2), so `mean_power_w` is always energy divided by
the duration the harness passes to `result(elapsed_s=...)` — the same window
as the timed loop, so J/item and watts describe the loop the latencies come
from. Called without it, `result()` still reports the energy and leaves
`mean_power_w` None, which keeps `result()` compatible with the plain Probe
protocol. The power sampler does read a clock (`clock=`, perf_counter_ns by
default) but only to space its own samples in time; that clock never times the
region.

The NVML module, the powercap root and the sampler's clock are constructor
arguments so tests can substitute a fake NVML object, a fake sysfs tree and a
fake clock.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from ..clock import Clock, perf_clock
from .base import unavailable
from .nvml import NvmlCallError, NvmlGpu, cuda_index, is_cuda, nvml_handle, open_gpu

__all__ = [
    "EnergyProbe", "MeterError", "NvmlMeter", "NvmlPowerMeter", "RaplDomain", "RaplMeter",
    "cuda_index", "nvml_handle", "rapl_package_domains", "start_nvml_meter", "wrapped_delta_uj",
]

POWERCAP_ROOT = Path("/sys/class/powercap")
NVML_SOURCE = "nvml-energy-counter"
NVML_POWER_SOURCE = "nvml-power-sampling"
RAPL_SOURCE = "rapl"
GPU_BOARD = "gpu-board"
CPU_PACKAGE = "cpu-package"


class MeterError(Exception):
    """A counter that cannot be read; the message is the reason, without the prefix."""


class _Meter(Protocol):
    source: str
    scope: str

    def start(self) -> None: ...

    def stop(self) -> float:
        """Joules since `start()`."""

    def details(self) -> dict[str, Any]:
        """Extra result keys describing how the figure was obtained (may be empty)."""

    def close(self) -> None: ...


class EnergyProbe:
    """Context manager measuring the energy of the region run on `device`.

    >>> with EnergyProbe("cpu", powercap_root=Path("/nonexistent")) as probe:
    ...     pass
    >>> probe.result(elapsed_s=0.5)["energy_source"]
    'unavailable: no RAPL powercap (/nonexistent absent) and not a CUDA device'
    """

    name = "energy"

    def __init__(
        self,
        device: str,
        *,
        powercap_root: Path = POWERCAP_ROOT,
        nvml: Any | None = None,
        rapl_poll_interval_s: float = 1.0,
        power_poll_interval_s: float = 0.05,
        clock: Clock = perf_clock,
    ) -> None:
        if power_poll_interval_s <= 0:
            raise ValueError(f"power_poll_interval_s must be > 0, got {power_poll_interval_s!r}")
        self.device = device
        self.powercap_root = Path(powercap_root)
        self.nvml = nvml
        self.rapl_poll_interval_s = rapl_poll_interval_s
        self.power_poll_interval_s = power_poll_interval_s
        self.clock = clock
        self._meter: _Meter | None = None
        self._energy_j: float | None = None
        self._reason: str | None = None
        self._source = ""
        self._scope = ""
        self._details: dict[str, Any] = {}
        self._done = False

    def __enter__(self) -> "EnergyProbe":
        self._energy_j, self._reason, self._details, self._done = None, None, {}, False
        meter = self._start_meter()
        if isinstance(meter, str):
            self._reason = meter
        else:
            self._meter = meter
        return self

    def __exit__(self, *exc: object) -> None:
        meter, self._meter = self._meter, None
        self._done = True
        if meter is None:
            return
        try:
            self._energy_j = meter.stop()
            self._source, self._scope = meter.source, meter.scope
            self._details = meter.details()
        except MeterError as err:
            self._reason = unavailable(str(err))
        finally:
            meter.close()

    def result(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """Energy in joules, its source and scope, and mean power over `elapsed_s`.

        `elapsed_s` is the region's duration as the harness's clock measured it;
        without it `mean_power_w` is None. The power sampler adds
        `energy_samples` and `energy_sample_interval_s`.
        """
        if not self._done:
            raise RuntimeError("EnergyProbe.result() is valid only after the region ends")
        if elapsed_s is not None and elapsed_s < 0:
            raise ValueError(f"elapsed_s must be >= 0, got {elapsed_s!r}")
        if self._energy_j is None:
            return {"energy_j": None, "energy_source": self._reason, "mean_power_w": None, "energy_scope": None}
        power = self._energy_j / elapsed_s if elapsed_s else None
        return {
            "energy_j": self._energy_j,
            "energy_source": self._source,
            "mean_power_w": power,
            "energy_scope": self._scope,
            **self._details,
        }

    def warnings(self) -> list[str]:
        """Nothing this probe reads calls for a warning."""
        return []

    def _start_meter(self) -> _Meter | str:
        """The started meter for this device, or the `unavailable: ...` reason there is none."""
        if is_cuda(self.device):
            return start_nvml_meter(
                self.device, self.nvml, power_poll_interval_s=self.power_poll_interval_s, clock=self.clock
            )
        domains = rapl_package_domains(self.powercap_root)
        if isinstance(domains, str):
            return unavailable(f"{domains} and not a CUDA device")
        meter = RaplMeter(domains, self.rapl_poll_interval_s)
        try:
            meter.start()
        except MeterError as err:
            meter.close()
            return unavailable(str(err))
        return meter


# --------------------------------------------------------------------------- RAPL

@dataclass(frozen=True)
class RaplDomain:
    """One powercap package zone: its counter file and the value it wraps at."""

    energy_path: Path
    max_energy_range_uj: int


def rapl_package_domains(root: Path) -> list[RaplDomain] | str:
    """The package zones under a powercap root, or why there are none (no prefix).

    Only top-level zones named `package-N` count: their subzones (`intel-rapl:0:0`,
    cores, DRAM) are parts of or beside the package, and `psys` (platform) on
    client chips overlaps the packages, so adding either would double count.
    """
    if not root.is_dir():
        return f"no RAPL powercap ({root} absent)"
    zones = [zone for zone in root.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", zone.name)]
    domains = []
    try:
        for zone in sorted(zones, key=lambda z: int(z.name.rsplit(":", 1)[1])):
            if not _read_text(zone / "name").startswith("package"):
                continue
            domains.append(RaplDomain(zone / "energy_uj", _read_int(zone / "max_energy_range_uj")))
    except MeterError as err:
        return str(err)
    if not domains:
        return f"no RAPL package zone under {root} (expected intel-rapl:N with name package-N)"
    return domains


def wrapped_delta_uj(before: int, after: int, max_energy_range_uj: int) -> int:
    """Energy between two readings of a counter that wraps to 0 after `max_energy_range_uj`.

    Assumes at most one wrap between the readings, which the meter's polling
    guarantees. (The true period is one counter unit longer than the range;
    that unit, ~15-61 µJ, is below the counter's resolution anyway.)

    >>> wrapped_delta_uj(9_000_000, 500_000, 10_000_000)
    1500000
    """
    if after >= before:
        return after - before
    return max_energy_range_uj - before + after


class _Poller:
    """Calls `poll` every `interval_s` on a daemon thread between `start()` and `stop()`.

    Event.wait sleeps in the kernel between calls and returns the moment
    `stop()` sets the event, so the thread costs one reading per interval and
    never spins. The first `MeterError` ends the polling and is raised by
    `stop()`: a gap in the readings would otherwise be bridged by numbers
    nobody measured. `poll` is never called concurrently: the owner calls it
    itself only after `stop()` has joined the thread.
    """

    def __init__(self, interval_s: float, poll: Callable[[], None], name: str) -> None:
        if interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._poll = poll
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: MeterError | None = None

    def start(self) -> None:
        self._error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.close()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._poll()
            except MeterError as err:
                self._error = err
                return


class RaplMeter:
    """Sum of the package counters' increments since `start()`, wraps undone."""

    source = RAPL_SOURCE
    scope = CPU_PACKAGE

    def __init__(self, domains: list[RaplDomain], poll_interval_s: float = 1.0) -> None:
        self.domains = domains
        self.poll_interval_s = poll_interval_s
        # A counter that wraps every few minutes at full load must be read more often than that.
        self._poller = _Poller(poll_interval_s, self.poll, "aigcbench-rapl-poll")
        self._last: list[int] = []
        self._total_uj = 0

    def start(self) -> None:
        self._last = [_read_int(d.energy_path) for d in self.domains]
        self._total_uj = 0
        self._poller.start()

    def stop(self) -> float:
        self._poller.stop()
        self.poll()
        return self._total_uj / 1e6

    def details(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self._poller.close()

    def poll(self) -> None:
        """Add each counter's increment since the last reading (the poller thread calls this)."""
        # Called by the poller thread, then once by stop() after join(): never concurrently.
        now = [_read_int(d.energy_path) for d in self.domains]
        for before, after, domain in zip(self._last, now, self.domains):
            self._total_uj += wrapped_delta_uj(before, after, domain.max_energy_range_uj)
        self._last = now


def _read_text(path: Path) -> str:
    """A sysfs file's content; a failure becomes a MeterError naming the file and why."""
    try:
        return path.read_text().strip()
    except PermissionError:
        # Since Linux 5.10 (CVE-2020-8694, "PLATYPUS") energy_uj is mode 0400.
        raise MeterError(
            f"RAPL counter not readable: permission denied on {path} "
            "(root-only since Linux 5.10; run as root or grant read access to energy_uj)"
        ) from None
    except OSError as err:
        raise MeterError(f"RAPL counter not readable: {path}: {os.strerror(err.errno or errno.EIO)}") from None


def _read_int(path: Path) -> int:
    text = _read_text(path)
    try:
        return int(text)
    except ValueError:
        raise MeterError(f"RAPL counter not readable: {path} holds {text!r}, not an integer") from None


# --------------------------------------------------------------------------- NVML

def start_nvml_meter(
    device: str,
    nvml: Any | None = None,
    *,
    power_poll_interval_s: float = 0.05,
    clock: Clock = perf_clock,
) -> _Meter | str:
    """A started meter for the GPU behind `device`, or the `unavailable: ...` reason.

    The energy counter is preferred; when it cannot be read (pre-Volta GPUs,
    some vGPU and MIG configurations) the board's power is sampled instead.
    Only when both fail is energy unavailable, and the reason names both.
    """
    gpu = open_gpu(device, nvml)
    if isinstance(gpu, str):
        return unavailable(gpu)
    counter = NvmlMeter(gpu)
    try:
        counter.start()
        return counter
    except MeterError as counter_error:
        sampler = NvmlPowerMeter(gpu, power_poll_interval_s, clock)
        try:
            sampler.start()
            return sampler
        except MeterError as power_error:
            gpu.close()
            return unavailable(f"{counter_error}, and {power_error}")


class NvmlMeter:
    """Increment of one GPU's NVML total-energy counter (mJ) since `start()`."""

    source = NVML_SOURCE
    scope = GPU_BOARD

    def __init__(self, gpu: NvmlGpu) -> None:
        self.gpu = gpu
        self._start_mj = 0

    def start(self) -> None:
        self._start_mj = self._read_mj()

    def stop(self) -> float:
        return (self._read_mj() - self._start_mj) / 1000.0

    def details(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.gpu.close()

    def _read_mj(self) -> int:
        try:
            return int(self.gpu.call("nvmlDeviceGetTotalEnergyConsumption"))
        except NvmlCallError as err:
            raise MeterError(f"NVML total-energy counter not readable ({err}; it needs a Volta or newer GPU)") from None


class NvmlPowerMeter:
    """Energy as the time integral of NVML's board power, sampled on a background thread.

    Samples are `(clock ns, milliwatts)`; the first is taken in `start()`, the
    last in `stop()`, and between them one every `poll_interval_s`. Consecutive
    samples are joined by straight lines (trapezoid rule), which is exact for
    power that changes linearly between samples; otherwise each interval errs
    by at most the power's swing within it times its length, and a spike
    shorter than an interval can be missed entirely.

    The sum is kept in integer milliwatt-nanoseconds (doubled, so the halving of
    the trapezoid never rounds) and converted once, so a long run accumulates
    no floating-point drift.
    """

    source = NVML_POWER_SOURCE
    scope = GPU_BOARD

    def __init__(self, gpu: NvmlGpu, poll_interval_s: float = 0.05, clock: Clock = perf_clock) -> None:
        self.gpu = gpu
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self._poller = _Poller(poll_interval_s, self.sample, "aigcbench-nvml-power")
        self._last: tuple[int, int] = (0, 0)
        self._twice_mw_ns = 0
        self._samples = 0

    def start(self) -> None:
        self._twice_mw_ns, self._samples = 0, 0
        self._last = self._read()
        self._samples = 1
        self._poller.start()

    def stop(self) -> float:
        self._poller.stop()
        self.sample()
        return self._twice_mw_ns / 2e12  # mW·ns -> J is 1e-3 * 1e-9

    def details(self) -> dict[str, Any]:
        """How the figure was made: a reader can judge a 3-sample integral differently from a 3000-sample one."""
        return {"energy_samples": self._samples, "energy_sample_interval_s": self.poll_interval_s}

    def close(self) -> None:
        self._poller.close()
        self.gpu.close()

    def sample(self) -> None:
        """Read the power now and add the trapezoid since the previous sample (the thread calls this)."""
        # Called by the sampler thread, then once by stop() after join(): never concurrently.
        now_ns, power_mw = self._read()
        last_ns, last_mw = self._last
        self._twice_mw_ns += (last_mw + power_mw) * (now_ns - last_ns)
        self._last = (now_ns, power_mw)
        self._samples += 1

    def _read(self) -> tuple[int, int]:
        try:
            power_mw = int(self.gpu.call("nvmlDeviceGetPowerUsage"))
        except NvmlCallError as err:
            raise MeterError(f"NVML power reading failed ({err})") from None
        # The timestamp follows the reading: the value is the power as of the call's return.
        return self.clock(), power_mw
