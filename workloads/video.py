"""Stable Video Diffusion: image-to-video latent diffusion (Blattmann et al. 2023), as diffusers' SVD pipeline runs it.

Two components:
- "unet": diffusers' `UNetSpatioTemporalConditionModel` with SVD's
  classifier-free guidance (`video_model.GuidedSpatioTemporalUNet`). One call
  takes the clip's scaled noisy latents (B, F, 4, h, w), a float32 timestep
  per item (B,) (Euler's continuous timesteps, 0.25·ln σ), the CLIP image
  embedding (B, 1, 1024), the conditioning image's VAE latent (B, 4, h, w) and
  the added time ids (B, 3): fps − 1, motion_bucket_id, noise_aug_strength
  (6, 127, 0.02: the pipeline's defaults fps 7, 127, 0.02). It runs the UNet on
  the doubled batch, as StableVideoDiffusionPipeline does — the unconditional
  rows first, with a zero image embedding and a zero image latent, then the
  conditional ones — each row's input being its noisy latents with the image
  latent, repeated over the frames, concatenated on channels (in_channels 8 =
  4 noisy + 4 conditioning). It returns the guided v-prediction
  `uncond + s_f · (cond − uncond)` (B, F, 4, h, w), the scale s_f linearly
  spaced over the frames from min_guidance_scale 1.0 (first frame) to
  max_guidance_scale 3.0 (last), the pipeline's defaults. The doubling is
  inside the component, as in `dit` and `sd`, so the component's batch is the
  pipeline's (a TensorRT profile sees it) and its batch-1 FLOPs are one clip's,
  both rows included.
- "decoder": `AutoencoderKLTemporalDecoder`'s decoder
  (`video_model.ClipDecoder`): the final latents (B, F, 4, h, w), divided by the
  VAE's scaling factor 0.18215, → frames (B, F, 3, H, W), the layout the
  pipeline's `output_type="pt"` returns. The temporal decoder mixes
  neighbouring frames (its time_conv_out and temporal resblocks), so a call
  decodes whole clips: one call per batch, diffusers' default
  (`decode_chunk_size` = the frame count). SVD's model card passes
  decode_chunk_size=8 to save memory; chunks change the output (the temporal
  layers see only their chunk) and leave a ragged last chunk (25 = 3 × 8 + 1)
  whose shape a static-shape engine could not take, so the workload does not chunk.

Not measured: the CLIP image encoder (CLIPVisionModelWithProjection, OpenCLIP
ViT-H/14, 632,076,800 parameters) and the VAE encoder run once per video, on
the conditioning image, before the sampling loop: 0.33 TFLOPs at 224 px and
2.6 TFLOPs for one 576×1024 frame, 0.13 % of a base clip's 2,337 TFLOPs (25
doubled UNet calls over 14 frames and the decode; 0.07 % at large). The batch
carries what they would give instead: a seeded image embedding (B, 1, 1024)
and a seeded conditioning latent (B, 4, h, w), unscaled as SVD feeds it (the
pipeline concatenates `latent_dist.mode()` without the scaling factor; the
seeded latent has that scale, N(0, 1) / 0.18215). Both encoders are left out,
not one: the image encoder alone would add 632 M parameters (40 % more
weights to load and hold) for a tenth of the encoders' work, the VAE encoder
being the larger cost of the two. Speed does not depend on the values; were
the encoders wanted, they would be two more components called once per batch,
making the tensors the batch now carries.

The pipeline: seeded Gaussian latents (B, F, 4, h, w) × the scheduler's
initial sigma, then per timestep `scale_model_input`, a UNet call and an
Euler step on the host, then the decode. The scheduler is SVD's:
EulerDiscreteScheduler with stabilityai/stable-video-diffusion-img2vid's
scheduler/scheduler_config.json (v-prediction, Karras sigmas from
sigma_max 700 to sigma_min 0.002, continuous timesteps, linear interpolation),
deterministic (s_churn 0). Default: 25 steps (the pipeline's
num_inference_steps) at base and large; 2 at tiny, for tests. (`default_steps`,
what the planner assumes without building, is 25: the published sizes'.)

Unit of work: one frame. A row is one clip of `frames` frames
(`units_per_row`), so throughput reads frames/s and FLOPs per item are per
frame. `--frames` (1 to 1024) sets the clip length; by default it is the
UNet config's num_frames, as the pipeline's: 14 at base
(stable-video-diffusion-img2vid), 25 at large (-img2vid-xt), 3 at tiny.

Sizes (every count checked on the meta device by the tests):
- tiny:  a 2-level spatio-temporal UNet (32, 64 channels), a 4-level tiny
  temporal VAE decoder (32, 32, 64, 64): 4×8 latents → 32×64 px, 3 frames.
- base:  SVD img2vid at 576×1024 (72×128 latents), 14 frames: UNet
  1,524,623,082 parameters (the published count; diffusers'
  UNetSpatioTemporalConditionModel defaults are stabilityai/stable-video-
  diffusion-img2vid-xt's unet/config.json but sample_size, 96 there and
  unused, the pipeline making 576×1024; img2vid's differs in num_frames, 14,
  which changes no parameter), temporal decoder 63,579,183 (of the
  97,742,847-parameter AutoencoderKLTemporalDecoder of vae/config.json,
  published as 97.7 M; its encoder and quant_conv, 34,163,664, are not used).
  FLOPs: 89.6 T per guided UNet call (2 rows × 14 frames), 97.2 T per
  decode, 167 T per frame over 25 steps.
- large: SVD-XT (stable-video-diffusion-img2vid-xt) at 576×1024, 25 frames:
  the same architecture and counts, num_frames 25 (159.9 T per UNet call,
  173.6 T per decode).

`--weights DIR` loads a diffusers StableVideoDiffusionPipeline folder (`unet/`
and `vae/`, as save_pretrained writes them; the image encoder's folder, if
present, is not read), checked from configs and checkpoint headers on the meta
device before anything is measured. The size keeps its resolution; the frame
count defaults to the folder UNet's num_frames.

This module is the workload's declaration and pipeline, and imports no torch
or diffusers; the torch side is in `video_model`, imported where a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..bench import limits
from ..bench.errors import UserError
from .base import Batch, ComponentFn, Workload
from .diffusion import SCHEDULER_MODULES, SamplerChoice, sampler_choice

if TYPE_CHECKING:
    import torch
    from diffusers import SchedulerMixin
    from torch import nn

UNET = "unet"
DECODER = "decoder"
DEFAULT_STEPS = 25  # StableVideoDiffusionPipeline's num_inference_steps
TINY_STEPS = 2
DEFAULT_SCHEDULER = "euler"
SCHEDULERS: tuple[str, ...] = ("euler",)
# StableVideoDiffusionPipeline's defaults.
MIN_GUIDANCE_SCALE = 1.0
MAX_GUIDANCE_SCALE = 3.0
FPS = 7  # the UNet is conditioned on fps − 1
MOTION_BUCKET_ID = 127
NOISE_AUG_STRENGTH = 0.02

# stabilityai/stable-video-diffusion-img2vid's scheduler/scheduler_config.json, as published (the -xt one is the
# same); EulerDiscreteScheduler ignores the keys it does not have (clip_sample, set_alpha_to_one, skip_prk_steps).
SVD_SCHEDULER: Mapping[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "trained_betas": None,
    "use_karras_sigmas": True,
}

# stabilityai/stable-video-diffusion-img2vid's unet/config.json (diffusers' defaults but num_frames).
SVD_UNET: Mapping[str, Any] = {
    "addition_time_embed_dim": 256,
    "block_out_channels": (320, 640, 1280, 1280),
    "cross_attention_dim": 1024,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                         "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "in_channels": 8,
    "layers_per_block": 2,
    "num_attention_heads": (5, 10, 20, 20),
    "num_frames": 14,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 768,  # 3 added time ids × 256
    "sample_size": 96,
    "transformer_layers_per_block": 1,
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                       "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
}
# stabilityai/stable-video-diffusion-img2vid-xt's unet/config.json.
SVD_XT_UNET: Mapping[str, Any] = {**SVD_UNET, "num_frames": 25}

# vae/config.json of both checkpoints.
SVD_VAE: Mapping[str, Any] = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "out_channels": 3,
    "sample_size": 768,
    "scaling_factor": 0.18215,
}

# The spatio-temporal blocks' GroupNorms have 32 groups, so every width is a multiple of 32.
TINY_UNET: Mapping[str, Any] = {
    **SVD_UNET,
    "addition_time_embed_dim": 8,
    "block_out_channels": (32, 64),
    "cross_attention_dim": 32,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "layers_per_block": 1,
    "num_attention_heads": (2, 4),
    "num_frames": 3,
    "projection_class_embeddings_input_dim": 24,
    "sample_size": 4,
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
}
TINY_VAE: Mapping[str, Any] = {**SVD_VAE, "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1,
                               "sample_size": 32}


@dataclass(frozen=True)
class VideoPreset:
    """A UNet config, a temporal VAE config, the frame size they make (height, width) and the default steps."""

    unet: Mapping[str, Any]
    vae: Mapping[str, Any]
    height: int
    width: int
    steps: int


PRESETS: Mapping[str, VideoPreset] = {
    "tiny": VideoPreset(TINY_UNET, TINY_VAE, 32, 64, TINY_STEPS),
    "base": VideoPreset(SVD_UNET, SVD_VAE, 576, 1024, DEFAULT_STEPS),
    "large": VideoPreset(SVD_XT_UNET, SVD_VAE, 576, 1024, DEFAULT_STEPS),
}


def choose_sampler(size: str, steps: int | None, scheduler: str | None) -> SamplerChoice:
    return sampler_choice("video", steps, scheduler, default_steps=PRESETS[size].steps,
                          default_scheduler=DEFAULT_SCHEDULER, schedulers=SCHEDULERS,
                          max_steps=SVD_SCHEDULER["num_train_timesteps"])


def check_frames(value: Any, default: int) -> int:
    """The clip's frame count: `default` (the UNet's num_frames) when not given, else an integer from 1 to 1024."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"--frames must be an integer, got {value!r}", key="frames")
    return int(limits.check("frames", value))


