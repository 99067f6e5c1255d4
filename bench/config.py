"""The configuration of one measurement cell, validated once at the edge.

A `RunConfig` is frozen: once built, nothing changes it, and every value that
can change a number is in it (and therefore in the record). Validation names
the bad value in one line; checks that need the backend library or the device
(is there a GPU? does this CPU do fp16?) happen later, in the backend's `check`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from ..backends import registry as backend_registry
from ..backends.base import PRECISIONS
from ..workloads import registry as workload_registry
from ..workloads.base import SIZES
from . import scenarios
from .errors import UserError
from .stopping import StopRule, WarmupRule

_DEVICE = re.compile(r"^[a-z][a-z0-9_]*(:\d+)?$")
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_pairs(values: Iterable[str], flag: str) -> dict[str, str]:
    """Parse repeated `KEY=VALUE` options (`--label`, `--option`) into a dict."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _LABEL_KEY.match(key):
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE with KEY made of letters, digits, _ . -")
        pairs[key] = value
    return pairs


@dataclass(frozen=True)
class RunConfig:
    workload: str
    backend: str
    size: str = "base"
    device: str = "cpu"
    precision: str = "fp32"
    scenario: str = "latency"
    batch_size: int | None = None  # None: the scenario's default
    steps: int | None = None  # None: the workload's default (iterative workloads only)
    scheduler: str | None = None
    seed: int = 0
    weights: str | None = None
    stop: StopRule = field(default_factory=StopRule)
    warmup: WarmupRule = field(default_factory=WarmupRule)
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Freeze the mappings too: a frozen dataclass holding a dict is not frozen.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        workload_registry.get(self.workload)  # raises with the valid names
        if self.backend not in backend_registry.names():
            raise UserError(f"unknown backend {self.backend!r}; choose from: {', '.join(backend_registry.names())}")
        if self.size not in SIZES:
            raise UserError(f"--size {self.size!r}: choose from {', '.join(SIZES)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose from {', '.join(PRECISIONS)}")
        if self.scenario not in scenarios.SCENARIOS:
            raise UserError(f"--scenario {self.scenario!r}: choose from {', '.join(scenarios.SCENARIOS)}")
        if not _DEVICE.match(self.device):
            raise UserError(f"--device {self.device!r}: expected a device name such as cpu, cuda, cuda:1, mps")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps must be ≥ 1, got {self.steps}")
        if self.seed < 0:
            raise UserError(f"--seed must be ≥ 0, got {self.seed}")

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size or scenarios.SCENARIOS[self.scenario].default_batch_size

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (StopRule, WarmupRule)):
                value = asdict(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            data[f.name] = value
        data["batch_size"] = self.effective_batch_size
        return data
