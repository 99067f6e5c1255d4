"""`aigcbench plan -o plan.html|plan.md`: the procurement report, rendered from the plan's JSON dict.

The report reads only the dict `render.plan_dict` makes (the `--json` output),
so a plan saved as JSON renders to the same page later, and the HTML, the
Markdown and the terminal table never disagree: the ranked table's text cells
come from `render.plan_rows`, shared with the terminal.

The HTML page gives the answer first, then the evidence, like the main
report: the recommendation, the ranked options, cost against demand, capacity
bands, the excluded devices, how each option's service time was obtained (the
records that calibrated it, or the cited prior of a spec-sheet projection),
and the assumptions with each price's date. It follows `reports.render`'s
rules: one self-contained file, autoescaped templates, inline SVG charts. On
top of those, every string this page prints has its `http://`/`https://`
scheme removed (`no_scheme`): sources and user catalog notes may hold URLs,
and a report must not carry one, so a source shows as plain text such as
``huggingface.co/docs/diffusers/...``, never as a link.

The Markdown is short enough for a pull-request comment: the recommendation,
the ranked table, the excluded devices and the assumptions; no charts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from markupsafe import Markup

from .. import render, units
from ..report_html import ChartView
from . import charts
from .render import PLAN_COLUMNS, plan_rows

_SCHEME = re.compile(r"https?://", re.I)
# Columns of PLAN_COLUMNS that hold numbers: right-aligned on the page, ---: in Markdown.
_NUMERIC = frozenset({"#", "count", "p99", "util", "$/1k", "J/item", "kW"})


def no_scheme(value: Any) -> Any:
    """`value` with every http(s) scheme removed; markup (the inline SVG charts) stays markup."""
    if isinstance(value, Markup):
        return Markup(_SCHEME.sub("", str(value)))
    return _SCHEME.sub("", value) if isinstance(value, str) else value


def title(data: Mapping[str, Any]) -> str:
    r = data["request"]
    return f"aigcbench plan: {r['workload']} {r['size']} {r['precision']}"


def meets_any(data: Mapping[str, Any]) -> bool:
    return any(o["meets_slo"] for o in data["options"])


@dataclass(frozen=True)
class Cell:
    """One table cell: its text, an optional second line in small type, and its CSS classes."""

    text: str
    sub: str | None = None
    css: str = ""


@dataclass(frozen=True)
class OptionRow:
    css: str  # "" or "miss" (does not meet the SLO: muted)
    cells: tuple[Cell, ...]


def _meets_text(option: Mapping[str, Any]) -> str:
    return "yes" if option["meets_slo"] else "no" + (f": {option['reason']}" if option["reason"] else "")


def option_row(option: Mapping[str, Any], texts: Sequence[str], slo_s: float | None) -> OptionRow:
    """`plan_rows`' text cells for one option, with what only the page shows: name, tier badge, price origin."""
    cells = []
    for column, text in zip(PLAN_COLUMNS, texts):
        css = "num" if column in _NUMERIC else ""
        sub = None
        if column == "hardware":
            sub = option["name"]
        elif column == "tier":
            css = f"tier tier-{option['tier']}"
        elif column == "p99":
            within = option["p99_s"] is not None and slo_s is not None and option["p99_s"] <= slo_s
            css += " good" if within else " bad"
            sub = f"SLO\u00a0{units.seconds(slo_s)}"  # no-break space: the cell is as narrow as its number
        elif column == "$/month":
            sub = f"price of {option['price_from']}" if option["price_from"] else None
        elif column == "meets SLO":
            text, css = _meets_text(option), "wrap " + ("good" if option["meets_slo"] else "bad")
        cells.append(Cell(text, sub, css.strip()))
    return OptionRow("" if option["meets_slo"] else "miss", tuple(cells))


def _band_s(band: Mapping[str, float] | None) -> str:
    if band is None:
        return "—"
    return f"{units.seconds(band['value'])} ({units.seconds(band['low'])}–{units.seconds(band['high'])})"


def _prior_lines(prior: Mapping[str, Any]) -> list[str]:
    # A fallback prior borrows another (kind, precision)'s timings, widened: its `basis` says which.
    fallback = " — a fallback: no public timing for this kind and precision" if prior.get("fallback") else ""
    return [f"prior efficiency for {prior['kind']} {prior['precision']}: {prior['efficiency']:.3g} "
            f"(band {prior['low']:.3g}–{prior['high']:.3g}){fallback}",
            f"basis: {prior['basis']}"]


@dataclass(frozen=True)
class EvidenceView:
    """How one option's service time was obtained, in sentences."""

    rank: int
    hardware: str
    tier: str
    facts: tuple[str, ...]
    runs: tuple[str, ...]  # the records that calibrated it (measured, calibrated tiers)
    sources: tuple[str, ...]  # the prior's citations (roofline tier)


