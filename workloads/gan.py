"""DCGAN: the convolutional GAN generator of Radford et al. (2015), z → image.

One component, "generator": a stack of transposed convolutions that doubles
the resolution at every layer (4×4 → image_size) while halving the channels,
BatchNorm + ReLU between layers and Tanh at the end. One call makes one batch
of images, so the GAN is the "single forward pass" reference workload.

Sizes (all 3-channel images):
- tiny:  nz=16,  ngf=8,   32×32   — a forward pass takes well under a millisecond.
- base:  nz=100, ngf=64,  64×64   — the paper's LSUN/ImageNet generator (3.6 M parameters).
- large: nz=100, ngf=128, 128×128 — deployment class: the paper's rule (channels
  double towards the input) carried one layer further at twice the width,
  48 M parameters and ≈ 4.4 GFLOP per image, the scale of the 128 px
  generators served in practice.

This module is the workload's declaration and pipeline, and imports no torch:
the CLI imports it to validate a cell. The generator module, its init and
BatchNorm calibration, and weight loading are in `gan_model`, imported where a
model is built.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..bench.errors import UserError
from .base import Batch, ComponentFn, Workload

if TYPE_CHECKING:
    import torch
    from torch import nn

COMPONENT = "generator"
# Bounds on a folder's config.json: generous for any real generator, small enough to refuse a typo.
MAX_WIDTH = 1 << 16
MAX_IMAGE_SIZE = 1 << 13


@dataclass(frozen=True)
class GeneratorConfig:
    """The architecture of a DCGAN generator.

    `nz` is the latent size, `ngf` the channel width of the last hidden
    layer (each earlier layer has twice as many), `image_size` a power of two
    ≥ 8 (the first layer makes a 4×4 map, each later one doubles it).
    """

    nz: int
    ngf: int
    image_size: int
    channels: int = 3


PRESETS: Mapping[str, GeneratorConfig] = {
    "tiny": GeneratorConfig(nz=16, ngf=8, image_size=32),
    "base": GeneratorConfig(nz=100, ngf=64, image_size=64),
    "large": GeneratorConfig(nz=100, ngf=128, image_size=128),
}


def is_power_of_two_from_8(size: int) -> bool:
    return size >= 8 and size & (size - 1) == 0


def read_folder_config(folder: Path, default: GeneratorConfig) -> GeneratorConfig:
    """`default` overridden by the fields of `folder/config.json`, when there is one; each value checked."""
    path = folder / "config.json"
    if not path.is_file():
        return default
    try:
        overrides = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read DCGAN config {str(path)!r}: {error}") from error
    known = {f.name for f in fields(GeneratorConfig)}
    if not isinstance(overrides, dict) or not set(overrides) <= known:
        raise UserError(f"DCGAN config {str(path)!r} must be a JSON object with keys among {sorted(known)}")
    for key, value in overrides.items():
        limit = MAX_IMAGE_SIZE if key == "image_size" else MAX_WIDTH
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise UserError(f"DCGAN config {str(path)!r}: {key} must be an integer from 1 to {limit}, got {value!r}")
    config = replace(default, **overrides)
    if not is_power_of_two_from_8(config.image_size):
        raise UserError(f"DCGAN config {str(path)!r}: image_size must be a power of two >= 8, got {config.image_size}")
    return config


class DCGAN(Workload):
    """The DCGAN generator: a batch of latents z ~ N(0, I) of shape (B, nz, 1, 1) → (B, 3, H, W) images in [-1, 1]."""

    name = "dcgan"
    family = "gan"
    unit = "image"
    description = "DCGAN generator (Radford et al. 2015): one forward pass from latent z to image"
    model_modules = ("aigcbench.workloads.gan_model",)
    training = "aigcbench.workloads.gan_train:DCGANTraining"

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .gan_model import check_generator_folder

        check_generator_folder(folder, PRESETS[size])

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
    ) -> None:
        from .gan_model import build_random_generator, load_generator
        from .weights import require_folder, weights_sha256

        super().__init__(size, seed, steps=steps, scheduler=scheduler, weights=weights)
        if weights is None:
            self.generator_config = PRESETS[size]
            self.generator = build_random_generator(self.generator_config, seed)
            self.weights_digest: str | None = None
        else:
            folder = require_folder(weights)
            self.generator_config = read_folder_config(folder, PRESETS[size])
            self.generator = load_generator(folder, self.generator_config)
            self.weights_digest = weights_sha256(folder)

    def components(self) -> Mapping[str, nn.Module]:
        return {COMPONENT: self.generator}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        if component != COMPONENT:
            raise KeyError(f"dcgan has one component, {COMPONENT!r}; got {component!r}")
        return self.make_batch(batch_size, self.seed).inputs

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(batch_size, self.generator_config.nz, 1, 1, generator=rng)
        return Batch(inputs=(z,), seed=seed, size=batch_size)

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        (z,) = batch.inputs
        return sessions[COMPONENT](z)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            **asdict(self.generator_config),
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }
