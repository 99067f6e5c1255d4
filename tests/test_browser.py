"""The HTML report in a real headless Chromium: it renders, runs nothing, and reads on a phone.

Playwright drives Debian's /usr/bin/chromium (it never downloads a browser).
Screenshots at 1280 px and 390 px go to $AIGCBENCH_ARTIFACTS (default: the
test's tmp folder) for a person to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.store import Store
from tests.records import synthetic_record

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs Debian's chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


def _report(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    records = [
        synthetic_record(rng.normal(0.020, 0.001, 200), backend="pytorch", hardware_key=SCRIPT),
        synthetic_record(rng.normal(0.010, 0.0005, 200), backend="openvino", labels={"note": SCRIPT}),
        synthetic_record(rng.normal(0.020, 0.001, 200), backend="pytorch"),
        synthetic_record(rng.normal(0.004, 0.0005, 200), backend="tensorrt", status="invalid", fidelity_error=0.5),
        synthetic_record([], backend="torch_compile", status="failed"),
        *(synthetic_record(rng.normal(0.01 * (1 + 0.5 * b), 0.0005, 60), backend=be, scenario="throughput",
                           batch_size=b) for b in (1, 2, 4) for be in ("pytorch", "openvino")),
    ]
    with Store.open(str(tmp_path / "s.db")) as store:
        for r in records:
            store.append(r)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--store", str(tmp_path / "s.db"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_renders_in_chromium(tmp_path: Path, chromium) -> None:
    html = _report(tmp_path)
    artifacts = Path(os.environ.get("AIGCBENCH_ARTIFACTS") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    dialogs: list[str] = []
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(html.resolve().as_uri())
    boxes = [svg.bounding_box() for svg in page.query_selector_all("svg")]
    assert len(boxes) >= 4
    assert all(b is not None and b["width"] > 0 and b["height"] > 0 for b in boxes), boxes
    assert SCRIPT in page.inner_text("body")
    wide = artifacts / "report-1280.png"
    page.screenshot(path=str(wide), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px at 390px"
    narrow = artifacts / "report-390.png"
    page.screenshot(path=str(narrow), full_page=True)
    print(f"screenshots: {wide} {narrow}")
    assert not errors and not dialogs, (errors, dialogs)
