"""The closed loop shared by the latency and throughput scenarios.

Both issue the next batch as soon as the previous one completes; they differ in
the batch they default to and in the number they headline, not in how load is
offered. (The server scenario, with arrivals independent of completions, is not
a closed loop.)
"""

from __future__ import annotations

from typing import Callable

from ..clock import Clock
from ..measure import DeviceTimer, LoopResult, OnIteration, measure
from ..stopping import StopRule
from .base import Scenario


class ClosedLoopScenario(Scenario):
    def run(
        self,
        step: Callable[[], object],
        rule: StopRule,
        clock: Clock,
        *,
        device_timer: DeviceTimer | None = None,
        on_iteration: OnIteration | None = None,
    ) -> LoopResult:
        return measure(step, rule, clock, device_timer=device_timer, on_iteration=on_iteration)
