"""Eager PyTorch: the reference backend every other backend is compared with.

Runs the module as-is under `torch.inference_mode()` on cpu, cuda or mps in
fp32, fp16 or bf16. Nothing is compiled or exported, so cold start is moving
and casting the weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from .base import Backend, PrepareContext
from .options import boolean, positive_int
from .torch_device import check_precision, dtype_of, TorchDeviceNames, resolve_device

if TYPE_CHECKING:
    import torch


class TorchSession:
    """A module on its device, called with inputs cast to its dtype.

    For a training loss (`train`), autograd stays on, so the caller can backpropagate the output.
    """

    def __init__(
        self, module: "torch.nn.Module", device: "torch.device", dtype: "torch.dtype", info: dict[str, Any],
        *, train: bool = False,
    ):
        self.module = module
        self.device = device
        self.dtype = dtype
        self.info = info
        self.train = train

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        import torch

        cast = tuple(t.to(self.dtype) if t.is_floating_point() else t for t in inputs)
        with torch.inference_mode(not self.train):
            out = self.module(*cast)
        return out.float()

    def synchronize(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]


class PyTorchBackend(TorchDeviceNames, Backend):
    name = "pytorch"
    description = "eager PyTorch (torch.inference_mode), the fidelity reference"
    precisions = ("fp32", "fp16", "bf16")
    trains = True
    distributions = ("torch",)
    options = {
        "threads": "intra-op CPU threads (torch.set_num_threads); default: torch's choice",
        "channels_last": "true/false: NHWC memory format for conv-heavy models (default false)",
    }

    def available(self) -> str | None:
        return self.missing_library("torch")

    def check_options(self, options: Mapping[str, str]) -> None:
        if "threads" in options:
            positive_int(options, "threads")
        boolean(options, "channels_last")


    def check_device(self, device: str, precision: str) -> None:
        check_precision(resolve_device(device), precision)

    def prepare(
        self,
        module: "torch.nn.Module",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> TorchSession:
        import torch

        torch_device = resolve_device(device)
        dtype = dtype_of(precision)
        if "threads" in options:
            torch.set_num_threads(positive_int(options, "threads"))
        channels_last = boolean(options, "channels_last")
        train = context.mode == "train"
        module = module.train(train).to(device=torch_device, dtype=dtype)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        info = {
            "precision_run": precision,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "channels_last": channels_last,
        }
        if torch_device.type == "cuda":
            info["cudnn_version"] = torch.backends.cudnn.version()
            info["device_name"] = torch.cuda.get_device_name(torch_device)
        return TorchSession(module, torch_device, dtype, info, train=train)
