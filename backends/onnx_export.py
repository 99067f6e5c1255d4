"""Export a component to ONNX once, and keep it in a content-addressed cache.

Every ONNX-consuming backend (ONNX Runtime, OpenVINO, TensorRT) runs the *same*
graph file, so differences between them are the runtimes', not the exports'.

- Exporter: `torch.onnx.export(..., dynamo=True)` at opset 18 with a dynamic
  batch dimension (`Dim.DYNAMIC`: the exporter may narrow its range where a
  model branches on the batch, as diffusers' upsampler does at 64 rows for
  memory layout only, but never fixes it); where it fails, the legacy TorchScript
  exporter is tried and the reason is recorded (`fallback_reason`).
- Cache key: the component's identity (workload, size, a digest of its config,
  which holds the seed or the weights' sha256), torch version, exporter, opset.
  Entries live in `cache_dir()/onnx/<key>/` with a manifest of file hashes; an
  entry whose files do not match the manifest is corrupt and is rebuilt.
- Writes are atomic: an entry is built in a temporary folder and renamed into
  place, so a crash or a concurrent export never leaves half a graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from ..bench.cache import cache_dir, publish_entry

if TYPE_CHECKING:
    import torch

OPSET = 18
EXPORTERS = ("dynamo", "legacy")
MODEL_FILE = "model.onnx"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class OnnxGraph:
    """An exported graph as backends receive it (instead of a torch module)."""

    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    exporter: str
    opset: int
    key: str
    sha256: str  # over every file of the entry: what engine caches key on
    cache_hit: bool
    fallback_reason: str | None = None

    def describe(self) -> dict[str, Any]:
        """What the record keeps about the export."""
        return {
            "exporter": self.exporter,
            "opset": self.opset,
            "cache_hit": self.cache_hit,
            "fallback_reason": self.fallback_reason,
            "sha256": self.sha256,
            "path": str(self.path),
        }


# Bumped when an export of the same identity would differ: 2 = the batch exported as Dim.DYNAMIC.
EXPORT_REVISION = 2


def cache_key(identity: Mapping[str, Any], exporter: str, opset: int) -> str:
    import torch

    material = {"identity": dict(identity), "torch": torch.__version__, "exporter": exporter, "opset": opset,
                "revision": EXPORT_REVISION}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def check_exporter(options: Mapping[str, str]) -> str:
    """The `--option exporter=` value of an ONNX backend, validated (default dynamo)."""
    from .options import choice

    return choice(options, "exporter", EXPORTERS, "dynamo")


def export(
    module: "torch.nn.Module",
    example_inputs: tuple["torch.Tensor", ...],
    identity: Mapping[str, Any],
    *,
    exporter: str = "dynamo",
    opset: int = OPSET,
) -> OnnxGraph:
    """The cached graph for this component, exporting it first when needed.

    `example_inputs` must have a batch dimension > 1 so that the exporter does
    not specialise the batch to a constant.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    key = cache_key(identity, exporter, opset)
    entry = cache_dir() / "onnx" / key
    manifest = _valid_manifest(entry)
    if manifest is not None:
        return _graph(entry, key, manifest, cache_hit=True)

    def build(staging: Path) -> dict[str, Any]:
        used, fallback = _export_to(module, example_inputs, staging / MODEL_FILE, exporter, opset)
        return _write_manifest(staging, used, opset, fallback)

    manifest = publish_entry(entry, build, lambda: _valid_manifest(entry))
    return _graph(entry, key, manifest, cache_hit=False)


def _export_to(
    module: "torch.nn.Module", example_inputs: tuple["torch.Tensor", ...], path: Path, exporter: str, opset: int
) -> tuple[str, str | None]:
    """Export with the chosen exporter, falling back from dynamo to legacy; returns (exporter used, why)."""
    if exporter == "legacy":
        _legacy_export(module, example_inputs, path, opset)
        return "legacy", None
    try:
        _dynamo_export(module, example_inputs, path, opset)
        return "dynamo", None
    except Exception as exc:  # any exporter failure: the legacy path is the documented fallback
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        for leftover in path.parent.iterdir():
            leftover.unlink()
        _legacy_export(module, example_inputs, path, opset)
        return "legacy", reason[:500]


def input_names(module: "torch.nn.Module", count: int) -> list[str]:
    """Graph input names from the forward signature (`sample`, `timestep`), as the dynamo exporter names them."""
    parameters = list(inspect.signature(module.forward).parameters)
    return parameters[:count] if len(parameters) >= count else [f"input_{i}" for i in range(count)]


def _dynamo_export(module: "torch.nn.Module", example_inputs: tuple, path: Path, opset: int) -> None:
    import torch
    from torch.export import Dim

    # DYNAMIC, not Dim("batch", max=…): a named range is a promise the exporter refuses to narrow, and
    # torch.onnx then exports a graph with the example's batch baked in, with no error.
    shapes = tuple({0: Dim.DYNAMIC} for _ in example_inputs)
    with _quiet():
        torch.onnx.export(
            module, example_inputs, str(path), dynamo=True, opset_version=opset, dynamic_shapes=shapes,
            output_names=["output"], verbose=False,
        )


def _legacy_export(module: "torch.nn.Module", example_inputs: tuple, path: Path, opset: int) -> None:
    import torch

    names = input_names(module, len(example_inputs))
    with _quiet():
        torch.onnx.export(
            module, example_inputs, str(path), dynamo=False, opset_version=opset, input_names=names,
            output_names=["output"], dynamic_axes={**{n: {0: "batch"} for n in names}, "output": {0: "batch"}},
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress to stdout and log warnings; the CLI owns the terminal."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file in a cache entry but its manifest: what a manifest records and checks."""
    hashes = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        hashes[path.name] = digest.hexdigest()
    return hashes


def _write_manifest(folder: Path, exporter: str, opset: int, fallback: str | None) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(folder / MODEL_FILE), load_external_data=False)
    manifest = {
        "exporter": exporter,
        "opset": opset,
        "fallback_reason": fallback,
        "inputs": [i.name for i in model.graph.input],
        "outputs": [o.name for o in model.graph.output],
        "files": file_hashes(folder),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _valid_manifest(entry: Path) -> dict[str, Any] | None:
    """The entry's manifest if every file it lists is present and intact, else None."""
    try:
        manifest = json.loads((entry / MANIFEST).read_text())
        return manifest if manifest.get("files") and file_hashes(entry) == manifest["files"] else None
    except (OSError, ValueError, AttributeError):
        return None


def _graph(entry: Path, key: str, manifest: Mapping[str, Any], cache_hit: bool) -> OnnxGraph:
    combined = hashlib.sha256(json.dumps(manifest["files"], sort_keys=True).encode()).hexdigest()
    return OnnxGraph(
        path=entry / MODEL_FILE,
        input_names=tuple(manifest["inputs"]),
        output_names=tuple(manifest["outputs"]),
        exporter=manifest["exporter"],
        opset=int(manifest["opset"]),
        key=key,
        sha256=combined,
        cache_hit=cache_hit,
        fallback_reason=manifest.get("fallback_reason"),
    )
