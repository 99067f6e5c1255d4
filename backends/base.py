"""The backend protocol: how a torch module becomes something that runs on a device.

A backend is one file with one class implementing `Backend`, registered by name
in `backends/registry.py` (or through the `aigcbench.backends` entry-point
group). It never reads the clock: the harness times `prepare` as cold start and
times calls to the returned `Session`, after `Session.synchronize()` has waited
for the device.

Backends import their runtime library lazily (inside `available` and
`prepare`), so importing aigcbench never imports tensorrt or openvino, and a
missing library becomes a reason string instead of an ImportError.
"""

from __future__ import annotations

import abc
import importlib
from importlib import metadata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol

from ..bench.errors import UserError

if TYPE_CHECKING:
    import torch

    from .onnx_export import OnnxGraph

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
# What `prepare` receives: the torch module itself, or the cached ONNX export of it
# (made and timed by the harness, so every ONNX backend runs the same graph).
INPUT_FORMATS: tuple[str, ...] = ("torch", "onnx")


@dataclass(frozen=True)
class PrepareContext:
    """How the prepared session will be used, for backends that configure themselves by it.

    `scenario` lets a runtime pick its latency or throughput configuration (as
    OpenVINO's performance hints do); `identity` names the component uniquely
    (workload, size, config digest, component) for engine and compile caches.
    """

    scenario: str = "latency"
    batch_size: int = 1
    identity: Mapping[str, Any] = field(default_factory=dict)
    # "train": the module is a training loss; keep it in train mode with autograd on (backends that `trains`).
    mode: str = "infer"


class Session(Protocol):
    """A prepared component, ready to be called in the measured loop.

    Calls take fp32 torch tensors on `device` and return one fp32 torch tensor
    on `device`; casting to the session's compute precision happens inside the
    call and is part of the measured work.
    """

    device: "torch.device"
    # What actually runs, as the runtime reports it: precision as run, threads,
    # streams, providers... Recorded under backend.options of the record.
    info: Mapping[str, Any]

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor": ...

    def synchronize(self) -> None:
        """Block until all work submitted by this session has finished."""

    def close(self) -> None:
        """Release the session's resources."""


class Backend(abc.ABC):
    """One inference runtime. Subclasses set the class attributes and the methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    input_format: ClassVar[str] = "torch"
    # The `pip install` extra that brings the runtime, named in "not installed" reasons.
    extra: ClassVar[str | None] = None
    # Known `--option KEY=VALUE` names and what each does; anything else is refused.
    options: ClassVar[Mapping[str, str]] = {}
    # False for a backend whose outputs are not the model's (the null backend):
    # the fidelity gate is then skipped, and the record says why.
    computes_model: ClassVar[bool] = True
    # True for a backend that can run a training step (`--mode train`): its sessions keep autograd on,
    # so the workload's loss can be backpropagated and its optimizer stepped. Inference-only runtimes
    # (an ONNX graph, an engine) are refused in train mode with why.
    trains: ClassVar[bool] = False
    # True for a backend whose prepare builds a graph or an engine from the module (an export, a compile):
    # its cold start grows with the model's graph, seconds per component on a CPU, where an eager backend's
    # is a copy of the weights.
    compiles: ClassVar[bool] = False
    # The dedicated Python environment this backend's cells run in, by name, for a runtime whose pinned
    # dependencies clash with ours: `make env-NAME` makes it, and the harness then starts the cell's worker
    # in that environment's interpreter (`bench/interpreters.py`). None: the interpreter that runs aigcbench.
    environment: ClassVar[str | None] = None

    @abc.abstractmethod
    def available(self) -> str | None:
        """None when the backend can run on this machine, else why not (one line)."""

    def missing_library(self, module: str) -> str | None:
        """Why the runtime `module` does not import, with the command that installs it; None if it does."""
        try:
            importlib.import_module(module)
        except ImportError as exc:
            how = f"pip install 'aigcbench[{self.extra}]'" if self.extra else f"pip install {module}"
            return f"{module} is not installed ({how}): {exc}"
        return None

    # Distributions that may provide the runtime (a CPU and a GPU build, say), in order.
    distributions: ClassVar[tuple[str, ...]] = ()

    def version(self) -> str | None:
        """The runtime library's version, or None when it is not installed."""
        for distribution in self.distributions:
            try:
                return metadata.version(distribution)
            except metadata.PackageNotFoundError:
                continue
        return None

    def check(self, device: str, precision: str) -> None:
        """Refuse a device/precision this backend cannot run here.

        A precision the backend does not declare is refused here, for every
        backend alike; the rest is `check_device`.
        """
        check_declared(self, precision)
        self.check_device(device, precision)

    def check_device_name(self, device: str) -> None:
        """Refuse a `--device` this backend does not know at all, from its text alone (a `UserError`, exit 2).

        The CLI calls it (`cell_check.check_config`) before any worker starts, so it must import no runtime;
        it refuses only what is no device name at all, so that a backend unavailable here is still said first
        (exit 3, and a sweep skips its cells). `check_device` stays whole on its own: whether a named
        device is one the backend runs on, and whether it is there, are its. The default refuses nothing.
        """

    @abc.abstractmethod
    def check_device(self, device: str, precision: str) -> None:
        """Refuse a device, or a declared precision on it, that cannot run here.

        Raise `UserError` for a combination the backend does not support at all
        and `BackendUnavailable` for one this machine lacks (no such device).
        """

    def check_options(self, options: Mapping[str, str]) -> None:
        """Refuse a bad `--option` value with a one-line `UserError`, before anything is built.

        Names are already checked against `options` by the harness; backends
        with options override this to parse their values.
        """

    @abc.abstractmethod
    def prepare(
        self,
        model: "torch.nn.Module | OnnxGraph",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> Session:
        """Turn `model` into a session (compile, engine build, load).

        `model` is a torch module for `input_format = "torch"` backends and the
        exported `OnnxGraph` for `"onnx"` ones. The backend may take ownership
        of a module (move or cast it in place): the harness does not use it
        afterwards. `example_inputs` carry the batch size the session will see.
        """


def check_declared(backend: Any, precision: str) -> None:
    """Refuse a precision `backend` does not declare (known without importing its runtime)."""
    if precision not in backend.precisions:
        raise UserError(f"backend {backend.name} supports precisions {', '.join(backend.precisions)}; got {precision!r}")
