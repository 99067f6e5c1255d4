"""The workloads aigcbench knows, by name, and the one place that builds them from user input.

Entries are import strings, resolved on first use: `aigcbench list` and the
CLI's choices need the names only, and importing torch and diffusers for
them would cost seconds.

`build` is the edge where user input (CLI flags, sweep files) is validated,
once, with a message that names the bad value and the valid choices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..bench.errors import UserError
from ..bench.plugins import load

if TYPE_CHECKING:
    from .base import Workload

WORKLOADS: dict[str, str] = {
    "dcgan": "aigcbench.workloads.gan:DCGAN",
    "ddpm": "aigcbench.workloads.diffusion:DDPM",
    "vae": "aigcbench.workloads.vae:VAEDecoder",
}


def names() -> list[str]:
    """Registered workload names, sorted."""
    return sorted(WORKLOADS)


def get(name: str) -> type[Workload]:
    """The workload class registered as `name` (imports its module on first use)."""
    if name not in WORKLOADS:
        raise UserError(f"unknown workload {name!r}; choose from: {', '.join(names())}")
    return load(WORKLOADS[name])


def check(name: str, size: str, *, steps: int | None = None, scheduler: str | None = None) -> type[Workload]:
    """Validate user-facing choices without building anything; return the workload class.

    Cheap (no model is built), so the CLI can refuse bad input before it opens
    a store or spends minutes measuring.
    """
    workload_class = get(name)
    if size not in workload_class.sizes:
        raise UserError(f"unknown size {size!r} for {name}; choose from: {', '.join(workload_class.sizes)}")
    if not workload_class.iterative:
        return workload_class
    if scheduler is not None and scheduler not in workload_class.schedulers:
        raise UserError(f"unknown scheduler {scheduler!r} for {name}; choose from: {', '.join(workload_class.schedulers)}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise UserError(f"steps must be an integer >= 1, got {steps!r}")
    return workload_class


def build(
    name: str,
    size: str,
    seed: int = 0,
    *,
    steps: int | None = None,
    scheduler: str | None = None,
    weights: Path | None = None,
) -> Workload:
    """A workload instance from user-facing choices, or a one-line UserError naming the bad one.

    A non-iterative workload (a GAN, a VAE decoder) has no steps and no
    scheduler: they are dropped here, and the harness records a warning when
    the user gave them.
    """
    workload_class = check(name, size, steps=steps, scheduler=scheduler)
    if not workload_class.iterative:
        return workload_class(size, seed, weights=weights)
    return workload_class(size, seed, steps=steps, scheduler=scheduler, weights=weights)
