"""Train the DCGAN on scikit-learn's handwritten digits, draw what it learned, and store what its step costs.

    python examples/train_gan_digits.py [--epochs N] [--out DIR] [--store URL] [--seed S] [--threads N]

The data are the 1797 8×8 digits that ship inside scikit-learn
(`sklearn.datasets.load_digits`, nothing is downloaded), upsampled to 16×16
and scaled to [-1, 1], the range of the generator's Tanh. The networks and
the step are aigcbench's own: the DCGAN generator and its mirror
discriminator (`workloads/gan_model.py`, the paper's init), one Adam
(lr 2e-4, β₁ 0.5) each (`workloads/training.py`), and `gan_losses_step`, the
alternating discriminator/generator step that `aigcbench run -w dcgan
--mode train` measures. Here they are built at a size that fits the digits:
one channel, 16×16, nz 32, ngf 32 (the presets make 3-channel images of 32
px and more; `tiny`, 8 channels wide, is sized for smoke tests).

It writes, under --out (default `examples/gan-digits/`):

- `samples.png` — real digits beside 64 generated ones (a fixed set of latents);
- `losses.png` — the losses and the discriminator's accuracy per step, and how
  the generated digits score against a classifier trained on the real ones;
- `generator/` — the trained generator as an aigcbench weights folder
  (`generator.safetensors` + `config.json`), which `aigcbench run -w dcgan
  --weights DIR` reads;
- `history.json` — the numbers it prints after every epoch;
- `record.json` — the stored record.

The throughput is measured by the harness, not by this script's own loop:
the training step of exactly this network (the weights folder fixes its
architecture) is run as a normal `aigcbench run -w dcgan -b pytorch --mode
train --weights DIR` cell, in a worker process (the `--size` it names is only
the default that the folder's config.json overrides: the record's
`workload.config` holds the network measured), and its record goes into the
store (--store, else $AIGCBENCH_STORE, else ./aigcbench.db) with the label
`example=train_gan_digits`, where `aigcbench report` finds it. The harness
feeds the step seeded noise for the real images: what they show does not
change what a step costs.

How well it learned is judged without looking, after every epoch: a logistic
regression trained on the real digits (pooled back to 8×8) classifies 500
generated ones, drawn from fixed latents. A working generator gets most of
them classified with probability ≥ 0.5, spread over all ten classes; an
untrained one draws near-constant grey images that fall into one or two
classes. The Wasserstein distance between the generated and the real pixel
values is printed too: an untrained generator's grey is far from the data's
black background and white strokes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from aigcbench.bench.errors import UserError
from aigcbench.workloads.gan import GeneratorConfig
from aigcbench.workloads.gan_model import build_random_discriminator, build_random_generator, gan_losses_step
from aigcbench.workloads.gan_train import BETAS, DISCRIMINATOR, GENERATOR, LR
from aigcbench.workloads.training import Trainer

DEFAULT_OUT = Path(__file__).resolve().parent / "gan-digits"
# One channel, 16×16 (twice the data's 8×8): G is nz → 64×4×4 → 32×8×8 → 1×16×16, D its mirror.
CONFIG = GeneratorConfig(nz=32, ngf=32, image_size=16, channels=1)
DEFAULT_EPOCHS = 30
BATCH_SIZE = 64
SAMPLES_FOR_SCORING = 500  # generated digits the classifier scores after every epoch
GRID = 8  # the sample grid is GRID × GRID digits
CONFIDENT = 0.5  # a prediction is confident when its top class has at least this probability
CLASS_SHARE = 0.03  # a class counts as generated when at least this share of the samples falls in it
LABEL = {"example": "train_gan_digits"}
# One intra-op thread: the network is small, and on a busy 2-core machine two threads waiting on each
# other made an epoch of 0.4–0.5 s take 5–30 s. --threads raises it (the harness then runs as many).
THREADS = 1


# --- data ----------------------------------------------------------------------------------------------------


def load_digit_images(image_size: int = CONFIG.image_size,
                      subset: int | None = None) -> tuple[torch.Tensor, np.ndarray]:
    """sklearn's digits as (N, 1, image_size, image_size) floats in [-1, 1], and their labels.

    The data's 0–16 grey levels map linearly onto [-1, 1]; bilinear upsampling
    mixes neighbouring pixels with positive weights, so it stays in range.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16 * 2 - 1
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    labels = digits.target
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    return images, labels


