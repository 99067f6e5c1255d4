"""The procurement report (`aigcbench plan -o plan.html|plan.md`), rendered from a hand-written plan dict.

tests/data/plan-example.json follows the plan JSON's schema: six options over
all three tiers, cloud and purchase prices, a borrowed price, an option with no
price, one that cannot meet the SLO, three excluded devices, sources with URLs.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from aigcbench.reports.plan import charts
from aigcbench.reports.plan.report import render_html, render_markdown
from tests.test_browser import chromium  # noqa: F401  (the fixture: skipped without /usr/bin/chromium or playwright)

EXAMPLE = Path(__file__).parent / "data" / "plan-example.json"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def plan() -> dict:
    return json.loads(EXAMPLE.read_text(encoding="utf-8"))


def _no_url(text: str) -> None:
    assert not re.search(r"https?://", text, re.I), re.search(r".{40}https?://.{40}", text, re.I)


def test_html_has_answer_first_every_option_and_two_charts(plan: dict) -> None:
    html = render_html(plan, generated_at="2025-12-02 00:00 UTC")
    assert html.startswith("<!DOCTYPE html>")
    assert "aigcbench plan: ddpm base fp32" in html
    answer = html.index(f'<li class="win">{plan["recommendation"]}</li>')
    assert answer < html.index("<table") < html.index("<svg") < html.index('id="evidence"') < html.index(
        'id="assumptions"')
    for option in plan["options"]:
        assert option["hardware"] in html and option["name"] in html
    for excluded in plan["excluded"]:
        assert excluded["reason"] in html
    assert html.count("<svg") == 2
    assert "price of amd-epyc-zen4-2vcpu-vm" in html and "launch 2022-10-12" in html
    assert "3f9c2a7e-h200-ddpm-base-trt-b4" in html  # the calibrated option's evidence
    assert "generated 2025-12-02 00:00 UTC" in html
    _no_url(html)


def test_sources_are_text_without_scheme_never_links(plan: dict) -> None:
    html = render_html(plan)
    assert any(s.startswith("https://huggingface.co/") for s in plan["options"][0]["prior"]["sources"])
    assert "<li>huggingface.co/docs/diffusers/v0.14.0/en/optimization/torch2.0</li>" in html
    assert "huggingface/diffusers@" in html  # repo@commit:path sources as they are
    assert not re.search(r"<a[\s>]", html) and not re.search(r'href="(?!#)', html)  # only the charts' own #ids
    _no_url(html)


def test_every_user_string_is_escaped(plan: dict) -> None:
    hostile = copy.deepcopy(plan)
    hostile["options"][0]["name"] = SCRIPT
    hostile["options"][1]["hardware"] = SCRIPT
    hostile["cost_curves"][1]["hardware"] = SCRIPT
    hostile["cost_curves"][0]["hardware"] = "team $1 and $2"  # a $...$ pair in chart text must stay text
    hostile["options"][5]["reason"] = SCRIPT
    hostile["options"][3]["evidence"] = [SCRIPT]
    hostile["options"][0]["prior"]["sources"].append(f"https://example.org/{SCRIPT}")
    hostile["excluded"][0]["reason"] = SCRIPT
    hostile["assumptions"].append(SCRIPT)
    hostile["recommendation"] = SCRIPT
    html = render_html(hostile)
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;") >= 8
    assert ">team $1 and $2 (roofline)</text>" in html  # one plain text element: not typeset as mathtext
    _no_url(html)


def test_no_option_meeting_the_slo_is_styled_none(plan: dict) -> None:
    for option in plan["options"]:
        option["meets_slo"], option["reason"] = False, "p99 7.2s at 64 devices, the largest fleet tried"
    plan["recommendation"] = "No option meets ddpm base fp32 at 2000/h, p99 ≤ 5s; the closest is nvidia-l4."
    html = render_html(plan)
    assert f'<li class="none">{plan["recommendation"]}</li>' in html
    assert 'class="win"' not in html
    assert html.count('<tr class="miss">') == len(plan["options"])


def test_cost_chart_skipped_without_prices(plan: dict) -> None:
    for curve in plan["cost_curves"]:
        for point in curve["points"]:
            point["usd_per_month"] = None
    html = render_html(plan)
    assert html.count("<svg") == 1
    assert "skipped: no option has a price to chart" in html


def test_pick_changes_where_lines_cross() -> None:
    def curve(hardware: str, costs: list[float | None]) -> dict:
        return {"hardware": hardware, "tier": "roofline", "points": [
            {"demand_items_per_h": d, "count": 1, "usd_per_month": c} for d, c in zip((100, 1000, 10000), costs)]}

    curves = [curve("nvidia-t4", [384, 768, 7680]), curve("nvidia-l4", [588, 588, 2940]),
              curve("no-price", [None, None, None])]
    assert charts.pick_changes(curves) == [(100, 100, "nvidia-t4"), (1000, 10000, "nvidia-l4")]
    chart = charts.cost_against_demand({"options": [{}] * 3, "cost_curves": curves, "request": {}})
    assert "pick changes" in chart.note and "nvidia-l4 from 1k items/h" in chart.note
    assert "1 option(s) without a price" in chart.note


def test_markdown_has_the_table_one_row_per_option_and_escapes_pipes(plan: dict) -> None:
    plan["options"][2]["hardware"] = "team|t4"
    text = render_markdown(plan)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| # | hardware | tier |"))
    rows = [line for line in lines[header + 2:] if line.startswith("|")]
    assert len(rows) == len(plan["options"])
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 14 for row in rows)  # 13 cells: an escaped | splits none
    assert r"team\|t4" in text
    assert plan["recommendation"] in text
    assert "one batch takes 14.2s" in text  # the reason of the option that misses the SLO
    assert all(f"- {e['hardware']}" in text for e in plan["excluded"])
    assert "### Assumptions" in text and "<svg" not in text


def test_markdown_escapes_markup(plan: dict) -> None:
    plan["excluded"][0]["reason"] = SCRIPT
    text = render_markdown(plan)
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_plan_page_in_chromium(tmp_path: Path, plan: dict, chromium) -> None:  # noqa: F811
    page_file = tmp_path / "plan.html"
    page_file.write_text(render_html(plan, generated_at="2025-12-02"), encoding="utf-8")
    artifacts = Path(os.environ.get("AIGCBENCH_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(page_file.resolve().as_uri())
    assert page.locator("table").first.is_visible()
    boxes = [svg.bounding_box() for svg in page.query_selector_all("svg")]
    assert len(boxes) == 2 and all(b is not None and b["width"] > 0 and b["height"] > 0 for b in boxes), boxes
    page.screenshot(path=str(artifacts / "plan-1280.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at 390px"
    assert page.locator("table").first.is_visible()
    page.screenshot(path=str(artifacts / "plan-390.png"), full_page=True)
    assert not errors, errors


def test_open_loop_factor_is_stated_in_the_evidence() -> None:
    data = json.loads(EXAMPLE.read_text())
    data["options"][0]["open_loop_factor"] = 1.37
    assert "service times × 1.37" in render_html(data)
    assert "service times ×" not in render_html(json.loads(EXAMPLE.read_text()))
