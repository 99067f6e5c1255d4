"""Offline throughput: back-to-back batches of a given size, items per second of wall time.

MLPerf's Offline scenario for a synchronous runtime: a full batch is always
waiting, so the device never idles for want of work. Throughput is the items
completed divided by the loop's wall time — never 1 / mean latency, which would
hide the time spent between calls.
"""

from __future__ import annotations

from .closed_loop import ClosedLoopScenario


class ThroughputScenario(ClosedLoopScenario):
    name = "throughput"
    description = "closed loop of full batches (MLPerf Offline); items/s over the loop's wall time"
    default_batch_size = 8
