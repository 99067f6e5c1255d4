"""Training steps (`--mode train`, issue 12 item 6): the losses are the formulas, a step is measured like a call.

Each trainable workload's tiny training step runs through the harness on
eager PyTorch; its losses are checked against the formulas computed here by
hand (the GAN's binary cross entropy, the VAE's negative ELBO, DDPM's noise
MSE with diffusers' own `add_noise`); restoring the trainer gives back the
first step exactly; FLOPs include the backward pass. Refusals — a backend
that cannot train, a workload without a training step, fp16, the server
scenario — are one stderr line and exit 2.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aigcbench.bench.config import RunConfig
from aigcbench.bench.runner import run_cell
from aigcbench.workloads import flops, registry

from .test_refusals import refused, store  # noqa: F401 - the module-scoped store fixture

TRAINABLE = [n for n in registry.names() if registry.get(n).training is not None]
QUICK = {"duration": 0.0, "min_iterations": 3, "warmup": 1, "warmup_duration": 0.0}


def tiny(name: str):
    return registry.build(name, "tiny", 5, mode="train")


def test_the_three_seed_workloads_train() -> None:
    assert TRAINABLE == ["dcgan", "ddpm", "vae"]


@pytest.mark.parametrize("name", TRAINABLE)
def test_a_training_cell_records_samples_per_second_and_the_loss(name: str) -> None:
    config = RunConfig.from_options({"workload": name, "backend": "pytorch", "size": "tiny", "mode": "train",
                                     "batch_size": 2, "options": {"threads": "1"}, **QUICK})
    record = run_cell(config)
    assert record.status == "ok", record.reason
    assert record.workload["unit"] == "sample" and record.workload["mode"] == "train"
    assert record.config["mode"] == "train"
    assert record.metrics["throughput_items_per_s"] > 0
    assert record.metrics["items"] == record.metrics["iterations"] * 2
    train = record.metrics["train"]
    assert train and all(math.isfinite(v) for v in train.values())
    assert any(key.endswith("loss") for key in train)
    # eager against eager fp32, the same step from the same state: only the thread count differs (reduction order)
    assert record.metrics["fidelity"]["passed"] and record.metrics["fidelity"]["max_rel_error"] < 1e-5


@pytest.mark.parametrize("name", TRAINABLE)
def test_restore_gives_back_the_first_step(name: str) -> None:
    workload = tiny(name)
    batch = workload.make_batch(2, 11)
    first = workload.fidelity_outputs(workload.components(), batch)
    for _ in range(2):
        workload.run(workload.components(), batch)
    again = workload.fidelity_outputs(workload.components(), batch)
    assert {k: float(v) for k, v in again.items()} == {k: float(v) for k, v in first.items()}


@pytest.mark.parametrize("name", TRAINABLE)
def test_steps_change_the_weights_and_lower_the_loss_on_a_fixed_batch(name: str) -> None:
    workload = tiny(name)
    batch = workload.make_batch(4, 3)
    before = [p.detach().clone() for p in workload.trainer.networks[next(iter(workload.trainer.networks))].parameters()]
    losses = [workload.step(workload.components(), batch) for _ in range(8)]
    after = list(workload.trainer.networks[next(iter(workload.trainer.networks))].parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))
    if name != "dcgan":  # a GAN's two losses pull against each other; the others descend on one batch
        assert float(losses[-1]["loss"]) < float(losses[0]["loss"])


def test_the_gan_step_is_binary_cross_entropy_with_alternating_steps() -> None:
    workload = tiny("dcgan")
    real, z = workload.make_batch(3, 2).inputs
    g, d = workload.generator, workload.discriminator
    with torch.no_grad():  # the expected values only: no graph kept for them
        fake = g(z)
        expected_d = (F.binary_cross_entropy(torch.sigmoid(d(real)), torch.ones(3))
                      + F.binary_cross_entropy(torch.sigmoid(d(fake)), torch.zeros(3)))
    workload.trainer.restore()
    out = workload.step(workload.components(), workload.make_batch(3, 2))
    assert float(out["d_loss"]) == pytest.approx(float(expected_d), rel=1e-5)
    # the generator's loss is taken through the discriminator *after* its step: -log D(G(z)), non-saturating
    with torch.no_grad():
        expected_g = -torch.log(torch.sigmoid(d(fake))).mean()
    assert float(out["g_loss"]) == pytest.approx(float(expected_g), rel=1e-5)


def test_the_vae_step_is_the_negative_elbo() -> None:
    workload = tiny("vae")
    images, eps = workload.make_batch(2, 4).inputs
    with torch.no_grad():  # the expected values only: no graph kept for them
        mean, logvar = workload.encoder(images).chunk(2, dim=1)
        z = mean + (0.5 * logvar).exp() * eps
        recon = workload.decoder(z)
        # -log N(x; x̂, I) without its constant, and KL(N(μ, σ²) ‖ N(0, I)), per image, averaged
        nll = 0.5 * ((recon - images) ** 2).sum(dim=(1, 2, 3))
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))
    out = workload.step(workload.components(), workload.make_batch(2, 4))
    assert float(out["reconstruction"]) == pytest.approx(float(nll.mean()), rel=1e-5)
    assert float(out["kl"]) == pytest.approx(float(kl.mean()), rel=1e-5)
    assert float(out["loss"]) == pytest.approx(float(nll.mean() + kl.mean()), rel=1e-5)


def test_the_ddpm_step_is_the_noise_mse_of_diffusers_add_noise() -> None:
    from diffusers import DDPMScheduler

    from aigcbench.workloads.diffusion import NOISE_SCHEDULE

    workload = tiny("ddpm")
    x0, t, noise = workload.make_batch(3, 8).inputs
    assert t.min() >= 0 and t.max() < 1000 and len(set(t.tolist())) > 1  # uniform draws, one per image
    noisy = DDPMScheduler(**NOISE_SCHEDULE).add_noise(x0, noise, t.long())
    expected = F.mse_loss(workload.denoiser(noisy, t.long()), noise)
    out = workload.step(workload.components(), workload.make_batch(3, 8))
    assert float(out["loss"]) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", TRAINABLE)
def test_training_flops_include_the_backward_pass(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    train = tiny(name)
    infer = registry.build(name, "tiny", 5, steps=1)
    shared = set(train.components()) & set(infer.components())
    for component in shared or {"decoder"}:
        forward = flops.count_flops(infer, component)
        both = flops.count_flops(train, component)
        # backward ≈ 2× forward (input and weight gradients); the first layer has no input gradient
        assert 1.8 * forward < both <= 3 * forward, (component, forward, both)


TRAIN = ["--mode", "train", "--backend", "pytorch"]
REFUSALS = [
    (["--mode", "train"], "--mode train: backend null runs inference only"),
    (["--mode", "train", "--backend", "onnxruntime"], "--mode train: backend onnxruntime runs inference only"),
    ([*TRAIN, "--workload", "dit"], "--mode train: dit has no training step; workloads that train: dcgan, ddpm, vae"),
    ([*TRAIN, "--precision", "fp16"], "--mode train runs fp32"),
    ([*TRAIN, "--scenario", "server", "--rate", "5"], "--mode train measures optimizer steps"),
    (["--mode", "learn"], "--mode 'learn': choose from infer, train"),
]


@pytest.mark.parametrize(("args", "expected"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_what_cannot_train_is_refused_before_measuring(args: list[str], expected: str, store: Path) -> None:  # noqa: F811
    assert expected in refused(args, store)


@pytest.mark.slow
@pytest.mark.parametrize("name", TRAINABLE)
def test_torch_compile_trains_like_eager(name: str) -> None:
    config = RunConfig.from_options({"workload": name, "backend": "torch-compile", "size": "tiny", "mode": "train",
                                     "batch_size": 2, **QUICK})
    record = run_cell(config)
    assert record.status == "ok", record.reason
    assert record.metrics["fidelity"]["passed"]
