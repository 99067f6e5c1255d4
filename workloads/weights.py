"""Loading real weights from a local folder (`--weights DIR`), never from a hub.

A workload built from config has random weights: its speed is the real
model's, its pictures are noise. With `--weights DIR` it loads trained weights
instead, and records which ones: the folder and a sha256 over the weight files
actually read, so that two results can be told apart when their folders
differ only in content.

Errors here are the user's (a path that does not exist, a folder that is not
a model): they become one-line `UserError`s that name the path. A folder is
checked in the parent before anything is measured (`check_diffusers_model`,
against a model built on the meta device), and checked again by the same code
when the worker loads it (`load_diffusers_model`): see `checkpoint`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

from ..bench.errors import UserError
from . import checkpoint

if TYPE_CHECKING:
    import torch

# Suffixes of files that hold tensors; configs are recorded separately in
# `Workload.config()`, so only these enter the digest.
WEIGHT_SUFFIXES: tuple[str, ...] = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")

# What diffusers' `save_pretrained` writes, in the order its `from_pretrained` looks for them
# (no variant: a `diffusion_pytorch_model.fp16.safetensors` is not read unless renamed).
DIFFUSERS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
DIFFUSERS_WEIGHTS: tuple[str, ...] = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
CONFIG_NAME = "config.json"

ModelT = TypeVar("ModelT")


def require_folder(path: Path) -> Path:
    """Return `path` if it is a readable folder, else raise a one-line UserError."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.exists():
        raise UserError(f"weights folder {str(path)!r} is not a folder; --weights takes the folder that holds the model")
    raise UserError(f"weights folder {str(path)!r} does not exist")


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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence diffusers' logging and Python warnings while a folder is read.

    diffusers logs multi-line warnings (unused config keys, freshly
    initialised weights) straight to stderr; the checks here say what is
    wrong in one line instead, and a good folder loads without noise.
    """
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        diffusers_logging.set_verbosity(level)


def list_weight_files(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    return f"it holds {', '.join(names)}" if names else "it holds no weight file"


def diffusers_files(folder: Path) -> tuple[Path, ...]:
    """The weight files diffusers would read from a model folder: the shards of an index, or one file."""
    index = folder / DIFFUSERS_INDEX
    if index.is_file():
        return _shards(index)
    for name in DIFFUSERS_WEIGHTS:
        if (folder / name).is_file():
            return (folder / name,)
    raise UserError(f"weights folder {str(folder)!r} has no {' or '.join(DIFFUSERS_WEIGHTS)} ({list_weight_files(folder)})")


def _shards(index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"weights index {str(index)!r} is not a shard index ({type(error).__name__}: {error})") from error
    for name in names:
        # A shard outside the folder would not enter the digest, and a path is not a shard name.
        if not isinstance(name, str) or Path(name).name != name or not name.endswith(checkpoint.SAFETENSORS_SUFFIX):
            raise UserError(f"weights index {str(index)!r} names shard {name!r}, not a .safetensors file beside it")
        if not (index.parent / name).is_file():
            raise UserError(f"weights index {str(index)!r} names shard {name!r}, which is not in the folder")
    return tuple(index.parent / name for name in names)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_config(folder: Path, model_class: type) -> dict[str, Any]:
    """`folder/config.json` as a dict, refused unless it is a JSON object meant for `model_class`."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"weights folder {str(folder)!r} has no {CONFIG_NAME} (a diffusers model folder, "
                        "as save_pretrained writes it)")
    try:
        config = json.loads(path.read_text(), parse_constant=_no_constant)
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise UserError(f"weights config {str(path)!r} is not readable JSON: {error}") from error
    if not isinstance(config, dict):
        raise UserError(f"weights config {str(path)!r} must be a JSON object, got a {type(config).__name__}")
    named = config.get("_class_name", model_class.__name__)
    if named != model_class.__name__:
        raise UserError(f"weights config {str(path)!r} describes a {named!r}; this workload needs a {model_class.__name__}")
    return config


