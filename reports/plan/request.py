"""The plan's inputs, validated once at the edge: every refusal is one line naming the bad value (exit 2)."""

from __future__ import annotations

import math
from typing import Optional

from ...bench.errors import UserError
from ...bench.quantities import parse_duration
from .costmodel import ELEMENT_BYTES
from .demand import parse_demand
from .planner import PlanRequest
from .pricing import PriceTerms


def parse_share(text: str, flag: str) -> float:
    """`20%` or `0.2` as 0.2; refuses negatives and anything unparsable."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected a share such as 20% or 0.2") from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{flag} must be ≥ 0, got {text!r}")
    return value


def build_request(*, workload: Optional[str], size: str, precision: str, steps: Optional[int],
                  scheduler: Optional[str], demand: Optional[str], slo_p99: Optional[str], hardware: Optional[str],
                  headroom: str, usd_per_kwh: float, amortise_months: int, pricing: str) -> PlanRequest:
    """A PlanRequest, or a UserError before anything is read or simulated."""
    from ...workloads import registry

    if workload is None:
        raise UserError("plan needs --workload (see `aigcbench list workloads`), or --validate")
    if demand is None or slo_p99 is None:
        raise UserError("plan needs --demand (e.g. 20000/h) and --slo-p99 (e.g. 2s)")
    cls = registry.check(workload, size, steps=steps, scheduler=scheduler)
    if precision not in ELEMENT_BYTES:
        raise UserError(f"unknown precision {precision!r}; choose from: {', '.join(ELEMENT_BYTES)}")
    slo = parse_duration(slo_p99, "--slo-p99")
    if slo <= 0:
        raise UserError(f"--slo-p99 must be > 0, got {slo_p99!r}")
    if not (math.isfinite(usd_per_kwh) and usd_per_kwh >= 0):
        raise UserError(f"--usd-per-kwh must be ≥ 0, got {usd_per_kwh}")
    if amortise_months < 1:
        raise UserError(f"--amortise-months must be ≥ 1, got {amortise_months}")
    if pricing not in ("cloud", "purchase"):
        raise UserError(f"--pricing {pricing!r}: choose from cloud, purchase")
    wanted = tuple(h.strip() for h in (hardware or "").split(",") if h.strip())
    if hardware is not None and not wanted:
        raise UserError("--hardware names no device; give catalog ids, comma-separated")
    return PlanRequest(
        workload=workload, family=cls.family, size=size,
        steps=(steps or cls.default_steps) if cls.iterative else None,
        scheduler=(scheduler or cls.default_scheduler) if cls.iterative else None,
        precision=precision, demand=parse_demand(demand), slo_p99_s=slo, hardware=wanted,
        headroom=parse_share(headroom, "--headroom"),
        terms=PriceTerms(usd_per_kwh=usd_per_kwh, amortisation_months=amortise_months, prefer=pricing),  # type: ignore[arg-type]
    )
