"""Loading real weights from a local folder (`--weights DIR`), never from a hub.

A workload built from config has random weights: its speed is the real
model's, its pictures are noise. With `--weights DIR` it loads trained weights
instead, and records which ones: the folder and a sha256 over the weight files
actually read, so that two results can be told apart when their folders
differ only in content.

Errors here are the user's (a path that does not exist, a folder that is not
a model): they become one-line `UserError`s that name the path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..bench.errors import UserError

# Suffixes of files that hold tensors; configs are recorded separately in
# `Workload.config()`, so only these enter the digest.
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")

ModelT = TypeVar("ModelT")


def require_folder(path: Path) -> Path:
    """Return `path` if it is a readable folder, else raise a one-line UserError."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"weights folder {path} does not exist or is not a folder")
    return path


def weights_sha256(folder: Path) -> str:
    """A sha256 over the weight files directly in `folder`, in name order.

    Each file's name enters the digest with its bytes, so renaming
    `model.safetensors` to another weight file changes the digest too.
    """
    digest = hashlib.sha256()
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def model_folder(folder: Path, subfolder: str) -> Path:
    """The folder holding one diffusers model: `folder/subfolder` for a pipeline, else `folder`.

    A diffusers pipeline folder (as `DiffusionPipeline.save_pretrained` writes
    it) keeps each model in its own subfolder ("unet", "vae"); a model folder
    (`ModelMixin.save_pretrained`) holds `config.json` at its top.
    """
    nested = require_folder(folder) / subfolder
    return nested if nested.is_dir() else Path(folder)


def public_config(model: Any) -> dict[str, Any]:
    """A diffusers model's config as JSON-friendly data (tuples as lists), without its private `_` keys."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


def load_diffusers_model(model_class: type[ModelT], folder: Path) -> ModelT:
    """Load a diffusers model from a local model folder; never touches the network.

    diffusers raises OSError or ValueError (missing config, missing or
    mismatched weights) with multi-line messages; they are folded into one line.
    Without `accelerate`, diffusers first builds a randomly initialised model
    (and warns about it): the global RNG is forked so that throwaway init
    leaves the caller's random stream alone.
    """
    # Imported here: the DCGAN workload uses this module without needing diffusers.
    from diffusers.utils import is_accelerate_available

    try:
        with torch.random.fork_rng(devices=[]):
            model = model_class.from_pretrained(  # type: ignore[attr-defined]
                folder, local_files_only=True, low_cpu_mem_usage=is_accelerate_available()
            )
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        reason = " ".join(str(error).split())
        raise UserError(f"cannot load {model_class.__name__} weights from {folder}: {reason}") from error
    return model
