"""The workloads aigcbench knows, by name, and the one place that builds them from user input.

Entries are import strings, resolved on first use: `aigcbench list` and the
CLI's choices need the names only, and importing torch and diffusers for
them would cost seconds.

`build` is the edge where user input (CLI flags, sweep files) is validated,
once, with a message that names the bad value and the valid choices.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from ..bench.errors import UserError
from ..bench.plugins import load

if TYPE_CHECKING:
    from .base import Workload

WORKLOADS: dict[str, str] = {
    "dcgan": "aigcbench.workloads.gan:DCGAN",
    "ddpm": "aigcbench.workloads.diffusion:DDPM",
    "dit": "aigcbench.workloads.dit:DiT",
    "llm": "aigcbench.workloads.llm:TextDecoder",
    "sd": "aigcbench.workloads.sd:StableDiffusion",
    "vae": "aigcbench.workloads.vae:VAEDecoder",
    "video": "aigcbench.workloads.video:VideoDiffusion",
    "vocoder": "aigcbench.workloads.vocoder:Vocoder",
}


def names() -> list[str]:
    """Registered workload names, sorted."""
    return sorted(WORKLOADS)


def get(name: str) -> type[Workload]:
    """The workload class registered as `name` (imports its module on first use)."""
    if name not in WORKLOADS:
        raise UserError(f"unknown workload {name!r}; choose from: {', '.join(names())}")
    return load(WORKLOADS[name])


def check(
    name: str,
    size: str,
    *,
    steps: int | None = None,
    scheduler: str | None = None,
    weights: str | Path | None = None,
    mode: str = "infer",
) -> type[Workload]:
    """Validate user-facing choices without building anything; return the workload class.

    Cheap (no model is built, a `weights` folder is checked from its config
    and checkpoint headers on the meta device), so the CLI can refuse bad
    input before it opens a store or spends minutes measuring.
    """
    workload_class = get(name)
    if size not in workload_class.sizes:
        raise UserError(f"unknown size {size!r} for {name}; choose from: {', '.join(workload_class.sizes)}")
    built = resolve(name, mode)
    if weights is not None:
        if not str(weights):
            raise UserError("--weights must name a folder, got ''")
        # What is built is what checks the folder: a training step may need tensors inference does not.
        check_weights(built, size, Path(weights))
    if not workload_class.iterative:
        return workload_class
    if scheduler is not None and scheduler not in workload_class.schedulers:
        raise UserError(f"unknown scheduler {scheduler!r} for {name}; choose from: {', '.join(workload_class.schedulers)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise UserError(f"steps must be an integer >= 1, got {steps!r}", key="steps")
    if steps is not None and workload_class.max_steps is not None and steps > workload_class.max_steps:
        raise UserError(f"--steps must be from 1 to {workload_class.max_steps} for {name} (its schedule's "
                        f"timesteps), got {steps}", key="steps")
    return workload_class


def check_weights(workload_class: type[Workload], size: str, folder: Path) -> None:
    """`workload_class.check_weights`, once per unchanged folder: a sweep's cells share one check."""
    from .weights import folder_signature, require_folder

    require_folder(folder)
    _checked(workload_class, size, folder, folder.resolve(), folder_signature(folder))


@functools.lru_cache(maxsize=64)
def _checked(workload_class: type[Workload], size: str, folder: Path, resolved: Path, signature: tuple) -> None:
    # Only a folder that passed is cached (a raising call is not); `resolved` and `signature` key it on
    # where it is and what it holds, `folder` keeps messages in the user's own spelling.
    workload_class.check_weights(size, folder)


def resolve(name: str, mode: str = "infer") -> type[Workload]:
    """The class a cell of workload `name` builds in `mode`: the workload, or its training step (imported on first use)."""
    workload_class = get(name)
    if mode != "train":
        return workload_class
    if workload_class.training is None:
        trainable = ", ".join(n for n in names() if get(n).training is not None)
        raise UserError(f"--mode train: {name} has no training step; workloads that train: {trainable}", key="mode")
    return load(workload_class.training)


def model_modules(workloads: Iterable[str]) -> tuple[str, ...]:
    """What cells of these workloads import to build their models, each once: the zygote preloads it."""
    names = dict.fromkeys(workloads)
    return tuple(dict.fromkeys(module for name in names for module in get(name).model_modules))


def build(
    name: str,
    size: str,
    seed: int = 0,
    *,
    steps: int | None = None,
    scheduler: str | None = None,
    weights: Path | None = None,
    params: Mapping[str, Any] | None = None,
    mode: str = "infer",
) -> Workload:
    """A workload instance from user-facing choices, or a one-line UserError naming the bad one.

    A non-iterative workload (a GAN, a VAE decoder) has no steps and no
    scheduler, and a workload takes only the parameters it `accepts`: the
    others are dropped here, and the harness records a warning when the user
    gave them. In `mode="train"` the workload's training step is built instead (`Workload.training`).
    """
    check(name, size, steps=steps, scheduler=scheduler, weights=weights, mode=mode)
    workload_class = resolve(name, mode)
    extra: dict[str, Any] = {}
    if workload_class.accepts:
        extra["params"] = {k: v for k, v in (params or {}).items() if k in workload_class.accepts}
    if not workload_class.iterative:
        return workload_class(size, seed, weights=weights, **extra)
    return workload_class(size, seed, steps=steps, scheduler=scheduler, weights=weights, **extra)


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 over the workload code (`workloads/*.py`): what caches of derived results key on.

    Presets, pipelines and check batches live there, so an edit to any of them
    invalidates cost models and fidelity references built from the old code.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
