"""A workload's pipeline as operators with FLOPs and bytes, and its roofline time on a device.

Each component is called once on the meta device under a dispatch mode that
sees every aten operator: its FLOPs come from the formulas
`torch.utils.flop_counter` uses (so the totals are exactly the workload's
recorded `flops_per_item`), its bytes from the tensors it reads and writes.
The call is traced at batch 1 and batch 2 and every operator fitted as
`fixed + B × per_item`: what does not grow with the batch is the weights
(read once per call), what does is activations. Nothing is guessed from
layer types.

On a device with a peak FLOP/s per precision and a memory bandwidth, an
operator takes max(FLOPs / peak, bytes / bandwidth) (the roofline), and a
batch the sum over operators. That is a floor on time; the planner's
calibration turns it into a projection.

The per-call operator lists are cached in `cache_dir()/costmodel.json`,
keyed by the workload's architecture (not its steps or seed) and torch's
version, so a ddpm plan at 4 or 50 steps shares one trace.

This module is the model and its arithmetic, and imports no torch: a plan
from cached cost models (and the parent's memory check) never loads it. The
tracing, which needs torch, is `costtrace`; `cost_model` and the tracer's
names are still importable from here and load it on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Protocol

import numpy as np

from ...bench.errors import UserError

CACHE_FILE = "costmodel.json"
# Bump when the counting rules change (the skip list, the byte rule): old entries are then recounted.
COUNTING_VERSION = 2  # 2: fitted from the batch-2 and batch-3 traces (costtrace.FIT_BATCH)

ELEMENT_BYTES: Mapping[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2}
# Where a device has no units for a precision it computes in the next one
# (a GPU without bf16 tensor cores upcasts to fp32); bytes stay as asked.
FALLBACK: Mapping[str, tuple[str, ...]] = {"fp32": ("fp32",), "fp16": ("fp16", "fp32"), "bf16": ("bf16", "fp32")}
# PyTorch's defaults on CUDA: cuDNN convolutions asked for fp32 run in TF32
# (torch.backends.cudnn.allow_tf32 = True) while matmuls stay fp32
# (torch.backends.cuda.matmul.allow_tf32 = False). So on a device that lists a
# TF32 rate, an fp32 convolution is charged at it; a UNet is mostly convolutions.
TF32_OPERATORS = frozenset({"aten.convolution"})

# Operator's cost fields, in the order of a cached row and of CostModel's table.
COST_FIELDS = (
    "flops_fixed",
    "flops_per_item",
    "float_bytes_fixed",
    "float_bytes_per_item",
    "other_bytes_fixed",
    "other_bytes_per_item",
)



class NoRoofline(ValueError):
    """A device's spec lacks what a roofline needs (a peak at a usable precision, or a bandwidth)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Device(Protocol):
    """What a roofline reads from a device (the catalog's HardwareSpec has it): None where unpublished."""

    @property
    def bandwidth_bytes_per_s(self) -> float | None: ...

    def peak_flops(self, precision: str) -> float | None: ...


@dataclass(frozen=True)
class Operator:
    """One kind of aten operator call in a component, with how often it runs per batch.

    Costs are linear in the batch size B: FLOPs = flops_fixed + B × flops_per_item
    (flops_fixed is 0 for the models here), bytes likewise. Bytes are split by
    dtype: floating-point tensors are counted at fp32 and scale with the
    precision run; integer and bool tensors (timesteps, indices) do not.
    """

    component: str
    op: str  # aten overload packet, e.g. "aten.convolution"
    calls: int  # per batch: occurrences in one component call × the component's calls per batch
    flops_fixed: int
    flops_per_item: int
    float_bytes_fixed: int  # at fp32; mostly the weights, read once per call whatever the batch
    float_bytes_per_item: int
    other_bytes_fixed: int
    other_bytes_per_item: int

    def flops(self, batch: int) -> int:
        """FLOPs of one call of this operator at batch size `batch`."""
        return self.flops_fixed + batch * self.flops_per_item

    def bytes(self, batch: int, precision: str) -> int:
        """Bytes read and written by one call at batch size `batch`, floats held at `precision`."""
        floats = self.float_bytes_fixed + batch * self.float_bytes_per_item
        return floats // 4 * element_bytes(precision) + self.other_bytes_fixed + batch * self.other_bytes_per_item


@dataclass(frozen=True)
class Roofline:
    """The roofline time of one batch on one device, with its two terms.

    `seconds` = Σ calls × max(compute, memory) per operator, so it lies
    between max(compute_s, memory_s) and their sum. `bound` is the side that
    won for the operators holding most of `seconds`.
    """

    seconds: float
    compute_s: float  # Σ calls × FLOPs / peak
    memory_s: float  # Σ calls × bytes / bandwidth
    precision_run: str  # the precision the compute ran at, after fallback
    bound: str  # "compute" | "memory"
    flops: int
    bytes: int


