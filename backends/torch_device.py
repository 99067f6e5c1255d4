"""Map `--device` and `--precision` to torch, and refuse what this machine cannot run.

Shared by every backend that executes through torch (eager, torch.compile):
device presence is a machine fact (exit 3), an unsupported dtype on a present
device is bad input for this machine (exit 2, with why).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..bench.errors import BackendUnavailable, UserError

if TYPE_CHECKING:
    import torch

TORCH_DEVICE_TYPES = ("cpu", "cuda", "mps")
_DEVICE_PATTERN = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def dtype_of(precision: str) -> "torch.dtype":
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def check_torch_device_name(device: str) -> None:
    """Refuse a name torch has no device for, without importing torch."""
    if not _DEVICE_PATTERN.match(device):
        raise UserError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps", key="device")


class TorchDeviceNames:
    """Mixin for a backend whose `--device` is named as torch names devices (cpu, cuda[:N], mps): its
    `Backend.check_device_name`. Which of those it runs on, and whether one is there, stay its `check_device`'s."""

    def check_device_name(self, device: str) -> None:
        check_torch_device_name(device)


def resolve_device(device: str) -> "torch.device":
    """The torch.device for `device`, or an error saying what is missing."""
    check_torch_device_name(device)
    import torch

    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise BackendUnavailable(f"device {device}: no CUDA device visible to torch (torch {torch.__version__}, {built})")
        index = resolved.index or 0
        if index >= torch.cuda.device_count():
            raise BackendUnavailable(f"device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device("cuda", index)
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise BackendUnavailable(f"device {device}: MPS is not available on this machine")
    return resolved


def check_precision(device: "torch.device", precision: str) -> None:
    """Refuse a precision the device cannot compute, by trying the ops the workloads use.

    Asking the device is more reliable than a table: CPU fp16 support, for
    one, depends on the torch build and the CPU's instruction set.
    """
    import torch

    if precision == "fp32":
        return
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--precision bf16: {torch.cuda.get_device_name(device)} does not support bfloat16")
    dtype = dtype_of(precision)
    try:
        x = torch.ones(1, 4, 8, 8, device=device, dtype=dtype)
        weight = torch.ones(4, 4, 3, 3, device=device, dtype=dtype)
        torch.nn.functional.conv2d(x, weight, padding=1)
        torch.nn.functional.conv_transpose2d(x, weight)
        torch.nn.functional.group_norm(x, 2)
        x.flatten(1) @ x.flatten(1).T
    except (RuntimeError, TypeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--precision {precision} is not supported on {device}: {first_line}") from None
