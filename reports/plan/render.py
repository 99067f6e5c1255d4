"""A plan as data (`plan_dict`, the JSON of the CLI contract), as terminal tables, and as a procurement report.

`plan_dict` is the one place that turns a `Plan` into numbers and words;
the terminal tables, the Markdown and the HTML all read it, so the four
outputs never disagree.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .. import units
from .calibration import Projection, Tier
from .planner import PLAN_SCHEMA_VERSION, Option, Plan
from .pricing import IDLE_SHARE
from .sizing import Band


def _band(band: Band | None) -> dict[str, float] | None:
    return None if band is None else {"value": band.value, "low": band.low, "high": band.high}


def _projection(p: Projection) -> dict[str, Any]:
    data: dict[str, Any] = {
        "service_time_s": {"value": p.median_s, "low": p.low_s, "high": p.high_s},
        "roofline_s": p.roofline_s,
        "efficiency": p.efficiency,
        # A spec-sheet projection has no measurement to be a distance from.
        "distance": None if p.tier is Tier.ROOFLINE else p.distance,
        "evidence": list(p.evidence),
        "open_loop_factor": p.open_loop_factor,
    }
    if p.prior is not None:
        data["prior"] = {"kind": p.prior.kind, "precision": p.prior.precision, "efficiency": p.prior.efficiency,
                         "low": p.prior.low, "high": p.prior.high, "basis": p.prior.basis,
                         "sources": list(p.prior.sources), "fallback": p.prior.fallback}
    return data


def option_dict(option: Option) -> dict[str, Any]:
    """One row of `options[]`: the contract's fields first, then what explains them."""
    s, p, z, c = option.spec, option.projection, option.sizing, option.cost
    return {
        "hardware": s.id,
        "count": z.count,
        "tier": p.tier.value,
        "capacity_items_per_s": _band(z.capacity),
        "p99_s": z.p99_s,
        "usd_per_month": c.usd_per_month,
        "usd_per_1k_items": option.usd_per_1k_items,
        "j_per_item": option.j_per_item,
        "meets_slo": option.meets_slo,
        "name": s.name,
        "kind": s.kind,
        "origin": s.origin,
        "backend": p.target.backend,
        "precision": p.target.precision,
        "batch": p.target.batch,
        "count_band": {"low": z.count_low, "high": z.count_high},
        "capacity_per_device_items_per_s": _band(z.per_device),
        "utilisation": z.utilisation,
        "mean_batch": z.mean_batch,
        "kw": c.kw,
        "pricing": c.pricing,
        "price_from": c.price_from,
        "price_source_date": s.price_source_date,
        "cloud_usd_per_hour": s.cloud_usd_per_hour,
        "launch_price_usd": s.launch_price_usd,
        "tdp_w": s.tdp_w,
        "sources": list(s.sources),
        "reason": z.reason,
        **_projection(p),
    }


def recommendation(plan: Plan) -> str:
    """The answer, in one sentence."""
    r = plan.request
    ask = f"{r.workload} {r.size} {r.precision} at {r.demand.describe()}, p99 ≤ {units.seconds(r.slo_p99_s)}"
    best = plan.best
    if best is None:
        closest = plan.closest
        if closest is None:
            return f"No device can run {ask}."
        return (f"No option meets {ask}; the closest is {closest.spec.id} "
                f"(p99 {units.seconds(closest.sizing.p99_s)} at its largest fleet tried).")
    cost = best.cost.usd_per_month
    price = f"${cost:,.0f}/month" if cost is not None else "price unknown"
    per_1k = f", ${best.usd_per_1k_items:.3g} per 1000 items" if best.usd_per_1k_items is not None else ""
    return (f"For {ask}: {best.sizing.count}× {best.spec.id} ({best.projection.target.backend or 'any backend'}, "
            f"batch {best.projection.target.batch}) — {price}{per_1k}; tier {best.projection.tier.value}.")


def assumptions(plan: Plan) -> list[str]:
    r, t = plan.request, plan.request.terms
    return [
        f"Demand: {r.demand.describe()}; the fleet is sized for the peak plus {r.headroom:.0%} headroom "
        f"({r.sized_rate * 3600:,.0f} items/h), Poisson arrivals, one item per query.",
        f"SLO: p99 ≤ {units.seconds(r.slo_p99_s)} from arrival, by simulating the server scenario's dynamic batcher "
        f"(batches padded to their size, max wait {units.seconds(r.max_wait_s) if r.max_wait_s else '0 s'}) "
        "with all devices of a kind behind one queue.",
        f"Prices: cloud $/h × 730 h where a cloud price exists (--pricing {t.prefer}); otherwise the launch price "
        f"over {t.amortisation_months} months plus energy at ${t.usd_per_kwh:g}/kWh (TDP while busy, "
        f"{IDLE_SHARE:.0%} of it idle). Each price's date is in its row.",
        "Tiers: measured (this hardware ran this configuration), calibrated (a neighbouring configuration "
        "measured on this hardware or its GPU class), roofline (spec sheet with a cited prior efficiency). "
        "Bands widen with distance from a measurement (see the README).",
    ]


def plan_dict(plan: Plan) -> dict[str, Any]:
    """The plan's JSON (DESIGN.md: options[] with hardware, count, tier, capacity, p99, cost, energy, meets_slo)."""
    r = plan.request
    tiers = {o.spec.id: o.projection.tier.value for o in plan.options}
    return {
        "schema_version": PLAN_SCHEMA_VERSION,
        "recommendation": recommendation(plan),
        "request": {
            "workload": r.workload, "size": r.size, "steps": r.steps, "scheduler": r.scheduler,
            "precision": r.precision, "demand": r.demand.text, "demand_peak_items_per_s": r.demand.peak_per_s,
            "demand_mean_items_per_s": r.demand.mean_per_s,
            "demand_hourly": list(r.demand.hourly) if r.demand.hourly else None, "slo_p99_s": r.slo_p99_s,
            "headroom": r.headroom, "sized_items_per_s": r.sized_rate, "usd_per_kwh": r.terms.usd_per_kwh,
            "amortisation_months": r.terms.amortisation_months, "pricing": r.terms.prefer,
            "hardware": list(r.hardware) or None, "batches": list(r.batches), "max_wait_s": r.max_wait_s,
        },
        "options": [option_dict(o) for o in plan.options],
        "excluded": [{"hardware": e.hardware, "reason": e.reason} for e in plan.excluded],
        "assumptions": assumptions(plan),
        "calibrating_runs": list(plan.calibrating_runs),
        "cost_curves": [
            {"hardware": hardware, "tier": tiers[hardware],
             "points": [{"demand_items_per_h": d * 3600, "count": c, "usd_per_month": u} for d, c, u in points]}
            for hardware, points in plan.curves
        ],
    }


def _money(value: float | None) -> str:
    return "—" if value is None else f"${value:,.0f}" if value >= 100 else f"${value:,.2f}"


def _band_text(band: Mapping[str, float] | None, item: str) -> str:
    if band is None:
        return "—"
    return f"{units.rate(band['value'], item)} ({band['low']:.3g}–{band['high']:.3g})"


def plan_rows(data: Mapping[str, Any]) -> Iterable[list[str]]:
    """The ranked table as text cells (terminal and Markdown share them)."""
    for rank, o in enumerate(data["options"], start=1):
        count = "—" if o["count"] is None else str(o["count"])
        band = o["count_band"]
        if o["count"] is not None and (band["low"], band["high"]) != (o["count"], o["count"]):
            count += f" ({band['low'] or '—'}–{band['high'] or '—'})"
        yield [
            str(rank), o["hardware"], o["tier"], f"{o['backend'] or 'any'} b{o['batch']}", count,
            _band_text(o["capacity_items_per_s"], "item"), units.seconds(o["p99_s"]),
            "—" if o["utilisation"] is None else f"{o['utilisation']:.0%}",
            _money(o["usd_per_month"]) + ("" if o["pricing"] is None else f" {o['pricing']}"),
            "—" if o["usd_per_1k_items"] is None else f"${o['usd_per_1k_items']:.3g}",
            "—" if o["j_per_item"] is None else f"{o['j_per_item']:.3g}",
            "—" if o["kw"] is None else f"{o['kw']:.3g}",
            "yes" if o["meets_slo"] else "no",
        ]


PLAN_COLUMNS = ("#", "hardware", "tier", "config", "count", "capacity (band)", "p99", "util", "$/month",
                "$/1k", "J/item", "kW", "meets SLO")


# The terminal shows what decides; the JSON, HTML and Markdown carry every column.
TERMINAL_COLUMNS = ("hardware", "tier", "config", "count", "p99", "$/month", "$/1k", "meets SLO")


def plan_tables(plan: Plan) -> list[Any]:
    """Rich renderables for the terminal: the recommendation, the ranked options, the excluded devices."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    data = plan_dict(plan)
    table = Table(title="plan, cheapest meeting the SLO first", title_justify="left", box=box.SIMPLE_HEAD)
    keep = [PLAN_COLUMNS.index(c) for c in TERMINAL_COLUMNS]
    for column in TERMINAL_COLUMNS:
        table.add_column(column, justify="right" if column in ("count", "p99", "$/1k") else "left",
                         no_wrap=column == "hardware")
    for row in plan_rows(data):
        table.add_row(*(escape(row[i]) for i in keep))
    shown: list[Any] = [escape(data["recommendation"]), table]
    if data["excluded"]:
        excluded = Table(title="excluded", title_justify="left", box=box.SIMPLE_HEAD)
        excluded.add_column("hardware", no_wrap=True)
        excluded.add_column("reason")
        for row in data["excluded"]:
            excluded.add_row(escape(row["hardware"]), escape(row["reason"]))
        shown.append(excluded)
    return shown


def render(plan: Plan, fmt: str | None) -> str:
    """The procurement report as html, md or json text."""
    import json

    data = plan_dict(plan)
    if fmt == "json":
        return json.dumps(data, indent=2, allow_nan=False)
    from .report import render_html, render_markdown

    return render_html(data) if fmt == "html" else render_markdown(data)
