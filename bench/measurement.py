"""What a cell is before it runs (`Cell`) and what measuring it produced (`Measurement`).

A cell is prepare → measure → derive (DESIGN.md, principle 3): preparing
builds the workload and fixes everything known before the clock starts
(`Cell`); measuring returns one frozen `Measurement` of raw readings — clock
samples, cold-start parts, probe readings, the scenario's typed outcome, the
fidelity comparison, or the failure that stopped it; and the record is a pure
function of the two (`bench/derive.py`). Nothing here is filled in later.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .config import RunConfig
from .measure import LoopResult


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Cell:
    """A cell as prepared: its config, the backend that runs it, the workload as built.

    `batch_size` is the effective batch (the scenario's default, or the server's
    padded maximum), computed once here and read everywhere after.
    `workload` is the record's workload block; a cell whose worker never
    reported back knows only the names (`params` and FLOPs None).
    """

    config: RunConfig
    backend_name: str
    backend_version: str | None
    computes_model: bool
    workload: Mapping[str, Any]
    batch_size: int
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "workload", _frozen(self.workload))


@dataclass(frozen=True)
class Failure:
    """Why measuring stopped: the first line for the record's reason, the traceback for its metadata."""

    reason: str
    traceback: str | None = None

    @classmethod
    def of(cls, exc: BaseException) -> "Failure":
        return cls(f"{type(exc).__name__}: {exc}".splitlines()[0], traceback.format_exc())


@dataclass(frozen=True)
class Measurement:
    """The raw readings of one cell, as far as measuring got.

    Times are the harness clock's nanoseconds except `cold_start_s`, whose
    parts are seconds as recorded. `loop` is None when measuring stopped
    before the measured loop; `failure` says why it stopped early.
    """

    cold_start_s: Mapping[str, float]
    warmup: Mapping[str, Any] | None = None
    loop: LoopResult | None = None
    component_ns: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    probes: Mapping[str, Any] = field(default_factory=dict)
    probe_window_ns: int = 0
    probe_warnings: tuple[str, ...] = ()
    fidelity: Mapping[str, Any] | None = None
    session_info: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    exports: Mapping[str, Any] = field(default_factory=dict)
    # A training step's scalars on the checked batch as the backend computed them (loss, gradient norm).
    train: Mapping[str, float] = field(default_factory=dict)
    failure: Failure | None = None

    def __post_init__(self) -> None:
        for name in ("cold_start_s", "component_ns", "probes", "session_info", "exports", "train"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
