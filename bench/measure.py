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
    if device_timer is None:
        return _measure_host(step, rule, clock, on_iteration)
    samples: list[int] = []
    start = clock()
    end = start
    while True:
        device_timer.start()
        t0 = clock()
        step()
        end = clock()
        device_timer.stop()
        samples.append(end - t0)
        if on_iteration is not None:
            on_iteration(len(samples), end - start)
        if rule.should_stop(samples, end - start):
            break
    return LoopResult(tuple(samples), end - start, rule.stop_reason(samples, end - start),
                      tuple(device_timer.elapsed_ns()))


def _measure_host(step: Callable[[], object], rule: StopRule, clock: Clock,
                  on_iteration: OnIteration | None) -> LoopResult:
    """`measure` without a device timer, its stop rule unrolled into local comparisons.

    The same decisions as `StopRule.should_stop`, in the same order, with the
    thresholds read once: on a sub-microsecond call the attribute lookups and
    the method call of the general loop are most of the harness's own cost.
    Only the adaptive rule (a spread check every few calls) goes through the rule.
    """
    samples: list[int] = []
    append = samples.append
    max_n, min_n = rule.max_iterations, rule.min_iterations
    max_ns, min_ns = rule.max_duration_s * 1e9, rule.min_duration_s * 1e9
    adaptive = rule.target_rel_iqr is not None
    n = 0
    start = end = clock()
    while True:
        t0 = clock()
        step()
        end = clock()
        append(end - t0)
        n += 1
        elapsed = end - start
        if on_iteration is not None:
            on_iteration(n, elapsed)
        if n >= max_n or elapsed >= max_ns:
            break
        if n >= min_n and (elapsed >= min_ns or (adaptive and rule.should_stop(samples, elapsed))):
            break
    return LoopResult(tuple(samples), end - start, rule.stop_reason(samples, end - start), None)


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
