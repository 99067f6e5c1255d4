"""The torch side of the VAE workload (`vae`): the decoder module, its construction, and weight checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import nn

from ..bench.errors import UserError
from .weights import CONFIG_NAME, check_diffusers_model, dry_run, model_folder

if TYPE_CHECKING:
    # Imported where a model is built (see `VAEDecoder.model_modules`).
    from diffusers import AutoencoderKL

# What `LatentDecoder` keeps of an AutoencoderKL: a checkpoint must hold these; the encoder's
# tensors may be absent (they are dropped), but must fit the model when present.
DECODER_PREFIXES: tuple[str, ...] = ("decoder.", "post_quant_conv.")


class LatentDecoder(nn.Module):
    """`AutoencoderKL.decode` as a pipeline calls it: scaled latents in, image tensor out.

    The division by `scaling_factor` (and the addition of `shift_factor`, for
    VAEs such as SD3's that have one) is part of the module, as it is part of
    every pipeline's decode call, so backends export and time it too.
    """

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        # Some VAEs (use_post_quant_conv=False) have none; Identity keeps forward uniform.
        self.post_quant_conv = vae.post_quant_conv if vae.post_quant_conv is not None else nn.Identity()
        self.decoder = vae.decoder
        self.scaling_factor = float(vae.config.scaling_factor)
        self.shift_factor = float(vae.config.shift_factor or 0.0)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents / self.scaling_factor + self.shift_factor
        return self.decoder(self.post_quant_conv(latents))


def build_random_vae(model_config: Mapping[str, Any], seed: int) -> AutoencoderKL:
    """An AutoencoderKL with diffusers' default init, seeded without touching the global RNG."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**model_config)


def decoder_needs(name: str) -> bool:
    return name.startswith(DECODER_PREFIXES)


def latent_geometry(vae: AutoencoderKL, image_size: int, folder: Path | None = None) -> tuple[int, int]:
    """(latent channels, latent side) of `vae` decoding to `image_size`; a loaded config is checked first."""
    config = vae.config
    # Each decoder level but the last upsamples ×2.
    latent_size = image_size // 2 ** (len(config.block_out_channels) - 1)
    if folder is not None:
        where = str(folder / CONFIG_NAME)
        if latent_size < 1:
            raise UserError(f"weights config {where!r}: {len(config.block_out_channels)} decoder levels upsample "
                            f"more than the benchmark's {image_size} px image allows")
        for key in ("scaling_factor", "shift_factor"):
            value = getattr(config, key, None)
            if key == "shift_factor" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value == 0:
                raise UserError(f"weights config {where!r}: {key} must be a finite non-zero number, got {value!r}")
    return int(config.latent_channels), latent_size


def check_vae_folder(folder: Path, image_size: int, *, whole: bool = False) -> None:
    """Check a VAE (or pipeline) folder against the decoder it would give, built and dry-run on the meta device.

    `whole`: every tensor must be there (training runs the encoder too), not only the decoder's.
    """
    from diffusers import AutoencoderKL

    folder = model_folder(folder, "vae")
    vae = check_diffusers_model(AutoencoderKL, folder, None if whole else decoder_needs)
    channels, side = latent_geometry(vae, image_size, folder)
    dry_run(LatentDecoder(vae), (torch.empty(1, channels, side, side, device="meta"),), folder)


class MomentsEncoder(nn.Module):
    """`AutoencoderKL.encode` without the distribution object: image → moments (mean and log-variance, stacked on channels)."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.encoder = vae.encoder
        self.quant_conv = vae.quant_conv if vae.quant_conv is not None else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(images))


class SampleDecoder(nn.Module):
    """The decoder as training calls it: a latent sample z (unscaled) → image."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.post_quant_conv = vae.post_quant_conv if vae.post_quant_conv is not None else nn.Identity()
        self.decoder = vae.decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


def elbo_step(sessions: Any, trainer: Any, images: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
    """One VAE training step on the negative ELBO (Kingma & Welling 2014), averaged over the batch.

    q(z|x) = N(μ, σ²) from the encoder's moments (log σ² clamped to [-30, 20]
    as diffusers' DiagonalGaussianDistribution does); z = μ + σ·ε with the
    batch's seeded ε (the reparameterisation trick); the reconstruction term
    is a unit-variance Gaussian decoder's −log p(x|z) up to its constant,
    ½‖x − x̂‖²; the KL term is KL(q(z|x) ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − log σ²).
    """
    mean, logvar = sessions["encoder"](images).chunk(2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    z = mean + torch.exp(0.5 * logvar) * eps
    reconstruction = sessions["decoder"](z)
    recon = 0.5 * (reconstruction - images).pow(2).flatten(1).sum(1).mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean()
    loss = recon + kl
    norm = trainer.step("vae", loss)
    return {"loss": loss.detach(), "reconstruction": recon.detach(), "kl": kl.detach(), "grad_norm": norm}
