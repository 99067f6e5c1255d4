"""`sd`: the published models' sizes, guidance as deployed, the samplers, prompt ids, SDXL's conditioning, weights.

The contract tests (tests/test_workloads.py, tests/test_backends.py) cover what
every workload promises; these pin what Stable Diffusion's pipelines fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from aigcbench.bench.errors import UserError
from aigcbench.workloads import flops, registry
from aigcbench.workloads import sd as sd_module
from aigcbench.workloads import sd_presets
from aigcbench.workloads.sd import CLIP_BOS, CLIP_EOS, DECODER, SCHEDULERS, TEXT_ENCODER, TEXT_ENCODER_2, UNET
from aigcbench.workloads.sd_model import build_random_pipeline

from .test_cli import FAST, cli

STEPS = 2


def build(size: str = "tiny", **kwargs) -> sd_module.StableDiffusion:
    return registry.build("sd", size, 0, steps=kwargs.pop("steps", STEPS), **kwargs)


def eager(workload) -> dict[str, torch.nn.Module]:
    return dict(workload.components())


def sample(workload, batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    with torch.inference_mode():
        return workload.run(eager(workload), workload.make_batch(batch_size, seed))


def component_params(workload) -> dict[str, int]:
    return {name: sum(p.numel() for p in m.parameters()) for name, m in workload.components().items()}


# Published counts: runwayml/stable-diffusion-v1-5 (model card: "860M UNet", CLIP ViT-L/14 text encoder 123 M),
# stabilityai/stable-diffusion-xl-base-1.0 (Podell et al. 2023, table 1: UNet 2.6 B, text encoders 817 M
# together); the VAE decoder is post_quant_conv + decoder of SD's 83,653,863-parameter AutoencoderKL.
@pytest.mark.parametrize(("size", "expected", "side"), [
    ("base", {TEXT_ENCODER: 123_060_480, UNET: 859_520_964, DECODER: 49_490_199}, 512),
    ("large", {TEXT_ENCODER: 123_060_480, TEXT_ENCODER_2: 694_659_840, UNET: 2_567_463_684, DECODER: 49_490_199},
     1024),
])
def test_base_and_large_are_the_published_models(size: str, expected: dict[str, int], side: int) -> None:
    with torch.device("meta"):  # billions of parameters: shapes only, nothing allocated or initialised
        workload = build(size)
    assert component_params(workload) == expected
    assert workload.config()["image_size"] == side and workload.output_shape(1) == (1, 3, side, side)
    assert flops.param_count(workload) == sum(expected.values())
    if size == "large":
        assert 817e6 < expected[TEXT_ENCODER] + expected[TEXT_ENCODER_2] < 818e6  # the paper's 817 M


def test_the_components_flops_are_counted_per_image_on_meta() -> None:
    with torch.device("meta"):
        workload = build("base")
    # SD 1.5's UNet at 64×64 latents is ≈ 0.4 TMAC per row (a commonly quoted 339 GMAC + attention); guided, 2 rows.
    unet = flops.count_flops(workload, UNET)
    assert 1.2e12 < unet < 2.0e12
    assert flops.count_flops(workload, TEXT_ENCODER) > 0 and flops.count_flops(workload, DECODER) > unet / 2


def test_guidance_doubles_the_unet_rows_and_calls_each_encoder_twice() -> None:
    workload = build()
    rows: list[int] = []
    unet = workload.components()[UNET].unet
    handle = unet.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    try:
        sample(workload, batch_size=3)
    finally:
        handle.remove()
    assert rows == [6] * STEPS
    assert workload.calls_per_batch() == {TEXT_ENCODER: 2, UNET: STEPS, DECODER: 1}


def test_guidance_one_runs_the_plain_batch_once_and_guidance_changes_the_image() -> None:
    plain = build(params={"guidance": 1.0})
    assert plain.calls_per_batch() == {TEXT_ENCODER: 1, UNET: STEPS, DECODER: 1}
    rows: list[int] = []
    handle = plain.components()[UNET].unet.register_forward_pre_hook(lambda m, a: rows.append(a[0].shape[0]))
    try:
        unguided = sample(plain, batch_size=2)
    finally:
        handle.remove()
    assert rows == [2] * STEPS
    # Same weights (same seed), other guidance: a different image.
    assert not torch.allclose(unguided, sample(build(), batch_size=2))


def test_guidance_below_one_is_a_user_error() -> None:
    with pytest.raises(UserError, match="guidance must be ≥ 1"):
        build(params={"guidance": 0.5})


def test_prompt_rows_are_bos_words_eos_padding() -> None:
    workload = build()
    _, rows = workload.make_batch(4, seed=3).inputs
    ids = workload.encoder_ids(rows, TEXT_ENCODER)
    assert ids.dtype == torch.int64 and ids.shape == (4, workload.geometry.prompt_length)
    bos, eos = workload.geometry.bos, workload.geometry.eos
    assert (ids[:, 0] == bos).all()
    for row in ids:
        first_eos = int((row == eos).nonzero()[0])
        assert 2 <= first_eos <= 76 and (row[first_eos:] == eos).all()  # EOS-padded, as SD's tokenizer pads
        assert not ((row[1:first_eos] == eos) | (row[1:first_eos] == bos)).any()


def test_the_base_prompt_ids_are_clips() -> None:
    with torch.device("meta"):
        workload = build("base")
    assert (workload.geometry.bos, workload.geometry.eos, workload.geometry.prompt_length) == (CLIP_BOS, CLIP_EOS, 77)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_each_scheduler_samples(scheduler: str) -> None:
    out = sample(build(scheduler=scheduler), batch_size=2)
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()


def test_schedulers_differ_and_euler_is_the_default() -> None:
    assert build().scheduler == "euler" and build().steps == STEPS
    assert registry.build("sd", "tiny", 0).steps == 20
    images = [sample(build(scheduler=s)) for s in SCHEDULERS]
    assert not torch.allclose(images[0], images[1]) and not torch.allclose(images[1], images[2])


def test_sdxl_conditioning_runs_two_encoders_and_the_text_time_embedding(monkeypatch) -> None:
    # The tiny SDXL preset: the same code path as `large` (two encoders, pooled row, size ids), tiny sizes.
    monkeypatch.setitem(sd_presets.PRESETS, "tiny", sd_presets.TINY_XL)
    workload = build()
    assert workload.xl and set(workload.components()) == {TEXT_ENCODER, TEXT_ENCODER_2, UNET, DECODER}
    assert workload.components()[UNET].unet.config.addition_embed_type == "text_time"
    seen: dict[str, torch.Tensor] = {}
    unet = workload.components()[UNET].unet
    handle = unet.register_forward_pre_hook(lambda m, a, kw: seen.update(kw["added_cond_kwargs"]), with_kwargs=True)
    try:
        out = sample(workload, batch_size=2)
    finally:
        handle.remove()
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()
    side = float(workload.config()["image_size"])
    assert seen["time_ids"].shape == (4, 6) and (seen["time_ids"][0] == torch.tensor([side, side, 0, 0, side, side])).all()
    assert seen["text_embeds"].shape == (4, workload.geometry.pooled_width)
    assert workload.calls_per_batch() == {TEXT_ENCODER: 2, TEXT_ENCODER_2: 2, UNET: STEPS, DECODER: 1}


def save_tiny_pipeline(folder: Path) -> None:
    models = build_random_pipeline(sd_presets.PRESETS["tiny"], 5)
    models.text_encoders[0].save_pretrained(folder / "text_encoder")
    models.unet.save_pretrained(folder / "unet")
    models.vae.save_pretrained(folder / "vae")


def test_weights_folder_loads_the_saved_pipeline(tmp_path: Path) -> None:
    save_tiny_pipeline(tmp_path / "pipe")
    loaded = build(weights=tmp_path / "pipe")
    again = build(weights=tmp_path / "pipe")
    random = build()
    assert loaded.config()["weights_sha256"] and loaded.config()["weights_sha256"] == again.config()["weights_sha256"]
    image = sample(loaded)
    assert torch.equal(image, sample(again)) and not torch.allclose(image, sample(random))


def test_weights_folder_without_a_unet_exits_2_before_measuring(tmp_path: Path) -> None:
    save_tiny_pipeline(tmp_path / "pipe")
    for file in (tmp_path / "pipe" / "unet").iterdir():
        file.unlink()
    (tmp_path / "pipe" / "unet").rmdir()
    result = cli("run", "-w", "sd", "-b", "pytorch", "--size", "tiny", "--weights", str(tmp_path / "pipe"),
                 "--store", f"sqlite:///{tmp_path / 's.db'}")
    assert result.returncode == 2, result.stderr
    assert "no unet/ subfolder" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.db").exists()


def test_a_record_lists_each_component_with_its_params_and_flops(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = cli("run", "-w", "sd", "-b", "pytorch", *FAST, "--steps", "2", "--store", f"sqlite:///{tmp_path / 's.db'}",
                 "--json", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    components = record["workload"]["components"]
    assert set(components) == {TEXT_ENCODER, UNET, DECODER}
    assert all(c["params"] > 0 and c["flops_per_item"] > 0 for c in components.values())
    assert record["metrics"]["fidelity"]["passed"] is True
    assert set(record["metrics"]["component_latency_s"]) == {TEXT_ENCODER, UNET, DECODER}


def test_reduced_precision_tolerances_widen_with_guidance_and_fp32_never() -> None:
    assert build(params={"guidance": 1.0}).tolerances == registry.get("dcgan").tolerances
    guided = build().tolerances
    assert guided["fp32"] == 1e-4 and guided["bf16"] == pytest.approx(0.05 * 7.5 / 2.5)
