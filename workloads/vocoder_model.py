"""The torch side of the vocoder workload (`vocoder`): SpeechT5HifiGan's construction, init, and weight checks.

Random init at unit scale: HiFi-GAN's own init (and transformers') draws
every conv weight from N(0, 0.01), which shrinks the signal ~10× at each of
the upsample stages, so the random vocoder's waveform is ~1e-5 — silence, on
which fp16 underflows and the fidelity gate would compare rounding noise.
A trained vocoder keeps its activations near unit scale and its waveform
well inside tanh's range; `init_unit_scale` does so from the start: He
init for the leaky-ReLU convolutions (a transposed conv's fan-in is its
in-channels × kernel / stride, the taps that reach one output sample), the
second conv of each residual branch at half that gain (each of the three
residual additions then grows the stream's variance by a quarter, not
double), and the last conv scaled for a waveform of standard deviation ~0.3.
Speed does not depend on the values.

A weights folder is what transformers writes and the Hub publishes: a
`config.json` naming SpeechT5HifiGan (model_type "speecht5_hifigan", or
"hifigan" as microsoft/speecht5_hifigan's still says) and `model.safetensors`
or `pytorch_model.bin`. It is checked from the config and the checkpoint's
headers against the model built on the meta device, then dry-run there on a
clip's frames, in the parent before anything is measured; the worker runs the
same checks before it loads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

try:  # transformers 5's configs validate their fields with huggingface_hub's strict dataclasses
    from huggingface_hub.errors import StrictDataclassError
except ImportError:  # an older hub: no field validation, nothing of this kind to catch
    StrictDataclassError = ValueError  # type: ignore[misc, assignment]

from ..bench.errors import UserError
from . import checkpoint
from .vocoder import clip_frames
from .transformers_folder import MAX_SIZE, check_kind, is_size, quiet, read_config
from .weights import CONFIG_NAME, list_weight_files, require_folder

MODEL_NAME = "SpeechT5HifiGan"
# transformers 5's model_type, and the one the published configs (written by transformers 4) carry.
MODEL_TYPES: tuple[str, ...] = ("speecht5_hifigan", "hifigan")
# What transformers' from_pretrained reads, safetensors first.
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
# The config fields that make the network (initializer_range only seeds a training run).
ARCHITECTURE_KEYS: tuple[str, ...] = (
    "model_in_dim", "sampling_rate", "upsample_initial_channel", "upsample_rates", "upsample_kernel_sizes",
    "resblock_kernel_sizes", "resblock_dilation_sizes", "leaky_relu_slope", "normalize_before",
)
POSITIVE_INTS: tuple[str, ...] = ("model_in_dim", "sampling_rate", "upsample_initial_channel")
INT_LISTS: tuple[str, ...] = ("upsample_rates", "upsample_kernel_sizes", "resblock_kernel_sizes")
# The input normalisation's buffers, read only when `normalize_before` is set.
NORMALISATION: tuple[str, ...] = ("mean", "scale")
# Bound on every size in a folder's config: generous for any vocoder, small enough to refuse a typo.
RESIDUAL_GAIN = 0.5
WAVEFORM_STD = 0.3
FINAL_SLOPE = 0.01  # SpeechT5HifiGan's (and HiFi-GAN's) last leaky ReLU uses torch's default slope


def plain(value: Any) -> Any:
    """Tuples as lists, all the way down: the config as JSON has it."""
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def architecture(config: SpeechT5HifiGanConfig) -> dict[str, Any]:
    return {key: plain(getattr(config, key)) for key in ARCHITECTURE_KEYS}


def hop_length(config: SpeechT5HifiGanConfig) -> int:
    """Waveform samples per mel frame: the product of the upsample rates."""
    return math.prod(int(rate) for rate in config.upsample_rates)


def _normal(weight: torch.Tensor, fan_in: float, gain: float) -> None:
    with torch.no_grad():
        weight.normal_(0.0, gain / math.sqrt(fan_in))


def _conv(conv: nn.Conv1d, gain: float) -> None:
    _normal(conv.weight, conv.in_channels * conv.kernel_size[0], gain)
    nn.init.zeros_(conv.bias)


def init_unit_scale(model: SpeechT5HifiGan) -> None:
    """Weights that keep activations near unit scale and the waveform's std near WAVEFORM_STD (see above)."""
    he = math.sqrt(2.0 / (1.0 + float(model.config.leaky_relu_slope) ** 2))
    _conv(model.conv_pre, 1.0)  # its input, the normalised frames, has unit variance and no activation
    for up in model.upsampler:
        _normal(up.weight, up.in_channels * up.kernel_size[0] / up.stride[0], he)
        nn.init.zeros_(up.bias)
    for block in model.resblocks:
        for conv in block.convs1:
            _conv(conv, he)
        for conv in block.convs2:
            _conv(conv, he * RESIDUAL_GAIN)
    _conv(model.conv_post, math.sqrt(2.0 / (1.0 + FINAL_SLOPE**2)) * WAVEFORM_STD)


def build_vocoder(config: SpeechT5HifiGanConfig, device: str) -> SpeechT5HifiGan:
    """SpeechT5HifiGan from `config` on `device`, in eval mode, the caller's RNG left alone."""
    with quiet(), torch.random.fork_rng(devices=[]), torch.device(device):
        return SpeechT5HifiGan(config).eval()