def evidence_view(rank: int, option: Mapping[str, Any]) -> EvidenceView:
    efficiency = option["efficiency"]
    facts = [
        f"service time of one batch of {option['batch']} on {option['backend'] or 'any backend'}: "
        f"{_band_s(option['service_time_s'])}",
        f"roofline time {units.seconds(option['roofline_s'])}; efficiency (roofline / service time) "
        + ("—" if efficiency is None else f"{efficiency:.3g}")
        + ("" if option["distance"] is None else f"; distance from the nearest measurement {option['distance']:.3g}"),
    ]
    loop = option.get("open_loop_factor")
    if loop is not None:
        facts.append(f"service times × {loop:.3g}: how much slower this hardware's batches ran served in open loop "
                     "(a server record) than back to back")
    prior = option.get("prior")
    if prior:
        facts += _prior_lines(prior)
    elif not option["evidence"]:
        facts.append("no record names this projection's evidence")
    return EvidenceView(rank, option["hardware"], option["tier"], tuple(facts), tuple(option["evidence"]),
                        tuple(prior["sources"]) if prior else ())


@dataclass(frozen=True)
class PriceRow:
    hardware: str
    pricing: str
    cloud: str
    launch: str
    tdp: str
    borrowed: str
    date: str
    sources: tuple[str, ...]


def price_row(option: Mapping[str, Any]) -> PriceRow:
    def money(value: float | None, fmt: str) -> str:
        return "—" if value is None else fmt.format(value)

    return PriceRow(option["hardware"], option["pricing"] or "no price",
                    money(option["cloud_usd_per_hour"], "${:.3g}/h"), money(option["launch_price_usd"], "${:,.0f}"),
                    money(option["tdp_w"], "{:.0f} W"),
                    option["price_from"] or "—", option["price_source_date"] or "—", tuple(option["sources"]))


def _per_h(per_s: float) -> str:
    return f"{per_s * 3600:,.0f} items/h" if per_s * 3600 >= 10 else f"{per_s * 3600:.3g} items/h"


def request_facts(data: Mapping[str, Any]) -> list[str]:
    """The request in a few phrases, for the page's header."""
    r = data["request"]
    wait = "0s" if r["max_wait_s"] == 0 else units.seconds(r["max_wait_s"])  # units.seconds(0) reads "0ns"
    facts = [f"demand {r['demand']} (peak {_per_h(r['demand_peak_items_per_s'])}, "
             f"mean {_per_h(r['demand_mean_items_per_s'])}" + (", hourly profile" if r["demand_hourly"] else "") + ")",
             f"sized for {_per_h(r['sized_items_per_s'])} ({r['headroom']:.0%} headroom)",
             f"p99 ≤ {units.seconds(r['slo_p99_s'])}",
             f"batches tried {', '.join(map(str, r['batches']))}, max wait {wait}"]
    if r["steps"] is not None or r["scheduler"]:
        facts.append(" ".join(p for p in (f"{r['steps']} steps" if r["steps"] is not None else "",
                                           r["scheduler"] or "") if p))
    if r["hardware"]:
        facts.append(f"hardware {', '.join(r['hardware'])}")
    return facts


def terms(data: Mapping[str, Any]) -> list[str]:
    r = data["request"]
    return [f"pricing preference: {r['pricing']}", f"energy at ${r['usd_per_kwh']:g}/kWh",
            f"purchase prices amortised over {r['amortisation_months']} months",
            f"headroom {r['headroom']:.0%} over the peak"]


def render_html(data: dict, generated_at: str | None = None) -> str:
    """The procurement page as one self-contained HTML document."""
    env = render.environment()
    env.finalize = no_scheme  # the no-URL rule, for every string the template prints
    slo = data["request"]["slo_p99_s"]
    rows = [option_row(o, texts, slo) for o, texts in zip(data["options"], plan_rows(data))]
    views = [ChartView(c.title, render.svg(c.figure) if c.figure is not None else None, c.note)
             for c in charts.for_plan(data)]
    return env.get_template("plan.html.j2").render(
        data=data, title=title(data), meets_any=meets_any(data), request_facts=request_facts(data),
        headers=PLAN_COLUMNS, numeric=_NUMERIC, rows=rows, charts=views,
        evidence=[evidence_view(i, o) for i, o in enumerate(data["options"], start=1)],
        prices=[price_row(o) for o in data["options"]], terms=terms(data), generated_at=generated_at)


def _md_table(data: Mapping[str, Any]) -> list[str]:
    lines = ["| " + " | ".join(render.md(h) for h in PLAN_COLUMNS) + " |",
             "|" + "|".join("---:" if c in _NUMERIC else "---" for c in PLAN_COLUMNS) + "|"]
    for option, texts in zip(data["options"], plan_rows(data)):
        cells = [render.md(_meets_text(option) if c == "meets SLO" else t) for c, t in zip(PLAN_COLUMNS, texts)]
        if option["meets_slo"] and option is data["options"][0]:
            cells[1] = f"**{cells[1]}**"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(data: dict) -> str:
    """The plan as GitHub-flavoured Markdown: answer, ranked table, excluded, assumptions."""
    answer = render.md(data["recommendation"])
    lines = [f"## {render.md(title(data))}", "", f"**{answer}**",
             "", " · ".join(render.md(f) for f in request_facts(data)), "", *_md_table(data), ""]
    if data["excluded"]:
        lines += ["### Excluded", "", *(f"- {render.md(e['hardware'])}: {render.md(e['reason'])}"
                                        for e in data["excluded"]), ""]
    lines += ["### Assumptions", "", *(f"- {render.md(a)}" for a in data["assumptions"]), "",
              "Charts, evidence and each price's date: the HTML report (`-o plan.html`).", ""]
    return "\n".join(lines)