def to_features(images: torch.Tensor) -> np.ndarray:
    """Images in [-1, 1] back to sklearn's digit features: 8×8, 0–16, flattened to 64 values."""
    small = F.adaptive_avg_pool2d(images.detach().float().cpu(), 8)
    return ((small.clamp(-1, 1) + 1) / 2 * 16).reshape(len(images), 64).numpy()


# --- judging samples -----------------------------------------------------------------------------------------


class DigitScorer:
    """Scores generated digits against the real ones: through a classifier's eyes, and by their pixel values.

    The classifier (a logistic regression on sklearn's 64 features) sees
    every image through `to_features`, the real digits as they were upsampled
    for training and then pooled back, so it judges generated and real digits
    through the same lens.
    """

    def __init__(self, images: torch.Tensor, labels: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        with _one_blas_thread():
            self.classifier = LogisticRegression(max_iter=2000).fit(to_features(images) / 16, labels)
        self.real_pixels = images.detach().float().flatten().numpy()

    def score(self, images: torch.Tensor) -> dict[str, Any]:
        """`confident`: the share of images whose top class has probability ≥ 0.5; `classes`: how many
        classes get ≥ 3 % of the images; `class_shares`: each class's share; `pixel_distance`: the
        Wasserstein-1 distance between the images' pixel values and the real digits' (in [-1, 1] units)."""
        from scipy.stats import wasserstein_distance

        with _one_blas_thread():
            probabilities = self.classifier.predict_proba(to_features(images) / 16)
        shares = np.bincount(probabilities.argmax(1), minlength=10) / len(images)
        pixels = images.detach().float().clamp(-1, 1).flatten().numpy()
        return {
            "confident": float((probabilities.max(1) >= CONFIDENT).mean()),
            "classes": int((shares >= CLASS_SHARE).sum()),
            "class_shares": [round(float(s), 3) for s in shares],
            "pixel_distance": float(wasserstein_distance(pixels, self.real_pixels)),
        }


def _one_blas_thread():
    """One BLAS thread for the classifier: its products are tiny, and on a busy machine a pool of
    threads waiting on each other made the fit take 50× longer (5 s instead of 0.1 s)."""
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    return threadpool_limits(limits=1, user_api="blas")


# --- training ------------------------------------------------------------------------------------------------


@dataclass
class EpochSummary:
    """Means over one epoch's steps, and the scores of the samples drawn after it (epoch 0: before training)."""

    epoch: int
    steps: int
    d_loss: float
    g_loss: float
    d_real_accuracy: float
    d_fake_accuracy: float
    d_accuracy: float
    train_s: float
    confident: float
    classes: int
    class_shares: list[float]
    pixel_distance: float


@dataclass
class Training:
    """What `train` returns: the networks, one row per step, one summary per epoch, the fixed latents."""

    generator: torch.nn.Module
    discriminator: torch.nn.Module
    steps: list[dict[str, float]]
    epochs: list[EpochSummary]
    latents: torch.Tensor

    def samples(self, count: int | None = None) -> torch.Tensor:
        return generate(self.generator, self.latents[:count])


@torch.no_grad()
def generate(generator: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Images from `latents`, with BatchNorm on its running statistics (eval mode); the mode is restored."""
    was_training = generator.training
    generator.eval()
    try:
        return generator(latents)
    finally:
        generator.train(was_training)


def train(
    images: torch.Tensor,
    scorer: DigitScorer,
    *,
    epochs: int,
    seed: int,
    config: GeneratorConfig = CONFIG,
    batch_size: int = BATCH_SIZE,
    on_epoch: Callable[[EpochSummary], None] = lambda summary: None,
) -> Training:
    """Train the DCGAN on `images` for `epochs` passes of shuffled full batches (the last partial one dropped)."""
    if len(images) < batch_size:
        raise UserError(f"{len(images)} images are fewer than one batch of {batch_size}")
    generator = build_random_generator(config, seed).train()
    # Seeded apart from the generator, as DCGANTraining does.
    discriminator = build_random_discriminator(config, seed + 1)
    trainer = Trainer({GENERATOR: generator, DISCRIMINATOR: discriminator}, LR, BETAS)
    sessions = {GENERATOR: generator, DISCRIMINATOR: discriminator}
    rng = torch.Generator().manual_seed(seed)
    latents = torch.randn(SAMPLES_FOR_SCORING, config.nz, 1, 1, generator=torch.Generator().manual_seed(seed + 2))

    def summary(epoch: int, rows: list[dict[str, float]], train_s: float) -> EpochSummary:
        means = {key: float(np.mean([row[key] for row in rows])) if rows else math.nan
                 for key in ("d_loss", "g_loss", "d_real_accuracy", "d_fake_accuracy")}
        d_accuracy = (means["d_real_accuracy"] + means["d_fake_accuracy"]) / 2
        scores = scorer.score(generate(generator, latents))
        return EpochSummary(epoch=epoch, steps=len(rows), **means, d_accuracy=d_accuracy, train_s=train_s, **scores)

    steps: list[dict[str, float]] = []
    summaries = [summary(0, [], 0.0)]
    on_epoch(summaries[0])
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(images), generator=rng)
        rows: list[dict[str, float]] = []
        start = time.perf_counter()
        for first in range(0, len(images) - batch_size + 1, batch_size):
            real = images[order[first:first + batch_size]]
            z = torch.randn(batch_size, config.nz, 1, 1, generator=rng)
            out = gan_losses_step(sessions, trainer, real, z)
            rows.append({"epoch": epoch, **{key: float(value) for key, value in out.items()}})
        train_s = time.perf_counter() - start
        steps += rows
        summaries.append(summary(epoch, rows, train_s))
        on_epoch(summaries[-1])
    return Training(generator, discriminator, steps, summaries, latents)


# --- outputs -------------------------------------------------------------------------------------------------


def save_generator(generator: torch.nn.Module, config: GeneratorConfig, folder: Path) -> Path:
    """The generator as an aigcbench DCGAN weights folder: generator.safetensors and config.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().contiguous() for name, tensor in generator.state_dict().items()}
    save_file(tensors, str(folder / "generator.safetensors"))
    (folder / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    return folder


def grid(images: torch.Tensor, columns: int = GRID, pad: int = 1) -> np.ndarray:
    """(N, 1, H, W) images in [-1, 1] as one 2-D array in [0, 1], `columns` wide, `pad` pixels of black between."""
    a = ((images.detach().float().cpu()[:, 0] + 1) / 2).clamp(0, 1).numpy()
    n, h, w = a.shape
    rows = math.ceil(n / columns)
    canvas = np.zeros((rows * (h + pad) + pad, columns * (w + pad) + pad))
    for i, image in enumerate(a):
        r, c = divmod(i, columns)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = image
    return canvas


def plot_samples(real: torch.Tensor, fake: torch.Tensor, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    for axis, images, name in ((axes[0], real, "real digits (8×8 → 16×16)"), (axes[1], fake, "generated")):
        axis.imshow(grid(images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.set_title(name)
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_losses(training: Training, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, epochs = training.steps, training.epochs[1:]
    per_epoch = max(1, epochs[0].steps) if epochs else 1
    x = np.arange(1, len(steps) + 1) / per_epoch  # in epochs
    ex = [e.epoch for e in epochs]
    figure, axes = plt.subplots(3, 1, figsize=(8, 9), sharex=True)
    for key, colour in (("d_loss", "tab:blue"), ("g_loss", "tab:orange")):
        axes[0].plot(x, [s[key] for s in steps], color=colour, alpha=0.25, linewidth=0.8)
        axes[0].plot(ex, [getattr(e, key) for e in epochs], color=colour, label=f"{key} (epoch mean)")
    axes[0].set_ylabel("binary cross entropy")
    axes[0].legend()
    for key, colour in (("d_real_accuracy", "tab:green"), ("d_fake_accuracy", "tab:red")):
        axes[1].plot(x, [s[key] for s in steps], color=colour, alpha=0.2, linewidth=0.8)
        axes[1].plot(ex, [getattr(e, key) for e in epochs], color=colour, label=f"{key} (epoch mean)")
    axes[1].axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_ylabel("discriminator accuracy")
    axes[1].legend(loc="lower right")
    all_epochs = training.epochs
    axes[2].plot([e.epoch for e in all_epochs], [e.confident for e in all_epochs], label="classified with p ≥ 0.5")
    axes[2].plot([e.epoch for e in all_epochs], [e.classes / 10 for e in all_epochs], label="classes ≥ 3 % (÷ 10)")
    axes[2].plot([e.epoch for e in all_epochs], [e.pixel_distance for e in all_epochs],
                 label="pixel distance to the data (W1)")
    axes[2].set_ylim(0, 1.02)
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("generated samples")
    axes[2].legend(loc="center right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# --- the harness's measurement -------------------------------------------------------------------------------


def measure_train_step(weights: Path, store, *, batch_size: int, seed: int, duration: float,
                       warmup_duration: float = 1.0, min_iterations: int = 10, threads: int = THREADS):
    """The record of `aigcbench run -w dcgan -b pytorch --mode train --scenario throughput --weights WEIGHTS`.

    The same path as the CLI: the config validated at the edge, the cell
    checked, the cell measured in a fresh worker process, the record
    appended to `store` (an open `Store`).
    """
    from aigcbench.bench.cell_check import check_config
    from aigcbench.bench.config import RunConfig
    from aigcbench.bench.isolation import run_isolated
    from aigcbench.bench.runner import Silent

    config = RunConfig.from_options({
        "workload": "dcgan", "backend": "pytorch", "size": "tiny", "mode": "train", "scenario": "throughput",
        "batch_size": batch_size, "seed": seed, "weights": str(weights), "duration": duration,
        "min_iterations": min_iterations, "warmup_duration": warmup_duration, "labels": LABEL,
        "options": {"threads": str(threads)},
    })
    check_config(config)
    record = run_isolated(config, timeout_s=600, observer=Silent())
    store.append(record)
    return record


# --- the command ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS,
                        help=f"passes over the digits [{DEFAULT_EPOCHS}]")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder for the PNGs, the generator and the record [examples/gan-digits]")
    parser.add_argument("--store", default=None, help="aigcbench store (SQLite path or SQLAlchemy URL) "
                        "[$AIGCBENCH_STORE or ./aigcbench.db]")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the shuffling and the latents [0]")
    parser.add_argument("--threads", type=int, default=THREADS, help="intra-op CPU threads, for the training and "
                        f"the harness's measurement alike (its --option threads=N) [{THREADS}]")
    parser.add_argument("--subset", type=int, default=None, help="train on the first N digits only (a quick try)")
    parser.add_argument("--duration", type=float, default=5.0, help="the harness's minimum measured seconds [5]")
    parser.add_argument("--warmup-duration", type=float, default=1.0, help="the harness's minimum warm-up seconds [1]")
    parser.add_argument("--min-iterations", type=int, default=10, help="the harness's minimum measured steps [10]")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be ≥ 1, got {args.epochs}")
    if args.seed < 0:
        parser.error(f"--seed must be ≥ 0, got {args.seed}")
    if args.threads < 1:
        parser.error(f"--threads must be ≥ 1, got {args.threads}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} is a file, not a folder")
    if args.subset is not None and args.subset < BATCH_SIZE:
        parser.error(f"--subset must be ≥ one batch ({BATCH_SIZE}), got {args.subset}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, draw, save, measure; a summary of it all (what `main` prints, and what the tests read)."""
    from aigcbench.bench.store import Store, discard_if_empty

    # Opened first, as `aigcbench run` does: a bad --store must not cost a training run.
    created = not Store.exists(args.store)
    store = Store.open(args.store)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _train_draw_measure(args, store)
    except BaseException:
        if created:  # refused or interrupted before the record: leave no empty store behind
            discard_if_empty(store)
        raise
    finally:
        store.close()
        torch.set_num_threads(threads)  # `run` is called in-process too (the tests): leave the caller's setting


def _train_draw_measure(args: argparse.Namespace, store) -> dict[str, Any]:
    from aigcbench.bench.record import write_json

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    images, labels = load_digit_images(subset=args.subset)
    scorer = DigitScorer(*load_digit_images())  # the classifier always learns from all 1797 digits
    real_scores = scorer.score(images)
    print(f"{len(images)} digits, {tuple(images.shape[1:])} each; generator {asdict(CONFIG)}, batch {BATCH_SIZE}")
    print(f"real digits score: {real_scores['confident']:.0%} confident, {real_scores['classes']} classes, "
          f"pixel distance {real_scores['pixel_distance']:.3f}")

    def show(e: EpochSummary) -> None:
        losses = (f"d_loss {e.d_loss:.3f}  g_loss {e.g_loss:.3f}  D accuracy real {e.d_real_accuracy:.2f} "
                  f"fake {e.d_fake_accuracy:.2f}  ({e.train_s:.1f} s)  " if e.steps else "before training  ")
        print(f"epoch {e.epoch:3d}  {losses}samples: {e.confident:.0%} confident, {e.classes} classes, "
              f"pixel distance {e.pixel_distance:.3f}", flush=True)

    training = train(images, scorer, epochs=args.epochs, seed=args.seed, on_epoch=show)
    last = training.epochs[-1]
    train_s = sum(e.train_s for e in training.epochs)
    trained = sum(e.steps for e in training.epochs) * BATCH_SIZE

    samples = plot_samples(images[:GRID * GRID], training.samples(GRID * GRID), out / "samples.png",
                           f"DCGAN on scikit-learn's digits, {args.epochs} epochs (seed {args.seed})")
    losses = plot_losses(training, out / "losses.png")
    weights = save_generator(training.generator, CONFIG, out / "generator")
    history = out / "history.json"
    history.write_text(json.dumps({
        "config": asdict(CONFIG), "batch_size": BATCH_SIZE, "seed": args.seed, "real": real_scores,
        "epochs": [asdict(e) for e in training.epochs],
    }, indent=1) + "\n")

    print("measuring the training step with the harness (aigcbench run -w dcgan -b pytorch --size tiny "
          f"--mode train --scenario throughput --batch-size {BATCH_SIZE} --option threads={args.threads} "
          f"--weights {weights}) ...", flush=True)
    record = measure_train_step(weights, store, batch_size=BATCH_SIZE, seed=args.seed, duration=args.duration,
                                warmup_duration=args.warmup_duration, min_iterations=args.min_iterations,
                                threads=args.threads)
    record_path = out / "record.json"
    write_json(record, record_path)
    throughput = record.metrics.get("throughput_items_per_s")

    print(f"final epoch {last.epoch}: d_loss {last.d_loss:.3f}, g_loss {last.g_loss:.3f}, D accuracy real "
          f"{last.d_real_accuracy:.2f} / fake {last.d_fake_accuracy:.2f}; samples: {last.confident:.0%} confident, "
          f"{last.classes} classes, pixel distance {last.pixel_distance:.3f}")
    print(f"this script's loop: {trained} samples in {train_s:.1f} s ({trained / train_s:.0f} samples/s, noisy)")
    if record.status == "ok":
        print(f"harness: {throughput:.0f} samples/s (train, batch {BATCH_SIZE}, status ok)")
    else:
        print(f"harness: record {record.status}: {record.reason}")
    print(f"samples: {samples}\nlosses:  {losses}\ngenerator: {weights}\nrecord:  {record_path}")
    print(f"stored in {store.url} (run {record.run_id[:12]}); see it with: aigcbench report --where "
          f"example={LABEL['example']}" + ("" if args.store is None else f" --store {args.store}"))
    return {"training": training, "record": record, "store": store.url, "real_scores": real_scores,
            "paths": {"samples": samples, "losses": losses, "generator": weights, "history": history,
                      "record": record_path}}


def main(argv: Sequence[str] | None = None) -> int:
    from aigcbench.bench.errors import BackendUnavailable

    try:
        result = run(parse_args(argv))
    except (UserError, BackendUnavailable) as error:  # one line, with the CLI's exit code: 2 bad input, 3 unavailable
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0 if result["record"].status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
