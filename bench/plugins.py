"""Lazy resolution of "module:attribute" specs, for the registries.

Registries map names to import strings rather than objects so that importing
aigcbench (and `aigcbench --help`) never imports torch, onnxruntime, openvino
or tensorrt; the module is imported only when its entry is used.

Entry points are read once per process and group: `importlib.metadata`
scans every distribution on `sys.path` each time it is asked (milliseconds
each), and registries are asked once per sweep cell. A process that installs
a plugin while it runs (tests do) calls `clear_cache()`.
"""

from __future__ import annotations

import functools
import importlib
from importlib import metadata
from typing import Any


def load(spec: str) -> Any:
    """Import "package.module:Attribute" and return the attribute."""
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def entry_point_specs(group: str) -> dict[str, str]:
    """Third-party plugins declared in the given entry-point group, name → spec (a fresh dict each call)."""
    return dict(_entry_points(group))


@functools.lru_cache(maxsize=None)
def _entry_points(group: str) -> tuple[tuple[str, str], ...]:
    # A tuple, so no caller can change what the next one reads.
    return tuple((ep.name, ep.value) for ep in metadata.entry_points(group=group))


def clear_cache() -> None:
    """Forget the entry points read so far; the next lookup scans the installed distributions again."""
    _entry_points.cache_clear()
