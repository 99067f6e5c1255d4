"""Reading a checkpoint without running its code, and checking it against the model that will hold it.

`--weights DIR` is checked twice with the same code: in the parent, before
anything is measured or stored, from the files' headers alone (a safetensors
header, or a torch file loaded onto the meta device) against the model built
from config on the meta device; and in the worker, on the tensors it actually
loads. Either way a checkpoint that would leave a layer uninitialised, or
that holds a tensor the model has no place for, is refused with a one-line
`CheckpointError` naming the tensor and the file — never loaded "mostly".

Torch files are read only with `torch.load(weights_only=True)`: a pickle that
needs anything beyond tensors and plain containers is refused, never run.

Dtypes: every loader here copies into a float32 model with `load_state_dict`,
which casts, so an fp16, bf16 or fp64 checkpoint for a float32 tensor is
accepted (it loads exactly what the checkpoint holds, at fp32). A tensor of
another kind (an integer or boolean tensor where the model keeps floats, or
the reverse) cannot be what the model means and is refused.
"""

from __future__ import annotations

import functools
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..bench.errors import UserError

if TYPE_CHECKING:
    # Imported where a checkpoint is read: the parent imports this module (through `weights`) without torch.
    import torch

SAFETENSORS_SUFFIX = ".safetensors"


@functools.lru_cache(maxsize=1)
def safetensors_dtypes() -> Mapping[str, torch.dtype]:
    """safetensors' dtype names (its header's "dtype" field) → torch dtypes; float8 only where torch has them."""
    import torch

    return {
        name: dtype
        for name, dtype in {
            "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
            "U16": getattr(torch, "uint16", None), "U32": getattr(torch, "uint32", None),
            "U64": getattr(torch, "uint64", None), "BOOL": torch.bool, "C64": torch.complex64,
            "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
        }.items()
        if dtype is not None
    }

# Entries the model may lack in a checkpoint without harm: BatchNorm's step counter only matters
# when training with momentum=None, and checkpoints from before torch 0.4.1 have none.
ALWAYS_OPTIONAL: tuple[str, ...] = ("num_batches_tracked",)


def every_tensor(name: str) -> bool:
    """The default `needed`: a model needs every tensor it has."""
    return True


def optional(name: str) -> bool:
    return name.endswith(ALWAYS_OPTIONAL)


class CheckpointError(UserError):
    """A checkpoint that cannot be loaded as the model needs it; `path` and `tensor` name the culprit."""

    # Keywords with defaults keep it picklable (BaseException rebuilds from the message, then __dict__).
    def __init__(self, message: str, *, path: Path | None = None, tensor: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.tensor = tensor


@dataclass(frozen=True)
class TensorSpec:
    """What a tensor is, without its values: enough to tell whether a checkpoint fits a model."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @classmethod
    def of(cls, tensor: torch.Tensor) -> "TensorSpec":
        return cls(tuple(tensor.shape), tensor.dtype)

    def describe(self) -> str:
        return f"{str(self.dtype).removeprefix('torch.')} {list(self.shape)}"


@dataclass(frozen=True)
class Checkpoint:
    """The tensors of one checkpoint (one file, or the shards of one), by name, and the file each came from."""

    where: Path  # the file, or the folder of a sharded checkpoint: what messages name
    specs: Mapping[str, TensorSpec]
    origin: Mapping[str, Path]


def _kind(dtype: torch.dtype) -> str:
    import torch

    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating-point"
    return "boolean" if dtype == torch.bool else "integer"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _safetensors_specs(file: Path) -> dict[str, TensorSpec]:
    """The header of a safetensors file; the library checks that it covers the file exactly (truncation)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as handle:
            parts = {name: handle.get_slice(name) for name in handle.keys()}
            raw = {name: (tuple(part.get_shape()), part.get_dtype()) for name, part in parts.items()}
    except Exception as error:  # SafetensorError, OSError: whatever the bytes are, they are not a checkpoint
        raise CheckpointError(f"weights file {str(file)!r} is not a readable safetensors file: {_one_line(error)}",
                              path=file) from error
    specs = {}
    dtypes = safetensors_dtypes()
    for name, (shape, dtype_name) in raw.items():
        if dtype_name not in dtypes:
            raise CheckpointError(f"weights file {str(file)!r}: tensor {name!r} has dtype {dtype_name!r}, "
                                  "which torch cannot load here", path=file, tensor=name)
        specs[name] = TensorSpec(shape, dtypes[dtype_name])
    return specs


def _refusal(error: pickle.UnpicklingError) -> str | None:
    """torch's reason for refusing a pickle under weights_only (its message spans paragraphs), or None."""
    text = " ".join(str(error).split())
    if "Weights only load failed" not in text:
        return None
    found = re.search(r"WeightsUnpickler error: (.*?\.)(?: |$)", text)
    return found.group(1) if found else "it is not a plain tensor checkpoint"


def torch_state(file: Path, map_location: str) -> dict[str, torch.Tensor]:
    """A torch file's state_dict, read with `weights_only=True` only: a pickle that would run code is refused."""
    import torch

    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refusal(error)
        if refused is None:
            raise CheckpointError(f"weights file {str(file)!r} is not a readable torch file: {_one_line(error)}",
                                  path=file) from error
        raise CheckpointError(
            f"weights file {str(file)!r} needs more than tensors to load and is refused "
            f"(torch.load with weights_only=True: {refused}); save a state_dict of tensors, or safetensors",
            path=file,
        ) from error
    except Exception as error:  # a truncated zip, an empty file, random bytes: torch raises many kinds
        # torch's own text goes on about its zip library; its first sentence is the reason.
        reason = _one_line(error).split(". ")[0]
        raise CheckpointError(f"weights file {str(file)!r} is not a readable torch file (corrupt or truncated?): "
                              f"{reason}", path=file) from error
    if not isinstance(state, Mapping):
        raise CheckpointError(f"weights file {str(file)!r} holds a {type(state).__name__}, "
                              "not a state_dict (a mapping of names to tensors)", path=file)
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"weights file {str(file)!r}: entry {name!r} is a {type(value).__name__}, "
                                  "not a tensor; a state_dict holds tensors only", path=file, tensor=str(name))
    return dict(state)


