"""The torch side of the DiT workload (`dit`): the guided denoiser, the transformer's construction, weight checks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch
from diffusers.models.transformers.dit_transformer_2d import DiTTransformer2DModel
from torch import nn

from ..bench.errors import UserError
from .dit import GUIDANCE_SCALE
from .vae_model import LatentDecoder, build_random_vae, decoder_needs, latent_geometry
from .weights import CONFIG_NAME, check_diffusers_model, dry_run, load_diffusers_model, require_folder, weights_sha256

if TYPE_CHECKING:
    from diffusers import AutoencoderKL

# The subfolders of a diffusers DiT pipeline folder that the workload reads.
TRANSFORMER_FOLDER = "transformer"
VAE_FOLDER = "vae"


class GuidedDenoiser(nn.Module):
    """The transformer with classifier-free guidance, as DiTPipeline calls it, in one export-friendly call.

    (latents (B, C, s, s), int64 timestep (B,), int64 class label (B,)) → guided noise (B, C, s, s): the
    transformer runs on the doubled batch — each item with its label, then with the null class
    (id `num_embeds_ada_norm`, the embedding that label dropout trained) — and the two noise
    predictions are mixed as `uncond + scale · (cond − uncond)`.
    """

    def __init__(self, transformer: DiTTransformer2DModel, guidance_scale: float) -> None:
        super().__init__()
        self.transformer = transformer
        self.guidance_scale = float(guidance_scale)
        self.null_class = int(transformer.config.num_embeds_ada_norm)
        self.latent_channels = int(transformer.config.in_channels)
        # DiT-XL/2 predicts the noise and a learned Σ; DiTPipeline keeps the noise when the output holds both.
        self.learned_sigma = int(transformer.out_channels) == 2 * self.latent_channels

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        batch = latents.shape[0]
        labels = torch.cat([class_labels, torch.full_like(class_labels, self.null_class)])
        # return_dict=False keeps the output a plain tensor, which exporters need.
        out = self.transformer(torch.cat([latents, latents]), timestep=torch.cat([timestep, timestep]),
                               class_labels=labels, return_dict=False)[0]
        if self.learned_sigma:
            out = out[:, : self.latent_channels]
        cond, uncond = out[:batch], out[batch:]
        return uncond + self.guidance_scale * (cond - uncond)


class Transformer2DModel(DiTTransformer2DModel):
    """DiTTransformer2DModel under the class name the published DiT folders carry.

    facebook/DiT-XL-2-256 and -512 were converted before diffusers split DiT
    out of its generic `Transformer2DModel`, and their config still names it;
    diffusers loads such a folder as a DiTTransformer2DModel (norm_type
    "ada_norm_zero"), and so does this workload: the config check compares the
    folder's `_class_name` with the class it builds, and this one matches.
    """


def transformer_class(folder: Path) -> type[DiTTransformer2DModel]:
    """The class that builds `folder`'s transformer; an unreadable config is left to the checks to refuse."""
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return DiTTransformer2DModel
    legacy = isinstance(config, dict) and config.get("_class_name") == Transformer2DModel.__name__
    return Transformer2DModel if legacy and config.get("norm_type") == "ada_norm_zero" else DiTTransformer2DModel


def embedders(transformer: DiTTransformer2DModel) -> list[nn.Module]:
    """Each block's timestep + class embedder (diffusers' AdaLayerNormZero holds one per block)."""
    return [block.norm1.emb for block in transformer.transformer_blocks]


def embedders_equal(transformer: DiTTransformer2DModel) -> bool:
    first, *rest = (e.state_dict() for e in embedders(transformer))
    return all(s.keys() == first.keys() and all(torch.equal(s[k], first[k]) for k in s) for s in rest)


def tie_embedders(transformer: DiTTransformer2DModel) -> None:
    """Make every block use block 0's timestep and class embedder, as the paper's DiT does.

    The original model embeds t and y once and feeds the sum to every block's
    adaLN; diffusers' conversion copies that one embedder into all blocks, so
    the copies hold the same numbers and tying changes no output of a
    converted checkpoint, only the parameter count (back to the paper's). The
    forward pass is diffusers' own: each block still calls its embedder, now on shared tensors.

    The tensors are shared, not the module: one module under 28 names would
    be swapped 28 times by `torch.func.functional_call` (the FLOP counter's
    meta-device call), which then restores a swapped-in tensor, not the original.
    """
    shared, *others = embedders(transformer)
    for other in others:
        for source, target in zip(shared.modules(), other.modules()):
            for name, tensor in [*source.named_parameters(recurse=False), *source.named_buffers(recurse=False)]:
                setattr(target, name, tensor)