def build_random_vocoder(model_config: Mapping[str, Any], seed: int) -> SpeechT5HifiGan:
    """A vocoder with unit-scale random weights, fully determined by `seed`, without touching the global RNG."""
    with quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpeechT5HifiGan(SpeechT5HifiGanConfig(**model_config))
        init_unit_scale(model)
    return model.eval()


def _check_sizes(config: Mapping[str, Any], where: str) -> None:
    """The sizes the network is made of: positive integers, stage lists of matching lengths."""
    def refuse(key: str, what: str) -> UserError:
        return UserError(f"weights config {where!r}: {key} must be {what}, got {config[key]!r}")

    for key in (k for k in POSITIVE_INTS if k in config):
        if not is_size(config[key]):
            raise refuse(key, f"an integer from 1 to {MAX_SIZE}")
    for key in (k for k in INT_LISTS if k in config):
        if not isinstance(config[key], list) or not config[key] or not all(map(is_size, config[key])):
            raise refuse(key, "a non-empty list of positive integers")
    dilations = config.get("resblock_dilation_sizes")
    if dilations is not None and not (isinstance(dilations, list) and dilations and all(
            isinstance(d, list) and d and all(map(is_size, d)) for d in dilations)):
        raise refuse("resblock_dilation_sizes", "a non-empty list of non-empty lists of positive integers")


def _check_stages(config: SpeechT5HifiGanConfig, where: str) -> None:
    """What the constructor takes without complaint and the network cannot run: refused by name."""
    rates, kernels = list(config.upsample_rates), list(config.upsample_kernel_sizes)
    if len(rates) != len(kernels):
        raise UserError(f"weights config {where!r}: upsample_rates ({len(rates)}) and upsample_kernel_sizes "
                        f"({len(kernels)}) must have one entry per stage")
    if len(config.resblock_kernel_sizes) != len(config.resblock_dilation_sizes):
        raise UserError(f"weights config {where!r}: resblock_kernel_sizes and resblock_dilation_sizes must have "
                        "one entry per residual block")
    if any(kernel < rate for rate, kernel in zip(rates, kernels)):
        raise UserError(f"weights config {where!r}: every upsample kernel must be at least its rate, got "
                        f"kernels {kernels} for rates {rates}")
    if config.upsample_initial_channel < 2 ** len(rates):
        raise UserError(f"weights config {where!r}: upsample_initial_channel ({config.upsample_initial_channel}) "
                        f"must be at least 2**{len(rates)}: each of the {len(rates)} stages halves it")


def read_vocoder_config(folder: Path) -> SpeechT5HifiGanConfig:
    """The SpeechT5HifiGanConfig of `folder`, its architecture checked; other keys are left out."""
    raw = read_config(folder, MODEL_NAME)
    where = str(folder / CONFIG_NAME)
    check_kind(raw, where, "vocoder", MODEL_NAME, MODEL_TYPES)
    _check_sizes(raw, where)
    try:
        with quiet():
            config = SpeechT5HifiGanConfig(**{key: raw[key] for key in ARCHITECTURE_KEYS if key in raw})
    except (TypeError, ValueError, StrictDataclassError) as error:  # a slope given as a string, say
        raise UserError(f"weights config {where!r} is not a valid {MODEL_NAME} config: "
                        f"{' '.join(str(error).split())}") from error
    _check_stages(config, where)
    return config


def vocoder_files(folder: Path) -> tuple[Path, ...]:
    """The one checkpoint file transformers would read from `folder`."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return (folder / name,)
    raise UserError(f"weights folder {str(folder)!r} has no {' or '.join(WEIGHT_FILES)} ({list_weight_files(folder)})")


def needs(config: SpeechT5HifiGanConfig) -> Callable[[str], bool]:
    """Every tensor, but the normalisation buffers only where the forward pass reads them."""
    if config.normalize_before:
        return checkpoint.every_tensor
    return lambda name: name not in NORMALISATION


def dry_run(model: SpeechT5HifiGan, frames: int, folder: Path) -> None:
    """Run the meta-device `model` on a clip's meta frames: a config whose layers do not fit fails here."""
    mels = torch.empty(1, frames, int(model.config.model_in_dim), device="meta")
    try:
        with torch.no_grad(), quiet():
            model(mels)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"weights config {str(folder / CONFIG_NAME)!r} builds a vocoder that cannot run on "
                        f"{frames} mel frames: {reason}") from error


def check_vocoder_folder(folder: Path, clip_seconds: float) -> SpeechT5HifiGan:
    """Check a vocoder folder from its config and checkpoint headers; return the model on the meta device."""
    folder = require_folder(folder)
    config = read_vocoder_config(folder)
    model = build_vocoder(config, "meta")
    found = checkpoint.read_checkpoint(vocoder_files(folder))
    checkpoint.check(found, checkpoint.model_specs(model), MODEL_NAME, needs(config))
    dry_run(model, clip_frames(clip_seconds, int(config.sampling_rate), hop_length(config)), folder)
    return model


def load_vocoder(folder: Path, clip_seconds: float) -> SpeechT5HifiGan:
    """Load a vocoder folder after the checks the parent ran; in eval mode, on the CPU."""
    check_vocoder_folder(folder, clip_seconds)
    config = read_vocoder_config(folder)
    model = build_vocoder(config, "cpu")
    checkpoint.load_checked(model, vocoder_files(folder), MODEL_NAME, needs(config))
    return model.eval()
