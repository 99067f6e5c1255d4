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
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol

if TYPE_CHECKING:
    import torch

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")


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
    # Known `--option KEY=VALUE` names and what each does; anything else is refused.
    options: ClassVar[Mapping[str, str]] = {}

    @abc.abstractmethod
    def available(self) -> str | None:
        """None when the backend can run on this machine, else why not (one line)."""

    @abc.abstractmethod
    def version(self) -> str | None:
        """The runtime library's version, or None when it is not installed."""

    @abc.abstractmethod
    def check(self, device: str, precision: str) -> None:
        """Refuse a device/precision this backend cannot run here.

        Raise `UserError` for a combination the backend does not support at all
        and `BackendUnavailable` for one this machine lacks (no such device).
        """

    @abc.abstractmethod
    def prepare(
        self,
        module: "torch.nn.Module",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
    ) -> Session:
        """Turn `module` into a session (export, compile, engine build).

        The backend may take ownership of `module` (move or cast it in place):
        the harness does not use it afterwards.
        """
