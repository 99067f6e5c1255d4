"""examples/train_gan_digits.py: it writes what it says, stores a normal train record, and its GAN learns.

The slow test trains with the example's defaults and checks the signs of a
working GAN, each against a bound chosen from observed runs with margin
(seeds 0–4 at the default 30 epochs, on 1 and 2 threads). None of them reads a clock.
The same checks run on a negative control — the same training with the
generator's optimizer step skipped — and must fail there: a check that a
broken GAN passes proves nothing.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")  # the digits ship inside scikit-learn (the dev extra)
torch = pytest.importorskip("torch")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_gan_digits.py"
LAST = 10  # "late in training": the last ten epochs (one epoch's mean swings with the game)
# Bounds, with what seeds 0–4 at the default 30 epochs showed, and what the negative control showed:
STEP0_CHANCE = (0.25, 0.75)  # (real + fake accuracy) / 2 at the first step: 0.42–0.62
EARLY_ACCURACY = 0.9  # D's best epoch mean in epochs 1–10: ≥ 0.999                    (control 1.000)
MIN_D_LOSS = 0.2  # D's mean loss over the last 10 epochs: 0.62–0.69                     (control 0.003)
MAX_D_ACCURACY = 0.99  # D's mean accuracy over the last 10 epochs: 0.949–0.957          (control 1.000)
CAUGHT_UP = 0.95  # D's worst epoch accuracy in the last 10: 0.83–0.89                   (control 1.000)
MAX_G_LOSS = 4.0  # G's mean loss over the last 10 epochs: 1.48–1.67                     (control 6.6)
MIN_CLASSES = 8  # classes holding ≥ 3 % of the generated digits: 10                     (control 1)
MAX_SHARE = 0.3  # the largest class's share: 0.13–0.17                                  (control 1.00)
MIN_CONFIDENT = 0.45  # share classified with p ≥ 0.5: 0.67–0.74 (real digits 0.97; the control's
#                       near-constant images reach 0.6–0.84 too, so this alone proves nothing)
MAX_PIXEL_DISTANCE = 0.2  # W1 to the data's pixels: 0.09–0.11, from 0.57–0.58 untrained (control 0.58)

@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("train_gan_digits", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def health(training) -> dict[str, bool]:
    """Each sign of a working GAN, by name: True where the training shows it."""
    epochs, first = training.epochs, training.steps[0]  # epochs[0] is the state before training
    late = epochs[-LAST:]
    final = epochs[-1]
    losses = [step[key] for step in training.steps for key in ("d_loss", "g_loss")]
    signs = {
        "D starts at chance": STEP0_CHANCE[0] <= (first["d_real_accuracy"] + first["d_fake_accuracy"]) / 2
        <= STEP0_CHANCE[1],
        "D learns early": max(e.d_accuracy for e in epochs[1:11]) >= EARLY_ACCURACY,
        "D's loss stays up": np.mean([e.d_loss for e in late]) >= MIN_D_LOSS,
        "G catches D up again": min(e.d_accuracy for e in late) <= CAUGHT_UP,
        "D does not win outright": np.mean([e.d_accuracy for e in late]) <= MAX_D_ACCURACY,
        "D is not fooled": np.mean([e.d_accuracy for e in late]) > 0.5,
        "G's loss is bounded": all(map(math.isfinite, losses)) and np.mean([e.g_loss for e in late]) <= MAX_G_LOSS,
        "samples spread over the classes": final.classes >= MIN_CLASSES and max(final.class_shares) <= MAX_SHARE,
        "samples are classified confidently": final.confident >= MIN_CONFIDENT,
        "pixel values approach the data's": final.pixel_distance
        <= min(MAX_PIXEL_DISTANCE, 0.5 * epochs[0].pixel_distance),
    }
    return {name: bool(ok) for name, ok in signs.items()}


@pytest.fixture
def one_thread():
    # The example's own default (`run` sets it for itself); the negative control calls `train` directly.
    # On a busy 2-core machine two intra-op threads waiting on each other made epochs 10–60× slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # = example.THREADS
    yield
    torch.set_num_threads(threads)


def harness_options(tmp_path: Path) -> list[str]:
    # The harness's loop as short as it goes: these tests check the record, not the number in it.
    return ["--out", str(tmp_path / "out"), "--store", str(tmp_path / "store.db"),
            "--duration", "0", "--warmup-duration", "0", "--min-iterations", "2"]


def test_one_short_epoch_writes_every_file_and_stores_a_train_record(example, tmp_path, capsys):
    from aigcbench.bench.store import Store
    from aigcbench.workloads.gan_model import load_generator

    threads = torch.get_num_threads()
    result = example.run(example.parse_args(["--epochs", "1", "--subset", "256", *harness_options(tmp_path)]))
    assert torch.get_num_threads() == threads  # the example sets its own and gives the caller's back

    paths = result["paths"]
    for name in ("samples", "losses"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (paths["generator"] / "config.json").is_file() and (paths["generator"] / "generator.safetensors").is_file()
    generator = load_generator(paths["generator"], example.CONFIG)  # the folder aigcbench --weights reads
    assert generator(torch.zeros(2, example.CONFIG.nz, 1, 1)).shape == (2, 1, 16, 16)
    assert [e.epoch for e in result["training"].epochs] == [0, 1]
    assert len(result["training"].steps) == 256 // example.BATCH_SIZE

    with Store.open(str(tmp_path / "store.db")) as store:
        (stored,) = store.records()
    record = result["record"]
    assert stored.run_id == record.run_id and stored.status == "ok", stored.reason
    assert stored.labels == {"example": "train_gan_digits"}
    assert stored.workload["name"] == "dcgan" and stored.workload["mode"] == "train"
    assert stored.workload["unit"] == "sample"
    # The measured step is the example's network: the weights folder's architecture, not the preset's.
    config = stored.workload["config"]
    assert (config["nz"], config["ngf"], config["image_size"], config["channels"]) == (32, 32, 16, 1)
    assert stored.scenario["batch_size"] == example.BATCH_SIZE
    assert stored.config["options"] == {"threads": str(example.THREADS)}  # the harness ran as the training did
    assert stored.metrics["throughput_items_per_s"] > 0
    assert paths["record"].is_file()
    out = capsys.readouterr().out
    assert f"run {record.run_id[:12]}" in out and "samples/s" in out and str(paths["samples"]) in out


def test_the_scorer_passes_real_digits_and_fails_an_untrained_generator(example):
    from aigcbench.workloads.gan_model import build_random_generator

    images, labels = example.load_digit_images()
    scorer = example.DigitScorer(images, labels)
    real = scorer.score(images[1000:1500])
    assert real["classes"] == 10 and real["confident"] >= 0.9 and real["pixel_distance"] < 0.05
    latents = torch.randn(500, example.CONFIG.nz, 1, 1, generator=torch.Generator().manual_seed(0))
    untrained = scorer.score(example.generate(build_random_generator(example.CONFIG, 0), latents))
    assert untrained["classes"] < MIN_CLASSES and untrained["pixel_distance"] > MAX_PIXEL_DISTANCE


def test_bad_arguments_are_refused_in_one_line(example, capsys):
    with pytest.raises(SystemExit) as exit_info:
        example.parse_args(["--epochs", "0"])
    assert exit_info.value.code == 2
    assert "--epochs must be ≥ 1" in capsys.readouterr().err


@pytest.mark.slow
def test_the_default_training_learns_digits_and_a_frozen_generator_does_not(example, tmp_path, monkeypatch,
                                                                            one_thread):
    result = example.run(example.parse_args(harness_options(tmp_path)))  # the example's defaults
    assert result["record"].status == "ok", result["record"].reason
    signs = health(result["training"])
    assert all(signs.values()), {name: ok for name, ok in signs.items() if not ok}

    # The negative control: the same training, but the generator's optimizer never steps.
    class FrozenGenerator(example.Trainer):
        def step(self, network, loss):
            if network == example.GENERATOR:
                return torch.zeros(())
            return super().step(network, loss)

    monkeypatch.setattr(example, "Trainer", FrozenGenerator)
    images, labels = example.load_digit_images()
    frozen = health(example.train(images, example.DigitScorer(images, labels), epochs=15, seed=0))
    must_fail = ["D's loss stays up", "D does not win outright", "G catches D up again", "G's loss is bounded",
                 "samples spread over the classes", "pixel values approach the data's"]
    assert not any(frozen[name] for name in must_fail), {name: frozen[name] for name in must_fail}