def _gather(
    files: Sequence[Path], read: Callable[[Path], Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Merge what `read` gives for each file (the shards of one checkpoint); a name in two shards is refused."""
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for file in files:
        for name, value in read(file).items():
            if name in origin:
                raise CheckpointError(f"weights: tensor {name!r} is in both {str(origin[name])!r} and {str(file)!r}",
                                      path=file, tensor=name)
            merged[name], origin[name] = value, file
    return merged, origin


def _where(files: Sequence[Path]) -> Path:
    return files[0] if len(files) == 1 else files[0].parent


def read_checkpoint(files: Sequence[Path]) -> Checkpoint:
    """The tensor specs of a checkpoint from headers only: safetensors headers, torch files on the meta device."""

    def specs(file: Path) -> Mapping[str, TensorSpec]:
        if file.name.endswith(SAFETENSORS_SUFFIX):
            return _safetensors_specs(file)
        return {name: TensorSpec.of(t) for name, t in torch_state(file, "meta").items()}

    merged, origin = _gather(files, specs)
    return Checkpoint(_where(files), merged, origin)


def read_tensors(files: Sequence[Path]) -> tuple[Checkpoint, dict[str, torch.Tensor]]:
    """The tensors of a checkpoint on the CPU, with their specs (what `check` compares)."""
    from safetensors.torch import load_file

    def tensors(file: Path) -> Mapping[str, torch.Tensor]:
        if not file.name.endswith(SAFETENSORS_SUFFIX):
            return torch_state(file, "cpu")
        _safetensors_specs(file)  # the same refusals, worded the same, as the parent's check
        return load_file(str(file))

    merged, origin = _gather(files, tensors)
    return Checkpoint(_where(files), {k: TensorSpec.of(v) for k, v in merged.items()}, origin), merged


def model_specs(module: torch.nn.Module) -> dict[str, TensorSpec]:
    """What `module.load_state_dict` expects; `module` may live on the meta device."""
    return {name: TensorSpec.of(tensor) for name, tensor in module.state_dict().items()}


def check(
    checkpoint: Checkpoint,
    expected: Mapping[str, TensorSpec],
    model: str,
    needed: Callable[[str], bool] = every_tensor,
) -> None:
    """Refuse a checkpoint that does not fit: a needed tensor missing, one left over, a wrong shape or kind.

    `needed(name)` says which of the model's tensors must be in the checkpoint
    (a VAE decoder needs no encoder); every tensor present must still fit.
    Names are reported in sorted order, so the same checkpoint always names the same tensor.
    """
    missing = sorted(n for n in expected if n not in checkpoint.specs and needed(n) and not optional(n))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        noun = "folder" if checkpoint.where.is_dir() else "file"
        raise CheckpointError(
            f"weights {noun} {str(checkpoint.where)!r} lacks tensor {missing[0]!r} "
            f"({expected[missing[0]].describe()}) that {model} needs{more}", path=checkpoint.where, tensor=missing[0])
    for name in sorted(checkpoint.specs):
        found, file = checkpoint.specs[name], checkpoint.origin[name]
        if name not in expected:
            raise CheckpointError(f"weights file {str(file)!r} holds tensor {name!r} that {model} does not have",
                                  path=file, tensor=name)
        want = expected[name]
        if found.shape != want.shape:
            raise CheckpointError(f"weights file {str(file)!r}: tensor {name!r} has shape {list(found.shape)}, "
                                  f"{model} needs {list(want.shape)}", path=file, tensor=name)
        if _kind(found.dtype) != _kind(want.dtype):
            raise CheckpointError(
                f"weights file {str(file)!r}: tensor {name!r} is {found.describe()}, {model} needs a "
                f"{_kind(want.dtype)} tensor ({want.describe()})", path=file, tensor=name)


def load_checked(
    module: torch.nn.Module,
    files: Sequence[Path],
    model: str,
    needed: Callable[[str], bool] = every_tensor,
    rename: Callable[[dict[str, Any]], Any] | None = None,
) -> None:
    """Load `files` into `module` after the same `check` the parent ran on their headers.

    `rename` maps legacy names in place (diffusers' old attention layout) and
    is applied to the names both here and in the parent.
    """
    checkpoint, state = read_tensors(files)
    if rename is not None:
        checkpoint = renamed(checkpoint, rename)
        rename(state)
    check(checkpoint, model_specs(module), model, needed)
    result = module.load_state_dict(state, strict=False)
    # `check` refused every unexpected tensor and every needed missing one; this is a bug guard.
    left_out = [n for n in result.missing_keys if needed(n) and not optional(n)]
    if result.unexpected_keys or left_out:
        raise RuntimeError(f"checked checkpoint loaded incompletely: {result}")


def renamed(checkpoint: Checkpoint, rename: Callable[[dict[str, Any]], Any]) -> Checkpoint:
    """`checkpoint` with `rename` (an in-place key mapping) applied to its names."""
    specs, origin = dict(checkpoint.specs), dict(checkpoint.origin)
    rename(specs)
    rename(origin)
    return Checkpoint(checkpoint.where, specs, origin)
