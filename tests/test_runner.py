"""The harness end to end with a fake backend and a fake clock: numbers must be exact."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.backends import registry as backends
from aigcbench.bench.cli import app
from aigcbench.bench.config import RunConfig
from aigcbench.bench.runner import run_cell
from aigcbench.bench.stats import percentile
from aigcbench.bench.stopping import StopRule, WarmupRule

from .fake_backend import FakeBackend
from .fakes import FakeClock

MS = 1_000_000


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(backends.BUILTIN, "fake", "tests.fake_backend:FakeBackend")
    clock = FakeClock()
    for attr, value in {"clock": clock, "service_ns": None, "fail_after": None, "output_offset": 0.0,
                        "calls": 0, "closed": 0}.items():
        monkeypatch.setattr(FakeBackend, attr, value)
    return clock


def _config(workload: str = "dcgan", iterations: int = 200, **kwargs) -> RunConfig:
    return RunConfig(
        workload=workload, backend="fake", size="tiny",
        stop=StopRule(min_duration_s=0, min_iterations=iterations, max_iterations=iterations),
        warmup=WarmupRule(iterations=0, duration_s=0), **kwargs,
    )


def test_recorded_samples_are_the_service_times_and_stats_are_exact(fake: FakeClock) -> None:
    times = [random.Random(5).randint(1, 100) * MS for _ in range(200)]
    # first call (cold start) and fidelity calls take 1 ms; the measured loop takes `times`
    FakeBackend.service_ns = itertools.chain([MS], times, itertools.repeat(MS))
    record = run_cell(_config(), clock=fake)
    assert record.status == "ok"
    assert record.samples["latency_s"] == [t / 1e9 for t in times]
    latency = record.metrics["latency_s"]
    ordered = sorted(t / 1e9 for t in times)
    assert latency["p50"] == percentile(ordered, 50)
    assert latency["p99"] == percentile(ordered, 99)
    assert latency["max"] == ordered[-1] and latency["min"] == ordered[0]
    assert latency["early_stopping_p90"] is not None  # 200 ≥ 64 samples
    # No time passes outside the session here, so wall time is the sum of service times.
    assert record.metrics["loop_wall_s"] == pytest.approx(sum(times) / 1e9)
    assert record.metrics["throughput_items_per_s"] == pytest.approx(200 / (sum(times) / 1e9))
    assert record.metrics["cold_start_s"]["first_call"] == pytest.approx(0.001)
    assert record.scenario["batch_size"] == 1
    assert FakeBackend.closed == 1


def test_per_step_component_latency_of_an_iterative_workload(fake: FakeClock) -> None:
    FakeBackend.service_ns = itertools.repeat(2 * MS)
    record = run_cell(_config("ddpm", iterations=5, steps=3), clock=fake)
    assert record.samples["component_latency_s"]["denoiser"] == [0.002] * 15
    assert record.samples["latency_s"] == [0.006] * 5
    assert record.metrics["component_latency_s"]["denoiser"]["p50"] == 0.002


def test_throughput_counts_batch_items(fake: FakeClock) -> None:
    FakeBackend.service_ns = itertools.repeat(10 * MS)
    record = run_cell(_config(iterations=20, scenario="throughput", batch_size=4), clock=fake)
    assert record.metrics["items"] == 80
    assert record.metrics["throughput_items_per_s"] == pytest.approx(80 / 0.2)


def test_a_crashing_backend_is_a_failed_record_not_a_crash(fake: FakeClock) -> None:
    FakeBackend.service_ns = itertools.repeat(MS)
    FakeBackend.fail_after = 3
    record = run_cell(_config(), clock=fake)
    assert record.status == "failed"
    assert record.reason == "RuntimeError: fake runtime crashed"
    assert "fake runtime crashed" in record.metadata["traceback"]
    assert FakeBackend.closed == 1  # sessions are closed even on failure


def test_wrong_outputs_make_the_record_invalid(fake: FakeClock) -> None:
    FakeBackend.service_ns = itertools.repeat(MS)
    FakeBackend.output_offset = 0.5
    record = run_cell(_config(iterations=3), clock=fake)
    assert record.status == "invalid"
    assert record.metrics["fidelity"]["passed"] is False
    assert record.reason.startswith("fidelity: relative L2 error")


def test_cli_exits_1_on_an_invalid_record(fake: FakeClock, tmp_path: Path) -> None:
    FakeBackend.clock = None  # the CLI uses the real clock
    FakeBackend.output_offset = 0.5
    result = CliRunner().invoke(app, ["run", "-w", "dcgan", "-b", "fake", "--size", "tiny", "--duration", "0",
                                      "--min-iterations", "2", "--store", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    assert "invalid" in result.stdout


def test_unknown_option_is_refused_before_anything_runs(fake: FakeClock) -> None:
    from aigcbench.bench.errors import UserError

    with pytest.raises(UserError, match="no option 'bogus'; known options: knob"):
        run_cell(_config(options={"bogus": "1"}), clock=fake)
    assert FakeBackend.calls == 0
