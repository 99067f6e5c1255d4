"""Tracing a workload into a `CostModel`: aten operators on the meta device, fitted per batch.

The part of the cost model that needs torch (`costmodel` explains the method);
it runs only on a cost-model cache miss.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Sequence

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

from ...bench.cache import cache_dir
from ...workloads.base import Workload
from ...workloads.flops import cache_key, meta_like, read_cache, write_cache
from .costmodel import CACHE_FILE, COST_FIELDS, COUNTING_VERSION, CostModel, Operator

aten = torch.ops.aten
# Operators that move no memory, besides the views torch's schemas declare
# (`OpOverload.is_view`: view, t, transpose, expand, permute, slice, select,
# unsqueeze, squeeze, as_strided, split, unbind, detach, alias...: the output
# is a new shape over the same storage). `_unsafe_view` is reshape's view of a
# fresh contiguous tensor and aliases in practice though its schema does not
# say so; the `empty` family only allocates, and nothing reads or writes the
# memory until the next operator, which is counted.
NO_TRAFFIC = frozenset({aten._unsafe_view, aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty})


def cost_model(workload: Workload) -> CostModel:
    """The workload's cost model: cached per-call traces, times its calls per batch."""
    calls = workload.calls_per_batch()
    operators = []
    for component in workload.components():
        for row in component_rows(workload, component):
            op, count, *costs = row
            operators.append(Operator(component, op, count * calls[component], *costs))
    return CostModel(
        workload=workload.name,
        size=workload.size,
        config_digest=workload.config_digest(),
        torch_version=torch.__version__,
        operators=tuple(operators),
        param_bytes_fp32=param_bytes(workload),
    )


def param_bytes(workload: Workload) -> int:
    """Bytes of the parameters as built (fp32), each shared tensor counted once."""
    unique = {id(p): p.numel() * p.element_size() for m in workload.components().values() for p in m.parameters()}
    return sum(unique.values())


# The batches traced: 2 and 3, not 1 and 2. At batch 1 a size-1 dimension lets a reshape stay a view that
# needs a copy at any larger batch (attention's head split, in transformers' CLIP and Llama), so batch 1's
# operators are not every other batch's; from 2 on they are. Batch 1 is then priced with those copies:
# slightly high, never low.
FIT_BATCH = 2

# A cached row: [op, count per call, flops_fixed, flops_per_item,
# float_bytes_fixed, float_bytes_per_item, other_bytes_fixed, other_bytes_per_item].
Row = list[Any]


def component_rows(workload: Workload, component: str) -> list[Row]:
    """One component call's aggregated operators, from the cache or traced (and cached)."""
    path = cache_dir() / CACHE_FILE
    key = f"{cache_key(workload, component)}/v{COUNTING_VERSION}"
    cached = read_cache(path)
    if valid_rows(cached.get(key)):
        return cached[key]
    low = FIT_BATCH
    rows = fit_traces(trace_call(workload, component, low), trace_call(workload, component, low + 1), low)
    write_cache(path, {**cached, key: rows})
    return rows


def valid_rows(rows: object) -> bool:
    """Whether a cache entry has the shape `component_rows` writes (a damaged one is recounted)."""
    def valid(row: object) -> bool:
        return isinstance(row, list) and len(row) == 2 + len(COST_FIELDS) and isinstance(row[0], str) and all(
            type(v) is int for v in row[1:]
        )

    return isinstance(rows, list) and all(valid(r) for r in rows)


# One traced operator call: (op, flops, float bytes at fp32, other bytes).
Traced = tuple[str, int, int, int]


def fit_traces(one: Sequence[Traced], two: Sequence[Traced], low_batch: int = 1) -> list[Row]:
    """Fit each operator of the traces at `low_batch` and one more as fixed + B × per-item, then aggregate.

    The traces must be the same operators in the same order; a model whose
    graph changes with the batch size would make the fit meaningless, so
    that is a bug, not a case to handle.
    """
    ops_one, ops_two = [t[0] for t in one], [t[0] for t in two]
    if ops_one != ops_two:
        at = next((i for i, (a, b) in enumerate(zip(ops_one, ops_two)) if a != b), min(len(one), len(two)))
        raise RuntimeError(f"batch-1 and batch-2 traces differ at operator {at} ({len(one)} vs {len(two)} operators)")
    fitted: Counter[tuple[Any, ...]] = Counter()
    for (op, *costs1), (_, *costs2) in zip(one, two):
        per_item = [c2 - c1 for c1, c2 in zip(costs1, costs2)]
        fixed = [c1 - low_batch * p for c1, p in zip(costs1, per_item)]
        fitted[(op, fixed[0], per_item[0], fixed[1], per_item[1], fixed[2], per_item[2])] += 1
    return [[key[0], count, *key[1:]] for key, count in fitted.items()]


def trace_call(workload: Workload, component: str, batch: int) -> list[Traced]:
    """Every memory-moving aten operator of one `component` call at `batch`, on the meta device.

    As in `workloads.flops.count_flops`: meta parameters and inputs through
    `functional_call` (shapes only, no arithmetic), the math attention kernel
    (it runs as counted matmuls; fused kernels would count as zero).
    """
    module = workload.components()[component]
    state = {name: meta_like(t) for name, t in [*module.named_parameters(), *module.named_buffers()]}
    inputs = tuple(meta_like(t) for t in workload.example_inputs(component, batch))
    recorder = OperatorRecorder()
    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), recorder:
        torch.func.functional_call(module, state, inputs)
    return recorder.calls


class OperatorRecorder(TorchDispatchMode):
    """Records (op, FLOPs, float bytes, other bytes) for each aten operator that runs under it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Traced] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        packet = func._overloadpacket
        # Like FlopCounterMode: an operator without a FLOP formula may still
        # reach us composite (under inference mode); its parts are what run.
        if packet not in flop_registry:
            with self:
                out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
        out = func(*args, **kwargs)
        tensors = [t for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        produced = any(isinstance(t, torch.Tensor) for t in tree_leaves(out))
        if func.is_view or packet in NO_TRAFFIC or not produced:  # no tensor out: a metadata query
            return out
        flops = int(flop_registry[packet](*args, **kwargs, out_val=out)) if packet in flop_registry else 0
        floats = sum(4 * distinct_elements(t) for t in tensors if t.is_floating_point())
        others = sum(distinct_elements(t) * t.element_size() for t in tensors if not t.is_floating_point())
        self.calls.append((str(packet), flops, floats, others))
        return out


def distinct_elements(tensor: torch.Tensor) -> int:
    """Elements a tensor occupies in memory: a broadcast (stride-0) dimension is stored once.

    `expand` makes a (C, 1, 1) bias look like (B, C, H, W); counting its
    nominal size would charge the batch for memory nobody reads.
    """
    return math.prod(size for size, stride in zip(tensor.shape, tensor.stride()) if stride != 0 or size == 0)
