"""The torch side of the video workload (`video`): SVD's guided spatio-temporal UNet, clip decoder, weight checks."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from diffusers.models.autoencoders.autoencoder_kl_temporal_decoder import AutoencoderKLTemporalDecoder
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionModel
from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
from torch import nn

from ..bench.errors import UserError
from .video import MAX_GUIDANCE_SCALE, MIN_GUIDANCE_SCALE
from .weights import (CONFIG_NAME, check_diffusers_model, dry_run, load_diffusers_model, public_config, quiet,
                      require_folder, weights_sha256)

# The subfolders of a diffusers StableVideoDiffusionPipeline folder that the workload reads.
UNET_FOLDER = "unet"
VAE_FOLDER = "vae"
# The added time ids SVD conditions on: fps − 1, motion_bucket_id, noise_aug_strength.
ADDED_TIME_IDS = 3
# What `ClipDecoder` keeps of an AutoencoderKLTemporalDecoder (it has no post_quant_conv): a checkpoint must
# hold these; the encoder's tensors may be absent (they are dropped), but must fit the model when present.
DECODER_PREFIX = "decoder."


def guidance_scales(frames: int, min_scale: float = MIN_GUIDANCE_SCALE,
                    max_scale: float = MAX_GUIDANCE_SCALE) -> torch.Tensor:
    """SVD's per-frame guidance scale, (1, F, 1, 1, 1): linearly spaced from the first frame's to the last's.

    StableVideoDiffusionPipeline builds `linspace(min, max, F)`, repeats it per item and appends
    dimensions to the latents' rank, (B, F, 1, 1, 1); one row broadcasts the same over the batch.
    """
    return torch.linspace(min_scale, max_scale, frames, dtype=torch.float32).reshape(1, frames, 1, 1, 1)


class GuidedSpatioTemporalUNet(nn.Module):
    """The SVD UNet with its per-frame classifier-free guidance, as StableVideoDiffusionPipeline calls it, in one call.

    (scaled noisy latents (B, F, C, h, w), float32 timestep (B,), image embedding (B, 1, D), image latent
    (B, C, h, w), added time ids (B, 3)) → guided v-prediction (B, F, C, h, w). The UNet runs on the
    doubled batch: the unconditional rows first (zero image embedding, zero image latent), then the
    conditional ones; each row's input is its latents with the image latent, repeated over the frames,
    concatenated on channels. The two predictions are mixed per frame, `uncond + s_f · (cond − uncond)`.
    """

    def __init__(self, unet: UNetSpatioTemporalConditionModel, frames: int,
                 min_scale: float = MIN_GUIDANCE_SCALE, max_scale: float = MAX_GUIDANCE_SCALE) -> None:
        super().__init__()
        self.unet = unet
        self.frames = int(frames)
        # A buffer, not a parameter: it follows the module's device and dtype, and no checkpoint holds it.
        self.register_buffer("guidance_scale", guidance_scales(frames, min_scale, max_scale), persistent=False)

    def forward(self, latents: torch.Tensor, timestep: torch.Tensor, image_embeds: torch.Tensor,
                image_latents: torch.Tensor, added_time_ids: torch.Tensor) -> torch.Tensor:
        batch = latents.shape[0]
        condition = image_latents.unsqueeze(1).expand(-1, latents.shape[1], -1, -1, -1)
        model_input = torch.cat([torch.cat([latents, torch.zeros_like(condition)], dim=2),
                                 torch.cat([latents, condition], dim=2)])
        embeds = torch.cat([torch.zeros_like(image_embeds), image_embeds])
        # return_dict=False keeps the output a plain tensor, which exporters need.
        out = self.unet(model_input, torch.cat([timestep, timestep]), encoder_hidden_states=embeds,
                        added_time_ids=torch.cat([added_time_ids, added_time_ids]), return_dict=False)[0]
        uncond, cond = out[:batch], out[batch:]
        return uncond + self.guidance_scale * (cond - uncond)


class ClipDecoder(nn.Module):
    """`AutoencoderKLTemporalDecoder.decode` of whole clips: latents (B, F, C, h, w) → frames (B, F, 3, H, W).

    The division by `scaling_factor` is part of the module, as it is part of the pipeline's
    `decode_latents`; the temporal layers see the F frames of each clip together (no chunking).

    The forward is diffusers' `TemporalDecoder.forward` (inference branch) but for its last reshape:
    diffusers returns (B·F, 3, H, W), a view of the temporal conv's output at batch 1 and a copy at
    any other batch, so one call's operators would depend on the batch (which the planner's cost
    traces refuse, and a per-batch graph would not be one graph). Here the frames-major copy is made
    at every batch: one copy of the 3-channel output, the layout the pipeline ends with anyway.
    """

    def __init__(self, vae: AutoencoderKLTemporalDecoder) -> None:
        super().__init__()
        self.decoder = vae.decoder
        self.scaling_factor = float(vae.config.scaling_factor)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        batch, frames = latents.shape[0], latents.shape[1]
        decoder = self.decoder
        z = latents.flatten(0, 1) / self.scaling_factor
        # The pipeline's decode marks every frame as video (0), not as a lone image.
        indicator = torch.zeros(batch, frames, dtype=z.dtype, device=z.device)
        sample = decoder.mid_block(decoder.conv_in(z), image_only_indicator=indicator)
        for up_block in decoder.up_blocks:
            sample = up_block(sample, image_only_indicator=indicator)
        sample = decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(sample)))
        # (B·F, 3, H, W) → (B, 3, F, H, W): the last conv mixes each pixel over neighbouring frames.
        sample = decoder.time_conv_out(sample.reshape(batch, frames, *sample.shape[1:]).permute(0, 2, 1, 3, 4))
        return sample.permute(0, 2, 1, 3, 4).contiguous()


@dataclass(frozen=True)
class Geometry:
    """The shapes the pipeline feeds its components, read from the models (a loaded folder's may differ)."""

    latent_channels: int
    latent_height: int
    latent_width: int
    embed_width: int  # the image embedding's width: the UNet's cross_attention_dim
    default_frames: int  # the UNet config's num_frames, the pipeline's default clip length
    scaling_factor: float


@dataclass(frozen=True)
class PipelineModels:
    """The UNet and temporal VAE of an SVD pipeline, their geometry, and the digest of loaded weights."""

    unet: UNetSpatioTemporalConditionModel
    vae: AutoencoderKLTemporalDecoder
    geometry: Geometry
    weights_sha256: str | None = None

    def public_configs(self) -> dict[str, Any]:
        return {"unet": public_config(self.unet), "vae": public_config(self.vae)}


def new_scheduler_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """EulerDiscreteScheduler's full config for SVD's published one (its defaults filled in, foreign keys dropped)."""
    # On the CPU, as the pipeline keeps its scheduler, even while a model is built on the meta device.
    with quiet(), torch.device("cpu"):
        return dict(EulerDiscreteScheduler.from_config(dict(config)).config)


def decoder_needs(name: str) -> bool:
    return name.startswith(DECODER_PREFIX)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def geometry_of(unet: UNetSpatioTemporalConditionModel, vae: AutoencoderKLTemporalDecoder, height: int, width: int,
                unet_folder: Path | None = None, vae_folder: Path | None = None) -> Geometry:
    """The pipeline's shapes at `height` × `width`; a loaded pair that cannot run as one pipeline is refused."""
    u, v = unet.config, vae.config
    unet_where = str((unet_folder or Path(UNET_FOLDER)) / CONFIG_NAME)
    vae_where = str((vae_folder or Path(VAE_FOLDER)) / CONFIG_NAME)
    scale = 2 ** (len(v.block_out_channels) - 1)  # each decoder level but the last upsamples ×2
    if height % scale or width % scale:
        raise UserError(f"weights config {vae_where!r}: {len(v.block_out_channels)} decoder levels upsample ×{scale}, "
                        f"which does not divide the benchmark's {height}×{width} frames")
    channels = v.latent_channels
    if not _is_size(channels):
        raise UserError(f"weights config {vae_where!r}: latent_channels must be a positive integer, got {channels!r}")
    # The noisy latents and the image latent, concatenated on channels; the UNet predicts the noisy latents' v.
    if u.in_channels != 2 * channels or u.out_channels != channels:
        raise UserError(f"weights config {unet_where!r}: in_channels ({u.in_channels}) must be twice and out_channels "
                        f"({u.out_channels}) equal to the VAE's latent_channels ({channels}, {vae_where!r})")
    if not _is_size(u.cross_attention_dim):
        raise UserError(f"weights config {unet_where!r}: cross_attention_dim must be one positive integer (the image "
                        f"embedding's width), got {u.cross_attention_dim!r}")
    if u.projection_class_embeddings_input_dim != ADDED_TIME_IDS * u.addition_time_embed_dim:
        raise UserError(f"weights config {unet_where!r}: projection_class_embeddings_input_dim "
                        f"({u.projection_class_embeddings_input_dim}) must be {ADDED_TIME_IDS} added time ids × "
                        f"addition_time_embed_dim ({u.addition_time_embed_dim})")
    if not _is_size(u.num_frames) or u.num_frames > 1024:
        raise UserError(f"weights config {unet_where!r}: num_frames must be an integer from 1 to 1024, "
                        f"got {u.num_frames!r}")
    factor = v.scaling_factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor == 0:
        raise UserError(f"weights config {vae_where!r}: scaling_factor must be a finite non-zero number, "
                        f"got {factor!r}")
    return Geometry(int(channels), height // scale, width // scale, int(u.cross_attention_dim), int(u.num_frames),
                    float(factor))


def build_random_pipeline(unet_config: Mapping[str, Any], vae_config: Mapping[str, Any], height: int, width: int,
                          seed: int) -> PipelineModels:
    """The UNet and temporal VAE with diffusers' default init, seeded without touching the global RNG."""
    with quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(**unet_config)
        torch.manual_seed(seed)
        vae = AutoencoderKLTemporalDecoder(**vae_config)
    return PipelineModels(unet.eval(), vae.eval(), geometry_of(unet, vae, height, width))


def pipeline_folders(folder: Path) -> tuple[Path, Path]:
    """`folder`'s unet and vae subfolders, or a one-line UserError saying what an SVD folder holds."""
    folder = require_folder(folder)
    missing = [name for name in (UNET_FOLDER, VAE_FOLDER) if not (folder / name).is_dir()]
    if missing:
        raise UserError(f"weights folder {str(folder)!r} has no {' or '.join(m + '/' for m in missing)} subfolder; "
                        f"video loads a diffusers Stable Video Diffusion pipeline folder ({UNET_FOLDER}/ and "
                        f"{VAE_FOLDER}/, as StableVideoDiffusionPipeline.save_pretrained writes it)")
    return folder / UNET_FOLDER, folder / VAE_FOLDER


def meta_inputs(geometry: Geometry) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """(the UNet component's inputs, the decoder's latents) of one default-length clip, on the meta device."""
    g = geometry
    latents = torch.empty(1, g.default_frames, g.latent_channels, g.latent_height, g.latent_width, device="meta")
    unet_inputs = (latents, torch.empty(1, device="meta"), torch.empty(1, 1, g.embed_width, device="meta"),
                   torch.empty(1, g.latent_channels, g.latent_height, g.latent_width, device="meta"),
                   torch.empty(1, ADDED_TIME_IDS, device="meta"))
    return unet_inputs, latents


def check_pipeline_folder(folder: Path, height: int, width: int) -> None:
    """Check an SVD pipeline folder from configs and weight headers, both models dry-run on the meta device."""
    unet_folder, vae_folder = pipeline_folders(folder)
    # `.to("meta")`: diffusers' AlphaBlender makes its mix_factor with `torch.Tensor([alpha])`, which ignores
    # the meta device the model is built on; the dry run needs every tensor there.
    unet = check_diffusers_model(UNetSpatioTemporalConditionModel, unet_folder).to("meta")
    vae = check_diffusers_model(AutoencoderKLTemporalDecoder, vae_folder, decoder_needs).to("meta")
    geometry = geometry_of(unet, vae, height, width, unet_folder, vae_folder)
    unet_inputs, latents = meta_inputs(geometry)
    with torch.device("meta"):
        guided = GuidedSpatioTemporalUNet(unet, geometry.default_frames)
    dry_run(guided, unet_inputs, unet_folder)
    dry_run(ClipDecoder(vae), (latents,), vae_folder)


def load_pipeline(folder: Path, height: int, width: int) -> PipelineModels:
    """Load an SVD pipeline folder, refusing what `check_pipeline_folder` refuses; record a digest of both models."""
    unet_folder, vae_folder = pipeline_folders(folder)
    unet = load_diffusers_model(UNetSpatioTemporalConditionModel, unet_folder)
    vae = load_diffusers_model(AutoencoderKLTemporalDecoder, vae_folder, decoder_needs)
    geometry = geometry_of(unet, vae, height, width, unet_folder, vae_folder)
    digest = hashlib.sha256()
    for name, path in ((UNET_FOLDER, unet_folder), (VAE_FOLDER, vae_folder)):
        digest.update(f"{name}:{weights_sha256(path)}\n".encode())
    return PipelineModels(unet, vae, geometry, digest.hexdigest())
