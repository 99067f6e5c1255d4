"""The video workload (SVD): published parameter counts, FLOPs, frames per row, per-frame guidance, and `--weights`.

Counts and FLOPs are checked on the meta device (nothing allocated), so base
and large cost seconds at most; the weight folders are tiny ones written by
`save_pretrained`, as a user's pipeline folder would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from aigcbench.bench.errors import UserError
from aigcbench.workloads import flops, registry
from aigcbench.workloads.base import Workload
from aigcbench.workloads.checkpoint import CheckpointError
from aigcbench.workloads.video import (DECODER, SVD_SCHEDULER, SVD_UNET, SVD_VAE, SVD_XT_UNET, TINY_STEPS, UNET,
                                       VideoDiffusion)

NAME = "video"
# `aigcbench` as the entry point runs it, from this interpreter.
CLI = [sys.executable, "-c", "from aigcbench.bench.cli import app; app()"]


def on_meta(size: str, **kwargs: Any) -> Workload:
    with torch.device("meta"):
        return registry.build(NAME, size, **kwargs)


def run(workload: Workload, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    with torch.inference_mode():
        return workload.run(dict(workload.components()), workload.make_batch(batch_size, seed))


def plain(config: Any) -> Any:
    return json.loads(json.dumps(config))


def save_tiny(folder: Path, seed: int = 0) -> VideoDiffusion:
    """A tiny pipeline folder as StableVideoDiffusionPipeline.save_pretrained lays it out (unet/, vae/)."""
    from aigcbench.workloads.video_model import build_random_pipeline
    from aigcbench.workloads.video import PRESETS

    preset = PRESETS["tiny"]
    models = build_random_pipeline(preset.unet, preset.vae, preset.height, preset.width, seed)
    models.unet.save_pretrained(folder / "unet")
    models.vae.save_pretrained(folder / "vae")
    return registry.build(NAME, "tiny", seed)


def edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


# --- the published models ---------------------------------------------------


@pytest.mark.parametrize(("size", "frames"), [("base", 14), ("large", 25)])
def test_base_and_large_are_svd_with_the_published_parameter_counts(size: str, frames: int) -> None:
    from diffusers import AutoencoderKLTemporalDecoder

    workload = on_meta(size)
    components = workload.components()
    # 1,524,623,082: stabilityai/stable-video-diffusion-img2vid(-xt)'s UNet, as published.
    assert sum(p.numel() for p in components[UNET].parameters()) == 1_524_623_082
    # The temporal decoder of the 97,742,847-parameter (97.7 M) AutoencoderKLTemporalDecoder.
    assert sum(p.numel() for p in components[DECODER].parameters()) == 63_579_183
    assert flops.param_count(workload) == 1_524_623_082 + 63_579_183
    with torch.device("meta"):
        vae = AutoencoderKLTemporalDecoder(**SVD_VAE)
    assert sum(p.numel() for p in vae.parameters()) == 97_742_847
    assert (workload.frames, workload.units_per_row(), workload.steps) == (frames, frames, 25)
    assert (workload.height, workload.width) == (576, 1024)
    assert workload.config()["latent_shape"] == [frames, 4, 72, 128]
    assert workload.config()["model"]["unet"] == plain(SVD_UNET if size == "base" else SVD_XT_UNET)


def test_diffusers_defaults_are_the_svd_unet_but_its_frame_count() -> None:
    from diffusers import UNetSpatioTemporalConditionModel

    with torch.device("meta"):
        default = UNetSpatioTemporalConditionModel()
    differs = {k for k, v in plain(SVD_XT_UNET).items() if plain(default.config[k]) != v}
    assert differs == {"sample_size"}  # None in the defaults; the pipeline takes 576×1024 either way


def test_the_scheduler_is_svds_euler() -> None:
    workload = registry.build(NAME, "tiny", steps=25)
    config = workload.scheduler_config
    assert {k: config[k] for k in ("prediction_type", "use_karras_sigmas", "sigma_min", "sigma_max", "timestep_type",
                                   "interpolation_type", "timestep_spacing")} == {
        "prediction_type": "v_prediction", "use_karras_sigmas": True, "sigma_min": 0.002, "sigma_max": 700.0,
        "timestep_type": "continuous", "interpolation_type": "linear", "timestep_spacing": "leading"}
    assert workload.config()["noise_schedule"] == plain(SVD_SCHEDULER)
    scheduler = workload.new_scheduler()
    scheduler.set_timesteps(25)
    assert scheduler.sigmas[0].item() == pytest.approx(700.0)
    assert scheduler.sigmas[-2].item() == pytest.approx(0.002)
    assert scheduler.sigmas[-1].item() == 0.0
    # Continuous timesteps: 0.25 ln σ, the first call's being σ_max's.
    assert workload.first_timestep() == pytest.approx(0.25 * torch.log(torch.tensor(700.0)).item())
    assert (workload.steps, registry.build(NAME, "tiny").steps) == (25, TINY_STEPS)


def test_base_flops_are_counted_on_meta() -> None:
    workload = on_meta("base")
    unet, decoder = (flops.count_flops(workload, c) for c in (UNET, DECODER))
    # One guided call: 2 rows × 14 frames at 72×128 latents; one decode of 14 frames at 576×1024.
    assert unet == 89_603_684_761_600
    assert decoder == 97_201_553_670_144
    per_frame = (workload.steps * unet + decoder) / workload.units_per_row()
    assert per_frame == pytest.approx(166.95e12, rel=1e-4)


def test_meta_shapes_of_one_base_call() -> None:
    from torch.func import functional_call

    workload = on_meta("base")
    for component, shape in ((UNET, (1, 14, 4, 72, 128)), (DECODER, (1, 14, 3, 576, 1024))):
        module = workload.components()[component]
        tensors = [*module.named_parameters(), *module.named_buffers()]
        state = {n: torch.empty_like(t, device="meta") for n, t in tensors}
        inputs = tuple(torch.empty_like(t, device="meta") for t in workload.example_inputs(component, 1))
        with torch.no_grad():
            assert functional_call(module, state, inputs).shape == shape


# --- frames: the unit, the parameter ----------------------------------------


@pytest.mark.parametrize(("frames", "expected"), [(None, 3), (5, 5), (1, 1)])
def test_units_per_row_are_the_clips_frames(frames: int | None, expected: int) -> None:
    params = {} if frames is None else {"frames": frames}
    workload = registry.build(NAME, "tiny", params=params)
    assert workload.units_per_row() == expected == workload.config()["frames"]
    assert workload.make_batch(2, 0).inputs[0].shape == (2, expected, 4, 4, 8)
    assert workload.output_shape(2) == (2, expected, 3, 32, 64)
    if frames is not None:  # the default's run is the contract tests'
        assert run(workload, 2).shape == workload.output_shape(2)


def test_frames_change_the_graphs_identity() -> None:
    three, five = registry.build(NAME, "tiny"), registry.build(NAME, "tiny", params={"frames": 5})
    for component in (UNET, DECODER):
        assert three.identity(component) != five.identity(component)
    # The sampling loop is not part of a component's graph.
    assert registry.build(NAME, "tiny", steps=3).identity(UNET) == three.identity(UNET)


@pytest.mark.parametrize("frames", [0, -1, 1025, 2.5, True, "4"])
def test_bad_frames_are_a_user_error(frames: Any) -> None:
    with pytest.raises(UserError, match="frames"):
        registry.build(NAME, "tiny", params={"frames": frames})


@pytest.mark.parametrize(("value", "expected"), [("0", "--frames"), ("2000", "--frames"), ("-3", "--frames")])
def test_the_cli_refuses_bad_frames_with_exit_2(value: str, expected: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aigcbench.bench.cli import app

    result = CliRunner().invoke(app, ["run", "-w", NAME, "-b", "pytorch", "--size", "tiny", "--frames", value,
                                      "--store", str(tmp_path / "results.db")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.slow
def test_a_measured_cell_counts_frames_as_items(tmp_path: Path, monkeypatch) -> None:
    from aigcbench.bench.config import RunConfig
    from aigcbench.bench.runner import run_cell

    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    options = {"workload": NAME, "backend": "pytorch", "size": "tiny", "duration": 0.05, "min_iterations": 2,
               "warmup": 0, "warmup_duration": 0, "frames": 2, "batch_size": 2}
    record = run_cell(RunConfig.from_options(options))
    assert record.status == "ok"
    assert record.workload["unit"] == "frame" and record.workload["units_per_row"] == 2
    assert record.workload["config"]["frames"] == 2
    metrics = record.metrics
    assert metrics["items"] == metrics["iterations"] * 2 * 2  # calls × rows × frames
    assert metrics["fidelity"]["passed"]
    components = record.workload["components"]
    assert components[UNET]["calls_per_batch"] == TINY_STEPS and components[DECODER]["calls_per_batch"] == 1


# --- guidance ---------------------------------------------------------------


@pytest.mark.parametrize("frames", [1, 3, 14, 25])
def test_the_guidance_scale_is_spaced_per_frame_as_the_pipeline_spaces_it(frames: int) -> None:
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import _append_dims

    from aigcbench.workloads.video_model import guidance_scales

    scales = guidance_scales(frames)
    assert scales.shape == (1, frames, 1, 1, 1)
    # StableVideoDiffusionPipeline's step 8, for a batch of 2 and 5-D latents.
    expected = _append_dims(torch.linspace(1.0, 3.0, frames).unsqueeze(0).repeat(2, 1), 5)
    assert torch.equal(scales.expand_as(expected), expected)
    assert scales[0, 0].item() == 1.0 and scales[0, -1].item() == (3.0 if frames > 1 else 1.0)


def test_guidance_runs_the_unet_on_uncond_then_cond_rows_mixed_per_frame() -> None:
    workload = registry.build(NAME, "tiny")
    guided = workload.components()[UNET]
    assert guided.guidance_scale.shape == (1, workload.frames, 1, 1, 1)
    latents, t, embeds, image_latents, ids = workload.example_inputs(UNET, 2)
    seen: dict[str, torch.Tensor] = {}

    def capture(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        seen.update(sample=args[0], timestep=args[1],
                    **{k: kwargs[k] for k in ("encoder_hidden_states", "added_time_ids")})

    handle = guided.unet.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.inference_mode():
            out = guided(latents, t, embeds, image_latents, ids)
    finally:
        handle.remove()
    sample = seen["sample"]
    assert sample.shape == (4, workload.frames, 8, 4, 8)  # doubled batch; 4 noisy + 4 conditioning channels
    assert torch.equal(sample[:2, :, :4], latents) and torch.equal(sample[2:, :, :4], latents)
    assert not sample[:2, :, 4:].any() and not seen["encoder_hidden_states"][:2].any()  # the unconditional rows
    assert torch.equal(sample[2:, :, 4:], image_latents.unsqueeze(1).expand(-1, workload.frames, -1, -1, -1))
    assert torch.equal(seen["encoder_hidden_states"][2:], embeds)
    # fps − 1, motion_bucket_id, noise_aug_strength: the pipeline's defaults, the same for both halves.
    torch.testing.assert_close(seen["added_time_ids"], torch.tensor([[6.0, 127.0, 0.02]]).expand(4, 3))
    with torch.inference_mode():
        both = guided.unet(sample, seen["timestep"], encoder_hidden_states=seen["encoder_hidden_states"],
                           added_time_ids=seen["added_time_ids"], return_dict=False)[0]
    uncond, cond = both[:2], both[2:]
    torch.testing.assert_close(out[:, 0], cond[:, 0])  # scale 1: the conditional prediction
    torch.testing.assert_close(out[:, -1], uncond[:, -1] + 3.0 * (cond[:, -1] - uncond[:, -1]))


# --- the decode -------------------------------------------------------------


def test_the_decoder_decodes_a_clip_in_one_call_its_frames_mixed() -> None:
    workload = registry.build(NAME, "tiny")
    decoder = workload.components()[DECODER]
    (latents,) = workload.example_inputs(DECODER, 1)
    changed = latents.clone()
    changed[:, 0] += 1.0
    with torch.inference_mode():
        before, after = decoder(latents), decoder(changed)
    # The temporal layers carry frame 0's change to frame 1: decoding in chunks would change the output.
    assert not torch.allclose(before[:, 1], after[:, 1])
    assert workload.calls_per_batch() == {UNET: TINY_STEPS, DECODER: 1}


def test_the_clip_decoder_is_the_pipelines_decode_with_batch_independent_operators() -> None:
    from aigcbench.reports.plan.costtrace import trace_call
    from aigcbench.workloads.video import PRESETS
    from aigcbench.workloads.video_model import ClipDecoder, build_random_pipeline

    preset = PRESETS["tiny"]
    vae = build_random_pipeline(preset.unet, preset.vae, preset.height, preset.width, 0).vae
    latents = torch.randn(2, 3, 4, 4, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = ClipDecoder(vae)(latents)
        # StableVideoDiffusionPipeline.decode_latents, one chunk of all frames, in frames-major layout.
        theirs = vae.decode(latents.flatten(0, 1) / vae.config.scaling_factor, num_frames=3).sample
    assert torch.equal(ours, theirs.reshape(2, 3, 3, 32, 64))
    workload = registry.build(NAME, "tiny")
    for component in (UNET, DECODER):  # the planner fits batch-1 and batch-2 traces operator by operator
        one, two = trace_call(workload, component, 1), trace_call(workload, component, 2)
        assert [t[0] for t in one] == [t[0] for t in two]


def test_the_declaration_imports_no_torch() -> None:
    code = ("import sys, aigcbench.workloads.video as v; v.check_frames(None, 14); "
            "print(any(m in sys.modules for m in ('torch', 'diffusers')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- --weights --------------------------------------------------------------


def test_weights_round_trip_through_a_pipeline_folder(tmp_path: Path) -> None:
    saved = save_tiny(tmp_path, seed=5)
    (tmp_path / "image_encoder").mkdir()  # a real SVD folder has one; it is not read
    registry.check(NAME, "tiny", weights=tmp_path)
    loaded = registry.build(NAME, "tiny", weights=tmp_path)
    assert torch.equal(run(loaded), run(saved))
    assert loaded.config()["weights"] == str(tmp_path)
    assert len(loaded.config()["weights_sha256"]) == 64
    assert loaded.config()["model"] == saved.config()["model"]


def test_a_folders_num_frames_is_the_default_clip_length(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    edit_config(tmp_path / "unet", num_frames=2)
    assert registry.build(NAME, "tiny", weights=tmp_path).frames == 2
    assert registry.build(NAME, "tiny", weights=tmp_path, params={"frames": 4}).frames == 4


def test_a_vae_folder_needs_the_decoder_only(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    path = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(path))
    save_file({k: v for k, v in state.items() if k.startswith("decoder.")}, str(path))
    registry.check(NAME, "tiny", weights=tmp_path)
    save_file({k: v for k, v in state.items() if k != "decoder.conv_out.weight"}, str(path))
    with pytest.raises(CheckpointError, match="lacks tensor 'decoder.conv_out.weight'"):
        VideoDiffusion.check_weights("tiny", tmp_path)


def test_a_folder_without_unet_or_vae_names_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no unet/ or vae/ subfolder.*Stable Video Diffusion"):
        VideoDiffusion.check_weights("tiny", tmp_path)


@pytest.mark.parametrize(("folder", "changes", "message"), [
    ("unet", {"_class_name": "UNet2DConditionModel"}, "describes a 'UNet2DConditionModel'"),
    ("unet", {"num_frames": 0}, "num_frames must be an integer"),
    ("vae", {"scaling_factor": 0}, "scaling_factor must be"),
])
def test_a_config_the_pipeline_cannot_run_is_a_one_line_user_error(
        tmp_path: Path, folder: str, changes: dict[str, Any], message: str) -> None:
    save_tiny(tmp_path)
    edit_config(tmp_path / folder, **changes)
    with pytest.raises(UserError, match=message) as refused:
        VideoDiffusion.check_weights("tiny", tmp_path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(("changes", "message"), [
    ({"in_channels": 4}, r"in_channels \(4\) must be twice"),
    ({"projection_class_embeddings_input_dim": 16}, "must be 3 added time ids"),
])
def test_a_unet_that_does_not_fit_the_pipeline_is_refused(
        tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    from diffusers import UNetSpatioTemporalConditionModel

    from aigcbench.workloads.video import TINY_UNET

    save_tiny(tmp_path)
    # A consistent folder (its weights fit its config) whose UNet the pipeline cannot feed.
    UNetSpatioTemporalConditionModel(**{**TINY_UNET, **changes}).save_pretrained(tmp_path / "unet")
    with pytest.raises(UserError, match=message) as refused:
        VideoDiffusion.check_weights("tiny", tmp_path)
    assert "\n" not in str(refused.value)


# --- end to end -------------------------------------------------------------


@pytest.mark.slow
def test_the_cli_runs_tiny_on_pytorch_with_fidelity_passed(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    result = subprocess.run([*CLI, "run", "-w", NAME, "-b", "pytorch", "--size", "tiny", "--json", str(out),
                             "--duration", "0.1", "--warmup", "0"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300, env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["status"] == "ok" and record["metrics"]["fidelity"]["passed"]
    assert record["metrics"]["items"] == record["metrics"]["iterations"] * 3
