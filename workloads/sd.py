"""Stable Diffusion: latent text-to-image diffusion (Rombach et al. 2022; SDXL, Podell et al. 2023), as diffusers runs it.

Components (SD 1.5 has one text encoder, SDXL two):
- "text_encoder": transformers' `CLIPTextModel` (CLIP ViT-L/14's text tower):
  int64 token ids (B, 77) → the states the UNet attends to — the last
  hidden state for SD 1.5, the penultimate layer's states for SDXL (as the
  pipelines take them).
- "text_encoder_2" (SDXL): `CLIPTextModelWithProjection` (OpenCLIP ViT-bigG/14)
  → its penultimate states (B, 77, 1280) with the pooled, projected text
  embedding appended as a 78th row: (B, 78, 1280). A session returns one
  tensor, and both are one call's results, so they travel together; the
  pooled width equals the hidden width (1280) in SDXL, which is what lets it
  be a row, and the pipeline splits it off again. SDXL's conditioning is the
  two encoders' states side by side (768 + 1280 = 2048 per token) and the pooled
  embedding, which enters the UNet's `text_time` embedding with the 6 size ids
  (original size, crop top-left, target size: 1024, 1024, 0, 0, 1024, 1024).
- "unet": diffusers' `UNet2DConditionModel` with classifier-free guidance
  (`sd_model.GuidedUNet`): latents (B, 4, h, w), a float32 timestep per item
  (B,) (Euler's timesteps are floats), and the prompt states (B, G, 77, D)
  — G rows per item, the negative prompt's then the prompt's when guided
  (G = 2), the prompt's alone when not (G = 1); SDXL adds the pooled
  embeddings (B, G, 1280) and the size ids (B, 6). Guided, it runs the UNet
  on the doubled batch (2B rows, as StableDiffusionPipeline does) and returns
  `uncond + guidance · (cond − uncond)`. The doubling is inside the
  component, as in `dit`, so that the component's batch is the pipeline's:
  its example inputs carry the batch a session will see (a TensorRT profile)
  and its batch-1 FLOPs are one image's, both rows included.
- "decoder": the SD VAE decoder (`vae_model.LatentDecoder`), latents divided
  by the VAE's scaling factor: 0.18215 (SD 1.5), 0.13025 (SDXL).

Prompts are seeded token ids, not text: a tokenizer needs its vocabulary
files, which would be a download. A row is what CLIP's tokenizer gives for a
prompt of n words (n seeded, 1 to 75): BOS (49406), n seeded ids, EOS (49407),
padded to 77 — with EOS by SD's tokenizer, with 0 ("!") by SDXL's second one.
The negative prompt is the empty prompt, encoded as diffusers encodes "":
BOS, EOS, padding. With guidance > 1 each text encoder is called twice per
batch, on the prompts and on the negative prompts (B rows each), as
`encode_prompt` does; with guidance 1 once, and the UNet runs the plain batch.
(SDXL's pipeline, given no negative prompt, uses zeros for it instead —
`force_zeros_for_empty_prompt` — but deployments pass one, as MLPerf's
reference does; it is encoded here, so the encoders' cost is that deployment's.)

The pipeline: seeded Gaussian latents × the scheduler's initial sigma, then
per timestep `scale_model_input`, a UNet call and a scheduler step on the
host, then the decode. Schedulers: "euler" (EulerDiscreteScheduler, the
default, as MLPerf's SDXL benchmark), "ddim", "dpm++" (DPMSolverMultistepScheduler,
2nd order); all deterministic, on SD's training schedule (1000 scaled-linear
betas 0.00085 → 0.012, "leading" spacing with offset 1, as the scheduler
configs of both checkpoints). Default: 20 steps, guidance 7.5.

Sizes (configs of runwayml/stable-diffusion-v1-5 and
stabilityai/stable-diffusion-xl-base-1.0, each model's config.json; every count
checked on the meta device by the tests):
- tiny:  a 2-level UNet (32, 64 channels), a 2-layer CLIP of width 32 (vocab
  1000), dit's tiny VAE decoder: 8×8 latents → 64 px — for tests.
- base:  SD 1.5 at 512×512: UNet 859,520,964 (the model card's "860M UNet"),
  text encoder 123,060,480 (CLIP ViT-L/14's text tower), VAE decoder 49,490,199
  (post_quant_conv + decoder of the 83,653,863-parameter AutoencoderKL).
- large: SDXL base 1.0 at 1024×1024: UNet 2,567,463,684 (the paper's "2.6B"),
  text_encoder 123,060,480, text_encoder_2 694,659,840 (the paper's 817M of
  text encoders together), VAE decoder 49,490,199 (SDXL's VAE has SD's
  architecture, with scaling factor 0.13025).

`--weights DIR` loads a diffusers StableDiffusionPipeline or
StableDiffusionXLPipeline folder (`text_encoder/`, [`text_encoder_2/`], `unet/`,
`vae/`, as save_pretrained writes them), checked from configs and checkpoint
headers on the meta device before anything is measured; a `text_encoder_2/`
makes it SDXL.

This module is the workload's declaration and pipeline, and imports no torch,
diffusers or transformers; the torch side is in `sd_model`, imported where a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..bench import limits
from ..bench.errors import UserError
from .base import Batch, ComponentFn, Workload
from .diffusion import SCHEDULER_MODULES, SamplerChoice, sampler_choice
from .sd_presets import PRESETS

if TYPE_CHECKING:
    import torch
    from diffusers import SchedulerMixin
    from torch import nn

TEXT_ENCODER = "text_encoder"
TEXT_ENCODER_2 = "text_encoder_2"
TEXT_ENCODERS: tuple[str, ...] = (TEXT_ENCODER, TEXT_ENCODER_2)
UNET = "unet"
DECODER = "decoder"
DEFAULT_STEPS = 20  # MLPerf's SDXL benchmark
DEFAULT_SCHEDULER = "euler"
DEFAULT_GUIDANCE = 7.5  # StableDiffusionPipeline's default guidance_scale
GUIDANCE_FREE = 2.5  # the guidance up to which a reduced precision's usual tolerance holds (guided_tolerances)
# The samplers offered, default first, and the diffusers classes they are.
SCHEDULER_CLASSES: Mapping[str, str] = {
    "euler": "EulerDiscreteScheduler", "ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler",
}
SCHEDULERS: tuple[str, ...] = tuple(SCHEDULER_CLASSES)

# SD's training diffusion, as both checkpoints' scheduler_config.json state it (each class keeps its keys).
NOISE_SCHEDULE: Mapping[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
}

# CLIP's tokenizer: <|startoftext|> and <|endoftext|> are the vocabulary's last two ids.
CLIP_BOS, CLIP_EOS = 49406, 49407
MAX_WORDS = 75  # a prompt's ids between BOS and EOS in 77 positions
# The pad id of each text encoder's tokenizer: None is its EOS (SD's), 0 is "!" (SDXL's tokenizer_2).
PAD_IDS: Mapping[str, int | None] = {TEXT_ENCODER: None, TEXT_ENCODER_2: 0}

@dataclass(frozen=True)
class Geometry:
    """The shapes the pipeline feeds its components, read from the models (a loaded folder's may differ)."""

    latent_channels: int
    latent_size: int
    prompt_length: int  # the text encoders' positions (77)
    text_width: int  # channels of the states the UNet attends to: the encoders' widths summed
    pooled_width: int  # SDXL's pooled text embedding (0 without a second encoder)
    bos: int
    eos: int


def choose_sampler(steps: int | None, scheduler: str | None) -> SamplerChoice:
    return sampler_choice("sd", steps, scheduler, default_steps=DEFAULT_STEPS, default_scheduler=DEFAULT_SCHEDULER,
                          schedulers=SCHEDULERS, max_steps=NOISE_SCHEDULE["num_train_timesteps"])


def check_guidance(value: Any) -> float:
    """The guidance scale as a float: a finite number from 1 (no guidance) to the option's bound."""
    limits.check("guidance", value)
    if value < 1:
        # diffusers runs the conditional branch alone for any scale ≤ 1: refused rather than recorded as distinct.
        raise UserError(f"--guidance must be ≥ 1 for sd (1 turns classifier-free guidance off), got {value!r}",
                        key="guidance")
    return float(value)


def guided_tolerances(guidance: float) -> dict[str, float]:
    """The fidelity tolerances at this guidance: a reduced precision's, widened by the guided mix.

    `uncond + g · (cond − uncond)` multiplies the rounding error of the branches' small difference by
    about g, so bf16 at the default 7.5 is 7–9 % off eager fp32 where an unguided call is within the
    5 % every workload allows; up to g = GUIDANCE_FREE the usual tolerance holds (dit runs 4.0 under it).
    fp32 keeps its 1e-4: its errors are 1e-6.
    """
    scale = max(1.0, guidance / GUIDANCE_FREE)
    return {p: t if p == "fp32" else t * scale for p, t in Workload.tolerances.items()}


class StableDiffusion(Workload):
    """Text-to-image latent diffusion: prompt ids + latents → text encoders → `steps` guided UNet calls → decode."""

    name = "sd"
    family = "diffusion"
    unit = "image"
    description = ("Stable Diffusion 1.5 / SDXL (Rombach et al. 2022, Podell et al. 2023): CLIP text encoders, "
                   "`steps` UNet calls with CFG, VAE decode")
    iterative = True
    schedulers = SCHEDULERS
    default_steps = DEFAULT_STEPS
    max_steps = NOISE_SCHEDULE["num_train_timesteps"]
    default_scheduler = DEFAULT_SCHEDULER
    accepts = {"guidance": DEFAULT_GUIDANCE}
    model_modules = (
        "aigcbench.workloads.sd_model", "aigcbench.workloads.vae_model",
        "diffusers.models.unets.unet_2d_condition", "diffusers.models.autoencoders.autoencoder_kl",
        "transformers.models.clip.configuration_clip", "transformers.models.clip.modeling_clip",
        *SCHEDULER_MODULES,
    )

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .sd_model import check_pipeline_folder

        check_pipeline_folder(folder)

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
        import diffusers
        import torch

        from .sd_model import build_random_pipeline, load_pipeline, wrap_components

        sampler = choose_sampler(steps, scheduler)
        super().__init__(size, seed, steps=sampler.steps, scheduler=sampler.scheduler, weights=weights, params=params)
        self.guidance = check_guidance(self.params["guidance"])
        self.tolerances = guided_tolerances(self.guidance)
        models = build_random_pipeline(PRESETS[size], seed) if weights is None else load_pipeline(weights)
        self.weights_digest: str | None = models.weights_sha256
        self.image_size = models.image_size
        self.geometry = models.geometry
        self.model_config = models.public_configs()
        self.modules: dict[str, nn.Module] = wrap_components(models, self.guidance)
        self.scheduler_class = getattr(diffusers, SCHEDULER_CLASSES[sampler.scheduler])
        # A scheduler's tables are host tensors: built on the CPU even inside a meta-device build.
        with torch.device("cpu"):
            self.scheduler_config = dict(self.scheduler_class.from_config(NOISE_SCHEDULE).config)

    @property
    def guided(self) -> bool:
        return self.guidance > 1

    @property
    def xl(self) -> bool:
        return TEXT_ENCODER_2 in self.modules

    @property
    def encoders(self) -> tuple[str, ...]:
        return tuple(name for name in TEXT_ENCODERS if name in self.modules)

    def components(self) -> Mapping[str, nn.Module]:
        return dict(self.modules)

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        import torch

        latents, ids = self.make_batch(batch_size, self.seed).inputs
        if component in self.encoders:
            return (self.encoder_ids(ids, component),)
        if component == UNET:
            # Text states of the right shape: the encoders cannot run where this is called (the meta device).
            rng = torch.Generator().manual_seed(self.seed)
            rows, length = 2 if self.guided else 1, self.geometry.prompt_length
            embeds = torch.randn(batch_size, rows, length, self.geometry.text_width, generator=rng)
            pooled = torch.randn(batch_size, rows, self.geometry.pooled_width, generator=rng) if self.xl else None
            return self.unet_inputs(latents, self.mid_timestep(), embeds, pooled)
        if component == DECODER:
            return (latents,)
        raise KeyError(f"sd has components {', '.join(map(repr, self.modules))}; got {component!r}")

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        g = self.geometry
        rng = torch.Generator().manual_seed(seed)
        latents = torch.randn((batch_size, g.latent_channels, g.latent_size, g.latent_size), generator=rng)
        words = torch.randint(1, min(MAX_WORDS, g.prompt_length - 2) + 1, (batch_size,), generator=rng)
        ids = torch.randint(0, g.bos, (batch_size, g.prompt_length), generator=rng)
        return Batch(inputs=(latents, self.token_rows(ids, words)), seed=seed, size=batch_size)

    def token_rows(self, ids: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """Rows as CLIP's tokenizer pads them (float32 ids): BOS, `words` of `ids`, EOS, then EOS padding."""
        import torch

        position = torch.arange(ids.shape[1])[None, :]
        rows = torch.where(position <= words[:, None], ids, self.geometry.eos)
        rows[:, 0] = self.geometry.bos
        return rows.to(torch.float32)

    def negative_rows(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """The empty prompt's ids, one row per item: BOS, EOS, padding."""
        import torch

        empty = self.token_rows(torch.zeros(batch_size, self.geometry.prompt_length, dtype=torch.int64),
                                torch.zeros(batch_size, dtype=torch.int64))
        return empty.to(device)

    def encoder_ids(self, rows: torch.Tensor, encoder: str) -> torch.Tensor:
        """A batch's float32 rows as `encoder` takes them: int64, padded as its tokenizer pads."""
        import torch

        ids = rows.to(torch.int64)
        pad = PAD_IDS[encoder]
        if pad is None:
            return ids
        first_eos = (ids == self.geometry.eos).to(torch.int32).argmax(dim=1, keepdim=True)
        position = torch.arange(ids.shape[1], device=ids.device)[None, :]
        return torch.where(position > first_eos, pad, ids)

    def encode(self, sessions: Mapping[str, ComponentFn], rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The UNet's text conditioning: states (B, G, L, D) and, for SDXL, pooled embeddings (B, G, P).

        G = 2 when guided: the negative prompt's row first, as diffusers concatenates them.
        """
        import torch

        prompts = [self.negative_rows(rows.shape[0], rows.device), rows] if self.guided else [rows]
        states, pooled = [], []
        for prompt in prompts:
            outputs = [sessions[name](self.encoder_ids(prompt, name)) for name in self.encoders]
            if self.xl:  # the second encoder's last row is its pooled embedding (see the module docstring)
                pooled.append(outputs[-1][:, -1])
                outputs[-1] = outputs[-1][:, :-1]
            states.append(torch.cat(outputs, dim=-1))
        return torch.stack(states, dim=1), torch.stack(pooled, dim=1) if self.xl else None

    def unet_inputs(self, latents: torch.Tensor, timestep: Any, embeds: torch.Tensor,
                    pooled: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """The UNet component's arguments; SDXL's size ids are (H, W, 0, 0, H, W), for both branches."""
        import torch

        batch, device = latents.shape[0], latents.device
        t = torch.full((batch,), float(timestep), dtype=torch.float32, device=device)
        if pooled is None:
            return latents, t, embeds
        side = float(self.image_size)
        time_ids = torch.tensor([side, side, 0.0, 0.0, side, side], device=device).expand(batch, 6)
        return latents, t, embeds, pooled, time_ids

    def new_scheduler(self) -> SchedulerMixin:
        """A fresh scheduler: it keeps per-sample state (its timesteps, step index, DPM-Solver's history)."""
        return self.scheduler_class.from_config(self.scheduler_config)

    def mid_timestep(self) -> int:
        return int(self.scheduler_config["num_train_timesteps"]) // 2

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        import torch

        latents, rows = batch.inputs
        embeds, pooled = self.encode(sessions, rows)
        unet = sessions[UNET]
        scheduler = self.new_scheduler()
        scheduler.set_timesteps(self.steps)
        latents = latents * scheduler.init_noise_sigma
        # A CPU generator, as diffusers' pipelines take one; the samplers offered draw no noise.
        rng = torch.Generator().manual_seed(batch.seed)
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(latents, t)
            eps = unet(*self.unet_inputs(model_input, t, embeds, pooled))
            latents = scheduler.step(eps, t, latents, generator=rng).prev_sample
        return sessions[DECODER](latents)

    def calls_per_batch(self) -> Mapping[str, int]:
        prompts = 2 if self.guided else 1
        return {**{name: prompts for name in self.encoders}, UNET: self.steps, DECODER: 1}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        # One guided UNet call on the starting latents: error compounds over steps (×7.5 per step where
        # guided), so the single call gates on its own.
        latents, rows = batch.inputs
        embeds, pooled = self.encode(sessions, rows)
        step = sessions[UNET](*self.unet_inputs(latents, self.mid_timestep(), embeds, pooled))
        return {"denoiser_step": step, "output": self.run(sessions, batch)}

    def identity(self, component: str) -> dict[str, Any]:
        # Guidance changes the UNet's graph only: the encoders' and the decoder's exports are shared.
        ignore = ("steps", "scheduler") if component == UNET else ("steps", "scheduler", "guidance")
        return {"workload": self.name, "size": self.size, "component": component,
                "config_sha256": self.config_digest(ignore=ignore)}

    def config(self) -> dict[str, Any]:
        g = self.geometry
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            "steps": self.steps,
            "scheduler": self.scheduler,
            "guidance": self.guidance,
            "image_size": self.image_size,
            "latent_shape": [g.latent_channels, g.latent_size, g.latent_size],
            "prompt_length": g.prompt_length,
            "model": self.model_config,
            # Shared by the three schedulers, so FLOP counts keyed on this config stay shared too.
            "noise_schedule": dict(NOISE_SCHEDULE),
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }
