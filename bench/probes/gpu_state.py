"""GPU clocks, temperature, power limit and clock-event ("throttle") reasons around the loop.

A GPU's speed is not a constant: boost clocks fall when the board reaches its
power limit or its temperature limit, and a run that started cool can end
throttled. The same configuration then measures differently on the same card
depending on what ran before it. This probe reads the GPU's state through NVML
twice — on enter (before the measured loop) and on exit (after it) — so every
record says under which clocks its numbers were made, and `warnings()` flags a
run whose clocks were held down (DESIGN.md: everything that changes a number is
recorded; instability is said, not hidden).

Each reading is a dict whose keys carry units:

* `sm_clock_mhz`, `memory_clock_mhz` — current clocks (`nvmlDeviceGetClockInfo`);
* `max_sm_clock_mhz` — the SM clock the board can boost to (`nvmlDeviceGetMaxClockInfo`);
* `temperature_c` — GPU die temperature (`nvmlDeviceGetTemperature`, sensor GPU);
* `power_limit_w` — the enforced power limit (`nvmlDeviceGetEnforcedPowerLimit`);
* `clock_event_reasons` — names of the reasons clocks are below maximum
  (`nvmlDeviceGetCurrentClocksEventReasons`, or the older
  `nvmlDeviceGetCurrentClocksThrottleReasons` on drivers before R535), and
  `clock_event_reasons_mask` the raw bitmask, so a bit this code does not
  know yet is still recorded;
* `unreadable` — `{field: NVML's reason}` for each query that failed; that
  field is None. One unsupported query (temperature on some vGPUs) must not
  hide the others.

Caveats. These are two instants, not a trace: throttling that came and went
mid-loop is visible only through its effect on the latencies. The reasons are
NVML's current flags when read; the exit reading comes right after the loop's
last synchronize, when the GPU may already report itself idle.
"""

from __future__ import annotations

from typing import Any

from .base import unavailable
from .nvml import NvmlCallError, NvmlGpu, is_cuda, open_gpu

SOURCE = "nvml"

# Enum values from nvml.h; stable ABI, and hard-coded so a fake NVML need not define them.
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_TEMPERATURE_GPU = 0

# nvmlClocksEventReason* / nvmlClocksThrottleReason* bits (nvml.h; the same values under both names).
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks_setting",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal_slowdown",
    0x040: "hw_thermal_slowdown",
    0x080: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",  # only under the throttle-reason names in pynvml
    0x400: "reliability",
}

# The reasons that mean "conditions held the clocks down", which may not repeat
# on the next run: power and thermal limits, hardware slowdown (power brake,
# overheating, a failing PSU), board and voltage-reliability limits. Left out on
# purpose: `gpu_idle` (low clocks because nothing runs — expected at the exit
# reading, right after the loop's last synchronize), and the configuration
# reasons `applications_clocks_setting`, `display_clock_setting` and
# `sync_boost` (clocks capped by a setting an administrator chose; they repeat
# on every run and are recorded in the reading, not warned about).
THROTTLE_REASONS = frozenset(
    {
        "sw_power_cap",
        "hw_slowdown",
        "sw_thermal_slowdown",
        "hw_thermal_slowdown",
        "hw_power_brake_slowdown",
        "board_limit",
        "reliability",
    }
)

# An SM clock that falls by more than this fraction between the readings is a
# warning even without a reason flag: the flags are instants and can miss an event.
CLOCK_DROP_WARNING = 0.10

_REASON_QUERIES = ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")


def decode_clock_event_reasons(mask: int) -> list[str]:
    """The names of the bits set in an NVML clock-event mask, lowest bit first.

    >>> decode_clock_event_reasons(0x44)
    ['sw_power_cap', 'hw_thermal_slowdown']
    >>> decode_clock_event_reasons(0x801)
    ['gpu_idle', 'unknown_0x800']
    """
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            names.append(f"unknown_{bit:#x}")
        bit <<= 1
    return names


