"""The backend registry: one dict of built-in backends plus third-party entry points.

Third-party backends register in the `aigcbench.backends` entry-point group
("name = package.module:BackendClass"); a built-in name cannot be shadowed.

A plugin is someone else's code: whatever goes wrong in it — its module
raising at import (any exception, a SyntaxError included), the class missing
or not shaped like a `Backend`, `available()` or `version()` raising — makes
that one backend unavailable with the error as its reason (exit 3 for `run`,
a row in `aigcbench list backends`), never a traceback in the harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..bench.errors import BackendUnavailable, UserError
from ..bench.plugins import entry_point_specs, load
from .base import Backend

ENTRY_POINT_GROUP = "aigcbench.backends"

BUILTIN: dict[str, str] = {
    "pytorch": "aigcbench.backends.pytorch:PyTorchBackend",
    "tensorrt": "aigcbench.backends.tensorrt:TensorRTBackend",
    "torch-compile": "aigcbench.backends.torch_compile:TorchCompileBackend",
    "onnxruntime": "aigcbench.backends.onnxruntime:OnnxRuntimeBackend",
    "openvino": "aigcbench.backends.openvino:OpenVinoBackend",
    # These two run in their own Python environment (`make env-tensorflow`), see backends/tensorflow.py.
    "tensorflow": "aigcbench.backends.tensorflow:TensorFlowBackend",
    "litert": "aigcbench.backends.litert:LiteRtBackend",
    "null": "aigcbench.backends.null:NullBackend",
}

# What the harness reads from a backend before anything runs (cell_check.check_config and preflight, the listing).
_PROTOCOL = ("name", "description", "precisions", "options", "available", "check", "check_options", "prepare")


def _specs() -> dict[str, str]:
    # entry_point_specs is cached per process: this runs once per sweep cell.
    return {**entry_point_specs(ENTRY_POINT_GROUP), **BUILTIN}


def names() -> list[str]:
    return sorted(_specs())


def get(name: str) -> Backend:
    """A fresh instance of the named backend; unknown names list the valid ones.

    Raises `BackendUnavailable` for a plugin that cannot be loaded, with the
    plugin's own error as the reason.
    """
    specs = _specs()
    if name not in specs:
        raise UserError(f"unknown backend {name!r}; choose from: {', '.join(sorted(specs))}")
    if name in BUILTIN:
        return load(specs[name])()
    return _load_plugin(name, specs[name])


def describe(name: str) -> dict[str, Any]:
    """What `aigcbench list backends` shows: availability with the reason, version, precisions.

    A backend that fails to load is reported as unavailable instead of
    breaking the listing of every other backend.
    """
    try:
        backend = get(name)
    except BackendUnavailable as exc:
        return {"name": name, "available": False, "reason": str(exc)}
    except ImportError as exc:  # a built-in whose module needs something missing here
        return {"name": name, "available": False, "reason": _one_line(f"failed to import: {exc}")}
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


def _load_plugin(name: str, spec: str) -> Backend:
    where = f"backend plugin {name!r} ({spec})"
    try:
        backend = load(spec)()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any fault in a plugin's import or constructor is its own
        raise BackendUnavailable(_one_line(f"{where} failed to load: {_error(exc)}")) from None
    try:
        missing = [attribute for attribute in _PROTOCOL if not hasattr(backend, attribute)]
        if missing:
            raise BackendUnavailable(f"{where} is not a backend: it lacks {', '.join(missing)} (see backends/base.py)")
        shaped = isinstance(backend.precisions, (tuple, list)) and isinstance(backend.options, Mapping)
    except BackendUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - a property of the plugin's that raises
        raise BackendUnavailable(_one_line(f"{where} failed to load: {_error(exc)}")) from None
    if not shaped:
        raise BackendUnavailable(f"{where} is not a backend: precisions must be a tuple, options a mapping")
    return GuardedPlugin(name, spec, backend)  # type: ignore[return-value]


class GuardedPlugin:
    """A plugin backend whose checks turn the plugin's own exceptions into reasons.

    It forwards everything to the plugin; `available`, `version`, `check`,
    `check_options` and `check_device_name` — what the parent calls before
    anything runs — are guarded. `prepare` is not: it runs in the cell's worker, where a raising
    plugin becomes a `failed` record like any other crash.
    """

    def __init__(self, name: str, spec: str, backend: Any) -> None:
        self._where = f"backend plugin {name!r} ({spec})"
        self._spec = spec
        self._backend = backend

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") or attribute in ("_backend", "_spec", "_where"):
            raise AttributeError(attribute)  # before __init__ (copy, pickle): no recursion into _backend
        return getattr(self._backend, attribute)

    def available(self) -> str | None:
        try:
            why = self._backend.available()
        except Exception as exc:  # noqa: BLE001
            return _one_line(f"available() raised {_error(exc)} (plugin {self._spec})")
        return None if why is None else _one_line(str(why))

    def version(self) -> str | None:
        try:
            version = self._backend.version()
        except Exception:  # noqa: BLE001 - a listing or a record without a version, not a crash
            return None
        return None if version is None else str(version)

    def check(self, device: str, precision: str) -> None:
        self._guarded("check", device, precision)

    def check_options(self, options: Mapping[str, str]) -> None:
        self._guarded("check_options", options)

    def check_device_name(self, device: str) -> None:
        if hasattr(self._backend, "check_device_name"):  # newer than the protocol a plugin may have been written to
            self._guarded("check_device_name", device)

    def _guarded(self, method: str, *args: Any) -> None:
        try:
            getattr(self._backend, method)(*args)
        except (UserError, BackendUnavailable):
            raise
        except Exception as exc:  # noqa: BLE001
            raise BackendUnavailable(_one_line(f"{self._where}: {method}() raised {_error(exc)}")) from None


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _one_line(message: str) -> str:
    # The reason goes on one stderr line (exit 3) and in one cell of the listing.
    return " ".join(message.split())
