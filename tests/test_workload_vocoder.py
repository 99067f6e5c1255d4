"""The vocoder workload: published parameter counts, FLOPs, seconds of audio per row, RTF, and `--weights`.

Counts and FLOPs are checked on the meta device (nothing allocated), so base
and large cost milliseconds; the weight folders are tiny ones written by
`SpeechT5HifiGan.save_pretrained`, as a user's would be.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import pytest
import torch
from safetensors.torch import load_file, save_file

from aigcbench.bench.errors import UserError
from aigcbench.workloads import flops, registry
from aigcbench.workloads.base import Workload
from aigcbench.workloads.checkpoint import CheckpointError
from aigcbench.workloads.vocoder import GENERATOR, HIFIGAN_V1, SPEECHT5_HIFIGAN, TINY_HIFIGAN, Vocoder

NAME = "vocoder"


def on_meta(size: str) -> Workload:
    with torch.device("meta"):
        return registry.build(NAME, size)


def run(workload: Workload, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    with torch.inference_mode():
        return workload.run(dict(workload.components()), workload.make_batch(batch_size, seed))


def save_tiny(folder: Path, seed: int = 0) -> Workload:
    workload = registry.build(NAME, "tiny", seed)
    workload.components()[GENERATOR].save_pretrained(folder)
    return workload


def edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


# --- the published models ---------------------------------------------------


@pytest.mark.parametrize(("size", "params", "with_weight_norm"), [
    ("base", 12_656_257, 12_666_370),  # microsoft/speecht5_hifigan (its checkpoint's size: see vocoder.py)
    ("large", 13_926_017, 13_936_130),  # HiFi-GAN V1, the paper's Table 1: 13.92 M
])
def test_base_and_large_have_the_published_parameter_counts(size: str, params: int, with_weight_norm: int) -> None:
    workload = on_meta(size)
    generator = workload.components()[GENERATOR]
    assert flops.param_count(workload) == params
    # The input normalisation's mean and scale are buffers (one value per mel bin each), not parameters.
    assert {name: b.numel() for name, b in generator.named_buffers()} == {"mean": 80, "scale": 80}
    # Weight norm, a training device, splits each conv's weight into direction and per-channel norm.
    generator.apply_weight_norm()
    assert sum(p.numel() for p in generator.parameters()) == with_weight_norm


def test_base_and_large_are_the_configs_they_name() -> None:
    base, large = on_meta("base"), on_meta("large")
    assert base.config()["model"] == json.loads(json.dumps(SPEECHT5_HIFIGAN))
    assert large.config()["model"] == json.loads(json.dumps(HIFIGAN_V1))
    assert (base.sampling_rate, base.hop, base.frames, base.samples) == (16000, 256, 250, 64_000)
    assert (large.sampling_rate, large.hop, large.frames, large.samples) == (22050, 256, 345, 88_320)


def hifigan_flops(model: Mapping[str, Any], frames: int) -> int:
    """HiFi-GAN's convolution FLOPs on `frames` frames, 2 per multiply-add, from its config alone.

    A conv makes each output sample from in × kernel weights per out-channel; a transposed conv
    sends each input sample through all of its in × out × kernel weights. Biases are not counted.
    """
    channels, length = model["upsample_initial_channel"], frames
    total = 2 * model["model_in_dim"] * channels * 7 * length  # conv_pre
    for rate, kernel in zip(model["upsample_rates"], model["upsample_kernel_sizes"]):
        total += 2 * channels * (channels // 2) * kernel * length
        length = (length - 1) * rate - 2 * ((kernel - rate) // 2) + kernel
        channels //= 2
        for size, dilations in zip(model["resblock_kernel_sizes"], model["resblock_dilation_sizes"]):
            total += 2 * len(dilations) * 2 * channels * channels * size * length  # convs1 and convs2
    return total + 2 * channels * 7 * length  # conv_post


@pytest.mark.parametrize("size", ["base", "large"])
def test_flops_are_counted_on_meta_and_match_the_architecture(size: str) -> None:
    workload = on_meta(size)
    counted = flops.count_flops(workload, GENERATOR)
    assert counted == hifigan_flops(workload.config()["model"], workload.frames)
    if size == "base":  # 68.3 GFLOP per 4 s clip: 17.1 GFLOP per second of audio
        assert counted == 68_329_472_000
        assert flops.per_unit(counted, workload.units_per_row()) == 17_082_368_000


# --- the unit and the real-time factor --------------------------------------


@pytest.mark.parametrize(("size", "seconds"), [("tiny", 0.1), ("base", 4.0), ("large", 88_320 / 22_050)])
def test_units_per_row_are_the_clips_seconds(size: str, seconds: float) -> None:
    workload = on_meta(size)
    assert workload.units_per_row() == pytest.approx(seconds, rel=1e-12)
    assert workload.units_per_row() == workload.config()["samples_per_row"] / workload.sampling_rate
    assert abs(workload.units_per_row() - workload.clip_seconds) <= workload.hop / workload.sampling_rate / 2


def test_tiny_makes_a_waveform_of_the_declared_length_within_tanh() -> None:
    workload = registry.build(NAME, "tiny")
    mels = workload.make_batch(2, 0).inputs[0]
    assert mels.shape == (2, workload.frames, workload.mel_bins)
    out = run(workload, 2)
    assert out.shape == (2, workload.config()["samples_per_row"])
    # Unit-scale init: an audible waveform, not HiFi-GAN init's 1e-5 near-silence, and not clipped.
    assert ((out.std(dim=1) > 0.05) & (out.std(dim=1) < 0.9)).all()
    assert out.abs().max() < 0.999


def test_metric_extras_give_the_per_stream_real_time_factor() -> None:
    workload = {"name": NAME, "units_per_row": 4.0}
    latency = {"p50": 0.5, "p90": 0.8, "p99": 1.0, "n": 10}
    before = (dict(workload), dict(latency))
    extras = Vocoder.metric_extras(workload, {}, latency, throughput=8.0)
    assert extras == {"real_time_factor": 0.125, "real_time_factor_p99": 0.25}
    assert (workload, latency) == before  # pure: its arguments are left as they were
    # The registry's class, as `bench.derive` calls it, without building a model.
    assert registry.get(NAME).metric_extras(workload, {}, latency, 8.0) == extras


@pytest.mark.parametrize("units", [None, 0, -1.0, True])
def test_metric_extras_without_seconds_per_row_give_nothing(units: Any) -> None:
    assert Vocoder.metric_extras({"units_per_row": units}, {}, {"p50": 0.5, "p99": 1.0}, 1.0) == {}


def test_the_declaration_imports_no_torch() -> None:
    code = ("import sys, aigcbench.workloads.vocoder as v; v.Vocoder.metric_extras({'units_per_row': 1.0}, {}, "
            "{'p50': 1.0}, 1.0); print(any(m in sys.modules for m in ('torch', 'transformers')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- --weights --------------------------------------------------------------


def test_weights_round_trip_through_a_saved_folder(tmp_path: Path) -> None:
    saved = save_tiny(tmp_path, seed=5)
    registry.check(NAME, "tiny", weights=tmp_path)
    loaded = registry.build(NAME, "tiny", weights=tmp_path)
    assert torch.equal(run(loaded), run(saved))
    assert loaded.config()["weights"] == str(tmp_path)
    assert len(loaded.config()["weights_sha256"]) == 64
    assert loaded.config()["model"] == saved.config()["model"]


def test_a_published_layout_folder_loads_and_its_normalisation_shapes_the_batch(tmp_path: Path) -> None:
    # microsoft/speecht5_hifigan: pytorch_model.bin, a transformers-4 config (model_type "hifigan"), trained mean/scale.
    save_tiny(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state["mean"], state["scale"] = torch.linspace(-6, -2, 20), torch.linspace(1, 3, 20)
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    edit_config(tmp_path, model_type="hifigan")
    loaded = registry.build(NAME, "tiny", weights=tmp_path)
    mels = loaded.make_batch(1, 3).inputs[0]
    z = torch.randn(1, loaded.frames, loaded.mel_bins, generator=torch.Generator().manual_seed(3))
    assert torch.allclose((mels - state["mean"]) / state["scale"], z, atol=1e-5)


def test_a_folder_without_normalisation_needs_no_mean_or_scale(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    edit_config(tmp_path, normalize_before=False)
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in state.items() if k not in ("mean", "scale")}, str(tmp_path / "model.safetensors"))
    assert torch.isfinite(run(registry.build(NAME, "tiny", weights=tmp_path))).all()


def test_a_checkpoint_missing_a_tensor_is_refused_before_loading(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in state.items() if k != "conv_post.weight"}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lacks tensor 'conv_post.weight'"):
        registry.check(NAME, "tiny", weights=tmp_path)


@pytest.mark.parametrize(("changes", "message"), [
    ({"architectures": ["DiTTransformer2DModel"], "model_type": "dit"}, "describes.*needs a SpeechT5HifiGan"),
    ({"upsample_rates": [4, 4, 4]}, "one entry per stage"),
    ({"upsample_kernel_sizes": [2, 8]}, "at least its rate"),
    ({"upsample_initial_channel": 0}, "upsample_initial_channel must be an integer from 1"),
    ({"resblock_dilation_sizes": [1, 3]}, "lists of positive integers"),
    ({"leaky_relu_slope": "steep"}, "not a valid SpeechT5HifiGan config"),
])
def test_a_config_the_vocoder_cannot_run_is_a_one_line_user_error(
        tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    save_tiny(tmp_path)
    edit_config(tmp_path, **changes)
    with pytest.raises(UserError, match=message) as refused:
        Vocoder.check_weights("tiny", tmp_path)
    assert "\n" not in str(refused.value)


def test_a_model_whose_layers_do_not_fit_fails_its_dry_run_before_loading(tmp_path: Path) -> None:
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    # An even resblock kernel shortens the stream by one sample, so its residual sum cannot add up;
    # the checkpoint fits the model, so only running it (on the meta device) finds out.
    config = SpeechT5HifiGanConfig(**{**TINY_HIFIGAN, "resblock_kernel_sizes": (4, 5)})
    SpeechT5HifiGan(config).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="builds a vocoder that cannot run on 100 mel frames"):
        Vocoder.check_weights("tiny", tmp_path)


def test_a_folder_without_a_checkpoint_names_what_it_needs(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserError, match="has no model.safetensors or pytorch_model.bin"):
        Vocoder.check_weights("tiny", tmp_path)


# --- a measured cell --------------------------------------------------------


@pytest.mark.slow
def test_a_measured_cell_records_the_real_time_factor(tmp_path: Path, monkeypatch) -> None:
    from aigcbench.bench.config import RunConfig
    from aigcbench.bench.runner import run_cell

    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    options = {"workload": NAME, "backend": "pytorch", "size": "tiny", "duration": 0.05, "min_iterations": 2,
               "warmup": 0, "warmup_duration": 0}
    record = run_cell(RunConfig.from_options(options))
    assert record.status == "ok"
    metrics, seconds = record.metrics, record.workload["units_per_row"]
    assert seconds == pytest.approx(0.1)
    assert metrics["real_time_factor"] == pytest.approx(metrics["latency_s"]["p50"] / seconds)
    # Throughput is seconds of audio per second: batch 1 × 0.1 s per call.
    assert metrics["throughput_items_per_s"] <= seconds / metrics["latency_s"]["min"] * (1 + 1e-9)
    assert math.isfinite(metrics["real_time_factor_p99"])
