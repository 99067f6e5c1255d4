"""Device-side timing with CUDA events, next to the host clock.

Events are recorded on the device's current stream around each call and read
after the loop, so timing adds no synchronisation of its own. The host clock
stays the primary measurement; device time shows how much of it the GPU was busy.
"""

from __future__ import annotations

from typing import Any

from .measure import DeviceTimer


class CudaEventTimer:
    def __init__(self, device: Any) -> None:
        import torch

        self._torch = torch
        self._device = device
        self._pairs: list[tuple[Any, Any]] = []
        self._start: Any = None

    def start(self) -> None:
        self._start = self._torch.cuda.Event(enable_timing=True)
        self._start.record(self._torch.cuda.current_stream(self._device))

    def stop(self) -> None:
        end = self._torch.cuda.Event(enable_timing=True)
        end.record(self._torch.cuda.current_stream(self._device))
        self._pairs.append((self._start, end))

    def elapsed_ns(self) -> list[int]:
        self._torch.cuda.synchronize(self._device)
        # Event.elapsed_time is in milliseconds with ~0.5 µs resolution.
        return [round(start.elapsed_time(end) * 1e6) for start, end in self._pairs]


def device_timer_for(device: Any) -> DeviceTimer | None:
    """A CUDA event timer for a CUDA torch.device, else None (no device clock to read)."""
    if getattr(device, "type", None) == "cuda":
        return CudaEventTimer(device)
    return None
