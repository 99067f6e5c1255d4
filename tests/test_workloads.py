"""The workload contract, checked for every registered workload, plus each reference config's facts.

`TestWorkloadContract` is parametrized over the registry with no per-name
cases: a new workload passes it or is not done. The targeted tests below it
pin what the papers fix (parameter counts, output shapes) and what the
pipelines promise (steps, schedulers, seeded sampling, weight loading).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from aigcbench.bench.errors import UserError
from aigcbench.workloads import flops, registry
from aigcbench.workloads.base import SIZES, Batch, Workload
from aigcbench.workloads.dit import TINY_VAE
from aigcbench.workloads.vae_model import build_random_vae

NAMES = registry.names()
# Steps for iterative workloads in the contract tests: enough to exercise
# the scheduler loop, few enough to keep the file fast (ignored by the others).
TEST_STEPS = 2


@functools.lru_cache(maxsize=None)
def tiny(name: str, seed: int = 0) -> Workload:
    """A tiny workload, built once per (name, seed); tests only read it."""
    return registry.build(name, "tiny", seed, steps=TEST_STEPS)


def eager_sessions(workload: Workload) -> dict[str, torch.nn.Module]:
    """Plain module calls as sessions: what the eager backend amounts to."""
    return {name: module for name, module in workload.components().items()}


def run_eager(workload: Workload, batch: Batch) -> torch.Tensor:
    with torch.inference_mode():
        return workload.run(eager_sessions(workload), batch)


def state_of(workload: Workload) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v for c, m in workload.components().items() for k, v in m.state_dict().items()}


@pytest.mark.parametrize("name", NAMES)
class TestWorkloadContract:
    def test_class_declares_what_the_harness_reads(self, name: str) -> None:
        workload_class = registry.get(name)
        assert workload_class.name == name
        assert workload_class.family and workload_class.description
        assert isinstance(workload_class.unit, str) and workload_class.unit
        assert workload_class.sizes == SIZES
        # An iterative workload must offer a scheduler; the others must not pretend to.
        assert bool(workload_class.schedulers) == workload_class.iterative

    def test_components_are_eval_fp32_cpu_modules(self, name: str) -> None:
        components = tiny(name).components()
        assert components
        for module in components.values():
            assert isinstance(module, torch.nn.Module)
            assert not any(m.training for m in module.modules())
            tensors = [*module.parameters(), *module.buffers()]
            assert all(t.device.type == "cpu" for t in tensors)
            assert all(t.dtype == torch.float32 for t in tensors if t.is_floating_point())

    @pytest.mark.parametrize("batch_size", [1, 2])
    def test_run_returns_the_declared_shape(self, name: str, batch_size: int) -> None:
        workload = tiny(name)
        out = run_eager(workload, workload.make_batch(batch_size, seed=1))
        assert out.shape == workload.output_shape(batch_size)
        assert workload.units_per_row() > 0

    def test_run_calls_each_component_as_declared(self, name: str) -> None:
        workload = tiny(name)
        calls = {component: 0 for component in workload.components()}

        def counting(component: str, module: torch.nn.Module):
            def call(*inputs: torch.Tensor) -> torch.Tensor:
                calls[component] += 1
                return module(*inputs)

            return call

        sessions = {c: counting(c, m) for c, m in workload.components().items()}
        with torch.inference_mode():
            workload.run(sessions, workload.make_batch(1, seed=0))
        assert calls == dict(workload.calls_per_batch())

    def test_example_inputs_drive_each_component(self, name: str) -> None:
        workload = tiny(name)
        for component, module in workload.components().items():
            inputs = workload.example_inputs(component, 2)
            with torch.inference_mode():
                out = module(*inputs)
            assert out.shape[0] == 2

    def test_same_seed_gives_identical_outputs(self, name: str) -> None:
        first, second = (registry.build(name, "tiny", 3, steps=TEST_STEPS) for _ in range(2))
        batch = first.make_batch(2, seed=5)
        assert torch.equal(run_eager(first, batch), run_eager(second, batch))

    def test_different_seed_gives_different_weights(self, name: str) -> None:
        one, other = state_of(tiny(name, 0)), state_of(tiny(name, 1))
        assert one.keys() == other.keys()
        assert any(not torch.equal(one[k], other[k]) for k in one)

    def test_build_leaves_global_rng_alone(self, name: str) -> None:
        torch.manual_seed(123)
        expected = torch.rand(4)
        torch.manual_seed(123)
        registry.build(name, "tiny", 9, steps=TEST_STEPS)
        assert torch.equal(torch.rand(4), expected)

    def test_make_batch_is_determined_by_seed(self, name: str) -> None:
        workload = tiny(name)
        batch = workload.make_batch(2, seed=7)
        again = workload.make_batch(2, seed=7)
        other = workload.make_batch(2, seed=8)
        assert batch.size == 2 and batch.seed == 7
        # Floating-point inputs are fp32 (a session casts them to its precision); token ids are int64.
        assert all(t.dtype in (torch.float32, torch.int64) and t.device.type == "cpu" and t.shape[0] == 2
                   for t in batch.inputs)
        assert all(torch.equal(a, b) for a, b in zip(batch.inputs, again.inputs))
        assert not all(torch.equal(a, b) for a, b in zip(batch.inputs, other.inputs))

    def test_outputs_are_finite_and_not_constant(self, name: str) -> None:
        workload = tiny(name)
        out = run_eager(workload, workload.make_batch(2, seed=0))
        assert torch.isfinite(out).all()
        # Per row: a model whose outputs collapse to one value would pass a batch-wide check.
        assert (out.flatten(1).double().std(dim=1) > 1e-3).all()

    def test_fidelity_outputs_include_the_pipeline_output(self, name: str) -> None:
        workload = tiny(name)
        batch = workload.make_batch(1, seed=0)
        with torch.inference_mode():
            outputs = workload.fidelity_outputs(eager_sessions(workload), batch)
        assert "output" in outputs
        assert torch.equal(outputs["output"], run_eager(workload, batch))

    def test_flops_are_counted_then_read_from_cache(self, name: str, tmp_path: Path, monkeypatch) -> None:
        monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
        workload = tiny(name)
        assert flops.flops_per_item(workload) > 0
        cache_file = tmp_path / "flops.json"
        cached = json.loads(cache_file.read_text())
        assert len(cached) == len(workload.components())
        # A planted value must come back: proof the second call reads the file, not the model.
        cache_file.write_text(json.dumps({key: 7 for key in cached}))
        assert flops.flops_per_item(workload) == 7 * sum(workload.calls_per_batch().values())

    def test_config_is_json_and_names_the_build(self, name: str) -> None:
        config = json.loads(json.dumps(tiny(name).config()))
        assert (config["name"], config["size"], config["seed"]) == (name, "tiny", 0)
        assert config["weights"] is None

    def test_param_count_is_positive(self, name: str) -> None:
        assert flops.param_count(tiny(name)) > 0

    def test_unknown_size_is_a_user_error(self, name: str) -> None:
        with pytest.raises(UserError, match="'huge'.*tiny, base, large"):
            registry.build(name, "huge")

    def test_zero_steps_is_a_user_error_where_steps_count(self, name: str) -> None:
        if registry.get(name).iterative:
            with pytest.raises(UserError, match="got 0"):
                registry.build(name, "tiny", steps=0)
        else:
            # Non-iterative workloads ignore steps; the harness warns about it.
            assert registry.build(name, "tiny", steps=0).calls_per_batch() == tiny(name).calls_per_batch()

    def test_unknown_scheduler_is_a_user_error_where_schedulers_count(self, name: str) -> None:
        workload_class = registry.get(name)
        if workload_class.iterative:
            with pytest.raises(UserError, match="'no-such'.*" + ", ".join(workload_class.schedulers)):
                registry.build(name, "tiny", scheduler="no-such")
        else:
            registry.build(name, "tiny", scheduler="no-such")

    def test_missing_weights_folder_is_a_user_error(self, name: str, tmp_path: Path) -> None:
        missing = tmp_path / "nowhere"
        with pytest.raises(UserError, match=str(missing)):
            registry.build(name, "tiny", weights=missing)


# --- registry ---------------------------------------------------------------


def test_unknown_workload_lists_the_choices() -> None:
    assert {"dcgan", "ddpm", "dit", "vae"} <= set(NAMES)
    with pytest.raises(UserError, match=rf"^unknown workload 'x'; choose from: {re.escape(', '.join(NAMES))}$"):
        registry.get("x")


def test_registry_import_does_not_import_torch() -> None:
    code = "import sys, aigcbench.workloads.registry as r; r.names(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- reference configs ------------------------------------------------------


def test_ddpm_base_is_the_cifar10_unet() -> None:
    workload = registry.build("ddpm", "base", steps=1)
    assert flops.param_count(workload) == 35_746_307
    assert workload.make_batch(1, 0).inputs[0].shape == (1, 3, 32, 32)


def test_dcgan_base_is_the_papers_64px_generator() -> None:
    workload = registry.build("dcgan", "base")
    assert flops.param_count(workload) == 3_576_704
    assert run_eager(workload, workload.make_batch(1, 0)).shape == (1, 3, 64, 64)


def meta_output_shape(workload: Workload, component: str) -> torch.Size:
    """A component's output shape from a shapes-only (meta) call: no arithmetic, so base sizes stay fast."""
    module = workload.components()[component]
    state = {k: flops.meta_like(v) for k, v in [*module.named_parameters(), *module.named_buffers()]}
    inputs = tuple(flops.meta_like(t) for t in workload.example_inputs(component, 1))
    with torch.inference_mode():
        return torch.func.functional_call(module, state, inputs).shape


