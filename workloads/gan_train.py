"""DCGAN training (`--mode train`): one measured call = a discriminator step and a generator step over a batch.

The networks are the inference workload's generator (the same presets and
init) and its mirror discriminator (`gan_model.Discriminator`), both in train
mode, each with Adam at the paper's lr 2e-4, β₁ 0.5. The loss is the GAN's
binary cross entropy with alternating steps, as `gan_model.gan_losses_step`
states it. A batch is B real images and B latents; the real images are
seeded noise in [-1, 1] (the step's cost does not depend on what they show —
`examples/train_gan_digits.py` trains on real digits).

The unit is one training sample (one real image, with the generated one it is
set against). Fidelity: the losses and the gradient norms of one step on a
fixed batch, from the same starting state, against eager fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .base import Batch, ComponentFn
from .gan import DCGAN

if TYPE_CHECKING:
    import torch
    from torch import nn

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
LR, BETAS = 2e-4, (0.5, 0.999)  # the DCGAN paper's Adam settings


class DCGANTraining(DCGAN):
    """Alternating discriminator/generator steps of DCGAN, one pair per call."""

    mode = "train"
    unit = "sample"
    description = "DCGAN training: a discriminator and a generator Adam step per batch (binary cross entropy)"

    def __init__(self, size: str, seed: int = 0, *, steps: int | None = None, scheduler: str | None = None,
                 weights: Path | None = None) -> None:
        from .gan_model import build_random_discriminator
        from .training import Trainer

        super().__init__(size, seed, steps=steps, scheduler=scheduler, weights=weights)
        self.generator.train()
        # Seeded apart from the generator, so the two networks' weights are not correlated.
        self.discriminator = build_random_discriminator(self.generator_config, seed + 1)
        self.trainer = Trainer({GENERATOR: self.generator, DISCRIMINATOR: self.discriminator}, LR, BETAS)

    def components(self) -> Mapping[str, nn.Module]:
        return {GENERATOR: self.generator, DISCRIMINATOR: self.discriminator}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        real, z = self.make_batch(batch_size, self.seed).inputs
        if component == GENERATOR:
            return (z,)
        if component == DISCRIMINATOR:
            return (real,)
        raise KeyError(f"dcgan training has components {GENERATOR!r} and {DISCRIMINATOR!r}; got {component!r}")

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        c = self.generator_config
        real = torch.rand(batch_size, c.channels, c.image_size, c.image_size, generator=rng) * 2 - 1
        z = torch.randn(batch_size, c.nz, 1, 1, generator=rng)
        return Batch(inputs=(real, z), seed=seed, size=batch_size)

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        import torch

        out = self.step(sessions, batch)
        return torch.stack([out["d_loss"], out["g_loss"]])

    def step(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        """One training step; its losses, gradient norms and the discriminator's accuracies."""
        from .gan_model import gan_losses_step

        real, z = batch.inputs
        return gan_losses_step(sessions, self.trainer, real, z)

    def calls_per_batch(self) -> Mapping[str, int]:
        # G once; D on the real batch, on the detached fake batch, and on the fake batch for G's loss.
        return {GENERATOR: 1, DISCRIMINATOR: 3}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        self.trainer.restore()
        out = self.step(sessions, batch)
        return {name: out[name] for name in ("d_loss", "g_loss", "d_grad_norm", "g_grad_norm")}

    def config(self) -> dict[str, Any]:
        return {**super().config(), "mode": self.mode, "discriminator": {"ndf": self.generator_config.ngf},
                "training": self.trainer.describe()}
