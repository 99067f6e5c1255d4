"""What a workload is: a generative task the harness can run through any backend.

A workload owns its torch modules (built from a config with a seed, or loaded
from a local folder), the inputs of one batch, and its *pipeline*: how the
modules ("components") are called to produce one batch of output. The harness
hands the pipeline one callable per component — a backend session — so the same
pipeline code runs on eager PyTorch, ONNX Runtime or TensorRT.

A diffusion workload's pipeline calls its denoiser `steps` times with a
scheduler in between; the scheduler is part of the measured work, as it is in
deployment.
"""

from __future__ import annotations

import abc
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Collection, Mapping

if TYPE_CHECKING:
    import torch

SIZES: tuple[str, ...] = ("tiny", "base", "large")

# A component as the pipeline sees it: tensors in, one tensor out.
ComponentFn = Callable[..., "torch.Tensor"]


@dataclass(frozen=True)
class Batch:
    """The inputs of one pipeline call.

    `inputs` are fp32 tensors; `seed` drives any randomness inside the pipeline
    (a DDPM scheduler adds noise at every step), so that the same batch gives
    the same output on every backend.
    """

    inputs: tuple["torch.Tensor", ...]
    seed: int
    size: int

    def to(self, device: "torch.device | str") -> "Batch":
        return Batch(tuple(t.to(device) for t in self.inputs), self.seed, self.size)