def test_vae_base_is_the_sd_decoder_at_256px() -> None:
    workload = registry.build("vae", "base")
    assert flops.param_count(workload) == 49_490_199
    assert workload.make_batch(1, 0).inputs[0].shape == (1, 4, 32, 32)
    assert meta_output_shape(workload, "decoder") == (1, 3, 256, 256)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params", "output_shape"),
    [
        ("ddpm", 113_673_219, (1, 3, 256, 256)),
        ("vae", 49_490_199, (1, 3, 512, 512)),
        ("dcgan", 47_855_360, (1, 3, 128, 128)),
    ],
)
def test_large_configs(name: str, params: int, output_shape: tuple[int, ...]) -> None:
    workload = registry.build(name, "large", steps=1)
    assert flops.param_count(workload) == params
    (component,) = workload.components()
    assert meta_output_shape(workload, component) == output_shape


@pytest.mark.slow
def test_vae_base_decodes_real_numbers() -> None:
    workload = registry.build("vae", "base")
    out = run_eager(workload, workload.make_batch(1, 0))
    assert out.shape == (1, 3, 256, 256) and torch.isfinite(out).all() and out.std() > 1e-2


# DiT-XL/2 with the SD VAE decoder: the original code's 675,129,632 parameters less its frozen 256-token
# position table (a buffer in diffusers), and the paper's Gflops (multiply-adds per transformer row: 118.6 at
# 256 px, 524.6 at 512 px), here ×2 FLOPs per multiply-add and ×2 rows for classifier-free guidance.
@pytest.mark.parametrize(("size", "side", "paper_gmacs"), [("base", 256, 118.6), ("large", 512, 524.6)])
def test_dit_base_and_large_are_dit_xl_2_with_the_sd_decoder(size: str, side: int, paper_gmacs: float) -> None:
    with torch.device("meta"):  # 724 M parameters: shapes only, nothing allocated or initialised
        workload = registry.build("dit", size, steps=1)
    params = {name: sum(p.numel() for p in module.parameters()) for name, module in workload.components().items()}
    assert params == {"denoiser": 675_129_632 - 256 * 1152, "decoder": 49_490_199}
    assert flops.param_count(workload) == 724_324_919
    latents, timestep, labels = workload.example_inputs("denoiser", 1)
    assert latents.shape == (1, 4, side // 8, side // 8) and timestep.dtype == labels.dtype == torch.int64
    assert meta_output_shape(workload, "denoiser") == latents.shape
    assert meta_output_shape(workload, "decoder") == (1, 3, side, side)
    gmacs_per_row = flops.count_flops(workload, "denoiser") / 2 / 2 / 1e9
    assert abs(gmacs_per_row - paper_gmacs) / paper_gmacs < 1e-3


# --- diffusion pipeline -----------------------------------------------------


def test_more_steps_than_training_timesteps_is_a_user_error() -> None:
    with pytest.raises(UserError, match="got 1001"):
        registry.build("ddpm", "tiny", steps=1001)


def test_steps_set_calls_per_batch_and_flops(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    three, seven = (registry.build("ddpm", "tiny", steps=s) for s in (3, 7))
    assert three.calls_per_batch() == {"denoiser": 3}
    assert seven.calls_per_batch() == {"denoiser": 7}
    assert flops.flops_per_item(seven) * 3 == flops.flops_per_item(three) * 7
    assert registry.build("ddpm", "tiny").calls_per_batch() == {"denoiser": 50}


@pytest.mark.parametrize("scheduler", ["ddpm", "ddim"])
def test_each_scheduler_samples_at_tiny(scheduler: str) -> None:
    workload = registry.build("ddpm", "tiny", steps=2, scheduler=scheduler)
    out = run_eager(workload, workload.make_batch(2, seed=0))
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    assert workload.config()["scheduler"] == scheduler


def test_schedulers_differ_and_only_ddpm_draws_noise_from_the_batch_seed() -> None:
    ddpm, ddim = (registry.build("ddpm", "tiny", steps=2, scheduler=s) for s in ("ddpm", "ddim"))
    noise = ddpm.make_batch(1, seed=0).inputs
    # Same starting noise, different batch seed: only the stochastic sampler notices.
    seed0, seed1 = Batch(noise, seed=0, size=1), Batch(noise, seed=1, size=1)
    assert torch.equal(run_eager(ddpm, seed0), run_eager(ddpm, seed0))
    assert not torch.equal(run_eager(ddpm, seed0), run_eager(ddpm, seed1))
    assert torch.equal(run_eager(ddim, seed0), run_eager(ddim, seed1))
    assert not torch.equal(run_eager(ddpm, seed0), run_eager(ddim, seed0))


def test_ddpm_fidelity_adds_one_denoiser_step() -> None:
    workload = tiny("ddpm")
    batch = workload.make_batch(2, seed=0)
    with torch.inference_mode():
        outputs = workload.fidelity_outputs(eager_sessions(workload), batch)
    assert set(outputs) == {"denoiser_step", "output"}
    assert outputs["denoiser_step"].shape == batch.inputs[0].shape


def test_ddpm_denoiser_takes_an_int64_timestep_per_item() -> None:
    sample, timestep = tiny("ddpm").example_inputs("denoiser", 3)
    assert timestep.dtype == torch.int64 and timestep.shape == (3,)


# --- DiT: class-conditional sampling with guidance ---------------------------


def test_dit_guidance_runs_the_transformer_on_cond_and_null_rows() -> None:
    workload = tiny("dit")
    transformer = workload.denoiser.transformer
    seen = []
    hook = transformer.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs), with_kwargs=True)
    latents, timestep, labels = workload.example_inputs("denoiser", 3)
    try:
        with torch.inference_mode():
            guided = workload.denoiser(latents, timestep, labels)
    finally:
        hook.remove()
    (call,) = seen
    assert torch.equal(call["class_labels"], torch.cat([labels, torch.full_like(labels, 1000)]))
    assert torch.equal(call["timestep"], torch.cat([timestep, timestep]))
    # DiTPipeline's mix, on the noise half of the 8 output channels (the rest is the learned sigma).
    with torch.inference_mode():
        out = transformer(torch.cat([latents, latents]), timestep=call["timestep"], class_labels=call["class_labels"],
                          return_dict=False)[0]
    assert out.shape[1] == 8
    cond, uncond = out[:3, :4], out[3:, :4]
    assert torch.allclose(guided, uncond + 4.0 * (cond - uncond), atol=1e-5)


