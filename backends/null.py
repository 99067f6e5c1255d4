"""The null backend: returns its first input untouched.

It does no work, so what the harness measures with it is the harness itself —
the pipeline call, `synchronize`, the clock reads and the loop's bookkeeping.
`make bench` publishes that per-call overhead next to a bare Python loop.

It is also the harness's fault injector: `--option fault=segfault|hang|exception`
makes call number `fault_at` (1 = the cold-start first call) crash the worker
process, hang it, or raise; `fault=refuse` refuses the input while preparing,
as a check only the worker can make would. Sweeps use it to prove that one broken cell
becomes a `failed` record while every other cell is measured
(`sweeps/isolation-check.toml`).

Its outputs are not the model's, so the fidelity gate is skipped for it
(`computes_model = False`) and says so in the record.
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any, Mapping

from ..bench.errors import UserError
from .base import Backend, PrepareContext
from .options import choice, positive_int
from .torch_device import TorchDeviceNames, resolve_device

if TYPE_CHECKING:
    import torch

FAULTS = ("none", "exception", "segfault", "hang", "refuse")


class NullSession:
    """Returns the first input; on call `fault_at` injects the configured fault."""

    def __init__(self, device: "torch.device", fault: str, fault_at: int, info: dict[str, Any]) -> None:
        self.device = device
        self.info = info
        self._fault = fault
        self._fault_at = fault_at
        self._calls = 0

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        if self._fault != "none":
            self._calls += 1
            if self._calls == self._fault_at:
                _inject(self._fault, self._calls)
        return inputs[0]

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        pass


def _inject(fault: str, call: int) -> None:
    if fault == "exception":
        raise RuntimeError(f"null backend: injected exception at call {call}")
    if fault == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV, as a crashing native runtime would
    if fault == "hang":
        threading.Event().wait()  # blocks forever without using CPU, like a deadlocked runtime


class NullBackend(TorchDeviceNames, Backend):
    name = "null"
    description = "returns its inputs: measures the harness's own overhead; can inject faults"
    precisions = ("fp32", "fp16", "bf16")
    distributions = ("aigcbench",)
    computes_model = False
    options = {
        "fault": f"inject a fault at call fault_at: {', '.join(FAULTS)} (default none)",
        "fault_at": "which call faults, 1 = the cold-start first call (default 1)",
    }

    def available(self) -> str | None:
        return None

    def check_options(self, options: Mapping[str, str]) -> None:
        choice(options, "fault", FAULTS, "none")
        if "fault_at" in options:
            positive_int(options, "fault_at")


    def check_device(self, device: str, precision: str) -> None:
        # Nothing runs on the device, but the record names it: a device this machine lacks
        # (or a misspelt one) would make the record claim a measurement that never happened there.
        resolve_device(device)

    def prepare(
        self,
        model: "torch.nn.Module",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> NullSession:
        fault = choice(options, "fault", FAULTS, "none")
        if fault == "refuse":  # bad input only the worker can see (a check that needs the built model)
            raise UserError("null backend: input refused in the worker (injected)")
        fault_at = positive_int(options, "fault_at") if "fault_at" in options else 1
        info = {"precision_run": precision, "computes": "nothing (returns its first input)", "fault": fault}
        return NullSession(example_inputs[0].device, fault, fault_at, info)
