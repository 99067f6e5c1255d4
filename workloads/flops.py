"""FLOPs and parameters of a workload, counted on its modules, never guessed.

FLOPs are what `torch.utils.flop_counter.FlopCounterMode` counts: matrix
multiplies, convolutions (transposed too) and attention, 2 FLOPs per
multiply-add; normalisation and activations are left out, as in the papers'
and MLPerf's figures. They are counted once per (workload config, component,
torch version) on one batch-1 call and kept in `cache_dir()/flops.json`,
because counting a 256 px UNet takes seconds and the number never changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bench.cache import cache_dir
from .base import Workload

if TYPE_CHECKING:
    import torch

CACHE_FILE = "flops.json"

# Config keys that do not change one component call: the sampling loop
# (accounted for by calls_per_batch) and the seed (same shapes, other values).
CALL_INDEPENDENT_KEYS = frozenset({"steps", "scheduler", "seed"})


def flops_per_item(workload: Workload) -> int:
    """FLOPs to produce one unit of work: Σ over components of calls per batch × FLOPs per call, at batch 1."""
    calls = workload.calls_per_batch()
    return sum(count * flops_per_call(workload, component) for component, count in calls.items())


def component_table(workload: Workload) -> dict[str, dict[str, Any]]:
    """Each component's own parameters, FLOPs per call (batch 1), calls per batch and FLOPs per unit of work.

    What the record's `workload.components` holds, so a report can say where a pipeline's work is
    (text encoder, UNet per step, VAE decode) and not only its sum. Parameters shared between
    components (tied embedders, one generator in two losses) count in each that uses them.
    """
    calls = workload.calls_per_batch()
    units = workload.units_per_row()
    table = {}
    for name, module in workload.components().items():
        unique = {id(p): p.numel() for p in module.parameters()}
        per_call = flops_per_call(workload, name)
        count = calls.get(name, 0)
        table[name] = {"params": sum(unique.values()), "flops_per_call": per_call, "calls_per_batch": count,
                       "flops_per_item": per_unit(count * per_call, units)}
    return table


def per_unit(flops: int, units: float) -> int | float:
    """A row's FLOPs per unit of work it yields; an integer while a row is one unit."""
    return flops if units == 1 else flops / units


def param_count(workload: Workload) -> int:
    """Parameters over all components, each shared tensor counted once."""
    unique = {id(p): p.numel() for module in workload.components().values() for p in module.parameters()}
    return sum(unique.values())


def flops_per_call(workload: Workload, component: str) -> int:
    """FLOPs of one batch-1 call of `component`, from the cache or counted (and cached)."""
    path = cache_dir() / CACHE_FILE
    key = cache_key(workload, component)
    cached = read_cache(path)
    if isinstance(cached.get(key), int):
        return cached[key]
    flops = count_flops(workload, component)
    write_cache(path, {**cached, key: flops})
    return flops


def count_flops(workload: Workload, component: str) -> int:
    """Trace one batch-1 call of `component` under the FLOP counter, on the meta device.

    FLOPs depend on shapes only, so parameters, buffers and inputs are
    swapped for meta tensors (`functional_call`, the module is untouched):
    the count of a 512 px VAE decoder then takes milliseconds, not seconds
    of real arithmetic. The math attention kernel is forced because the
    counter has no formula for fused CPU kernels and would count attention as
    zero; the math kernel runs as two counted matmuls, the same 4·B·H·S²·D.
    """
    # torch is imported where it is used: the parent imports this module too (bench.runner, and
    # reports/plan/costs for the cache helpers), and should not pay seconds for torch to check input.
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    module = workload.components()[component]
    train = workload.mode == "train"
    # A training step's count includes the backward pass: parameters that train keep requires_grad.
    state = {name: meta_like(t).requires_grad_(train and t.requires_grad)
             for name, t in [*module.named_parameters(), *module.named_buffers()]}
    inputs = tuple(meta_like(t) for t in workload.example_inputs(component, 1))
    with torch.inference_mode(not train), sdpa_kernel(SDPBackend.MATH):
        counter = FlopCounterMode(display=False)
        with counter:
            out = torch.func.functional_call(module, state, inputs)
            if train:
                out.sum().backward()
    return int(counter.get_total_flops())


def meta_like(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor with `tensor`'s shape and dtype and no data."""
    import torch

    return torch.empty_like(tensor, device="meta")


def cache_key(workload: Workload, component: str) -> str:
    """What determines one call's FLOPs: the workload's architecture, the component, torch's counting rules."""
    import torch

    digest = workload.config_digest(ignore=CALL_INDEPENDENT_KEYS)[:16]  # a train mode's config differs
    return f"{workload.name}/{workload.size}/{digest}/{component}/torch-{torch.__version__}"


def read_cache(path: Path) -> dict[str, Any]:
    """The cached counts; an absent, unreadable or corrupt file is an empty cache (it is rebuilt)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, data: dict[str, Any]) -> None:
    """Replace the cache file atomically, so a concurrent reader sees the old or the new file, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
