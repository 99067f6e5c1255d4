"""Peak accelerator memory over the measured region, from PyTorch's CUDA allocator.

`torch.cuda.max_memory_allocated` is the peak of memory handed to tensors;
`max_memory_reserved` the peak the caching allocator held from the driver,
which is what actually competes for the card. Both count only allocations made
through PyTorch: memory a TensorRT engine or an ONNX Runtime session allocates
itself does not appear here, and the CUDA context (hundreds of MiB) never does.

torch is imported inside the methods, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

from .base import unavailable

SOURCE = "torch.cuda"


class DeviceMemoryProbe:
    """Context manager reporting peak device memory for `device` ("cpu", "cuda", "cuda:1", "mps").

    On CUDA the peak counters are reset on enter, so the figures cover the
    region only. On any other device the values are None and
    `device_memory_source` says why.
    """

    name = "device_memory"

    def __init__(self, device: str) -> None:
        self.device = device
        self._result: dict[str, Any] | None = None

    def __enter__(self) -> "DeviceMemoryProbe":
        self._result = None
        reason = self._unavailable_reason()
        if reason is None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        reason = self._unavailable_reason()
        if reason is not None:
            self._result = _values(None, None, reason)
            return
        import torch

        # The allocator's counters are updated when the host enqueues work, so
        # no synchronize is needed to read them.
        self._result = _values(
            int(torch.cuda.max_memory_allocated(self.device)),
            int(torch.cuda.max_memory_reserved(self.device)),
            SOURCE,
        )

    def result(self) -> dict[str, Any]:
        """Peak allocated and reserved bytes, or None with the reason."""
        if self._result is None:
            raise RuntimeError("DeviceMemoryProbe.result() is valid only after the region ends")
        return dict(self._result)

    def _unavailable_reason(self) -> str | None:
        kind = self.device.split(":", 1)[0]
        if kind == "cpu":
            return unavailable("cpu device (host memory is reported separately)")
        if kind != "cuda":
            return unavailable(f"{self.device} has no device memory counter")
        import torch

        if not torch.cuda.is_available():
            return unavailable(f"{self.device} requested but torch.cuda is not available")
        return None


def _values(allocated: int | None, reserved: int | None, source: str) -> dict[str, Any]:
    return {
        "peak_device_memory_allocated_bytes": allocated,
        "peak_device_memory_reserved_bytes": reserved,
        "device_memory_source": source,
    }
