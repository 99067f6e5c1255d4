"""DiT: class-conditional latent diffusion with a transformer denoiser (Peebles & Xie 2023), as DiTPipeline runs it.

Two components:
- "denoiser": diffusers' `DiTTransformer2DModel` with classifier-free guidance,
  as deployed — one call takes the batch's latents, an int64 timestep and an
  int64 class label per item, runs the transformer on the doubled batch (each
  item with its label, then with the null class, id `num_embeds_ada_norm` =
  1000, DiTPipeline's convention) and returns the guided noise prediction
  `uncond + 4.0 · (cond − uncond)` (DiTPipeline's default scale). DiT-XL/2
  predicts the noise and a learned Σ (8 = 2×4 output channels); only the
  first 4, the noise, enter the sampler, as in DiTPipeline.
- "decoder": the Stable Diffusion VAE decoder (`vae_model.LatentDecoder`),
  called once on the final latents, divided by the VAE's scaling factor 0.18215.

Why the doubling is inside the component rather than in the pipeline: a
component's batch is the pipeline's, so that its example inputs carry the
batch size the session will see (a TensorRT profile, an OpenVINO variant)
and its batch-1 FLOP count is the FLOPs of one image — the transformer's two
rows for it included.

The pipeline: seeded Gaussian latents (B, 4, s, s) and one seeded class label
per item; the scheduler's timesteps, each a denoiser call and a scheduler
step on the host; then the decode. The batch carries the labels as float32
class ids (a Batch's inputs are fp32 tensors; ids below 2²⁴ are exact), cast
to int64 for the denoiser. Schedulers: "ddim" (default, deterministic) and
"ddpm" (ancestral, its noise from a generator seeded with the batch seed),
both on DiT's training schedule (1000 linear betas 1e-4 → 0.02, no clipping
in latent space); the DDPM sampler uses fixed variances, since Σ is dropped.

Sizes (the transformer configs of facebook/DiT-XL-2-256 and -512):
- tiny:  2 layers, 2 heads of 16, patch 2, 8×8 latents → 64 px, with a
  4-level tiny VAE decoder (channels 16, 16, 32, 32) — for tests.
- base:  DiT-XL/2 at 256×256 (28 layers, 16 heads of 72, patch 2, 32×32
  latents) with the SD VAE decoder: 674,834,720 + 49,490,199 = 724,324,919
  parameters.
- large: DiT-XL/2 at 512×512 (64×64 latents): the same counts.

The parameter count of DiT-XL/2 is the paper's 675 M: the original code
(facebookresearch/DiT, models.py) reports 675,129,632, which includes the
294,912 entries of its frozen sin-cos position table (256 tokens × 1152; a
buffer in diffusers, not a parameter) — 674,834,720 without. diffusers' model gives every block a
private copy of the timestep and class embedders (its conversion copies the
original's one shared embedder into all 28 blocks, 74,991,744 parameters
more); the workload ties them back to block 0's, as in the paper's model
(see `dit_model.tie_embedders`). The FLOP counter agrees with the paper too:
its 118.6 and 524.6 Gflops per forward (multiply-adds, at 256 and 512 px)
are what `flops` counts per transformer row, before ×2 FLOPs per
multiply-add and ×2 rows for guidance. The tests check both on the meta device.

`--weights DIR` loads a diffusers DiT pipeline folder (`transformer/` and
`vae/`, as DiTPipeline.save_pretrained writes it), checked on the meta
device before anything is measured, like the other workloads' folders.

This module is the workload's declaration and pipeline, and imports no torch
or diffusers; the torch side is in `dit_model`, imported where a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from .base import Batch, ComponentFn, Workload
from .diffusion import SCHEDULER_MODULES, SamplerChoice, sampler_choice
from .vae import SD_VAE_CONFIG

if TYPE_CHECKING:
    import torch
    from diffusers import SchedulerMixin
    from torch import nn

DENOISER = "denoiser"
DECODER = "decoder"
DEFAULT_STEPS = 50  # DiTPipeline's default
DEFAULT_SCHEDULER = "ddim"
GUIDANCE_SCALE = 4.0  # DiTPipeline's default
# The samplers offered, default first: DDPM's names, resolved by `diffusion_model.scheduler_class`.
SCHEDULERS: tuple[str, ...] = ("ddim", "ddpm")

# DiT's training diffusion (the ADM linear schedule); latents are never clipped.
NOISE_SCHEDULE: Mapping[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": False,
}

# facebook/DiT-XL-2-256's transformer/config.json (the -512 one differs in sample_size only).
DIT_XL_2: Mapping[str, Any] = {
    "num_layers": 28,
    "num_attention_heads": 16,
    "attention_head_dim": 72,
    "in_channels": 4,
    "out_channels": 8,
    "patch_size": 2,
    "sample_size": 32,
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_zero",
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "norm_elementwise_affine": False,
    "upcast_attention": False,
}

TINY_DIT: Mapping[str, Any] = {**DIT_XL_2, "num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16,
                               "sample_size": 8}

# Four levels as the SD VAE (latents are image/8), at a width the tests can afford.
TINY_VAE: Mapping[str, Any] = {
    **SD_VAE_CONFIG,
    "block_out_channels": (16, 16, 32, 32),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 64,
}


@dataclass(frozen=True)
class DiTPreset:
    """A transformer config, a VAE config, and the image size they make together."""

    transformer: Mapping[str, Any]
    vae: Mapping[str, Any]
    image_size: int


PRESETS: Mapping[str, DiTPreset] = {
    "tiny": DiTPreset(TINY_DIT, TINY_VAE, 64),
    "base": DiTPreset(DIT_XL_2, SD_VAE_CONFIG, 256),
    "large": DiTPreset({**DIT_XL_2, "sample_size": 64}, SD_VAE_CONFIG, 512),
}


def choose_sampler(steps: int | None, scheduler: str | None) -> SamplerChoice:
    return sampler_choice("dit", steps, scheduler, default_steps=DEFAULT_STEPS, default_scheduler=DEFAULT_SCHEDULER,
                          schedulers=SCHEDULERS, max_steps=NOISE_SCHEDULE["num_train_timesteps"])


class DiT(Workload):
    """Class-conditional DiT sampling: latents + labels → `steps` guided denoiser calls → VAE decode → image."""

    name = "dit"
    family = "diffusion"
    unit = "image"
    description = "DiT (Peebles & Xie 2023): class-conditional latent transformer with CFG, `steps` steps, VAE decode"
    iterative = True
    schedulers = SCHEDULERS
    default_steps = DEFAULT_STEPS
    max_steps = NOISE_SCHEDULE["num_train_timesteps"]
    default_scheduler = DEFAULT_SCHEDULER
    model_modules = (
        "aigcbench.workloads.dit_model", "aigcbench.workloads.diffusion_model", "aigcbench.workloads.vae_model",
        "diffusers.models.transformers.dit_transformer_2d", "diffusers.models.autoencoders.autoencoder_kl",
        *SCHEDULER_MODULES,
    )

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .dit_model import check_pipeline_folder

        check_pipeline_folder(folder)

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
    ) -> None:
        from .diffusion_model import scheduler_class
        from .dit_model import GuidedDenoiser, build_random_pipeline, load_pipeline
        from .vae_model import LatentDecoder
        from .weights import public_config

        sampler = choose_sampler(steps, scheduler)
        super().__init__(size, seed, steps=sampler.steps, scheduler=sampler.scheduler, weights=weights)
        preset = PRESETS[size]
        if weights is None:
            models = build_random_pipeline(preset.transformer, preset.vae, preset.image_size, seed)
        else:
            models = load_pipeline(weights)
        self.weights_digest: str | None = models.weights_sha256
        self.image_size = models.image_size
        self.latent_channels = int(models.transformer.config.in_channels)
        self.latent_size = int(models.transformer.config.sample_size)
        self.num_classes = int(models.transformer.config.num_embeds_ada_norm)
        self.model_config = {DENOISER: public_config(models.transformer), DECODER: public_config(models.vae)}
        self.denoiser = GuidedDenoiser(models.transformer, GUIDANCE_SCALE).eval()
        # Only the decoder half of the VAE is kept; the encoder is freed with `models`.
        self.decoder = LatentDecoder(models.vae).eval()
        self.scheduler_class = scheduler_class(sampler.scheduler)
        self.scheduler_config = dict(self.scheduler_class(**NOISE_SCHEDULE).config)

    def components(self) -> Mapping[str, nn.Module]:
        return {DENOISER: self.denoiser, DECODER: self.decoder}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        from .diffusion_model import batch_timestep

        latents, labels = self.make_batch(batch_size, self.seed).inputs
        if component == DENOISER:
            return latents, batch_timestep(self.mid_timestep(), batch_size, latents.device), labels_of(labels)
        if component == DECODER:
            return (latents,)
        raise KeyError(f"dit has components {DENOISER!r} and {DECODER!r}; got {component!r}")

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        shape = (batch_size, self.latent_channels, self.latent_size, self.latent_size)
        latents = torch.randn(shape, generator=rng)
        labels = torch.randint(0, self.num_classes, (batch_size,), generator=rng).to(torch.float32)
        return Batch(inputs=(latents, labels), seed=seed, size=batch_size)

    def new_scheduler(self) -> SchedulerMixin:
        """A fresh scheduler: it keeps per-sample state (its timesteps, DDIM's step index)."""
        return self.scheduler_class.from_config(self.scheduler_config)

    def mid_timestep(self) -> int:
        return int(self.scheduler_config["num_train_timesteps"]) // 2

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        import torch

        from .diffusion_model import batch_timestep

        latents, labels = batch.inputs
        labels = labels_of(labels)
        denoise = sessions[DENOISER]
        scheduler = self.new_scheduler()
        scheduler.set_timesteps(self.steps)
        # A CPU generator, as DDPM's pipeline has it: the fidelity reference runs on the CPU.
        rng = torch.Generator().manual_seed(batch.seed)
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(latents, t)
            eps = denoise(model_input, batch_timestep(t, latents.shape[0], latents.device), labels)
            latents = scheduler.step(eps, t, latents, generator=rng).prev_sample
        return sessions[DECODER](latents)

    def calls_per_batch(self) -> Mapping[str, int]:
        return {DENOISER: self.steps, DECODER: 1}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        from .diffusion_model import batch_timestep

        # One guided denoiser call on the starting latents: error compounds over steps, so it gates on its own.
        latents, labels = batch.inputs
        timestep = batch_timestep(self.mid_timestep(), latents.shape[0], latents.device)
        step = sessions[DENOISER](latents, timestep, labels_of(labels))
        return {"denoiser_step": step, "output": self.run(sessions, batch)}

    # `ungated_outputs` keeps the default (everything gates): unlike DDPM's pixels, latents are never
    # clipped, so the sampled image of random weights follows the backend's error smoothly.

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            "steps": self.steps,
            "scheduler": self.scheduler,
            "guidance_scale": GUIDANCE_SCALE,
            "image_size": self.image_size,
            "latent_shape": [self.latent_channels, self.latent_size, self.latent_size],
            "model": self.model_config,
            # Shared by both schedulers, so FLOP counts keyed on this config stay shared too.
            "noise_schedule": dict(NOISE_SCHEDULE),
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }


def labels_of(labels: torch.Tensor) -> torch.Tensor:
    """The batch's float32 class ids as the denoiser takes them: int64, shape (B,)."""
    import torch

    return labels.to(torch.int64)
