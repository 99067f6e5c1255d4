"""What the measured loop itself costs per call, next to a bare Python loop.

Both loops call the same trivial function the same number of times in one
pytest-benchmark run, so the difference is the harness's per-call overhead
(two clock reads, a list append, the stop check) on this machine, today.
"""

from __future__ import annotations

from aigcbench.bench.clock import perf_clock
from aigcbench.bench.measure import measure
from aigcbench.bench.stopping import StopRule

CALLS = 10_000


def _work() -> None:
    return None


def _bare_loop() -> None:
    for _ in range(CALLS):
        _work()


def _harness_loop() -> None:
    rule = StopRule(min_duration_s=0, min_iterations=CALLS, max_iterations=CALLS)
    result = measure(_work, rule, perf_clock)
    assert result.iterations == CALLS


def test_bare_python_loop(benchmark) -> None:
    benchmark.group = f"per {CALLS} calls of a no-op"
    benchmark(_bare_loop)


def test_aigcbench_measured_loop(benchmark) -> None:
    benchmark.group = f"per {CALLS} calls of a no-op"
    benchmark(_harness_loop)
