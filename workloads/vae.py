"""VAE decoder: latents → image, the last stage of every latent-diffusion pipeline.

Deployment never runs the whole VAE: a latent-diffusion pipeline denoises in
latent space and calls `vae.decode(latents / scaling_factor)` once per image.
So the one component, "decoder", is exactly that call — diffusers'
`AutoencoderKL.post_quant_conv` followed by its `decoder` — and the encoder is
dropped after construction (it would double the memory for nothing).

Sizes:
- tiny:  a two-level decoder (channels 32, 64; one layer per block; 8 groups),
  latents 4×16×16 → 3×32×32.
- base:  the Stable Diffusion 1.x/2.x VAE (channels 128, 256, 512, 512; two
  layers per block; scaling factor 0.18215), latents 4×32×32 → 3×256×256.
- large: the same VAE at its native 512 px, latents 4×64×64 → 3×512×512.

Random init needs no correction here: the decoder's GroupNorms rescale every
activation, so outputs vary over pixels as a trained decoder's do (the
contract test checks that they are not near-constant).

This module is the workload's declaration and pipeline, and imports no torch
or diffusers: the CLI imports it to validate a cell. The decoder module, its
construction and weight loading are in `vae_model`, imported where a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from .base import Batch, ComponentFn, Workload

if TYPE_CHECKING:
    import torch
    from torch import nn

COMPONENT = "decoder"

# The Stable Diffusion VAE (e.g. the "vae/config.json" of SD 1.5 and 2.1).
SD_VAE_CONFIG: Mapping[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}

TINY_VAE_CONFIG: Mapping[str, Any] = {
    **SD_VAE_CONFIG,
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 32,
}


@dataclass(frozen=True)
class VAEPreset:
    """An AutoencoderKL config and the image size it is benchmarked at."""

    model_config: Mapping[str, Any]
    image_size: int


PRESETS: Mapping[str, VAEPreset] = {
    "tiny": VAEPreset(TINY_VAE_CONFIG, 32),
    "base": VAEPreset(SD_VAE_CONFIG, 256),
    "large": VAEPreset(SD_VAE_CONFIG, 512),
}


class VAEDecoder(Workload):
    """The VAE decoder of latent diffusion: latents (B, C, h, w) ~ N(0, I) → images (B, 3, H, W)."""

    name = "vae"
    family = "vae"
    unit = "image"
    description = "AutoencoderKL decoder (Stable Diffusion VAE): one decode from scaled latents to image"
    model_modules = ("aigcbench.workloads.vae_model", "diffusers.models.autoencoders.autoencoder_kl")
    training = "aigcbench.workloads.vae_train:VAETraining"
    # Whether a --weights checkpoint must hold the encoder too (training encodes); the decoder alone otherwise.
    needs_encoder: ClassVar[bool] = False

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .vae_model import check_vae_folder

        check_vae_folder(folder, PRESETS[size].image_size, whole=cls.needs_encoder)

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
    ) -> None:
        from .vae_model import build_random_vae, decoder_needs, latent_geometry
        from .weights import load_diffusers_model, model_folder, public_config, weights_sha256

        super().__init__(size, seed, steps=steps, scheduler=scheduler, weights=weights)
        preset = PRESETS[size]
        folder = None if weights is None else model_folder(weights, "vae")
        if folder is None:
            vae = build_random_vae(preset.model_config, seed)
            self.weights_digest: str | None = None
        else:
            from diffusers import AutoencoderKL

            vae = load_diffusers_model(AutoencoderKL, folder, None if self.needs_encoder else decoder_needs)
            self.weights_digest = weights_sha256(folder)
        self.model_config = public_config(vae)
        self.image_size = preset.image_size
        self.latent_channels, self.latent_size = latent_geometry(vae, preset.image_size, folder)
        self.adopt(vae)

    def adopt(self, vae: Any) -> None:
        """Keep what this workload runs of the AutoencoderKL: only the decoder half; the encoder is freed with `vae`."""
        from .vae_model import LatentDecoder

        self.decoder = LatentDecoder(vae).eval()

    def components(self) -> Mapping[str, nn.Module]:
        return {COMPONENT: self.decoder}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        if component != COMPONENT:
            raise KeyError(f"vae has one component, {COMPONENT!r}; got {component!r}")
        return self.make_batch(batch_size, self.seed).inputs

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        # Scaled latents have unit variance (that is what scaling_factor is for),
        # so N(0, I) is what a denoiser hands the decoder.
        rng = torch.Generator().manual_seed(seed)
        shape = (batch_size, self.latent_channels, self.latent_size, self.latent_size)
        return Batch(inputs=(torch.randn(shape, generator=rng),), seed=seed, size=batch_size)

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        (latents,) = batch.inputs
        return sessions[COMPONENT](latents)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            "image_size": self.image_size,
            "latent_shape": [self.latent_channels, self.latent_size, self.latent_size],
            "model": self.model_config,
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }
