"""Lazy resolution of "module:attribute" specs, for the registries.

Registries map names to import strings rather than objects so that importing
aigcbench (and `aigcbench --help`) never imports torch, onnxruntime, openvino
or tensorrt; the module is imported only when its entry is used.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any


def load(spec: str) -> Any:
    """Import "package.module:Attribute" and return the attribute."""
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def entry_point_specs(group: str) -> dict[str, str]:
    """Third-party plugins declared in the given entry-point group, name → spec."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=group)}
