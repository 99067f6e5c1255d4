"""Accelerator memory over the measured region, from two vantage points.

PyTorch's CUDA allocator (source `"torch.cuda"`):
`torch.cuda.max_memory_allocated` is the peak of memory handed to tensors;
`max_memory_reserved` the peak the caching allocator held from the driver,
which is what actually competes for the card. Both are true peaks over the
region (the counters are reset on enter), but they count only allocations made
through PyTorch: memory a TensorRT engine or an ONNX Runtime session allocates
itself does not appear, and the CUDA context (hundreds of MiB) never does.

NVML's per-process view (source `"nvml-process"`): `usedGpuMemory` of this
process's entry in `nvmlDeviceGetComputeRunningProcesses` — everything the
driver has given this process on that GPU, context and foreign allocators
included, so it is the figure to compare across backends. It is a snapshot,
not a peak: it is read on enter and on exit and the larger is reported. For
allocators that cache (PyTorch, ONNX Runtime's arena, TensorRT's engine
memory) memory is rarely returned mid-run, so the exit reading is close to the
peak; a backend that frees memory inside the loop can hide a spike from it.
It is unavailable, with the reason, when:

* the process is not in NVML's list — typically inside a container with its
  own PID namespace, where NVML reports host PIDs that do not match ours;
* NVML reports the value as not available (Windows WDDM, some vGPUs);
* the GPU is a MIG instance: processes are listed per GPU instance and
  unprivileged callers often see none.

torch and pynvml are imported inside the methods, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from typing import Any

from .base import unavailable
from .nvml import NvmlCallError, NvmlGpu, is_cuda, open_gpu

SOURCE = "torch.cuda"
PROCESS_SOURCE = "nvml-process"

# NVML's "value not available" for an unsigned long long (NVML_VALUE_NOT_AVAILABLE_ulonglong);
# recent pynvml turns it into None itself, older releases pass the raw value through.
_NOT_AVAILABLE_ULL = 2**64 - 1

# Newest first: the unversioned name is pynvml's alias for the newest struct
# version; drivers older than that struct lack the function, so older versions follow.
_PROCESS_QUERIES = (
    "nvmlDeviceGetComputeRunningProcesses",
    "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2",
)


class DeviceMemoryProbe:
    """Context manager reporting device memory for `device` ("cpu", "cuda", "cuda:1", "mps").

    Keys: `peak_device_memory_allocated_bytes`, `peak_device_memory_reserved_bytes`
    and `device_memory_source` (PyTorch allocator), `device_memory_process_bytes`
    and `device_memory_process_source` (NVML, this process). Each pair is None
    with an `unavailable: ...` source when it cannot be read; the two are
    independent, so an ONNX Runtime run with a CPU-only torch still gets the
    NVML figure.

    `nvml` substitutes the NVML module (tests pass a fake); `pid` the process
    to look up (this one by default).
    """

    name = "device_memory"

    def __init__(self, device: str, *, nvml: Any | None = None, pid: int | None = None) -> None:
        self.device = device
        self.nvml = nvml
        self.pid = os.getpid() if pid is None else pid
        self._result: dict[str, Any] | None = None
        self._gpu: NvmlGpu | None = None
        self._process_reason: str | None = None
        self._process_readings: list[int | str] = []

    def __enter__(self) -> "DeviceMemoryProbe":
        self._result = None
        if self._torch_unavailable_reason() is None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        self._open_nvml()
        return self

    def __exit__(self, *exc: object) -> None:
        reason = self._torch_unavailable_reason()
        if reason is not None:
            values = _values(None, None, reason)
        else:
            import torch

            # The allocator's counters are updated when the host enqueues work, so
            # no synchronize is needed to read them.
            values = _values(
                int(torch.cuda.max_memory_allocated(self.device)),
                int(torch.cuda.max_memory_reserved(self.device)),
                SOURCE,
            )
        self._result = {**values, **self._close_nvml()}

    def result(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """Peak allocated and reserved bytes, this process's NVML bytes, or None with the reason."""
        if self._result is None:
            raise RuntimeError("DeviceMemoryProbe.result() is valid only after the region ends")
        return dict(self._result)

    def warnings(self) -> list[str]:
        """Nothing this probe reads calls for a warning."""
        return []

    def _torch_unavailable_reason(self) -> str | None:
        kind = self.device.split(":", 1)[0]
        if kind == "cpu":
            return unavailable("cpu device (host memory is reported separately)")
        if kind != "cuda":
            return unavailable(f"{self.device} has no device memory counter")
        import torch

        if not torch.cuda.is_available():
            return unavailable(f"{self.device} requested but torch.cuda is not available")
        return None

    def _open_nvml(self) -> None:
        self._gpu, self._process_reason, self._process_readings = None, None, []
        if not is_cuda(self.device):
            self._process_reason = unavailable(f"{self.device} is not a CUDA device")
            return
        gpu = open_gpu(self.device, self.nvml)
        if isinstance(gpu, str):
            self._process_reason = unavailable(gpu)
            return
        self._gpu = gpu
        self._process_readings.append(process_used_bytes(gpu, self.pid))

    def _close_nvml(self) -> dict[str, Any]:
        gpu, self._gpu = self._gpu, None
        if gpu is None:
            return _process_values(None, self._process_reason or unavailable("NVML was not opened"))
        try:
            self._process_readings.append(process_used_bytes(gpu, self.pid))
        finally:
            gpu.close()
        numbers = [r for r in self._process_readings if isinstance(r, int)]
        if numbers:
            return _process_values(max(numbers), PROCESS_SOURCE)
        # Both readings failed; the exit one is the more recent reason.
        return _process_values(None, unavailable(str(self._process_readings[-1])))


def process_used_bytes(gpu: NvmlGpu, pid: int) -> int | str:
    """Bytes NVML says process `pid` uses on `gpu`, or why it cannot say (no prefix).

    Entries with the same PID are summed: on a MIG-partitioned board one
    process can appear once per GPU instance it uses, each entry holding only
    that instance's memory.
    """
    processes, errors = None, []
    for query in _PROCESS_QUERIES:
        try:
            processes = gpu.call(query)
            break
        except NvmlCallError as err:
            errors.append(str(err))
    if processes is None:
        return f"NVML process list not readable ({'; '.join(errors)})"
    mine = [p for p in processes if getattr(p, "pid", None) == pid]
    if not mine:
        return (
            f"this process (pid {pid}) is not among the {len(processes)} compute processes NVML lists "
            "on the GPU (inside a container NVML reports host PIDs)"
        )
    used = [getattr(p, "usedGpuMemory", None) for p in mine]
    if any(u is None or u == _NOT_AVAILABLE_ULL for u in used):
        return "NVML reports this process's memory use as not available (WDDM driver, vGPU or MIG)"
    return sum(int(u) for u in used)


def _values(allocated: int | None, reserved: int | None, source: str) -> dict[str, Any]:
    return {
        "peak_device_memory_allocated_bytes": allocated,
        "peak_device_memory_reserved_bytes": reserved,
        "device_memory_source": source,
    }


def _process_values(used: int | None, source: str) -> dict[str, Any]:
    return {"device_memory_process_bytes": used, "device_memory_process_source": source}