@dataclass(frozen=True)
class PipelineModels:
    """The two models of a DiT pipeline, the image size they make, and the digest of loaded weights."""

    transformer: DiTTransformer2DModel
    vae: AutoencoderKL
    image_size: int
    weights_sha256: str | None = None


def build_random_pipeline(
    transformer_config: Mapping[str, Any], vae_config: Mapping[str, Any], image_size: int, seed: int
) -> PipelineModels:
    """A tied DiT and an AutoencoderKL with diffusers' default init, seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = DiTTransformer2DModel(**transformer_config)
    tie_embedders(transformer)
    vae = build_random_vae(vae_config, seed)
    if image_size_of(transformer, vae) != image_size:
        raise ValueError(f"preset bug: the transformer's latents and the VAE do not make {image_size} px images")
    return PipelineModels(transformer, vae, image_size)


def pipeline_folders(folder: Path) -> tuple[Path, Path]:
    """`folder`'s transformer and VAE subfolders, or a one-line UserError saying what a DiT folder holds."""
    folder = require_folder(folder)
    missing = [name for name in (TRANSFORMER_FOLDER, VAE_FOLDER) if not (folder / name).is_dir()]
    if missing:
        raise UserError(f"weights folder {str(folder)!r} has no {' or '.join(m + '/' for m in missing)} subfolder; "
                        f"dit loads a diffusers DiT pipeline folder ({TRANSFORMER_FOLDER}/ and {VAE_FOLDER}/, "
                        "as DiTPipeline.save_pretrained writes it)")
    return folder / TRANSFORMER_FOLDER, folder / VAE_FOLDER


def image_size_of(transformer: DiTTransformer2DModel, vae: AutoencoderKL) -> int:
    """The image side the pipeline makes: the transformer's latent side times the VAE decoder's upsampling."""
    return int(transformer.config.sample_size) * 2 ** (len(vae.config.block_out_channels) - 1)


def check_geometry(transformer: DiTTransformer2DModel, vae: AutoencoderKL, transformer_folder: Path,
                   vae_folder: Path) -> int:
    """Refuse a loaded pair that cannot run as one pipeline; return the image size it makes."""
    config, where = transformer.config, str(transformer_folder / CONFIG_NAME)
    side = config.sample_size
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise UserError(f"weights config {where!r}: sample_size must be a positive integer, got {side!r}")
    # The sampler feeds the guided noise back into latents of the transformer's input shape.
    if transformer.out_channels not in (config.in_channels, 2 * config.in_channels):
        raise UserError(f"weights config {where!r}: out_channels ({transformer.out_channels}) must be in_channels "
                        f"({config.in_channels}) or twice it (noise and learned sigma)")
    image_size = image_size_of(transformer, vae)
    channels, _ = latent_geometry(vae, image_size, vae_folder)
    if channels != config.in_channels:
        raise UserError(f"weights config {str(vae_folder / CONFIG_NAME)!r}: the VAE decodes {channels}-channel "
                        f"latents, the transformer ({where!r}) makes {config.in_channels}")
    return image_size


def check_pipeline_folder(folder: Path) -> None:
    """Check a DiT pipeline folder from configs and weight headers, both models built and dry-run on the meta device."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    transformer_folder, vae_folder = pipeline_folders(folder)
    transformer = check_diffusers_model(transformer_class(transformer_folder), transformer_folder)
    vae = check_diffusers_model(AutoencoderKL, vae_folder, decoder_needs)
    check_geometry(transformer, vae, transformer_folder, vae_folder)
    channels, side = int(transformer.config.in_channels), int(transformer.config.sample_size)
    latents = torch.empty(1, channels, side, side, device="meta")
    index = torch.zeros(1, dtype=torch.int64, device="meta")
    dry_run(GuidedDenoiser(transformer, GUIDANCE_SCALE), (latents, index, index), transformer_folder)
    dry_run(LatentDecoder(vae), (latents,), vae_folder)


def load_pipeline(folder: Path) -> PipelineModels:
    """Load a DiT pipeline folder, refusing what `check_pipeline_folder` refuses; record a digest of both models."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    transformer_folder, vae_folder = pipeline_folders(folder)
    transformer = load_diffusers_model(transformer_class(transformer_folder), transformer_folder)
    vae = load_diffusers_model(AutoencoderKL, vae_folder, decoder_needs)
    image_size = check_geometry(transformer, vae, transformer_folder, vae_folder)
    # A converted checkpoint holds equal copies (tie them, as built from config); one trained with
    # per-block embedders keeps them.
    if embedders_equal(transformer):
        tie_embedders(transformer)
    digest = hashlib.sha256()
    for name, path in ((TRANSFORMER_FOLDER, transformer_folder), (VAE_FOLDER, vae_folder)):
        digest.update(f"{name}:{weights_sha256(path)}\n".encode())
    return PipelineModels(transformer, vae, image_size, digest.hexdigest())