class GpuStateProbe:
    """Context manager reading the GPU's clocks and throttle state before and after the region.

    `result()` gives `{"gpu_state": {"before": reading, "after": reading} | None,
    "gpu_state_source": "nvml" | "unavailable: <reason>"}`; `warnings()` the
    sentences a record should carry when the GPU was throttled. On a device
    that is not CUDA, or without NVML, the state is None with the reason and
    there are no warnings.
    """

    name = "gpu_state"

    def __init__(self, device: str, *, nvml: Any | None = None) -> None:
        self.device = device
        self.nvml = nvml
        self._gpu: NvmlGpu | None = None
        self._before: dict[str, Any] | None = None
        self._result: dict[str, Any] | None = None
        self._reason: str | None = None

    def __enter__(self) -> "GpuStateProbe":
        self._result, self._before, self._reason = None, None, None
        if not is_cuda(self.device):
            self._reason = unavailable(f"{self.device} is not a CUDA device (no GPU clocks to read)")
            return self
        gpu = open_gpu(self.device, self.nvml)
        if isinstance(gpu, str):
            self._reason = unavailable(gpu)
            return self
        self._gpu = gpu
        self._before = read_gpu_state(gpu)
        return self

    def __exit__(self, *exc: object) -> None:
        gpu, self._gpu = self._gpu, None
        if gpu is None or self._before is None:
            self._result = {"gpu_state": None, "gpu_state_source": self._reason}
            return
        try:
            after = read_gpu_state(gpu)
        finally:
            gpu.close()
        state = {"before": self._before, "after": after}
        if _nothing_read(self._before) and _nothing_read(after):
            reasons = sorted(set(after["unreadable"].values()))
            source = unavailable(f"every NVML query failed: {'; '.join(reasons)}")
            self._result = {"gpu_state": None, "gpu_state_source": source}
        else:
            self._result = {"gpu_state": state, "gpu_state_source": SOURCE}

    def result(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """The before/after readings and their source, valid after the region ends."""
        if self._result is None:
            raise RuntimeError("GpuStateProbe.result() is valid only after the region ends")
        return dict(self._result)

    def warnings(self) -> list[str]:
        """Sentences for the record's `warnings`: throttling, or an SM clock that fell >10 %."""
        state = self.result()["gpu_state"]
        return [] if state is None else throttle_warnings(state["before"], state["after"])


def read_gpu_state(gpu: NvmlGpu) -> dict[str, Any]:
    """One reading of the GPU's clocks, temperature, power limit and clock-event reasons."""
    unreadable: dict[str, str] = {}

    def query(field: str, *calls: tuple[Any, ...]) -> Any:
        # Try each (function, *args) in turn: the first that answers wins.
        errors = []
        for function, *args in calls:
            try:
                return gpu.call(function, *args)
            except NvmlCallError as err:
                errors.append(str(err))
        unreadable[field] = "; ".join(errors)
        return None

    mask = query("clock_event_reasons", *((q,) for q in _REASON_QUERIES))
    limit_mw = query(
        "power_limit_w", ("nvmlDeviceGetEnforcedPowerLimit",), ("nvmlDeviceGetPowerManagementLimit",)
    )
    return {
        "sm_clock_mhz": _int(query("sm_clock_mhz", ("nvmlDeviceGetClockInfo", NVML_CLOCK_SM))),
        "memory_clock_mhz": _int(query("memory_clock_mhz", ("nvmlDeviceGetClockInfo", NVML_CLOCK_MEM))),
        "max_sm_clock_mhz": _int(query("max_sm_clock_mhz", ("nvmlDeviceGetMaxClockInfo", NVML_CLOCK_SM))),
        "temperature_c": _int(query("temperature_c", ("nvmlDeviceGetTemperature", NVML_TEMPERATURE_GPU))),
        "power_limit_w": None if limit_mw is None else int(limit_mw) / 1000.0,
        "clock_event_reasons": None if mask is None else decode_clock_event_reasons(int(mask)),
        "clock_event_reasons_mask": _int(mask),
        "unreadable": unreadable,
    }


def throttle_warnings(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """At most one warning: throttle reasons (after, else before), else an SM clock drop > 10 %.

    The throttle sentence already shows the clocks, so a drop that comes with a
    reason is not said twice. A drop with `gpu_idle` set after the loop is the
    GPU relaxing once its work ended, not a slowdown of the loop, and is not
    warned about.
    """
    change = _change_text(before, after)
    during = _throttling(after)
    if during:
        return [f"GPU throttled during the measured loop: {', '.join(during)}{change}"]
    already = _throttling(before)
    if already:
        return [f"GPU already throttled when the measured loop started: {', '.join(already)}{change}"]
    first, last = before.get("sm_clock_mhz"), after.get("sm_clock_mhz")
    idle_after = "gpu_idle" in (after.get("clock_event_reasons") or [])
    if first and last is not None and not idle_after and (first - last) / first > CLOCK_DROP_WARNING:
        return [
            f"GPU SM clock fell {100 * (first - last) / first:.0f} % during the measured loop "
            f"with no throttle reason reported{change}"
        ]
    return []


def _throttling(reading: dict[str, Any]) -> list[str]:
    return [r for r in reading.get("clock_event_reasons") or [] if r in THROTTLE_REASONS]


def _change_text(before: dict[str, Any], after: dict[str, Any]) -> str:
    """' (SM clock 1980 → 1410 MHz, 61 → 83 °C)', leaving out what was not read."""
    parts = []
    for key, unit in (("sm_clock_mhz", " MHz"), ("temperature_c", " °C")):
        a, b = before.get(key), after.get(key)
        if a is not None and b is not None:
            parts.append(f"{a} → {b}{unit}")
        elif b is not None:
            parts.append(f"{b}{unit}")
    if parts and parts[0].endswith("MHz"):
        parts[0] = f"SM clock {parts[0]}"
    return f" ({', '.join(parts)})" if parts else ""


def _nothing_read(reading: dict[str, Any]) -> bool:
    return all(value is None for key, value in reading.items() if key != "unreadable")


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
