"""The planner's rules, each against numbers worked out by hand: tiers and bands, demand, prices."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from aigcbench.bench.errors import UserError
from aigcbench.reports.plan import calibration as cal
from aigcbench.reports.plan.demand import HOURS_PER_MONTH, parse_demand
from aigcbench.reports.plan.evidence import Observation, observe
from aigcbench.reports.plan.pricing import IDLE_SHARE, PriceTerms, fleet_cost, joules_per_item, usd_per_1k
from aigcbench.reports.plan.priors import prior
from tests.records import synthetic_record


def observation(batch: int = 1, median: float = 0.1, n: int = 41, **changes: object) -> Observation:
    fields = dict(run_id=f"run-b{batch}", cell=f"cell-b{batch}", hardware="host-2c", device="cpu", backend="pytorch",
                  precision="fp32", precision_run="fp32", batch=batch, workload="ddpm", family="diffusion",
                  size="base", steps=50, scheduler="ddpm", service_s=tuple(median * (1 + (i - n // 2) / (10 * n))
                                                                          for i in range(n)),
                  throughput=batch / median, created_at="2026-12-01T00:00:00+00:00")
    fields.update(changes)
    return Observation(**fields)  # type: ignore[arg-type]


def target(batch: int = 1, **changes: object) -> cal.Target:
    fields = dict(workload="ddpm", family="diffusion", size="base", steps=50, scheduler="ddpm", precision="fp32",
                  batch=batch)
    fields.update(changes)
    return cal.Target(**fields)  # type: ignore[arg-type]


def test_observe_reads_closed_loop_ok_records_only() -> None:
    ok = synthetic_record([0.01, 0.02, 0.03])
    assert observe(ok) is not None and observe(ok).median_s == 0.02
    assert observe(synthetic_record([0.01], status="invalid", reason="fidelity")) is None
    assert observe(synthetic_record([0.01], scenario="server")) is None


def test_exact_configuration_is_measured_with_the_median_ci_as_band() -> None:
    seen = observation()
    made = cal.measured("host-2c", target(), [seen])
    assert made is not None and made.tier is cal.Tier.MEASURED and made.distance == 0
    assert made.service_s == seen.service_s and made.median_s == seen.median_s
    assert made.low_s < made.median_s < made.high_s
    # The samples spread ±5 % around the median: the CI lies inside, the ±2 % floor does not bind.
    assert made.low_s >= min(seen.service_s) and made.high_s <= max(seen.service_s)


def test_measured_band_never_narrower_than_two_percent() -> None:
    steady = observation(service_s=(0.1,) * 30)
    made = cal.measured("host-2c", target(), [steady])
    assert made.low_s == pytest.approx(0.1 * (1 - cal.BAND_FLOOR))
    assert made.high_s == pytest.approx(0.1 * (1 + cal.BAND_FLOOR))


def test_other_batch_is_calibrated_by_the_efficiency_with_a_band_that_widens_per_step() -> None:
    seen = observation(batch=1, median=0.1)
    # Roofline of the measured batch 0.05 s -> efficiency 0.5; target roofline 0.08 s -> 0.16 s.
    efficiency = cal.Efficiency(seen, 0.05 / seen.median_s)
    made = cal.calibrated("host-2c", target(batch=2), 0.08, [efficiency])
    assert made is not None and made.tier is cal.Tier.CALIBRATED and made.distance == 1
    assert made.efficiency == pytest.approx(0.5)
    assert made.median_s == pytest.approx(0.16)
    width = cal.MIN_SPREAD + cal.WIDENING_PER_STEP * 1
    assert made.low_s == pytest.approx(0.16 * math.exp(-width))
    assert made.high_s == pytest.approx(0.16 * math.exp(width))
    # The measured shape, scaled: the projected tail is the measured tail, relatively.
    assert max(made.service_s) / made.median_s == pytest.approx(max(seen.service_s) / seen.median_s)


def test_distance_weights_and_class_step() -> None:
    seen = observation()
    assert cal.distance(seen, target()) == 0
    assert cal.distance(seen, target(batch=4)) == 1
    assert cal.distance(seen, target(size="large")) == 2
    assert cal.distance(seen, target(precision="bf16")) == 2
    # A field the target leaves open (no steps for a one-shot workload, any backend) is not a difference.
    assert cal.distance(seen, target(workload="other", steps=None, scheduler=None)) == 3
    assert cal.distance(seen, target(backend="onnxruntime", batch=2)) == 2 + 1
    here = cal.calibrated("gpu", target(batch=2), 0.08, [cal.Efficiency(seen, 0.5)])
    away = cal.calibrated("gpu", target(batch=2), 0.08, [cal.Efficiency(seen, 0.5, via_class=True)])
    assert away.distance == here.distance + cal.CLASS_DISTANCE
    assert away.high_s / away.low_s > here.high_s / here.low_s


def test_spread_of_efficiencies_widens_the_band() -> None:
    a, b = observation(run_id="a", cell="a"), observation(run_id="b", cell="b")
    tight = cal.calibrated("h", target(batch=2), 0.08, [cal.Efficiency(a, 0.5), cal.Efficiency(b, 0.5)])
    loose = cal.calibrated("h", target(batch=2), 0.08, [cal.Efficiency(a, 0.4), cal.Efficiency(b, 0.6)])
    assert loose.high_s / loose.low_s > tight.high_s / tight.low_s
    assert set(loose.evidence) == {"a", "b"}


def test_nearest_measurements_win() -> None:
    near = observation(batch=2, run_id="near", cell="near")
    far = observation(batch=1, size="tiny", run_id="far", cell="far")
    made = cal.calibrated("h", target(batch=4), 0.1, [cal.Efficiency(near, 0.5), cal.Efficiency(far, 0.1)])
    assert made.evidence == ("near",) and made.efficiency == 0.5


def test_spec_sheet_only_is_roofline_with_the_cited_prior() -> None:
    chosen = prior("gpu", "fp16")
    made = cal.from_roofline("nvidia-l4", "gpu", target(precision="fp16"), 0.01)
    assert made.tier is cal.Tier.ROOFLINE and made.prior == chosen
    assert made.median_s == pytest.approx(0.01 / chosen.efficiency)
    assert made.low_s == pytest.approx(0.01 / chosen.high) and made.high_s == pytest.approx(0.01 / chosen.low)
    assert chosen.efficiency < 1  # never a silent 100 %


def test_project_prefers_measured_then_calibrated_then_roofline() -> None:
    seen = observation()
    efficiency = [cal.Efficiency(seen, 0.5)]
    assert cal.project("h", "cpu", target(), 0.05, [seen], efficiency).tier is cal.Tier.MEASURED
    assert cal.project("h", "cpu", target(batch=2), 0.05, [seen], efficiency).tier is cal.Tier.CALIBRATED
    assert cal.project("h", "cpu", target(batch=2), 0.05, [], []).tier is cal.Tier.ROOFLINE
    assert cal.project("h", "cpu", target(batch=2), None, [], []) is None


# ----------------------------------------------------------------------------- demand

def test_demand_rate_and_profile(tmp_path: Path) -> None:
    steady = parse_demand("20000/h")
    assert steady.peak_per_s == pytest.approx(20000 / 3600) and steady.mean_per_s == steady.peak_per_s
    profile = tmp_path / "day.csv"
    hours = [1000] * 12 + [3000] * 12
    profile.write_text("hour,items\n" + "".join(f"{h},{v}\n" for h, v in enumerate(hours)))
    day = parse_demand(str(profile))
    assert day.peak_per_s == pytest.approx(3000 / 3600)
    assert day.mean_per_s == pytest.approx(2000 / 3600)
    assert day.items_per_month == pytest.approx(2000 * HOURS_PER_MONTH)


@pytest.mark.parametrize("text, message", [
    ("0/h", "rate > 0"), ("-5/s", "expected a rate"), ("fast", "expected a rate"), ("20000/week", "expected a rate"),
])
def test_bad_demand_rates(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_demand(text)


@pytest.mark.parametrize("rows, message", [
    (["5"] * 23, "24 hourly rows"), (["5"] * 23 + ["-1"], "must be ≥ 0"), (["5"] * 23 + ["x"], "line 24"),
    (["0"] * 24, "every hour"),
])
def test_bad_profiles(tmp_path: Path, rows: list[str], message: str) -> None:
    path = tmp_path / "profile.txt"
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(UserError, match=message):
        parse_demand(str(path))


# ----------------------------------------------------------------------------- prices

def test_cloud_price_is_per_device_hour_times_730() -> None:
    cost = fleet_cost(3, cloud_usd_per_hour=1.0, launch_price_usd=None, tdp_w=100, utilisation=0.5,
                      terms=PriceTerms())
    assert cost.pricing == "cloud" and cost.usd_per_month == pytest.approx(3 * 730)
    assert cost.kw == pytest.approx(3 * 100 * (0.5 + 0.5 * IDLE_SHARE) / 1000)


def test_purchase_is_amortised_plus_energy() -> None:
    terms = PriceTerms(usd_per_kwh=0.2, amortisation_months=24, prefer="purchase")
    cost = fleet_cost(2, cloud_usd_per_hour=5.0, launch_price_usd=2400, tdp_w=500, utilisation=1.0, terms=terms)
    energy = 2 * 0.5 * 730 * 0.2
    assert cost.pricing == "purchase"
    assert cost.usd_per_month == pytest.approx(2 * 2400 / 24 + energy)
    assert cost.energy_usd_per_month == pytest.approx(energy)


def test_unpriced_device_has_no_cost_and_energy_per_item() -> None:
    assert fleet_cost(1, cloud_usd_per_hour=None, launch_price_usd=None, tdp_w=None, utilisation=0.3,
                      terms=PriceTerms()).usd_per_month is None
    assert joules_per_item(300, 0.5, 4) == pytest.approx(300 * 0.5 / 4)
    assert usd_per_1k(730.0, 730_000) == pytest.approx(1.0)
