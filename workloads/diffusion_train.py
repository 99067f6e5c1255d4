"""DDPM training (`--mode train`): one measured call = one Adam step on the noise-prediction MSE over a batch.

The network is the inference workload's UNet (the same presets), in train
mode, optimised by Adam at the paper's lr 2e-4. A batch is B seeded images x₀
in [-1, 1], a timestep per image drawn uniformly from the 1000 training
timesteps, and the noise ε; the loss is Ho et al.'s simplified objective, the
MSE between ε and the UNet's prediction from x_t (`diffusion_model.noise_mse_step`).
Sampling options (steps, scheduler) do not apply to training and are ignored.

The unit is one training sample (one image). Fidelity: the loss and the
gradient norm of one step on a fixed batch, from the same starting state,
against eager fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .base import Batch, ComponentFn
from .diffusion import COMPONENT, DDPM, NOISE_SCHEDULE

if TYPE_CHECKING:
    import torch
    from torch import nn

LR, BETAS = 2e-4, (0.9, 0.999)  # the DDPM paper's Adam


class DDPMTraining(DDPM):
    """Noise-prediction steps of the DDPM UNet, one per call."""

    mode = "train"
    unit = "sample"
    iterative = False  # one step is one optimizer step; the sampler's steps and scheduler do not apply
    description = "DDPM training: an Adam step on the noise-prediction MSE at uniform timesteps per batch"

    def __init__(self, size: str, seed: int = 0, *, steps: int | None = None, scheduler: str | None = None,
                 weights: Path | None = None) -> None:
        import torch

        from .training import Trainer

        super().__init__(size, seed, weights=weights)
        self.denoiser.train()
        betas = torch.linspace(NOISE_SCHEDULE["beta_start"], NOISE_SCHEDULE["beta_end"],
                               NOISE_SCHEDULE["num_train_timesteps"], dtype=torch.float64)
        self.alphas_cumprod = torch.cumprod(1 - betas, 0).float()
        self.trainer = Trainer({COMPONENT: self.denoiser}, LR, BETAS)

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        if component != COMPONENT:
            raise KeyError(f"ddpm training has one component, {COMPONENT!r}; got {component!r}")
        x0, timesteps, _ = self.make_batch(batch_size, self.seed).inputs
        return x0, timesteps.long()

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        shape = (batch_size, self.in_channels, self.image_size, self.image_size)
        x0 = torch.rand(shape, generator=rng) * 2 - 1
        # Uniform t, carried as float32 (exact below 2**24) like every batch input; cast back for the UNet.
        timesteps = torch.randint(0, NOISE_SCHEDULE["num_train_timesteps"], (batch_size,), generator=rng).float()
        noise = torch.randn(shape, generator=rng)
        return Batch(inputs=(x0, timesteps, noise), seed=seed, size=batch_size)

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        return self.step(sessions, batch)["loss"]

    def step(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        from .diffusion_model import noise_mse_step

        x0, timesteps, noise = batch.inputs
        return noise_mse_step(sessions, self.trainer, x0, timesteps.long(), noise, self.alphas_cumprod)

    def calls_per_batch(self) -> Mapping[str, int]:
        return {COMPONENT: 1}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        self.trainer.restore()
        return self.step(sessions, batch)

    def ungated_outputs(self) -> Mapping[str, str]:
        return {}

    def config(self) -> dict[str, Any]:
        config = {**super().config(), "mode": self.mode, "training": self.trainer.describe()}
        for key in ("steps", "scheduler"):  # sampling only
            config.pop(key)
        return config