class Workload(abc.ABC):
    """Base class of every reference workload.

    Subclasses set the class attributes and implement the abstract methods;
    `__init__` must build every module with `torch.manual_seed(seed)` semantics
    so that two instances with the same arguments are identical.
    """

    name: ClassVar[str]
    family: ClassVar[str]  # "gan", "vae", "diffusion", ...
    unit: ClassVar[str]  # what one item of work is: "image", "sample"
    description: ClassVar[str]
    sizes: ClassVar[tuple[str, ...]] = SIZES
    # Iterative workloads honour `steps` (and `scheduler`); others ignore them.
    iterative: ClassVar[bool] = False
    schedulers: ClassVar[tuple[str, ...]] = ()
    # What an iterative workload runs when the user names no steps or scheduler, known without
    # building it (the planner keys its cost-model cache on the effective values).
    default_steps: ClassVar[int | None] = None
    # The most steps its schedule has (a DDPM schedule's training timesteps); checked before measuring.
    max_steps: ClassVar[int | None] = None
    default_scheduler: ClassVar[str | None] = None
    # Relative L2 tolerance per precision for the fidelity gate (DESIGN.md);
    # a workload may loosen it where its numerics demand, and says why.
    tolerances: ClassVar[Mapping[str, float]] = {"fp32": 1e-4, "fp16": 5e-2, "bf16": 5e-2}
    # The modules (absolute names) a cell imports to build and run this workload: the workload's module
    # imports no torch, so the CLI can validate a cell without it, and the pre-imported worker imports
    # exactly these before it forks cells, so a cell imports nothing more when it builds.
    model_modules: ClassVar[tuple[str, ...]] = ()
    # The workload parameters (`workloads/params.py`) this workload takes, each with its default.
    accepts: ClassVar[Mapping[str, int | float]] = {}
    # What one measured call is: "infer" (a batch of output) or "train" (one optimizer step).
    mode: ClassVar[str] = "infer"
    # The training step of this workload (`--mode train`) as "module:Class": a Workload of the same
    # name whose components are the networks being trained, in train mode, and whose `run` is one
    # optimizer step over the batch. None: this workload has no training step.
    training: ClassVar[str | None] = None
    # Why this workload's components cannot become the shared one-output ONNX graph, or None when they
    # can. Backends that run that graph (`input_format = "onnx"`) then refuse the workload with this reason.
    graph_refusal: ClassVar[str | None] = None

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.size = size
        self.seed = seed
        self.steps = steps
        self.scheduler = scheduler
        self.weights = weights
        # Every accepted parameter, the given value or the workload's default (validated by the registry).
        self.params: Mapping[str, Any] = {**self.accepts, **{k: v for k, v in (params or {}).items() if k in self.accepts}}

    def units_per_row(self) -> float:
        """Units of work one batch row yields: 1 image; `new_tokens` tokens; a clip's seconds of audio.

        Throughput, FLOPs and energy per item are per unit, so a batch of B rows is B × this many items.
        """
        return 1.0

    def output_shape(self, batch_size: int) -> tuple[int, ...]:
        """The shape `run` returns for `batch_size` rows: here an RGB image per row, (B, 3, side, side).

        A workload whose unit is not an image (a clip, a waveform, tokens) overrides it; the
        contract tests hold `run` to it.
        """
        side = self.config()["image_size"]
        return (batch_size, 3, side, side)

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        """Refuse a `--weights` folder this workload could not load at `size`, without loading it.

        Runs in the parent before anything is measured, so it must be cheap:
        a workload checks the folder's config and checkpoint headers against
        its model built on the meta device (see `workloads.checkpoint`). This
        default only requires a folder; a workload that loads weights overrides it.
        """
        from .weights import require_folder

        require_folder(folder)

    @abc.abstractmethod
    def components(self) -> Mapping[str, "torch.nn.Module"]:
        """The modules a backend prepares, by name, in eval mode, fp32, on CPU."""

    @abc.abstractmethod
    def example_inputs(self, component: str, batch_size: int) -> tuple["torch.Tensor", ...]:
        """Representative inputs of one component call (for export, compile and FLOP counting)."""

    @abc.abstractmethod
    def make_batch(self, batch_size: int, seed: int) -> Batch:
        """The pipeline inputs of one batch, on CPU, fp32, fully determined by `seed`."""

    @abc.abstractmethod
    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> "torch.Tensor":
        """The pipeline: produce the batch's output (on the inputs' device) using `sessions`."""

    @classmethod
    def metric_extras(
        cls,
        workload: Mapping[str, Any],
        component_latency_s: Mapping[str, Mapping[str, Any]],
        latency_s: Mapping[str, Any],
        throughput: float,
    ) -> dict[str, Any]:
        """Metrics of this kind of workload (TTFT, TPOT, real-time factor), from what was measured.

        A pure function of the record's `workload` block, the per-component and
        per-call latency summaries (seconds, as `stats.summarize` gives them) and
        the throughput in units per second; `bench.derive` records the result
        under `metrics` beside the common ones. A classmethod, so a record is
        derived without building the model. Default: none.
        """
        return {}

    def calls_per_batch(self) -> Mapping[str, int]:
        """How many times `run` calls each component for one batch."""
        return {name: 1 for name in self.components()}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, "torch.Tensor"]:
        """Outputs compared against eager fp32 by the fidelity gate, by name.

        The default is the pipeline output; iterative workloads add a single
        component call, because error compounds over steps.
        """
        return {"output": self.run(sessions, batch)}

    def identity(self, component: str) -> dict[str, Any]:
        """What makes one component's module unique, for export and engine caches.

        The config includes the seed (or the weights' digest), so two
        workloads with different weights never share a cached graph; the
        sampling loop (steps, scheduler) does not change the module and is left out.
        """
        digest = self.config_digest(ignore=("steps", "scheduler"))
        return {"workload": self.name, "size": self.size, "component": component, "config_sha256": digest}

    def config_digest(self, ignore: Collection[str] = ()) -> str:
        """sha256 of `config()` without the `ignore`d keys: the key of every per-config cache."""
        config = {k: v for k, v in self.config().items() if k not in ignore}
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()

    def ungated_outputs(self) -> Mapping[str, str]:
        """Fidelity outputs that are reported but do not decide validity, each with why.

        For the rare output whose error measures the model's own instability
        rather than the backend (a chaotic trajectory from random weights).
        """
        return {}

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """The JSON-serializable configuration actually built (recorded with every result)."""
