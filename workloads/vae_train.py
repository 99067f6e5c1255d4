"""VAE training (`--mode train`): one measured call = one Adam step on the negative ELBO over a batch of images.

Training needs the whole autoencoder, so the VAE gains its encoder here: two
components, "encoder" (`vae_model.MomentsEncoder`, image → mean and
log-variance) and "decoder" (`vae_model.SampleDecoder`, latent sample →
image), the same AutoencoderKL presets as the inference workload. The loss is
the negative ELBO (reconstruction + KL), as `vae_model.elbo_step` states it,
optimised by Adam (lr 1e-4). A batch is B seeded images in [-1, 1] and the
reparameterisation noise ε.

The unit is one training sample (one image). Fidelity: the loss, its two
terms and the gradient norm of one step on a fixed batch, from the same
starting state, against eager fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .base import Batch, ComponentFn
from .vae import VAEDecoder

if TYPE_CHECKING:
    import torch
    from torch import nn

ENCODER = "encoder"
DECODER = "decoder"
LR, BETAS = 1e-4, (0.9, 0.999)


class VAETraining(VAEDecoder):
    """Negative-ELBO steps of the full AutoencoderKL, one per call."""

    mode = "train"
    unit = "sample"
    description = "VAE training: an Adam step on the negative ELBO (reconstruction + KL) per batch"
    needs_encoder = True  # a decoder-only checkpoint, enough for inference, is refused for training

    def __init__(self, size: str, seed: int = 0, *, steps: int | None = None, scheduler: str | None = None,
                 weights: Path | None = None) -> None:
        from .training import Trainer

        super().__init__(size, seed, steps=steps, scheduler=scheduler, weights=weights)
        self.trainer = Trainer({"vae": self.autoencoder}, LR, BETAS)

    def adopt(self, vae: Any) -> None:
        from torch import nn

        from .vae_model import MomentsEncoder, SampleDecoder

        self.encoder, self.decoder = MomentsEncoder(vae).train(), SampleDecoder(vae).train()
        # One module over both halves: the optimizer's parameters, and the state each check restores.
        self.autoencoder = nn.ModuleDict({ENCODER: self.encoder, DECODER: self.decoder})

    def components(self) -> Mapping[str, nn.Module]:
        return {ENCODER: self.encoder, DECODER: self.decoder}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        images, eps = self.make_batch(batch_size, self.seed).inputs
        if component == ENCODER:
            return (images,)
        if component == DECODER:
            return (eps,)
        raise KeyError(f"vae training has components {ENCODER!r} and {DECODER!r}; got {component!r}")

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        images = torch.rand(batch_size, 3, self.image_size, self.image_size, generator=rng) * 2 - 1
        eps = torch.randn(batch_size, self.latent_channels, self.latent_size, self.latent_size, generator=rng)
        return Batch(inputs=(images, eps), seed=seed, size=batch_size)

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        return self.step(sessions, batch)["loss"]

    def step(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        from .vae_model import elbo_step

        images, eps = batch.inputs
        return elbo_step(sessions, self.trainer, images, eps)

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        self.trainer.restore()
        return self.step(sessions, batch)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "mode": self.mode, "training": self.trainer.describe()}