class VideoDiffusion(Workload):
    """Image-to-video diffusion: noisy clip latents + image conditioning → `steps` guided UNet calls → decode."""

    name = "video"
    family = "diffusion"
    unit = "frame"
    description = ("Stable Video Diffusion (Blattmann et al. 2023): spatio-temporal UNet with per-frame CFG, "
                   "`steps` Euler steps, temporal VAE decode")
    iterative = True
    schedulers = SCHEDULERS
    default_steps = DEFAULT_STEPS
    max_steps = SVD_SCHEDULER["num_train_timesteps"]
    default_scheduler = DEFAULT_SCHEDULER
    # None: the UNet config's num_frames (14 at base, 25 at large), as the pipeline defaults it.
    accepts = {"frames": None}
    model_modules = (
        "aigcbench.workloads.video_model",
        "diffusers.models.unets.unet_spatio_temporal_condition",
        "diffusers.models.autoencoders.autoencoder_kl_temporal_decoder",
        # EulerDiscreteScheduler.from_config imports its compatible schedulers' modules too.
        *SCHEDULER_MODULES,
    )

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .video_model import check_pipeline_folder

        preset = PRESETS[size]
        check_pipeline_folder(folder, preset.height, preset.width)

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        from .video_model import (ClipDecoder, GuidedSpatioTemporalUNet, build_random_pipeline, load_pipeline,
                                  new_scheduler_config)

        sampler = choose_sampler(size, steps, scheduler)
        super().__init__(size, seed, steps=sampler.steps, scheduler=sampler.scheduler, weights=weights, params=params)
        preset = PRESETS[size]
        # Refused before minutes are spent building a 1.5 B-parameter UNet.
        given = self.params["frames"]
        if given is not None:
            check_frames(given, 1)
        if weights is None:
            models = build_random_pipeline(preset.unet, preset.vae, preset.height, preset.width, seed)
        else:
            models = load_pipeline(weights, preset.height, preset.width)
        self.weights_digest: str | None = models.weights_sha256
        self.geometry = models.geometry
        self.frames = check_frames(given, self.geometry.default_frames)
        self.height, self.width = preset.height, preset.width
        self.model_config = models.public_configs()
        self.unet = GuidedSpatioTemporalUNet(models.unet, self.frames, MIN_GUIDANCE_SCALE, MAX_GUIDANCE_SCALE).eval()
        # Only the decoder half of the VAE is kept; the encoder is freed with `models`.
        self.decoder = ClipDecoder(models.vae).eval()
        self.scheduler_config = new_scheduler_config(SVD_SCHEDULER)

    def units_per_row(self) -> float:
        """Frames in one row's clip."""
        return float(self.frames)

    def output_shape(self, batch_size: int) -> tuple[int, ...]:
        """One clip of RGB frames per row: (B, F, 3, H, W)."""
        return (batch_size, self.frames, 3, self.height, self.width)

    def components(self) -> Mapping[str, nn.Module]:
        return {UNET: self.unet, DECODER: self.decoder}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        latents, embeds, image_latents = self.make_batch(batch_size, self.seed).inputs
        if component == UNET:
            return self.unet_inputs(latents, self.first_timestep(), embeds, image_latents)
        if component == DECODER:
            return (latents,)
        raise KeyError(f"video has components {UNET!r} and {DECODER!r}; got {component!r}")

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        g = self.geometry
        rng = torch.Generator().manual_seed(seed)
        latents = torch.randn((batch_size, self.frames, g.latent_channels, g.latent_height, g.latent_width),
                              generator=rng)
        embeds = torch.randn((batch_size, 1, g.embed_width), generator=rng)
        # What the VAE encoder gives for the conditioning frame, unscaled, as SVD concatenates it.
        image_latents = torch.randn((batch_size, g.latent_channels, g.latent_height, g.latent_width),
                                    generator=rng) / g.scaling_factor
        return Batch(inputs=(latents, embeds, image_latents), seed=seed, size=batch_size)

    def unet_inputs(self, latents: torch.Tensor, timestep: Any, embeds: torch.Tensor,
                    image_latents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The UNet component's arguments: a float32 timestep per item and the added time ids per item."""
        import torch

        batch, device = latents.shape[0], latents.device
        t = torch.full((batch,), float(timestep), dtype=torch.float32, device=device)
        ids = torch.tensor([float(FPS - 1), float(MOTION_BUCKET_ID), NOISE_AUG_STRENGTH], device=device)
        return latents, t, embeds, image_latents, ids.expand(batch, 3)

    def new_scheduler(self) -> SchedulerMixin:
        """A fresh scheduler: it keeps per-sample state (its timesteps, step index)."""
        import torch
        from diffusers import EulerDiscreteScheduler

        # Its sigmas live on the CPU, as the pipeline's (a meta-device build has nothing to step).
        with torch.device("cpu"):
            return EulerDiscreteScheduler.from_config(self.scheduler_config)

    def first_timestep(self) -> float:
        """The timestep of the first UNet call (σ_max's, 0.25·ln 700): the one whose input is the batch's latents."""
        scheduler = self.new_scheduler()
        scheduler.set_timesteps(self.steps)
        return float(scheduler.timesteps[0])

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        latents, embeds, image_latents = batch.inputs
        unet = sessions[UNET]
        scheduler = self.new_scheduler()
        scheduler.set_timesteps(self.steps)
        latents = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(latents, t)
            v = unet(*self.unet_inputs(model_input, t, embeds, image_latents))
            latents = scheduler.step(v, t, latents).prev_sample
        return sessions[DECODER](latents)

    def calls_per_batch(self) -> Mapping[str, int]:
        return {UNET: self.steps, DECODER: 1}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        # The first guided UNet call (its input is the batch's latents: init sigma / √(σ_max² + 1) = 1): error
        # compounds over steps (×3 at the last frame where guided), so the single call gates on its own.
        latents, embeds, image_latents = batch.inputs
        step = sessions[UNET](*self.unet_inputs(latents, self.first_timestep(), embeds, image_latents))
        return {"denoiser_step": step, "output": self.run(sessions, batch)}

    def config(self) -> dict[str, Any]:
        g = self.geometry
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            "steps": self.steps,
            "scheduler": self.scheduler,
            "frames": self.frames,
            "height": self.height,
            "width": self.width,
            "latent_shape": [self.frames, g.latent_channels, g.latent_height, g.latent_width],
            "guidance": {"min_guidance_scale": MIN_GUIDANCE_SCALE, "max_guidance_scale": MAX_GUIDANCE_SCALE},
            "added_time_ids": {"fps": FPS, "motion_bucket_id": MOTION_BUCKET_ID,
                               "noise_aug_strength": NOISE_AUG_STRENGTH},
            "decode_chunk_size": self.frames,
            "model": self.model_config,
            "noise_schedule": dict(SVD_SCHEDULER),
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }
