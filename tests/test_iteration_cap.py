"""The iteration cap is said, not hidden (issue 11, item 7).

A fast loop can reach --max-iterations long before --duration has passed; its
record then measured less than was asked, and must say so, naming both.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from aigcbench.bench.runner import run_cell
from aigcbench.bench.stopping import StopRule

from .fake_backend import FakeBackend
from .fakes import FakeClock
from .test_cli import cli
from .test_runner import MS, _config, fake  # noqa: F401 — `fake` is a fixture

WARNING = "stopped by --max-iterations"


@pytest.mark.parametrize(
    "rule, expected",
    [
        # 50 calls of 1 ms end at 0.05 s: before a 3 s duration, the cap decided.
        (StopRule(min_duration_s=3, min_iterations=10, max_iterations=50),
         "stopped by --max-iterations 50 after 0.05 s, before --duration 3 s"),
        (StopRule(min_duration_s=0.5, min_iterations=1, max_iterations=7),
         "stopped by --max-iterations 7 after 0.007 s, before --duration 0.5 s"),
        # The duration was met (by the same call that hit the cap, or earlier): nothing to say.
        (StopRule(min_duration_s=0.05, min_iterations=10, max_iterations=50), None),
        (StopRule(min_duration_s=0.01, min_iterations=10, max_iterations=1000), None),
        # Stopped by the duration cap, not the iteration cap.
        (StopRule(min_duration_s=3, min_iterations=10, max_iterations=10_000, max_duration_s=0.02), None),
    ],
)
def test_the_warning_names_the_cap_and_the_duration(rule: StopRule, expected: str | None, fake: FakeClock) -> None:  # noqa: F811
    FakeBackend.service_ns = itertools.repeat(MS)
    record = run_cell(dataclasses.replace(_config(), stop=rule), clock=fake)
    capped = [w for w in record.warnings if w.startswith(WARNING)]
    assert capped == ([expected] if expected else [])


def _run(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "record.json"
    base = ["run", "--workload", "dcgan", "--size", "tiny", "--backend", "null", "--warmup", "0",
            "--warmup-duration", "0", "--no-store", "--json", str(out)]
    result = cli(*base, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stdout


def test_a_capped_null_run_says_so_in_the_record_and_the_table(tmp_path: Path) -> None:
    record, table = _run(tmp_path, "--duration", "3", "--max-iterations", "1000")
    assert record["metrics"]["stop_reason"] == "max-iterations"
    (warning,) = [w for w in record["warnings"] if w.startswith(WARNING)]
    assert warning.startswith("stopped by --max-iterations 1000 after ") and warning.endswith(", before --duration 3 s")
    assert f"warning: {warning}" in " ".join(table.split())


def test_a_normal_run_has_no_cap_warning(tmp_path: Path) -> None:
    record, table = _run(tmp_path, "--duration", "0.02")
    assert record["metrics"]["stop_reason"] != "max-iterations"
    assert not [w for w in record["warnings"] if w.startswith(WARNING)]
    assert WARNING not in table
