"""Prior efficiencies: every catalog (kind, precision) has one, each cited and inside (0, 1], fallbacks follow the stated rule, and the derivation reruns to the stored numbers."""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from aigcbench.reports.plan.priors import Prior, load_priors, prior

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "plan" / "derive_priors.py"
DATA = resources.files("aigcbench.reports.plan").joinpath("data")
PEAKS = {"fp32": "fp32_tflops", "tf32": "tf32_tflops", "fp16": "fp16_tflops",
         "bf16": "bf16_tflops", "int8": "int8_tops", "fp8": "fp8_tflops"}


def _derive():
    """examples/plan/derive_priors.py as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("derive_priors", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _catalog_pairs() -> set[tuple[str, str]]:
    catalog = pd.read_csv(io.StringIO(DATA.joinpath("hardware.csv").read_text()))
    return {(row["kind"], p) for _, row in catalog.iterrows() for p, col in PEAKS.items() if pd.notna(row[col])}


def _document() -> dict:
    return tomllib.loads(DATA.joinpath("priors.toml").read_text())


def test_every_catalog_kind_and_precision_has_a_prior() -> None:
    priors = load_priors()
    pairs = _catalog_pairs()
    assert {"gpu", "cpu", "tpu", "fpga"} <= {kind for kind, _ in pairs}
    assert pairs <= set(priors)
    assert all(isinstance(p, Prior) and (p.kind, p.precision) == key for key, p in priors.items())


def test_priors_are_cited_and_inside_the_unit_interval() -> None:
    for p in load_priors().values():
        assert 0 < p.low <= p.efficiency <= p.high <= 1, p
        assert p.efficiency < 1, f"{p.kind} {p.precision}: a silent 100 %"
        assert len(p.sources) >= 1 and all(p.sources), p
        assert p.basis
    measured = {k for k, p in load_priors().items() if not p.fallback}
    # The kinds the public record covers: fp16, tf32 and fp32 GPUs, AMX CPUs, TPUs, Gaudi, Apple.
    assert {("gpu", "fp16"), ("gpu", "tf32"), ("gpu", "fp32"), ("cpu", "fp32"), ("cpu", "bf16"), ("tpu", "bf16")} <= measured


def test_fallbacks_follow_the_stated_rule() -> None:
    """The most conservative measured prior of the same kind (else of any), band widened by the TOML's factor."""
    widen = _document()["rule"]["fallback_widen"]
    priors = load_priors()
    measured = {k: p for k, p in priors.items() if not p.fallback}
    fallbacks = [p for p in priors.values() if p.fallback]
    assert fallbacks, "the catalog has kinds without public timings (fpga int8 at least)"
    for p in fallbacks:
        donors = [m for k, m in measured.items() if k[0] == p.kind] or list(measured.values())
        donor = min(donors, key=lambda m: m.efficiency)
        # The TOML stores 6 significant digits.
        assert p.efficiency == pytest.approx(donor.efficiency, rel=1e-5)
        assert p.low == pytest.approx(donor.low / widen, rel=1e-5)
        assert p.high == pytest.approx(min(1.0, donor.high * widen), rel=1e-5)
        assert p.sources == donor.sources and "FALLBACK" in p.basis


def test_unknown_pair_gets_the_documented_default_and_never_fails() -> None:
    got = prior("fpga", "fp16")
    assert (got.kind, got.precision, got.fallback) == ("fpga", "fp16", True)
    assert "fpga fp16" in got.basis and got.sources
    measured = [p for p in load_priors().values() if not p.fallback]
    assert got.efficiency == pytest.approx(min(p.efficiency for p in measured), rel=1e-5)
    assert got.low < min(p.low for p in measured)  # wider than any measured band
    assert prior("gpu", "fp16") == load_priors()[("gpu", "fp16")]


def test_efficiency_is_roofline_time_over_measured_time_in_every_unit() -> None:
    derive = _derive()
    flops = {"m": {"unet_step": 2e12, "text": 1e10, "vae": 3e12}}
    image = 10 * 2e12 + 1e10 + 3e12
    peak = 100e12
    rows = {
        "it/s": (dict(unit="it/s", value=5.0, batch=4), 4 * 2e12 / peak / (1 / 5.0)),
        "s/it": (dict(unit="s/it", value=0.5, batch=4), 4 * 2e12 / peak / 0.5),
        "s/batch": (dict(unit="s/batch", value=3.0, batch=2, devices=2), 2 * image / (2 * peak) / 3.0),
        "images/s": (dict(unit="images/s", value=8.0, devices=8), image / peak / 1.0),
    }
    for unit, (row, expected) in rows.items():
        got = derive.efficiency({"id": unit, "model": "m", "steps": 10} | row, flops, peak)
        assert got == pytest.approx(expected), unit


def test_check_reports_a_tampered_number() -> None:
    derive = _derive()
    flops = {"m": {"unet_step": 1.0, "text": 2.0, "vae": 3.0}}
    table = pd.DataFrame([{"id": "s/d/b1", "efficiency": 0.25}])
    priors = {("gpu", "fp16"): {"efficiency": 0.25, "low": 0.2, "high": 0.3}}
    stored = {"derived": {"flops": {"m": dict(flops["m"])}, "efficiency": {"s/d/b1": 0.25}},
              "prior": {"gpu": {"fp16": dict(priors[("gpu", "fp16")])}}}
    assert derive.differences(stored, flops, table, priors, 0.005) == []
    stored["derived"]["efficiency"]["s/d/b1"] = 0.2513  # 0.52 % off
    assert any("s/d/b1" in line for line in derive.differences(stored, flops, table, priors, 0.005))
    del stored["prior"]["gpu"]["fp16"]
    assert any("gpu fp16" in line for line in derive.differences(stored, flops, table, priors, 0.005))


def test_derive_priors_check_reproduces_the_stored_numbers() -> None:
    """Counts the models' FLOPs on the meta device and recomputes every efficiency from the cited timings."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gpu" in done.stdout and "fp16" in done.stdout