def test_dit_labels_are_seeded_class_ids_and_change_the_image() -> None:
    workload = tiny("dit")
    latents, labels = workload.make_batch(4, seed=0).inputs
    assert torch.equal(labels, labels.round()) and ((labels >= 0) & (labels < 1000)).all()
    other = Batch((latents, (labels + 1) % 1000), seed=0, size=4)
    assert not torch.equal(run_eager(workload, workload.make_batch(4, seed=0)), run_eager(workload, other))


def test_dit_schedulers_differ_and_only_ddpm_draws_noise_from_the_batch_seed() -> None:
    ddim, ddpm = (registry.build("dit", "tiny", steps=2, scheduler=s) for s in ("ddim", "ddpm"))
    assert registry.build("dit", "tiny").calls_per_batch() == {"denoiser": 50, "decoder": 1}
    inputs = ddim.make_batch(1, seed=0).inputs
    seed0, seed1 = Batch(inputs, seed=0, size=1), Batch(inputs, seed=1, size=1)
    assert torch.equal(run_eager(ddim, seed0), run_eager(ddim, seed1))
    assert not torch.equal(run_eager(ddpm, seed0), run_eager(ddpm, seed1))
    assert not torch.equal(run_eager(ddim, seed0), run_eager(ddpm, seed0))


