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

Random init alone leaves BatchNorm with fresh running statistics (mean 0,
variance 1) while the real activations are ~100× smaller, so in eval mode the
signal shrinks at every layer and every output pixel is nearly the same
value. `calibrate_batchnorm` replaces those statistics by measured ones, which
is what training would have left there.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..bench.errors import UserError
from . import checkpoint
from .base import Batch, ComponentFn, Workload
from .weights import list_weight_files, require_folder, weights_sha256

COMPONENT = "generator"
MODEL_NAME = "the DCGAN generator"
# A weights folder holds one of these (safetensors first, as diffusers prefers it) and optionally config.json.
WEIGHT_FILES: tuple[str, ...] = ("generator.safetensors", "generator.pt")
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

# BatchNorm calibration: 2 batches of 16 latents. Each channel's statistics
# then average at least 32 × 4 × 4 = 512 activations, plenty for a stable
# estimate, while `large` (≈ 0.1 s per image on a CPU) still builds in seconds.
CALIBRATION_BATCHES = 2
CALIBRATION_BATCH_SIZE = 16


class Generator(nn.Module):
    """The DCGAN generator; `main` keeps pytorch/examples' layout so its checkpoints load as is."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.main = nn.Sequential(*generator_layers(config))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


def is_power_of_two_from_8(size: int) -> bool:
    return size >= 8 and size & (size - 1) == 0


def generator_layers(config: GeneratorConfig) -> list[nn.Module]:
    """The layer list for `config`: the paper's 64 px generator when nz=100, ngf=64, image_size=64."""
    if not is_power_of_two_from_8(config.image_size):
        raise UserError(f"DCGAN image_size must be a power of two >= 8, got {config.image_size}")
    doublings = round(math.log2(config.image_size)) - 2
    # Hidden widths from the input side: ngf·2^(k-1), ..., 2·ngf, ngf.
    widths = [config.ngf * 2**i for i in reversed(range(doublings))]
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(config.nz, widths[0], 4, 1, 0, bias=False),
        nn.BatchNorm2d(widths[0]),
        nn.ReLU(True),
    ]
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=False), nn.BatchNorm2d(width_out), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(widths[-1], config.channels, 4, 2, 1, bias=False), nn.Tanh()]
    return layers


def init_dcgan_weights(module: nn.Module) -> None:
    """The paper's init: conv weights N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    if isinstance(module, nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


@torch.no_grad()
def calibrate_batchnorm(generator: Generator, nz: int, seed: int) -> None:
    """Set every BatchNorm's running statistics to those measured on seeded random latents.

    `momentum=None` makes BatchNorm keep a cumulative average over the
    calibration batches instead of an exponential one that would still
    remember the fresh (0, 1) statistics; the default momentum is restored
    afterwards so the module behaves as a standard one.
    """
    norms = [m for m in generator.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    rng = torch.Generator().manual_seed(seed)
    generator.train()
    for _ in range(CALIBRATION_BATCHES):
        generator(torch.randn(CALIBRATION_BATCH_SIZE, nz, 1, 1, generator=rng))
    for norm in norms:
        norm.momentum = 0.1
    generator.eval()


def build_random_generator(config: GeneratorConfig, seed: int) -> Generator:
    """A generator with the paper's init and calibrated BatchNorm, fully determined by `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Generator(config)
        generator.apply(init_dcgan_weights)
    calibrate_batchnorm(generator, config.nz, seed)
    return generator


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


def generator_files(folder: Path) -> tuple[Path, ...]:
    """The one checkpoint file of a DCGAN weights folder."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return (folder / name,)
    raise UserError(f"weights folder {str(folder)!r} has no {' or '.join(WEIGHT_FILES)} ({list_weight_files(folder)})")


def check_generator_folder(folder: Path, default: GeneratorConfig) -> GeneratorConfig:
    """Check a weights folder against the generator its config describes, built on the meta device."""
    config = read_folder_config(require_folder(folder), default)
    with torch.device("meta"):
        model = Generator(config)
    found = checkpoint.read_checkpoint(generator_files(folder))
    checkpoint.check(found, checkpoint.model_specs(model), MODEL_NAME)
    return config


def load_generator(folder: Path, config: GeneratorConfig) -> Generator:
    """A generator holding the weights of `folder`'s checkpoint, in eval mode, after the parent's check."""
    generator = Generator(config)
    checkpoint.load_checked(generator, generator_files(folder), MODEL_NAME)
    return generator.eval()


class DCGAN(Workload):
    """The DCGAN generator: a batch of latents z ~ N(0, I) of shape (B, nz, 1, 1) → (B, 3, H, W) images in [-1, 1]."""

    name = "dcgan"
    family = "gan"
    unit = "image"
    description = "DCGAN generator (Radford et al. 2015): one forward pass from latent z to image"

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
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
