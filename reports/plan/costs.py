"""Cost models by the user's choices (workload, size, steps, scheduler), without building the model when cached.

Building a workload's modules means importing torch and diffusers and
initialising tens of millions of weights — seconds, every time — while the
cost model of a preset depends only on the code that defines it. So the
planner keys a second cache on what the user typed plus a digest of the
workload code (`workloads/*.py`) and the torch distribution's version: a
changed preset or a torch upgrade is a new key, never a stale answer. A miss
builds the workload once and asks `costmodel.cost_model`, which keeps its own
per-architecture trace cache.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
from typing import Any

from ...bench.cache import cache_dir
from ...workloads.flops import read_cache, write_cache
from ...workloads.registry import code_digest as workloads_code_digest
from .costmodel import CostModel, Operator

CACHE_FILE = "plan-costmodels.json"


def code_digest() -> str:
    """The workload code's digest, shortened (presets live there)."""
    return workloads_code_digest()[:16]


def key(workload: str, size: str, steps: int | None, scheduler: str | None) -> str:
    torch_version = importlib.metadata.version("torch")
    return f"{workload}/{size}/steps={steps}/scheduler={scheduler}/{code_digest()}/torch-{torch_version}"


@functools.lru_cache(maxsize=64)
def model_for(workload: str, size: str, steps: int | None = None, scheduler: str | None = None) -> CostModel:
    """The cost model of a preset (random weights), from the cache or built once."""
    path = cache_dir() / CACHE_FILE
    entry = key(workload, size, steps, scheduler)
    cached = read_cache(path).get(entry)
    if isinstance(cached, dict):
        try:
            return from_dict(cached)
        except (TypeError, KeyError, ValueError):
            pass  # an older layout: rebuilt below
    from ...workloads import registry
    from .costtrace import cost_model

    model = cost_model(registry.build(workload, size, steps=steps, scheduler=scheduler))
    write_cache(path, {**read_cache(path), entry: dataclasses.asdict(model)})
    return model


def from_dict(data: dict[str, Any]) -> CostModel:
    operators = tuple(Operator(**op) for op in data["operators"])
    return CostModel(**{**data, "operators": operators})
