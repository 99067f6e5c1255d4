"""The fidelity reference, computed once per workload configuration and kept on disk.

The reference is eager PyTorch fp32 on CPU over the fixed seeded check batch
(`bench.fidelity`). It does not depend on the backend, precision or scenario
being measured, so every cell of a sweep that shares a workload configuration
shares one reference; for a diffusion model it is a whole sampling loop in
eager mode, the most expensive part of a cell outside the measured loop.

An entry is keyed by everything that determines the outputs: the workload's
config (name, size, steps, scheduler, seed, weights digest: `config()`), the
check batch (size, seed offset), a digest of the workload code and the torch
and diffusers versions. A changed preset, a library upgrade or other weights is
a new key, never a stale answer. Entries are written whole (staged, then
renamed) and carry a sha256 of their tensor file: an entry that fails the
checksum or does not hold what its key says is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from ..workloads.base import Workload
from .cache import cache_dir, publish_entry

if TYPE_CHECKING:
    import torch

FOLDER = "fidelity"
TENSORS = "reference.pt"
META = "meta.json"
# Raise when the entry layout changes, so old entries are missed, not misread.
FORMAT = 1
_WORKLOADS = Path(__file__).resolve().parents[1] / "workloads"

Source = Literal["cached", "computed"]


def workload_code_digest() -> str:
    """sha256 over the workload code (`workloads/*.py`): presets, pipelines and check batches live there."""
    from ..workloads.registry import code_digest

    return code_digest()


def _class_code_digest(workload: Workload) -> str:
    """sha256 over the files defining the workload's classes outside `workloads/` (a plugin's own module)."""
    digest = hashlib.sha256()
    for cls in type(workload).__mro__:
        if not issubclass(cls, Workload):
            continue
        try:
            source = inspect.getsourcefile(cls)
        except TypeError:  # a class made at run time has no file: its name is all there is
            source = None
        digest.update(cls.__qualname__.encode())
        if source and Path(source).resolve().parent != _WORKLOADS and Path(source).is_file():
            digest.update(Path(source).read_bytes())
    return digest.hexdigest()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def key_parts(workload: Workload, batch_size: int, seed_offset: int) -> dict[str, Any]:
    """Everything that determines the reference outputs (the entry's key, stored with it)."""
    # The weights folder's path does not change the outputs; its sha256 (in the config) does.
    config = {k: v for k, v in workload.config().items() if k != "weights"}
    return {
        "format": FORMAT,
        "workload": workload.name,
        "size": workload.size,
        "config": config,
        "batch_size": batch_size,
        "seed_offset": seed_offset,
        "code_sha256": workload_code_digest(),
        "class_code_sha256": _class_code_digest(workload),
        "torch": _version("torch"),
        "diffusers": _version("diffusers"),
    }


def entry_path(parts: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return cache_dir() / FOLDER / f"{parts['workload']}-{parts['size']}-{digest[:32]}"


def reference(
    workload: Workload,
    batch_size: int,
    seed_offset: int,
    compute: Callable[[], Mapping[str, "torch.Tensor"]],
) -> tuple[dict[str, "torch.Tensor"], Source]:
    """The reference outputs for this workload config and check batch, and whether they came from the cache.

    `compute()` runs eager fp32 on the check batch; it is called only on a
    miss (or a corrupt entry), and its outputs are stored for the next cell.
    A cache that cannot be written costs only the saving: the run goes on.
    """
    parts = key_parts(workload, batch_size, seed_offset)
    entry = entry_path(parts)
    cached = load(entry, parts)
    if cached is not None:
        return cached, "cached"
    outputs = {name: tensor.detach().cpu() for name, tensor in compute().items()}
    try:
        publish_entry(entry, lambda staging: _write(staging, parts, outputs), lambda: load(entry, parts))
    except OSError:
        pass  # a read-only or full cache folder: measured without saving
    return outputs, "computed"


def _write(staging: Path, parts: Mapping[str, Any], outputs: Mapping[str, "torch.Tensor"]) -> None:
    import torch

    tensors = staging / TENSORS
    # Contiguous clones: a view would save its whole base storage.
    torch.save({name: t.contiguous().clone() for name, t in outputs.items()}, tensors)
    meta = {
        "key": dict(parts),
        "sha256": _file_sha256(tensors),
        "tensors": {name: {"shape": list(t.shape), "dtype": str(t.dtype)} for name, t in outputs.items()},
    }
    (staging / META).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))


def load(entry: Path, parts: Mapping[str, Any]) -> dict[str, "torch.Tensor"] | None:
    """The entry's tensors if the entry is whole and is the one `parts` names; None otherwise (rebuild it)."""
    import torch

    try:
        meta = json.loads((entry / META).read_text())
        tensors = entry / TENSORS
        if not isinstance(meta, dict) or meta.get("sha256") != _file_sha256(tensors):
            return None
        # Round-trip the key through JSON so tuples and lists compare equal.
        if meta.get("key") != json.loads(json.dumps(dict(parts), default=str)):
            return None
        data = torch.load(tensors, map_location="cpu", weights_only=True)
    except Exception:  # an unreadable or unpicklable entry, whatever the error: a miss, rebuilt by the caller
        return None
    return data if _matches(data, meta.get("tensors")) else None


def _matches(data: Any, described: Any) -> bool:
    """The loaded tensors are exactly the names, shapes and dtypes the entry's metadata describes."""
    import torch

    if not isinstance(data, dict) or not isinstance(described, dict) or set(data) != set(described):
        return False
    for name, tensor in data.items():
        spec = described[name]
        if not isinstance(tensor, torch.Tensor) or not isinstance(spec, dict):
            return False
        if list(tensor.shape) != spec.get("shape") or str(tensor.dtype) != spec.get("dtype"):
            return False
    return True


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
