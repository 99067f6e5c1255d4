"""The torch side of the DCGAN workload (`gan`): the generator module, its init, and weight loading.

Random init alone leaves BatchNorm with fresh running statistics (mean 0,
variance 1) while the real activations are ~100× smaller, so in eval mode the
signal shrinks at every layer and every output pixel is nearly the same
value. `calibrate_batchnorm` replaces those statistics by measured ones, which
is what training would have left there.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..bench.errors import UserError
from . import checkpoint
from .gan import GeneratorConfig, is_power_of_two_from_8, read_folder_config
from .weights import list_weight_files, require_folder

MODEL_NAME = "the DCGAN generator"
# A weights folder holds one of these (safetensors first, as diffusers prefers it) and optionally config.json.
WEIGHT_FILES: tuple[str, ...] = ("generator.safetensors", "generator.pt")

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


class Discriminator(nn.Module):
    """The DCGAN discriminator, the generator's mirror (pytorch/examples' layout): image → one logit per item.

    Strided 4×4 convolutions halve the map from image_size to 4×4 while the
    channels double from `ngf`; LeakyReLU(0.2) throughout, BatchNorm on every
    layer but the first, and a last 4×4 convolution to one value. The paper's
    sigmoid is left to the loss (`binary_cross_entropy_with_logits`): the same
    formula, computed without the overflow of log(sigmoid(x)).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        doublings = round(math.log2(config.image_size)) - 2
        widths = [config.ngf * 2**i for i in range(doublings)]
        layers: list[nn.Module] = [nn.Conv2d(config.channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(width_in, width_out, 4, 2, 1, bias=False), nn.BatchNorm2d(width_out), nn.LeakyReLU(0.2)]
        layers.append(nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images).flatten()


def init_discriminator_weights(module: nn.Module) -> None:
    """The paper's init, as for the generator: conv weights N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def build_random_discriminator(config: GeneratorConfig, seed: int) -> Discriminator:
    """A discriminator with the paper's init, fully determined by `seed`, in train mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        discriminator = Discriminator(config)
        discriminator.apply(init_discriminator_weights)
    return discriminator.train()


def gan_losses_step(sessions, trainer, real: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """One DCGAN training step: a discriminator step, then a generator step (Goodfellow et al. 2014, §3).

    The discriminator ascends log D(x) + log(1 − D(G(z))) — binary cross
    entropy with target 1 on real images and 0 on generated ones, the
    generated batch detached so that no gradient reaches G. The generator
    then takes the non-saturating step, ascending log D(G(z)) (cross entropy
    with target 1) through the discriminator just updated, on the same G(z).
    This is pytorch/examples' dcgan loop.
    """
    import torch.nn.functional as F

    generator, discriminator = sessions["generator"], sessions["discriminator"]
    fake = generator(z)
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    ones, zeros = torch.ones_like(real_logits), torch.zeros_like(fake_logits)
    d_loss = F.binary_cross_entropy_with_logits(real_logits, ones) + F.binary_cross_entropy_with_logits(fake_logits, zeros)
    d_norm = trainer.step("discriminator", d_loss)
    g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
    g_norm = trainer.step("generator", g_loss)
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "d_grad_norm": d_norm, "g_grad_norm": g_norm,
            "d_real_accuracy": (real_logits.detach() > 0).float().mean(),
            "d_fake_accuracy": (fake_logits.detach() < 0).float().mean()}
