"""The procurement report's charts, drawn from the plan's JSON dict (never from planner objects).

Two charts, each a `reports.charts.Chart` (title, matplotlib `Figure` or None,
a note that becomes the figcaption):

* `cost_against_demand`: $/month against demand per device, log–log, one line
  per priced option from `cost_curves`, through the demands the planner sized
  a fleet for (between two of them the count, a whole number, is not known, so
  the line is the log–log interpolation `pick_changes` reads too). Where two
  lines cross, the cheaper of the two changes; the caption names the cheapest
  option over each stretch of the charted demand.
* `capacity_bands`: each option's fleet capacity under the SLO with its
  low–high band, against the rate the fleet was sized for.

Figures are built with `Figure` directly, never pyplot (see `reports.render`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from .. import units
from ..charts import WIDTH_IN, Chart

TIER_COLOURS = {"measured": "#1d7a3a", "calibrated": "#1f5fa8", "roofline": "#d9822b"}
TIER_STYLES = {"measured": "-", "calibrated": "--", "roofline": ":"}
_OTHER = "#777777"
_COUNT_TICKS = FuncFormatter(lambda value, _pos: units.count(value))


def label(text: Any) -> str:
    """A user string as literal chart text: an unescaped `$...$` pair would be typeset as mathtext."""
    return str(text).replace("$", r"\$")


def _priced(curve: Mapping[str, Any]) -> list[tuple[float, float]]:
    return sorted((float(p["demand_items_per_h"]), float(p["usd_per_month"])) for p in curve.get("points") or []
                  if p.get("usd_per_month") is not None and p.get("demand_items_per_h"))


def pick_changes(curves: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, str]]:
    """The cheapest option over each stretch of demand: (from items/h, to items/h, hardware), in demand order.

    Each curve is read at every demand any curve was evaluated at, between
    its own first and last point (interpolated in log–log space, as drawn);
    outside that range a curve does not compete.
    """
    series = {c["hardware"]: _priced(c) for c in curves}
    series = {k: v for k, v in series.items() if v}
    demands = sorted({d for points in series.values() for d, _ in points})
    runs: list[tuple[float, float, str]] = []
    for demand in demands:
        costs = {}
        for hardware, points in series.items():
            d, usd = np.log([p[0] for p in points]), np.log([p[1] for p in points])
            if d[0] <= np.log(demand) <= d[-1]:
                costs[hardware] = float(np.exp(np.interp(np.log(demand), d, usd)))
        best = min(costs, key=lambda h: (costs[h], h))
        if runs and runs[-1][2] == best:
            runs[-1] = (runs[-1][0], demand, best)
        else:
            runs.append((demand, demand, best))
    return runs


def _pick_note(runs: list[tuple[float, float, str]]) -> str:
    per_h = "items/h"
    if not runs:
        return ""
    if len(runs) == 1:
        low, high, best = runs[0]
        return (f"{best} is the cheapest at every charted demand ({units.count(low)}–{units.count(high)} {per_h}); "
                "where two lines cross, the cheaper of those two changes.")
    stretches = "; ".join(f"{best} from {units.count(low)} {per_h}" for low, _high, best in runs)
    return f"Where lines cross the pick changes. Cheapest as demand grows: {stretches}."


def cost_against_demand(data: Mapping[str, Any]) -> Chart:
    """$/month against items/h, one line per priced option; the request's peak demand as a vertical line."""
    title = "Cost against demand per device"
    curves = [c for c in data.get("cost_curves") or [] if _priced(c)]
    if not curves:
        return Chart(title, note="skipped: no option has a price to chart")
    fig = Figure(figsize=(WIDTH_IN, 3.8), layout="constrained")
    ax = fig.add_subplot()
    colours = [f"C{i % 10}" for i in range(len(curves))]  # by device; the line style tells the tier
    for colour, curve in zip(colours, curves):
        points = _priced(curve)
        ax.plot([d for d, _ in points], [u for _, u in points], color=colour,
                linestyle=TIER_STYLES.get(curve.get("tier"), "-"), marker=".", linewidth=1.6,
                label=label(f"{curve['hardware']} ({curve.get('tier') or 'tier unknown'})"))
    peak = (data.get("request") or {}).get("demand_peak_items_per_s")
    if peak:
        ax.axvline(peak * 3600, color="#333333", linestyle="--", linewidth=1,
                   label=f"requested peak {units.count(peak * 3600)} items/h")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(_COUNT_TICKS)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: "\\$" + units.count(value)))
    ax.set_xlabel("demand (items/h, peak hour)")
    ax.set_ylabel(r"fleet cost (\$/month)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    skipped = len(data.get("options") or []) - len(curves)
    note = _pick_note(pick_changes(curves)) + (f" {skipped} option(s) without a price are not drawn." if skipped > 0
                                               else "")
    return Chart(title, fig, note.strip())


def _capacity_rows(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [o for o in data.get("options") or [] if o.get("capacity_items_per_s")]


def capacity_bands(data: Mapping[str, Any]) -> Chart:
    """Each option's fleet capacity under the SLO (bar) with its low–high band (error bar), best ranked on top."""
    title = "Capacity under the SLO, with bands"
    rows = _capacity_rows(data)
    if not rows:
        return Chart(title, note="skipped: no option has a capacity under the SLO")
    shown = list(reversed(rows))
    bands = [o["capacity_items_per_s"] for o in shown]
    values = np.array([b["value"] for b in bands], dtype=float)
    errors = np.clip([values - [b["low"] for b in bands], [b["high"] for b in bands] - values], 0, None)
    fig = Figure(figsize=(WIDTH_IN, 1.2 + 0.34 * max(len(shown), 2)), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh(range(len(shown)), values, xerr=errors, capsize=3, error_kw={"elinewidth": 1},
                   color=[TIER_COLOURS.get(o.get("tier"), _OTHER) for o in shown])
    for bar, option in zip(bars, shown):
        if not option.get("meets_slo"):
            bar.set_hatch("//")  # per bar: a list of hatches needs a newer matplotlib than pyproject allows
    ax.set_yticks(range(len(shown)), [label(f"{o['hardware']} ×{o['count']}") for o in shown])
    sized = (data.get("request") or {}).get("sized_items_per_s")
    handles = [Patch(color=colour, label=tier) for tier, colour in TIER_COLOURS.items()
               if any(o.get("tier") == tier for o in shown)]
    if sized:
        ax.axvline(sized, color="#333333", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="#333333", linestyle="--", label=f"sized for {units.count(sized)} items/s"))
    positive = np.concatenate([values, [b["low"] for b in bands], [b["high"] for b in bands]])
    positive = positive[positive > 0]
    if positive.size and positive.max() / positive.min() > 30:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_COUNT_TICKS)
    ax.set_xlabel("fleet capacity at p99 ≤ SLO (items/s); bar: projection, whiskers: band")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    hatched = " Hatched: the fleet does not meet the SLO." if not all(o.get("meets_slo") for o in shown) else ""
    return Chart(title, fig, f"Colour: the tier of the service-time projection.{hatched}")


def for_plan(data: Mapping[str, Any]) -> list[Chart]:
    """Both charts, in the report's order."""
    return [cost_against_demand(data), capacity_bands(data)]