@dataclass(frozen=True)
class CostModel:
    """A workload configuration's operators per batch, and what they cost on a device."""

    workload: str
    size: str
    config_digest: str  # the full config (steps included): calls depend on it
    torch_version: str
    operators: tuple[Operator, ...]
    param_bytes_fp32: int

    def flops(self, batch: int) -> int:
        """FLOPs of one batch of `batch` items over the whole pipeline."""
        return sum(op.calls * op.flops(batch) for op in self.operators)

    def bytes(self, batch: int, precision: str) -> int:
        """Bytes moved by one batch over the whole pipeline, floats at `precision`."""
        return sum(op.calls * op.bytes(batch, precision) for op in self.operators)

    def roofline(self, batch: int, precision: str, device: Device) -> Roofline:
        """Roofline time of one batch on `device`; NoRoofline when its spec cannot give one.

        `precision_run` is the precision of the peak that holds most of the
        compute time (after fallback, and TF32 for fp32 convolutions).
        """
        run = compute_precision(precision, device)
        bandwidth = device.bandwidth_bytes_per_s
        if not bandwidth:
            raise NoRoofline("no published memory bandwidth")
        flops, nbytes = self._per_call(batch, precision)
        tf32 = device.peak_flops("tf32") if run == "fp32" else None
        peaks = np.where(self._tf32_ops, float(tf32), float(device.peak_flops(run))) if tf32 else float(
            device.peak_flops(run))  # type: ignore[arg-type]
        compute = self._calls * flops / peaks
        memory = self._calls * nbytes / float(bandwidth)
        compute_won = compute > memory  # 0-FLOP operators are memory-bound
        if tf32 and compute[self._tf32_ops].sum() > compute[~self._tf32_ops].sum():
            run = "tf32"
        return Roofline(
            seconds=float(np.maximum(compute, memory).sum()),
            compute_s=float(compute.sum()),
            memory_s=float(memory.sum()),
            precision_run=run,
            bound="compute" if compute[compute_won].sum() > memory[~compute_won].sum() else "memory",
            flops=self.flops(batch),
            bytes=self.bytes(batch, precision),
        )

    def memory_bytes(self, batch: int, precision: str) -> int:
        """A floor on the device memory one batch needs: weights plus twice the largest operator's activations.

        Weights are held at `precision`. The activations of the largest
        operator (its batch-dependent inputs and outputs) must be resident
        together; the factor 2 allows for what is live beside them (a UNet's
        skip connections, the allocator's slack). A device below this cannot
        hold the model; one above it may still not, so it is a floor, not a
        prediction of peak memory.
        """
        size = element_bytes(precision)
        activations = [op.float_bytes_per_item // 4 * size + op.other_bytes_per_item for op in self.operators]
        return self.param_bytes_fp32 // 4 * size + 2 * batch * max(activations, default=0)

    @cached_property
    def _table(self) -> np.ndarray:
        # One row per operator, columns as in Operator, as floats: the planner
        # asks for thousands of rooflines, and numpy makes each one cheap.
        rows = [[float(getattr(op, c)) for c in ("calls", *COST_FIELDS)] for op in self.operators]
        return np.array(rows).reshape(-1, 1 + len(COST_FIELDS))

    @cached_property
    def _tf32_ops(self) -> np.ndarray:
        return np.array([op.op in TF32_OPERATORS for op in self.operators], dtype=bool)

    @property
    def _calls(self) -> np.ndarray:
        return self._table[:, 0]

    def _per_call(self, batch: int, precision: str) -> tuple[np.ndarray, np.ndarray]:
        t = self._table
        flops = t[:, 1] + batch * t[:, 2]
        nbytes = (t[:, 3] + batch * t[:, 4]) * element_bytes(precision) / 4 + t[:, 5] + batch * t[:, 6]
        return flops, nbytes


def element_bytes(precision: str) -> int:
    """Bytes of one floating-point element at `precision`; a UserError naming the choices otherwise."""
    if precision not in ELEMENT_BYTES:
        raise UserError(f"unknown precision {precision!r}; choose from: {', '.join(ELEMENT_BYTES)}")
    return ELEMENT_BYTES[precision]


def compute_precision(precision: str, device: Device) -> str:
    """The first precision in `precision`'s fallback chain the device has a peak for; NoRoofline if none."""
    element_bytes(precision)
    chain = FALLBACK[precision]
    for candidate in chain:
        if device.peak_flops(candidate):
            return candidate
    raise NoRoofline(f"no published {' or '.join(chain)} peak")


_TRACER_NAMES = frozenset({"cost_model", "param_bytes", "component_rows", "valid_rows", "fit_traces", "trace_call",
                           "OperatorRecorder", "distinct_elements", "NO_TRAFFIC", "aten"})


def __getattr__(name: str) -> Any:
    """The tracer's names, from `costtrace` (which imports torch) only when one is asked for."""
    if name in _TRACER_NAMES:
        from . import costtrace

        return getattr(costtrace, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
