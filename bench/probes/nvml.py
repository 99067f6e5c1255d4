"""What every NVML-based probe shares: loading the library, finding the GPU, error types.

Three probes read NVML (energy, device memory, GPU state), each for the one GPU
that a `"cuda"` / `"cuda:N"` device string maps to. Each opens its own NVML
session (`nvmlInit` ... `nvmlShutdown`): NVML counts initialisations, so
sessions nest safely, and a probe never depends on another having run.

The NVML module is a parameter everywhere (`nvml=None` imports `pynvml` from
nvidia-ml-py lazily), so tests pass a fake object with just the functions a
probe calls. Importing this module imports neither pynvml nor torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

NO_LIBRARY = "no NVML library (pip install nvidia-ml-py)"


def load_nvml(nvml: Any | None) -> Any | str:
    """`nvml` itself when given, else the pynvml module, else why there is none (no prefix)."""
    if nvml is not None:
        return nvml
    try:
        import pynvml
    except ImportError:
        return NO_LIBRARY
    return pynvml


def nvml_error_type(nvml: Any) -> type[Exception]:
    """The exception class NVML failures arrive as.

    pynvml raises NVMLError subclasses (NVMLError_NotSupported, ...); catching the
    base class rather than `Exception` keeps a probe's own bugs loud. A test's
    fake without an `NVMLError` attribute may raise anything.
    """
    error = getattr(nvml, "NVMLError", None)
    return error if isinstance(error, type) and issubclass(error, Exception) else Exception


def is_cuda(device: str) -> bool:
    return device.split(":", 1)[0] == "cuda"


@dataclass
class NvmlGpu:
    """An initialised NVML session and the handle of one GPU; `close()` ends the session."""

    nvml: Any
    handle: Any
    error_type: type[Exception]

    def call(self, function: str, *args: Any) -> Any:
        """`nvml.<function>(handle, *args)`; any failure becomes an `NvmlCallError`.

        A binding older than the function (AttributeError) and a driver older
        than it (NVMLError "Function Not Found") mean the same to a probe: this
        value cannot be read here. Both are reported the same way.
        """
        fn: Callable[..., Any] | None = getattr(self.nvml, function, None)
        if fn is None:
            raise NvmlCallError(f"{function} is not in this NVML binding")
        try:
            return fn(self.handle, *args)
        except self.error_type as err:
            raise NvmlCallError(f"{function}: {str(err) or type(err).__name__}") from None

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.error_type:
            pass  # shutting down a library that already failed has nothing left to report


class NvmlCallError(Exception):
    """One NVML query failed; the message names the function and NVML's reason."""


def open_gpu(device: str, nvml: Any | None = None) -> NvmlGpu | str:
    """An NVML session on the GPU behind `device` ("cuda", "cuda:N"), or why not (no prefix).

    The caller owns the session and must `close()` it.
    """
    module = load_nvml(nvml)
    if isinstance(module, str):
        return module
    error_type = nvml_error_type(module)
    try:
        module.nvmlInit()
    except error_type as err:
        return f"NVML init failed: {err}"
    try:
        handle = nvml_handle(module, cuda_index(device))
    except (error_type, ValueError, IndexError) as err:
        module.nvmlShutdown()
        return f"no NVML GPU for {device}: {err}"
    return NvmlGpu(module, handle, error_type)


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
