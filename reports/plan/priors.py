"""Prior efficiencies for `roofline` projections: what fraction of a spec-sheet peak a device kind really reaches.

A device known only from the catalog is projected as

    time = roofline time / efficiency      (band: roofline / high .. roofline / low)

where roofline time = FLOPs / peak at the catalog column named by the prior's
`precision`. The efficiencies are not guesses and never a silent 100 %: each is
derived from public, cited timings of diffusion pipelines (the diffusers
documentation's per-GPU tables, MLPerf Inference SDXL results, vendor and
Hugging Face blog posts) divided into FLOPs counted from the models' configs.
`data/priors.toml` holds the raw published inputs and the derived numbers;
`python examples/plan/derive_priors.py --check` recomputes every one of them.

A (kind, precision) the catalog has a peak for but no public timing gets a
*fallback* prior (``fallback=True``): the most conservative measured prior of
the same kind (else of any kind) with its band widened — the rule is stated in
the TOML and in each fallback's `basis`. Any other pair gets the TOML's
`[default]`, the same rule over all kinds, so `prior` never fails.

    >>> p = prior("gpu", "fp16")
    >>> p.low <= p.efficiency <= p.high
    True
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Prior:
    """A device kind's efficiency at one precision, with the band a projection carries and where it came from.

    `efficiency` is the median of roofline time / measured time over the cited
    timings; `low`..`high` their range (a fallback's widened range). `basis` says
    in a sentence how it was derived; `sources` are repo@commit:path or URLs.
    """

    kind: str
    precision: str
    efficiency: float
    low: float
    high: float
    basis: str
    sources: tuple[str, ...]
    fallback: bool


def _prior(kind: str, precision: str, entry: dict) -> Prior:
    return Prior(
        kind=kind,
        precision=precision,
        efficiency=float(entry["efficiency"]),
        low=float(entry["low"]),
        high=float(entry["high"]),
        basis=str(entry["basis"]),
        sources=tuple(entry["sources"]),
        fallback=bool(entry["fallback"]),
    )


@functools.cache
def _document() -> dict:
    text = resources.files("aigcbench.reports.plan").joinpath("data/priors.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@functools.cache
def _priors() -> dict[tuple[str, str], Prior]:
    return {
        (kind, precision): _prior(kind, precision, entry)
        for kind, by_precision in _document()["prior"].items()
        for precision, entry in by_precision.items()
    }


def load_priors() -> dict[tuple[str, str], Prior]:
    """Every prior in data/priors.toml, keyed by (device kind, catalog precision column); a fresh dict each call."""
    return dict(_priors())


def prior(kind: str, precision: str) -> Prior:
    """The prior for a device kind at a precision; an unlisted pair gets the documented default fallback."""
    found = _priors().get((kind, precision))
    if found is not None:
        return found
    default = _prior(kind, precision, _document()["default"])
    return dataclasses.replace(default, fallback=True, basis=f"No prior listed for {kind} {precision}. {default.basis}")
