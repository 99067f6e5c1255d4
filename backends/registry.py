"""The backend registry: one dict of built-in backends plus third-party entry points.

Third-party backends register in the `aigcbench.backends` entry-point group
("name = package.module:BackendClass"); a built-in name cannot be shadowed.
"""

from __future__ import annotations

from typing import Any

from ..bench.errors import UserError
from ..bench.plugins import entry_point_specs, load
from .base import Backend

ENTRY_POINT_GROUP = "aigcbench.backends"

BUILTIN: dict[str, str] = {
    "pytorch": "aigcbench.backends.pytorch:PyTorchBackend",
    "tensorrt": "aigcbench.backends.tensorrt:TensorRTBackend",
    "torch-compile": "aigcbench.backends.torch_compile:TorchCompileBackend",
    "onnxruntime": "aigcbench.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "aigcbench.backends.openvino:OpenVinoBackend",
    "null": "aigcbench.backends.null:NullBackend",
}


def _specs() -> dict[str, str]:
    return {**entry_point_specs(ENTRY_POINT_GROUP), **BUILTIN}


def names() -> list[str]:
    return sorted(_specs())


def get(name: str) -> Backend:
    """A fresh instance of the named backend; unknown names list the valid ones."""
    specs = _specs()
    if name not in specs:
        raise UserError(f"unknown backend {name!r}; choose from: {', '.join(sorted(specs))}")
    return load(specs[name])()


def describe(name: str) -> dict[str, Any]:
    """What `aigcbench list backends` shows: availability with the reason, version, precisions.

    A plugin that fails to import is reported as unavailable instead of
    breaking the listing of every other backend.
    """
    try:
        backend = get(name)
    except ImportError as exc:
        return {"name": name, "available": False, "reason": f"failed to import: {exc}"}
    reason = backend.available()
    return {
        "name": name,
        "available": reason is None,
        "reason": reason,
        "version": backend.version(),
        "precisions": list(backend.precisions),
        "options": dict(backend.options),
        "description": backend.description,
    }