def test_dit_shares_one_embedder_over_its_blocks() -> None:
    blocks = tiny("dit").denoiser.transformer.transformer_blocks
    first, second = (dict(b.norm1.emb.named_parameters()) for b in blocks)
    assert first and all(first[name] is second[name] for name in first)


# --- FLOP cache -------------------------------------------------------------


def test_corrupt_flop_cache_is_recounted_and_rewritten(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    (tmp_path / "flops.json").write_text("{not json")
    workload = tiny("dcgan")
    counted = flops.flops_per_item(workload)
    assert counted > 0
    assert list(json.loads((tmp_path / "flops.json").read_text()).values()) == [counted]


def test_attention_flops_are_counted() -> None:
    # The tiny UNet has four single-head attentions over 8×8 = 64 tokens of 64
    # channels (one down, one mid, two up), each 4·S²·D FLOPs for QKᵀ and AV.
    # FlopCounterMode has no formula for the fused CPU kernel, so a plain count
    # misses exactly those; count_flops must not. (If torch learns the CPU
    # kernel, the plain count gains them and this test says the workaround can go.)
    workload = tiny("ddpm")
    module = workload.components()["denoiser"]
    with torch.inference_mode():
        plain = FlopCounterMode(display=False)
        with plain:
            module(*workload.example_inputs("denoiser", 1))
    assert flops.count_flops(workload, "denoiser") - plain.get_total_flops() == 4 * 4 * 64**3


# --- local weights ----------------------------------------------------------


def test_dcgan_loads_a_state_dict_folder(tmp_path: Path) -> None:
    source = registry.build("dcgan", "tiny", seed=4)
    torch.save(source.generator.state_dict(), tmp_path / "generator.pt")
    (tmp_path / "config.json").write_text(json.dumps({"nz": 16, "ngf": 8, "image_size": 32}))
    loaded = registry.build("dcgan", "base", weights=tmp_path)
    batch = loaded.make_batch(1, 0)
    assert torch.equal(run_eager(loaded, batch), run_eager(source, batch))
    config = loaded.config()
    assert config["weights"] == str(tmp_path) and len(config["weights_sha256"]) == 64


def test_dcgan_rejects_a_folder_without_generator_pt(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="generator.pt"):
        registry.build("dcgan", "tiny", weights=tmp_path)


def test_vae_loads_the_vae_of_a_pipeline_folder(tmp_path: Path) -> None:
    from aigcbench.workloads.vae import TINY_VAE_CONFIG
    from aigcbench.workloads.vae_model import build_random_vae

    # A pipeline folder keeps each model in its own subfolder; "vae" is ours.
    build_random_vae(TINY_VAE_CONFIG, seed=2).save_pretrained(tmp_path / "vae")
    loaded = registry.build("vae", "tiny", weights=tmp_path)
    fresh = registry.build("vae", "tiny", seed=2)
    batch = fresh.make_batch(1, 0)
    assert torch.allclose(run_eager(loaded, batch), run_eager(fresh, batch), atol=1e-5)
    assert loaded.config()["weights"] == str(tmp_path) and len(loaded.config()["weights_sha256"]) == 64


def test_ddpm_loads_a_model_folder_and_records_its_digest(tmp_path: Path) -> None:
    source = registry.build("ddpm", "tiny", seed=3, steps=2)
    source.denoiser.unet.save_pretrained(tmp_path)
    loaded = registry.build("ddpm", "tiny", steps=2, weights=tmp_path)
    assert all(torch.equal(v, loaded.denoiser.state_dict()[k]) for k, v in source.denoiser.state_dict().items())
    # Same weights, yet loaded tensors may sit at other alignments, which can
    # change the CPU kernels' summation order in the last bits.
    batch = source.make_batch(1, 0)
    assert torch.allclose(run_eager(loaded, batch), run_eager(source, batch), atol=1e-5)
    other = tmp_path.parent / "other"
    registry.build("ddpm", "tiny", seed=4).denoiser.unet.save_pretrained(other)
    assert registry.build("ddpm", "tiny", weights=other).config()["weights_sha256"] != loaded.config()["weights_sha256"]


def test_a_folder_that_is_not_a_model_is_a_one_line_user_error(tmp_path: Path) -> None:
    (tmp_path / "unet").mkdir()
    with pytest.raises(UserError) as error:
        registry.build("ddpm", "tiny", weights=tmp_path)
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)



