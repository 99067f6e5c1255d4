"""What a fleet costs: rented by the hour, or bought, amortised, and powered.

- Cloud: count × $/h × 730 h a month (the catalog's $/h is per device, host
  share included, on demand).
- Purchase: count × launch price / amortisation months, plus energy: the
  device drawing its TDP while busy and `IDLE_SHARE` of it while idle, at the
  stated $/kWh. TDP is an upper bound of the board's draw, so this errs high.
- A device with a cloud price is priced as cloud unless `prefer="purchase"`;
  one with neither price has no cost and says so.

J/item is the device's power over the time its batches take per real item
served: TDP × batch service time / items per batch (the batcher's mean batch
at the planned load).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .demand import HOURS_PER_MONTH

# An idle accelerator still draws power (clocks, HBM refresh, fans); a third of TDP is a
# round figure for a datacenter GPU at idle with its host share, stated in every plan.
IDLE_SHARE = 0.3
Pricing = Literal["cloud", "purchase"]


@dataclass(frozen=True)
class PriceTerms:
    """The assumptions every cost uses, stated in the plan."""

    usd_per_kwh: float = 0.15
    amortisation_months: int = 36
    prefer: Pricing = "cloud"


@dataclass(frozen=True)
class Cost:
    """A fleet's monthly cost and where it comes from (usd None: no price known)."""

    usd_per_month: float | None
    pricing: Pricing | None
    kw: float | None
    energy_usd_per_month: float | None = None
    price_from: str | None = None  # the catalog entry whose price was borrowed, if not the device's own


def fleet_power_kw(count: int, tdp_w: float | None, utilisation: float) -> float | None:
    """Mean draw of the fleet: busy share at TDP, idle share at IDLE_SHARE × TDP."""
    if tdp_w is None:
        return None
    busy = min(max(utilisation, 0.0), 1.0)
    return count * tdp_w * (busy + (1 - busy) * IDLE_SHARE) / 1000


def fleet_cost(count: int, *, cloud_usd_per_hour: float | None, launch_price_usd: float | None,
               tdp_w: float | None, utilisation: float, terms: PriceTerms, price_from: str | None = None) -> Cost:
    """$/month of `count` devices by the rules in the module docstring."""
    kw = fleet_power_kw(count, tdp_w, utilisation)
    cloud_first = terms.prefer == "cloud"
    if cloud_usd_per_hour is not None and (cloud_first or launch_price_usd is None):
        return Cost(count * cloud_usd_per_hour * HOURS_PER_MONTH, "cloud", kw, None, price_from)
    if launch_price_usd is not None:
        energy = kw * HOURS_PER_MONTH * terms.usd_per_kwh if kw is not None else None
        capital = count * launch_price_usd / terms.amortisation_months
        return Cost(capital + (energy or 0.0), "purchase", kw, energy, price_from)
    return Cost(None, None, kw, None, price_from)


def joules_per_item(tdp_w: float | None, service_s: float, items_per_batch: float) -> float | None:
    """Energy per served item while busy: TDP × one batch's service time / the items it carried."""
    if tdp_w is None or items_per_batch <= 0:
        return None
    return tdp_w * service_s / items_per_batch


def usd_per_1k(usd_per_month: float | None, items_per_month: float) -> float | None:
    if usd_per_month is None or items_per_month <= 0:
        return None
    return usd_per_month / items_per_month * 1000
