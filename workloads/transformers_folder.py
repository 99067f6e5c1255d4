"""What the workloads built with transformers share (sd's text encoders, llm, vocoder): a quiet build and a checked config.json.

A transformers model folder is `config.json` plus a checkpoint, as
`save_pretrained` writes it. Each workload checks its own architecture's
fields; what every one of them needs first is here: the JSON read strictly
(NaN and Infinity are not numbers), the config naming the model the workload
builds, and sizes that are positive integers within a bound a typo cannot pass.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..bench.errors import UserError
from .weights import CONFIG_NAME

# The largest width, depth or count a config may state: far above any model's, low enough to catch a typo.
MAX_SIZE = 1 << 20


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers' logging and Python warnings while a model is built from a config."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers_logging.set_verbosity(level)


def is_size(value: Any, limit: int = MAX_SIZE) -> bool:
    """A size a config may state: an integer (not a bool) from 1 to `limit`."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_config(folder: Path, model_name: str) -> dict[str, Any]:
    """`folder/config.json` as a JSON object, or a one-line UserError saying what the folder should hold."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"weights folder {str(folder)!r} has no {CONFIG_NAME} (a transformers model folder, "
                        f"as {model_name}.save_pretrained writes it)")
    try:
        config = json.loads(path.read_text(), parse_constant=_no_constant)
    except (OSError, ValueError) as error:
        raise UserError(f"weights config {str(path)!r} is not readable JSON: {error}") from error
    if not isinstance(config, dict):
        raise UserError(f"weights config {str(path)!r} must be a JSON object, got a {type(config).__name__}")
    return config


def check_kind(config: Mapping[str, Any], where: str, workload: str, model_name: str,
               model_types: tuple[str, ...]) -> None:
    """Refuse a config written for another model: it must name `model_name` or one of `model_types`."""
    architectures, model_type = config.get("architectures"), config.get("model_type")
    needs = f"{workload} needs a {model_name}"
    if architectures is None and model_type is None:
        raise UserError(f"weights config {where!r} names no architectures or model_type; {needs}")
    if architectures is not None and (not isinstance(architectures, list) or model_name not in architectures):
        raise UserError(f"weights config {where!r} describes {architectures!r}; {needs}")
    if model_type is not None and model_type not in model_types:
        raise UserError(f"weights config {where!r} has model_type {model_type!r}; {workload} needs "
                        f"{' or '.join(map(repr, model_types))} ({model_name})")
