"""The harness's clock, injected so tests can substitute a fake one.

Only the harness reads the clock (DESIGN.md principle 2). `time.perf_counter_ns`
is monotonic and has the finest resolution Python offers; `time.time()` can
jump with NTP and is never used for timing.
"""

from __future__ import annotations

import time
from typing import Callable

# A clock is any zero-argument callable returning integer nanoseconds.
Clock = Callable[[], int]

perf_clock: Clock = time.perf_counter_ns
