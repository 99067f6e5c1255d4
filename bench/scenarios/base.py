"""A scenario is how load is offered to the system under test (MLPerf vocabulary).

Scenarios produce raw samples and nothing else: statistics are derived from
them afterwards, and the harness decides what to record.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar

from ..clock import Clock
from ..measure import DeviceTimer, LoopResult, OnIteration
from ..stopping import StopRule


class Scenario(abc.ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    default_batch_size: ClassVar[int]
    # True when each latency sample is one call's service time (closed loops):
    # then a wide spread means the machine was unstable. An open loop's
    # latencies include queueing, whose spread is the queue's, not noise.
    samples_are_service_times: ClassVar[bool] = True

    @classmethod
    def from_config(cls, config: Any, note: Callable[[str], None] | None = None) -> "Scenario":
        """The scenario a run config asks for; `note` receives progress text (server trials)."""
        return cls()

    @abc.abstractmethod
    def run(
        self,
        step: Callable[[], object],
        rule: StopRule,
        clock: Clock,
        *,
        device_timer: DeviceTimer | None = None,
        on_iteration: OnIteration | None = None,
    ) -> LoopResult:
        """Drive `step` (one finished batch per call) and return the raw samples."""
