"""Energy over exactly the measured region, in joules, with its source and scope named.

Two hardware counters are read, chosen by the device the work runs on:

* CUDA devices — NVML's total-energy counter of the GPU the device maps to
  (`nvmlDeviceGetTotalEnergyConsumption`, millijoules since the driver loaded,
  Volta and newer). Source `"nvml-energy-counter"`, scope `"gpu-board"`: the
  whole board (GPU, HBM, VRMs), not the server at the wall. The counter updates
  every few tens of milliseconds, so regions shorter than about a second read
  coarsely.
* Everything else — Linux RAPL through powercap
  (`/sys/class/powercap/intel-rapl:N/energy_uj`, one zone per CPU package;
  AMD Zen exposes the same interface), summed over packages. Source `"rapl"`,
  scope `"cpu-package"`: cores, caches and uncore of the sockets, not DRAM and
  not the wall. The counters wrap at `max_energy_range_uj`; a wrap between two
  readings is undone, and a background thread re-reads them every
  `rapl_poll_interval_s` so that a long region cannot hide a second wrap.

When neither can be read the values are None and `energy_source` says
`"unavailable: <what was tried and why it failed>"` — a missing counter is
never replaced by an estimate (DESIGN.md, Probe).

Elapsed time. Mean power needs the region's duration, and the harness owns the
clock (DESIGN.md principle 2), so the probe never times anything itself: the
harness passes the duration it measured to `result(elapsed_s=...)`. Called
without it, `result()` still reports the energy and leaves `mean_power_w` None.
This keeps the probe's `result()` compatible with the plain Probe protocol.

The NVML module and the powercap root are constructor arguments so tests can
substitute a fake NVML object and a fake sysfs tree.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .base import unavailable

POWERCAP_ROOT = Path("/sys/class/powercap")
NVML_SOURCE = "nvml-energy-counter"
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
    ) -> None:
        self.device = device
        self.powercap_root = Path(powercap_root)
        self.nvml = nvml
        self.rapl_poll_interval_s = rapl_poll_interval_s
        self._meter: _Meter | None = None
        self._energy_j: float | None = None
        self._reason: str | None = None
        self._source = ""
        self._scope = ""
        self._done = False

    def __enter__(self) -> "EnergyProbe":
        self._energy_j, self._reason, self._done = None, None, False
        meter = self._open_meter()
        if isinstance(meter, str):
            self._reason = meter
            return self
        try:
            meter.start()
        except MeterError as err:
            meter.close()
            self._reason = unavailable(str(err))
            return self
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
        except MeterError as err:
            self._reason = unavailable(str(err))
        finally:
            meter.close()

    def result(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """Energy in joules, its source and scope, and mean power over `elapsed_s`.

        `elapsed_s` is the region's duration as the harness's clock measured it;
        without it `mean_power_w` is None.
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
        }

    def _open_meter(self) -> _Meter | str:
        """The counter for this device, or the `unavailable: ...` reason there is none."""
        if self.device.split(":", 1)[0] == "cuda":
            return open_nvml_meter(self.device, self.nvml)
        domains = rapl_package_domains(self.powercap_root)
        if isinstance(domains, str):
            return unavailable(f"{domains} and not a CUDA device")
        return RaplMeter(domains, self.rapl_poll_interval_s)


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


class RaplMeter:
    """Sum of the package counters' increments since `start()`, wraps undone."""

    source = RAPL_SOURCE
    scope = CPU_PACKAGE

    def __init__(self, domains: list[RaplDomain], poll_interval_s: float = 1.0) -> None:
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be > 0, got {poll_interval_s!r}")
        self.domains = domains
        self.poll_interval_s = poll_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: list[int] = []
        self._total_uj = 0
        self._error: MeterError | None = None

    def start(self) -> None:
        self._last = [_read_int(d.energy_path) for d in self.domains]
        self._total_uj = 0
        self._error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="aigcbench-rapl-poll", daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        self.poll()
        return self._total_uj / 1e6

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # A counter that wraps every few minutes at full load must be read more
        # often than that; Event.wait also ends the thread the moment stop() is called.
        while not self._stop.wait(self.poll_interval_s):
            try:
                self.poll()
            except MeterError as err:
                self._error = err
                return

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

class NvmlMeter:
    """Increment of one GPU's NVML total-energy counter (mJ) since `start()`."""

    source = NVML_SOURCE
    scope = GPU_BOARD

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml = nvml
        self.handle = handle
        self._error_type = _nvml_error_type(nvml)
        self._start_mj = 0

    def start(self) -> None:
        self._start_mj = self._read_mj()

    def stop(self) -> float:
        return (self._read_mj() - self._start_mj) / 1000.0

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self._error_type:
            pass  # shutting down a library that already failed has nothing left to report

    def _read_mj(self) -> int:
        try:
            return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))
        except self._error_type as err:
            raise MeterError(f"NVML total-energy counter not readable ({err}); it needs a Volta or newer GPU") from None


def open_nvml_meter(device: str, nvml: Any | None = None) -> NvmlMeter | str:
    """An initialised meter for the GPU behind `device` ("cuda", "cuda:N"), or why not."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return unavailable("no NVML library (pip install nvidia-ml-py)")
    error_type = _nvml_error_type(nvml)
    try:
        nvml.nvmlInit()
    except error_type as err:
        return unavailable(f"NVML init failed: {err}")
    try:
        handle = nvml_handle(nvml, cuda_index(device))
    except (error_type, ValueError, IndexError) as err:
        nvml.nvmlShutdown()
        return unavailable(f"no NVML GPU for {device}: {err}")
    return NvmlMeter(nvml, handle)


def cuda_index(device: str) -> int | None:
    """The N of "cuda:N"; None for plain "cuda" (the current device)."""
    _, sep, index = device.partition(":")
    if not sep:
        return None
    if not index.isdigit():
        raise ValueError(f"bad CUDA device {device!r}, expected cuda or cuda:N")
    return int(index)


def nvml_handle(nvml: Any, index: int | None) -> Any:
    """The NVML handle of CUDA device `index`.

    CUDA and NVML number GPUs differently (CUDA orders fastest first and
    renumbers what CUDA_VISIBLE_DEVICES exposes; NVML uses PCI order), so the
    GPU is matched by UUID through torch when torch can see CUDA. Otherwise the
    CUDA_VISIBLE_DEVICES entry is used, which is exact for UUID entries and for
    indices under CUDA_DEVICE_ORDER=PCI_BUS_ID.
    """
    uuid = _torch_cuda_uuid(index)
    if uuid is not None:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    ordinal = index or 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        entry = visible.split(",")[ordinal].strip()
        if entry.startswith(("GPU-", "MIG-")):
            return nvml.nvmlDeviceGetHandleByUUID(entry)
        ordinal = int(entry)
    return nvml.nvmlDeviceGetHandleByIndex(ordinal)


def _torch_cuda_uuid(index: int | None) -> str | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)
    uuid = str(getattr(props, "uuid", "") or "")
    if not uuid:
        return None
    # torch prints the bare UUID; NVML expects the "GPU-" prefix.
    return uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"


def _nvml_error_type(nvml: Any) -> type[Exception]:
    # pynvml raises NVMLError subclasses; a test's fake may raise anything.
    error = getattr(nvml, "NVMLError", None)
    return error if isinstance(error, type) and issubclass(error, Exception) else Exception