def save_dit_pipeline(folder: Path, seed: int, class_name: str = "DiTTransformer2DModel") -> Workload:
    """A tiny DiT pipeline folder as DiTPipeline.save_pretrained lays it out; `class_name` as its config says."""
    source = registry.build("dit", "tiny", seed=seed, steps=2)
    # safetensors refuses tensors shared between names (the tied embedders): torch's format keeps them.
    source.denoiser.transformer.save_pretrained(folder / "transformer", safe_serialization=False)
    vae = build_random_vae(TINY_VAE, seed)
    vae.decoder.load_state_dict(source.decoder.decoder.state_dict())
    vae.post_quant_conv.load_state_dict(source.decoder.post_quant_conv.state_dict())
    vae.save_pretrained(folder / "vae")
    config_file = folder / "transformer" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "_class_name": class_name}))
    return source


# facebook/DiT-XL-2-256's folder names the class diffusers had before its DiT split: it must load the same.
@pytest.mark.parametrize("class_name", ["DiTTransformer2DModel", "Transformer2DModel"])
def test_dit_loads_a_pipeline_folder(tmp_path: Path, class_name: str) -> None:
    source = save_dit_pipeline(tmp_path, seed=5, class_name=class_name)
    registry.check("dit", "tiny", weights=tmp_path)
    loaded = registry.build("dit", "tiny", steps=2, weights=tmp_path)
    assert flops.param_count(loaded) == flops.param_count(source)  # equal embedder copies are tied again
    batch = source.make_batch(1, 0)
    assert torch.allclose(run_eager(loaded, batch), run_eager(source, batch), atol=1e-5)
    assert loaded.config()["weights"] == str(tmp_path) and len(loaded.config()["weights_sha256"]) == 64


def test_dit_refuses_a_folder_that_is_not_a_dit_pipeline(tmp_path: Path) -> None:
    (tmp_path / "vae").mkdir()
    with pytest.raises(UserError, match=r"has no transformer/ subfolder; dit loads a diffusers DiT pipeline") as error:
        registry.check("dit", "tiny", weights=tmp_path)
    assert "\n" not in str(error.value)
    # Two models that load, but not into one pipeline: the VAE decodes other latents than the DiT makes.
    save_dit_pipeline(tmp_path, seed=1)
    build_random_vae({**TINY_VAE, "latent_channels": 8}, seed=1).save_pretrained(tmp_path / "vae")
    with pytest.raises(UserError, match="the VAE decodes 8-channel latents, the transformer .* makes 4"):
        registry.check("dit", "tiny", weights=tmp_path)