def build_from_config(model_class: type[ModelT], folder: Path, device: str) -> ModelT:
    """The model `folder/config.json` describes, on `device` ("meta" to check, "cpu" to load into).

    The config is the user's data handed to a library constructor, which
    rejects a bad value with whatever exception its code hits first: each
    becomes one line naming the config.
    """
    import torch

    config = read_config(folder, model_class)
    try:
        with quiet(), torch.random.fork_rng(devices=[]), torch.device(device):
            return model_class.from_config(config)  # type: ignore[attr-defined]
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ZeroDivisionError, RuntimeError,
            AssertionError, OverflowError, NotImplementedError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"weights config {str(folder / CONFIG_NAME)!r} is not a valid "
                        f"{model_class.__name__} config: {reason}") from error


def _rename(model: Any) -> Callable[[dict[str, Any]], Any] | None:
    # diffusers maps the old attention layout (query/key/value/proj_attn, as in the converted
    # google/ddpm-* checkpoints) to the current one when it loads; the names are checked after it.
    return getattr(model, "_fix_state_dict_keys_on_load", None)


def check_diffusers_model(
    model_class: type[ModelT], folder: Path, needed: Callable[[str], bool] | None = None
) -> ModelT:
    """Check a diffusers model folder from its config and weight headers; return the model on the meta device.

    `needed` says which tensors must be there (None: every one of the model's).

    Nothing is loaded: cheap enough for the parent to run before measuring.
    """
    model = build_from_config(model_class, folder, "meta")
    found = checkpoint.read_checkpoint(diffusers_files(folder))
    rename = _rename(model)
    if rename is not None:
        found = checkpoint.renamed(found, rename)
    checkpoint.check(found, checkpoint.model_specs(model), model_class.__name__,
                     needed or checkpoint.every_tensor)  # type: ignore[arg-type]
    return model


def load_diffusers_model(
    model_class: type[ModelT], folder: Path, needed: Callable[[str], bool] | None = None
) -> ModelT:
    """Load a diffusers model from a local model folder, refusing what `check_diffusers_model` refuses.

    The model is built from `config.json` (random init, with the caller's
    RNG left alone) and the checkpoint copied in; never touches the network.
    """
    needed = needed or checkpoint.every_tensor  # None: every tensor of the model must be there
    model = build_from_config(model_class, folder, "cpu")
    with quiet():
        files = diffusers_files(folder)
        checkpoint.load_checked(model, files, model_class.__name__, needed, _rename(model))  # type: ignore[arg-type]
    return model.eval()  # type: ignore[attr-defined]


def dry_run(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], folder: Path) -> torch.Tensor:
    """Call a meta-device `module` on meta `inputs`: shapes propagate, nothing is computed.

    A config whose layers do not fit together (an image size the UNet cannot
    halve, a kernel larger than its input) fails here, in the parent, rather
    than as a failed record after the model was loaded.
    """
    import torch

    try:
        with torch.no_grad(), quiet():
            return module(*inputs)
    except (RuntimeError, ValueError, TypeError, IndexError, AssertionError) as error:
        shapes = ", ".join(str(list(t.shape)) for t in inputs)
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"weights config {str(folder / CONFIG_NAME)!r} builds a model that cannot run "
                        f"on inputs {shapes}: {reason}") from error


def folder_signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and mtime of every file in `folder` and its subfolders one level down.

    Enough to tell that a folder checked once is unchanged, so a sweep checks
    it once and not once per cell.
    """
    entries = []
    try:
        paths = sorted([*folder.iterdir(), *(p for d in folder.iterdir() if d.is_dir() for p in d.iterdir())])
    except OSError as error:
        raise UserError(f"weights folder {str(folder)!r} cannot be read: {error.strerror or error}") from error
    for path in paths:
        try:
            stat = path.stat()
        except OSError:  # a dangling link: its own entry still changes when it is fixed
            stat = path.lstat()
        entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)
