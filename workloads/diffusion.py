"""DDPM: pixel-space diffusion (Ho et al. 2020), a denoiser called `steps` times by a scheduler.

One component, "denoiser": diffusers' `UNet2DModel` predicting the noise ε
in a noisy image x_t at timestep t. The pipeline starts from Gaussian noise
and walks the scheduler's timesteps; at each one it calls the denoiser and
lets the scheduler compute x_{t-1}. The scheduler runs on the host between
denoiser calls, as in deployment, so its cost is part of the measured work.

Sizes (the configs of the google/ddpm-* checkpoints, converted from the
paper's TensorFlow models):
- tiny:  two levels (32, 64 channels), one ResNet per level, 8 groups, one
  attention level, 16×16 — for tests.
- base:  google/ddpm-cifar10-32, the paper's CIFAR-10 model: 35,746,307 parameters, 32×32.
- large: google/ddpm-celebahq-256, the paper's 256 px CelebA-HQ/LSUN model:
  113,673,219 parameters, 256×256.

Schedulers (both with the paper's 1000 training timesteps and linear betas
1e-4 → 0.02, and x_0 clipped to [-1, 1] as the DDPM pipelines do):
- "ddpm": ancestral sampling, which adds fresh noise at every step. That noise
  comes from a generator seeded with the batch seed, so a batch gives the same
  image on every backend.
- "ddim": the deterministic DDIM sampler (η = 0), the usual choice for few steps.

This module is the workload's declaration and pipeline, and imports no torch
or diffusers: the CLI imports it to validate a cell. The denoiser module, the
UNet's construction and weight checks, and the scheduler classes are in
`diffusion_model`, imported where a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..bench.errors import UserError
from .base import Batch, ComponentFn, Workload

if TYPE_CHECKING:
    import torch
    from diffusers import SchedulerMixin
    from torch import nn

COMPONENT = "denoiser"
DEFAULT_STEPS = 50
DEFAULT_SCHEDULER = "ddpm"

# The DDPM paper's forward process; both samplers share it.
NOISE_SCHEDULE: Mapping[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": True,
}

# Scheduler names → diffusers class names, resolved by `scheduler_class` when a workload is built.
SCHEDULER_CLASSES: Mapping[str, str] = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler"}
# What building a scheduler imports: diffusers' `from_config` imports every class it deems compatible
# (DDPM's and DDIM's `_compatibles`, the Karras family) to drop their config keys. Their SDE solver is
# left out: its module needs torchsde, and without it diffusers holds a placeholder and imports nothing.
SCHEDULER_MODULES: tuple[str, ...] = tuple(f"diffusers.schedulers.scheduling_{name}" for name in (
    "ddpm", "ddim", "pndm", "lms_discrete", "euler_discrete", "heun_discrete", "euler_ancestral_discrete",
    "dpmsolver_multistep", "dpmsolver_singlestep", "k_dpm_2_discrete", "k_dpm_2_ancestral_discrete",
    "deis_multistep", "unipc_multistep", "edm_euler",
))

# The architecture choices shared by the converted DDPM checkpoints: the
# paper's sinusoidal embedding without shift/flip, single-head attention
# (attention_head_dim None), and TensorFlow's eps and downsample padding.
DDPM_UNET_COMMON: Mapping[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "layers_per_block": 2,
    "attention_head_dim": None,
    "norm_num_groups": 32,
    "norm_eps": 1e-6,
    "downsample_padding": 0,
    "flip_sin_to_cos": False,
    "freq_shift": 1,
    "act_fn": "silu",
    "time_embedding_type": "positional",
    "mid_block_scale_factor": 1,
    "center_input_sample": False,
}

UNET_PRESETS: Mapping[str, Mapping[str, Any]] = {
    "tiny": {
        **DDPM_UNET_COMMON,
        "sample_size": 16,
        "block_out_channels": (32, 64),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
        "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
        "layers_per_block": 1,
        "norm_num_groups": 8,
    },
    "base": {
        **DDPM_UNET_COMMON,
        "sample_size": 32,
        "block_out_channels": (128, 256, 256, 256),
        "down_block_types": ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    },
    "large": {
        **DDPM_UNET_COMMON,
        "sample_size": 256,
        "block_out_channels": (128, 128, 256, 256, 512, 512),
        "down_block_types": ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    },
}


@dataclass(frozen=True)
class SamplerChoice:
    """The sampling loop asked for: how many denoiser calls, and which scheduler between them."""

    steps: int
    scheduler: str


def sampler_choice(workload: str, steps: int | None, scheduler: str | None, *, default_steps: int,
                   default_scheduler: str, schedulers: Sequence[str], max_steps: int) -> SamplerChoice:
    """Defaults filled in and validated; a bad value is the user's, named in a one-line UserError.

    A sampler can visit each training timestep at most once: `max_steps` is the schedule's length.
    """
    steps = default_steps if steps is None else steps
    scheduler = default_scheduler if scheduler is None else scheduler
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= max_steps:
        raise UserError(f"steps must be an integer from 1 to {max_steps}, got {steps!r}", key="steps")
    if scheduler not in schedulers:
        raise UserError(f"unknown scheduler {scheduler!r} for {workload}; choose from: {', '.join(schedulers)}",
                        key="scheduler")
    return SamplerChoice(steps, scheduler)


def choose_sampler(steps: int | None, scheduler: str | None) -> SamplerChoice:
    return sampler_choice("ddpm", steps, scheduler, default_steps=DEFAULT_STEPS, default_scheduler=DEFAULT_SCHEDULER,
                          schedulers=tuple(SCHEDULER_CLASSES), max_steps=NOISE_SCHEDULE["num_train_timesteps"])


class DDPM(Workload):
    """Unconditional DDPM sampling: noise (B, 3, H, W) → `steps` denoiser calls → image (B, 3, H, W)."""

    name = "ddpm"
    family = "diffusion"
    unit = "image"
    description = "DDPM (Ho et al. 2020): UNet denoiser called `steps` times by a DDPM or DDIM scheduler"
    iterative = True
    schedulers = tuple(SCHEDULER_CLASSES)
    default_steps = DEFAULT_STEPS
    max_steps = NOISE_SCHEDULE["num_train_timesteps"]
    default_scheduler = DEFAULT_SCHEDULER
    model_modules = ("aigcbench.workloads.diffusion_model", "diffusers.models.unets.unet_2d", *SCHEDULER_MODULES)
    training = "aigcbench.workloads.diffusion_train:DDPMTraining"

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .diffusion_model import check_unet_folder

        check_unet_folder(folder)

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
    ) -> None:
        from .diffusion_model import Denoiser, build_random_unet, image_size_of, scheduler_class
        from .weights import load_diffusers_model, model_folder, public_config, weights_sha256

        sampler = choose_sampler(steps, scheduler)
        super().__init__(size, seed, steps=sampler.steps, scheduler=sampler.scheduler, weights=weights)
        folder = None if weights is None else model_folder(weights, "unet")
        if folder is None:
            unet = build_random_unet(UNET_PRESETS[size], seed)
            self.weights_digest: str | None = None
        else:
            from diffusers import UNet2DModel

            unet = load_diffusers_model(UNet2DModel, folder)
            self.weights_digest = weights_sha256(folder)
        self.image_size = image_size_of(unet, folder)
        self.in_channels = int(unet.config.in_channels)
        self.denoiser = Denoiser(unet).eval()
        self.scheduler_class = scheduler_class(sampler.scheduler)
        self.scheduler_config = dict(self.scheduler_class(**NOISE_SCHEDULE).config)
        self.unet_config = public_config(unet)

    def components(self) -> Mapping[str, nn.Module]:
        return {COMPONENT: self.denoiser}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        from .diffusion_model import batch_timestep

        if component != COMPONENT:
            raise KeyError(f"ddpm has one component, {COMPONENT!r}; got {component!r}")
        (noise,) = self.make_batch(batch_size, self.seed).inputs
        return noise, batch_timestep(self.mid_timestep(), batch_size, noise.device)

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        noise = torch.randn(batch_size, self.in_channels, self.image_size, self.image_size, generator=rng)
        return Batch(inputs=(noise,), seed=seed, size=batch_size)

    def new_scheduler(self) -> SchedulerMixin:
        """A fresh scheduler: it keeps per-sample state (its timesteps, DDIM's step index)."""
        return self.scheduler_class.from_config(self.scheduler_config)

    def mid_timestep(self) -> int:
        return int(self.scheduler_config["num_train_timesteps"]) // 2

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        import torch

        from .diffusion_model import batch_timestep

        (x,) = batch.inputs
        denoise = sessions[COMPONENT]
        scheduler = self.new_scheduler()
        scheduler.set_timesteps(self.steps)
        # A CPU generator even when x is on a GPU: CUDA's RNG draws other numbers
        # from the same seed, and the fidelity reference runs on the CPU. diffusers
        # draws the step noise on the CPU and moves it, as its pipelines do for
        # reproducibility.
        rng = torch.Generator().manual_seed(batch.seed)
        for t in scheduler.timesteps:
            eps = denoise(x, batch_timestep(t, x.shape[0], x.device))
            x = scheduler.step(eps, t, x, generator=rng).prev_sample
        return x

    def calls_per_batch(self) -> Mapping[str, int]:
        return {COMPONENT: self.steps}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        from .diffusion_model import batch_timestep

        (noise,) = batch.inputs
        step = sessions[COMPONENT](noise, batch_timestep(self.mid_timestep(), noise.shape[0], noise.device))
        return {"denoiser_step": step, "output": self.run(sessions, batch)}

    def ungated_outputs(self) -> Mapping[str, str]:
        if self.scheduler == "ddim" and self.weights is None:
            return {
                "output": "DDIM from random weights: x0 clipping turns rounding into flipped pixels along a "
                "deterministic trajectory, so the final image measures chaos, not the backend; "
                "the single denoiser step gates instead"
            }
        return {}

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            "steps": self.steps,
            "scheduler": self.scheduler,
            "image_size": self.image_size,
            "model": self.unet_config,
            # Shared by both schedulers, so FLOP counts keyed on this config stay shared too.
            "noise_schedule": dict(NOISE_SCHEDULE),
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }
