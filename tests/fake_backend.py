"""A backend for harness tests: eager torch underneath, a fake clock for time.

Each call advances the test's FakeClock by the next service time from a known
list, so the harness's recorded samples must equal that list exactly.
Behaviour is set through class attributes by the test (a fresh instance is
built by the registry for each run).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from aigcbench.backends.base import Backend

from .fakes import FakeClock


class FakeSession:
    def __init__(self, module: torch.nn.Module, backend: type["FakeBackend"]) -> None:
        self.module = module
        self.backend = backend
        self.device = torch.device("cpu")
        self.info: dict[str, Any] = {"precision_run": "fp32"}

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        backend = self.backend
        if backend.fail_after is not None and backend.calls >= backend.fail_after:
            raise RuntimeError("fake runtime crashed")
        backend.calls += 1
        if backend.clock is not None and backend.service_ns is not None:
            backend.clock.advance(next(backend.service_ns))
        out = self.module(*inputs)
        return out + backend.output_offset

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self.backend.closed += 1


class FakeBackend(Backend):
    name = "fake"
    description = "test double"
    precisions = ("fp32",)
    options = {"knob": "a known option"}

    clock: FakeClock | None = None
    service_ns: Any = None  # an iterator of nanoseconds
    fail_after: int | None = None
    output_offset: float = 0.0
    calls = 0
    closed = 0

    def available(self) -> str | None:
        return None

    def version(self) -> str | None:
        return "0.0-test"

    def check_device(self, device: str, precision: str) -> None:
        pass

    def prepare(
        self, module: torch.nn.Module, example_inputs: tuple, precision: str, device: str, options: Mapping[str, str],
        context: Any,
    ) -> FakeSession:
        return FakeSession(module, type(self))
