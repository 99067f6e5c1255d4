"""The measured loop: the one place the harness reads the clock around work.

`step` runs one pipeline call *and* waits for the device (the harness composes
`workload.run` with `Session.synchronize`), so the clock brackets finished work.
On CUDA an optional device timer also records GPU time with events, read only
after the loop so the loop itself never waits on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol

from .clock import Clock
from .stopping import StopRule, WarmupRule


class DeviceTimer(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def elapsed_ns(self) -> list[int]:
        """Device time of each start/stop pair, available after the loop."""


# Called after each iteration with (iterations done, elapsed ns): progress display.
OnIteration = Callable[[int, int], None]


@dataclass(frozen=True)
class LoopResult:
    """Raw samples of one scenario run.

    A closed loop has one latency per batch and leaves `items` None (the
    harness knows the batch size). An open loop (server) has one latency per
    query and says how many items completed, how many it processed in total
    (every trial of a rate search, for energy per item) and whether the run
    meets its own validity rule (`invalid_reason`).
    """

    latencies_ns: tuple[int, ...]
    wall_ns: int  # from the loop's start to the end of its last call
    stop_reason: str
    device_latencies_ns: tuple[int, ...] | None = None
    items: int | None = None
    total_items: int | None = None
    outcome: Any = None  # e.g. scenarios.server.ServerOutcome

    @property
    def iterations(self) -> int:
        return len(self.latencies_ns)


def measure(
    step: Callable[[], object],
    rule: StopRule,
    clock: Clock,
    *,
    device_timer: DeviceTimer | None = None,
    on_iteration: OnIteration | None = None,
) -> LoopResult:
    """Call `step` until `rule` says stop; return every call's latency and the loop's wall time.

    Wall time includes the harness's own per-iteration work (stop check,
    progress), which is why throughput is computed from it and not from the
    sum of latencies: it is what a user of this loop would actually get.
    """
    samples: list[int] = []
    start = clock()
    end = start
    while True:
        if device_timer is not None:
            device_timer.start()
        t0 = clock()
        step()
        end = clock()
        if device_timer is not None:
            device_timer.stop()
        samples.append(end - t0)
        if on_iteration is not None:
            on_iteration(len(samples), end - start)
        if rule.should_stop(samples, end - start):
            break
    device = tuple(device_timer.elapsed_ns()) if device_timer is not None else None
    return LoopResult(tuple(samples), end - start, rule.stop_reason(samples, end - start), device)


def warm_up(
    step: Callable[[], object], rule: WarmupRule, clock: Clock, on_iteration: OnIteration | None = None
) -> tuple[int, int]:
    """Run `step` until the warm-up rule is met; return (calls, elapsed ns). Nothing is kept."""
    count = 0
    start = clock()
    elapsed = 0
    while not rule.should_stop(count, elapsed):
        step()
        count += 1
        elapsed = clock() - start
        if on_iteration is not None:
            on_iteration(count, elapsed)
    return count, elapsed
