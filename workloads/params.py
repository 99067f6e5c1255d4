"""Workload parameters: the knobs one workload has and another lacks (guidance, tokens, frames), and the mode.

Each parameter is named, typed and explained here once; its range lives with
every other numeric option's in `bench.limits`. The CLI's flags
(`--guidance`, `--prompt-tokens`, ...), sweep-file keys and the config all
derive from these names. A workload declares which it accepts and its own
default for each (`Workload.accepts`): SD's guidance is 7.5, DiT's 4.0.

The mode says what one measured call is: `infer` (the pipeline produces one
batch of output) or `train` (one optimizer step over a batch, for the
workloads that declare a training step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

MODES: tuple[str, ...] = ("infer", "train")
DEFAULT_MODE = "infer"


@dataclass(frozen=True)
class Param:
    key: str  # as configs and sweep files spell it; the flag is derived from it
    integer: bool
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


PARAMS: dict[str, Param] = {
    p.key: p
    for p in (
        Param("guidance", False, "Classifier-free guidance scale of guided diffusion (sd, dit); > 1 doubles the "
              "denoiser's batch, as deployed; 1 runs the conditional branch only [default: the workload's]."),
        Param("prompt_tokens", True, "Text decoders (llm): tokens in the prompt, run as one prefill [default: 128]."),
        Param("new_tokens", True, "Text decoders (llm): tokens generated after the prefill, one decode step each "
              "with the KV cache [default: 128]."),
        Param("frames", True, "Video diffusion (video): frames per clip [default: the workload's]."),
    )
}

MODE_HELP = ("infer: one call produces a batch of output; train: one optimizer step over a batch "
             "(dcgan, vae, ddpm on pytorch and torch-compile).")


def variant(mode: str | None, params: Mapping[str, Any] | None) -> str:
    """How a cell's label tells its mode and parameters apart: '' by default, else ' train guidance=7.5'."""
    parts = [mode] if mode and mode != DEFAULT_MODE else []
    parts += [f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
              for key, value in sorted((params or {}).items())]
    return "".join(" " + part for part in parts)
