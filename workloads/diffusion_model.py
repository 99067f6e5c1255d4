"""The torch side of the DDPM workload (`diffusion`): the denoiser module, the UNet, its weight checks, schedulers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from ..bench.errors import UserError
from .diffusion import SCHEDULER_CLASSES
from .weights import CONFIG_NAME, check_diffusers_model, dry_run, model_folder

if TYPE_CHECKING:
    # Imported where a model or scheduler is built (see `DDPM.model_modules`).
    from diffusers import SchedulerMixin, UNet2DModel


class Denoiser(nn.Module):
    """The UNet as one export-friendly call: (sample, int64 timestep of shape (B,)) → ε of sample's shape."""

    def __init__(self, unet: UNet2DModel) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        # return_dict=False keeps the output a plain tensor, which exporters need.
        return self.unet(sample, timestep, return_dict=False)[0]


def scheduler_class(scheduler: str) -> type[SchedulerMixin]:
    """The diffusers scheduler class registered as `scheduler` (a key of SCHEDULER_CLASSES)."""
    import diffusers

    return getattr(diffusers, SCHEDULER_CLASSES[scheduler])


def build_random_unet(unet_config: Mapping[str, Any], seed: int) -> UNet2DModel:
    """A UNet2DModel with diffusers' default init, seeded without touching the global RNG."""
    from diffusers import UNet2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DModel(**unet_config)


def image_size_of(unet: UNet2DModel, folder: Path | None = None) -> int:
    """The square image size a UNet was configured for (diffusers allows an int or a pair).

    For a loaded `folder`, the config is checked too: the sampling loop feeds
    the UNet's output back as its next input, so it must keep the input's channels.
    """
    size = unet.config.sample_size
    side = size[0] if isinstance(size, (list, tuple)) and size else size
    if folder is None:
        return int(side)
    where = str(folder / CONFIG_NAME)
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise UserError(f"weights config {where!r}: sample_size must be a positive integer (or a pair), got {size!r}")
    if unet.config.out_channels != unet.config.in_channels:
        raise UserError(f"weights config {where!r}: out_channels ({unet.config.out_channels}) must equal in_channels "
                        f"({unet.config.in_channels}) for DDPM sampling, which predicts the noise of its input")
    return side


def check_unet_folder(folder: Path) -> None:
    """Check a UNet (or pipeline) folder against its config, built and dry-run on the meta device."""
    from diffusers import UNet2DModel

    folder = model_folder(folder, "unet")
    unet = check_diffusers_model(UNet2DModel, folder)
    side = image_size_of(unet, folder)
    sample = torch.empty(1, int(unet.config.in_channels), side, side, device="meta")
    dry_run(Denoiser(unet), (sample, torch.zeros(1, dtype=torch.int64, device="meta")), folder)


def batch_timestep(timestep: torch.Tensor | int, batch_size: int, device: torch.device) -> torch.Tensor:
    """One timestep as the denoiser takes it: int64, shape (B,), on the sample's device.

    A (B,) tensor rather than a Python int keeps exported graphs free of a
    baked-in constant and lets every sample in a batch carry its own t.
    """
    return torch.full((batch_size,), int(timestep), dtype=torch.int64, device=device)


def noise_mse_step(sessions: Any, trainer: Any, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor,
                   alphas_cumprod: torch.Tensor) -> dict[str, torch.Tensor]:
    """One DDPM training step (Ho et al. 2020, Algorithm 1): ‖ε − ε_θ(√ᾱ_t x₀ + √(1−ᾱ_t) ε, t)‖², averaged.

    `timesteps` are the batch's uniformly drawn t (int64, shape (B,)); ᾱ is
    the training schedule's cumulative product of 1 − β, as DDPMScheduler.add_noise uses it.
    """
    abar = alphas_cumprod.to(x0.device)[timesteps].view(-1, *([1] * (x0.dim() - 1)))
    noisy = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    loss = torch.nn.functional.mse_loss(sessions["denoiser"](noisy, timesteps), noise)
    norm = trainer.step("denoiser", loss)
    return {"loss": loss.detach(), "grad_norm": norm}
