"""HiFi-GAN vocoder: log-mel frames → waveform, the last stage of every two-stage speech synthesizer.

A text-to-speech system predicts a mel spectrogram (SpeechT5, Tacotron 2,
FastSpeech) and hands it to a vocoder, which turns it into audio in one
forward pass. One component, "generator": transformers' `SpeechT5HifiGan`,
mel frames (B, frames, num_mel_bins) fp32 → waveform (B, samples) in [-1, 1],
samples = frames × hop (the product of the upsample rates). Its forward
normalises the frames with the vocoder's `mean`/`scale` buffers first when
`normalize_before` is set (SpeechT5's checkpoint has it), as deployed.

The batch: one seeded clip of `frames` mel frames per row, Gaussian with the
model's own normalisation (`mean + scale · z`, so the generator sees unit
normal features whatever the buffers hold; z itself when the model does not
normalise). Speed does not depend on the values; a trained vocoder's input
is a normalised log-mel of the same shape.

Unit of work: one second of audio, named "audio second", so that throughput
reads "… audio second/s" (seconds of audio made per second of wall time) and
FLOPs per item are per second of audio. A row is one clip of `clip_seconds`
(`units_per_row`, exactly samples / sampling_rate). `metrics.real_time_factor`
is the per-stream real-time factor: median call latency / seconds per row
(< 1 is faster than real time); with batch B every one of the B streams
waits that long for its clip, so each has this RTF. `real_time_factor_p99`
is the same at the 99th percentile, what a streaming deadline has to meet.
The aggregate RTF (machine seconds per second of audio over the batch) is
not recorded: it is 1 / throughput, which the record holds already.

Family "gan": the registry's families name how a model generates (DCGAN
"gan", DiT and the UNet "diffusion"), and HiFi-GAN is a GAN generator run
once per output, like DCGAN; the modality is in the unit.

Sizes (clip lengths are nominal; frames = round(seconds × rate / hop)):
- tiny:  2 upsample stages (4, 4), 32 channels, 20 mels, 2 resblock kernels,
  16 kHz, 0.1 s clip (100 frames, 1,600 samples) — for tests.
- base:  SpeechT5's HiFi-GAN (microsoft/speecht5_hifigan's config.json:
  16 kHz, 80 mels, upsample rates [4,4,4,4], kernels [8,8,8,8], initial
  channel 512, resblock kernels [3,7,11], dilations [[1,3,5]]×3,
  normalize_before), 4 s clip (250 frames, 64,000 samples): 12,656,257
  parameters.
- large: HiFi-GAN V1 (Kong et al. 2020; config_v1.json: 22.05 kHz, 80 mels,
  upsample rates [8,8,2,2], kernels [16,16,4,4], initial channel 512,
  resblock kernels [3,7,11], dilations [[1,3,5]]×3, no input
  normalisation), 4 s nominal clip (345 frames, 88,320 samples, 4.0054 s):
  13,926,017 parameters.

Parameter counts: transformers' module is HiFi-GAN's generator layer for
layer, without weight norm (a training device, folded into the weights of
an inference checkpoint; with it every conv splits its weight into g and v,
10,113 values more: 12,666,370 and 13,936,130). The paper's Table 1 gives
V1 13.92 M, the count without weight norm (13,926,017, truncated; with it,
13.94 M). microsoft/speecht5_hifigan publishes no count; its checkpoint
(pytorch_model.bin, 50,672,453 bytes) is the size of 12,656,417 fp32 values
plus the zip file's overhead — the parameters and the 2 × 80 values of the
`mean`/`scale` buffers, which are buffers, not parameters, and not counted.
The tests check both counts on the meta device.

Random weights are initialised to keep activations at unit scale (see
`vocoder_model.init_unit_scale`), not with HiFi-GAN's N(0, 0.01), which
leaves a 1e-5 waveform: near-silence on which fp16 would underflow.

`--weights DIR` loads a transformers folder (`config.json` and
`model.safetensors` or `pytorch_model.bin`, as `SpeechT5HifiGan.save_pretrained`
writes it and microsoft/speecht5_hifigan publishes it), checked on the meta
device before anything is measured; the clip keeps the size's length in
seconds at the folder's sampling rate and hop.

This module is the workload's declaration and pipeline, and imports no torch
or transformers; the torch side is in `vocoder_model`, imported where a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from .base import Batch, ComponentFn, Workload

if TYPE_CHECKING:
    import torch
    from torch import nn

GENERATOR = "generator"

# microsoft/speecht5_hifigan's config.json (transformers' SpeechT5HifiGanConfig defaults).
SPEECHT5_HIFIGAN: Mapping[str, Any] = {
    "model_in_dim": 80,
    "sampling_rate": 16000,
    "upsample_initial_channel": 512,
    "upsample_rates": (4, 4, 4, 4),
    "upsample_kernel_sizes": (8, 8, 8, 8),
    "resblock_kernel_sizes": (3, 7, 11),
    "resblock_dilation_sizes": ((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    "leaky_relu_slope": 0.1,
    "normalize_before": True,
}

# HiFi-GAN V1 (jik876/hifi-gan config_v1.json): its generator takes log-mels as they are.
HIFIGAN_V1: Mapping[str, Any] = {
    **SPEECHT5_HIFIGAN,
    "sampling_rate": 22050,
    "upsample_rates": (8, 8, 2, 2),
    "upsample_kernel_sizes": (16, 16, 4, 4),
    "normalize_before": False,
}

TINY_HIFIGAN: Mapping[str, Any] = {
    **SPEECHT5_HIFIGAN,
    "model_in_dim": 20,
    "upsample_initial_channel": 32,
    "upsample_rates": (4, 4),
    "upsample_kernel_sizes": (8, 8),
    "resblock_kernel_sizes": (3, 5),
    "resblock_dilation_sizes": ((1, 3), (1, 3)),
}


@dataclass(frozen=True)
class VocoderPreset:
    """A SpeechT5HifiGan config and the nominal length of the clip one row vocodes."""

    model_config: Mapping[str, Any]
    clip_seconds: float


PRESETS: Mapping[str, VocoderPreset] = {
    "tiny": VocoderPreset(TINY_HIFIGAN, 0.1),
    "base": VocoderPreset(SPEECHT5_HIFIGAN, 4.0),
    "large": VocoderPreset(HIFIGAN_V1, 4.0),
}


def clip_frames(seconds: float, sampling_rate: int, hop: int) -> int:
    """The mel frames of a clip closest to `seconds` long (at least one): each frame makes `hop` samples."""
    return max(1, round(seconds * sampling_rate / hop))


def waveform_samples(frames: int, rates: Sequence[int], kernels: Sequence[int]) -> int:
    """The samples HiFi-GAN makes of `frames` frames: each transposed conv's output length, stage by stage.

    frames × hop when every kernel minus its rate is even (all published configs); one sample more
    per stage where it is odd. The other convolutions keep the length.
    """
    length = frames
    for rate, kernel in zip(rates, kernels):
        length = (length - 1) * rate - 2 * ((kernel - rate) // 2) + kernel
    return length


def real_time_factors(workload: Mapping[str, Any], latency_s: Mapping[str, Any]) -> dict[str, float]:
    """Per-stream RTF (median and p99 call latency / seconds of audio per row); {} without what it needs."""
    seconds = workload.get("units_per_row")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds <= 0:
        return {}
    factors = {}
    for key, name in (("p50", "real_time_factor"), ("p99", "real_time_factor_p99")):
        value = latency_s.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            factors[name] = value / seconds
    return factors


class Vocoder(Workload):
    """A HiFi-GAN vocoder: mel frames (B, frames, mels), seeded, → waveforms (B, frames × hop) in [-1, 1]."""

    name = "vocoder"
    family = "gan"
    unit = "audio second"
    description = "HiFi-GAN vocoder (Kong et al. 2020; SpeechT5HifiGan): one forward pass from mel frames to waveform"
    model_modules = (
        "aigcbench.workloads.vocoder_model",
        "transformers.models.speecht5.configuration_speecht5",
        "transformers.models.speecht5.modeling_speecht5",
    )

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .vocoder_model import check_vocoder_folder

        check_vocoder_folder(folder, PRESETS[size].clip_seconds)

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
    ) -> None:
        from .vocoder_model import architecture, build_random_vocoder, hop_length, load_vocoder
        from .weights import weights_sha256

        super().__init__(size, seed, steps=steps, scheduler=scheduler, weights=weights)
        preset = PRESETS[size]
        if weights is None:
            self.generator = build_random_vocoder(preset.model_config, seed)
            self.weights_digest: str | None = None
        else:
            self.generator = load_vocoder(weights, preset.clip_seconds)
            self.weights_digest = weights_sha256(weights)
        self.model_config = architecture(self.generator.config)
        self.clip_seconds = preset.clip_seconds
        self.sampling_rate = int(self.model_config["sampling_rate"])
        self.mel_bins = int(self.model_config["model_in_dim"])
        self.hop = hop_length(self.generator.config)
        self.frames = clip_frames(preset.clip_seconds, self.sampling_rate, self.hop)
        self.samples = waveform_samples(self.frames, self.model_config["upsample_rates"],
                                        self.model_config["upsample_kernel_sizes"])

    def units_per_row(self) -> float:
        """Seconds of audio in one row's clip: its samples over the sampling rate."""
        return self.samples / self.sampling_rate

    @classmethod
    def metric_extras(
        cls,
        workload: Mapping[str, Any],
        component_latency_s: Mapping[str, Mapping[str, Any]],
        latency_s: Mapping[str, Any],
        throughput: float,
    ) -> dict[str, Any]:
        # One generator call per batch: the call's latency is each stream's wait for its clip.
        return real_time_factors(workload, latency_s)

    def components(self) -> Mapping[str, nn.Module]:
        return {GENERATOR: self.generator}

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        if component != GENERATOR:
            raise KeyError(f"vocoder has one component, {GENERATOR!r}; got {component!r}")
        return self.make_batch(batch_size, self.seed).inputs

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(batch_size, self.frames, self.mel_bins, generator=rng)
        mean, scale = self.generator.mean, self.generator.scale
        # A model built on the meta device has shapes only, and so needs nothing but the batch's shape.
        if self.model_config["normalize_before"] and not mean.is_meta:
            # The features that the vocoder's own normalisation maps to unit normal ones.
            z = mean.detach().cpu() + scale.detach().cpu() * z
        return Batch(inputs=(z,), seed=seed, size=batch_size)

    def output_shape(self, batch_size: int) -> tuple[int, ...]:
        """One waveform per row: (B, samples)."""
        return (batch_size, self.samples)

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        (mels,) = batch.inputs
        return sessions[GENERATOR](mels)

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            "clip_seconds": self.clip_seconds,
            "frames": self.frames,
            "hop_length": self.hop,
            "samples_per_row": self.samples,
            "sampling_rate": self.sampling_rate,
            "model": self.model_config,
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }
