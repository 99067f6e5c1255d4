"""Where a command's wall time goes: the parts of `metadata.wall_s`.

A `Timeline` is a list of marks, each "part P begins now", stamped with
CLOCK_MONOTONIC. On Linux that clock is one clock for every process on the
machine, so the CLI, the pre-imported zygote and the cell's worker mark one
timeline: the worker sends its marks up the event pipe with their stamps, and
the CLI adds them to its own. A part lasts from its mark to the next one, so
the parts of a record add up, by construction, to the span from its first mark
to its last; what is outside that span is said where it is (see `PARTS`).

This is accounting, not measurement: the measured loop keeps its own injected
clock (`bench.clock`), and a part is as long as the slowest thing in it, with
nothing subtracted.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Mapping

# Every part a record may carry, in the order a command passes through them, with what it covers.
PARTS: Mapping[str, str] = {
    "start": "the interpreter's start and the CLI's imports, from the process's creation to the command's first line",
    "check": "the CLI's checks of the input, the output paths and the store, before any worker starts",
    "sweep": "a sweep's own work before this cell: storing the previous cell's record, progress, resuming",
    "zygote_start": "starting the pre-imported worker, which imports torch once per command",
    "worker_start": "starting the cell's worker: a fork of the pre-imported one, or a fresh interpreter",
    "worker_imports": "the worker's own imports before it checks its cell (torch, in a fresh interpreter)",
    "preflight": "the worker's checks that need the runtimes: backend, device, memory floor, weights",
    "build": "building the workload's modules from config (or loading its weights)",
    "describe": "counting parameters and FLOPs (cached per workload config)",
    "fidelity_reference": "the eager fp32 reference outputs (cached per workload config)",
    "export": "exporting components to ONNX (cached per component)",
    "prepare": "the backend's prepare: sessions, compilation, engine builds",
    "first_call": "the first call, timed alone",
    "warmup": "the warm-up calls",
    "measure": "the measured loop, inside the probes",
    "fidelity_check": "the fidelity gate on the fixed seeded batch",
    "record": "statistics and the record, written by the worker",
    "worker_exit": "the worker's exit, until the CLI holds its record",
}
# After the last mark, and so in no record: appending the record to the store, printing the table, exiting.


def now_ns() -> int:
    """A stamp every process on this machine reads from the same clock."""
    return time.monotonic_ns()


def process_start_ns() -> int | None:
    """When this process was created, on the `now_ns` clock (to the kernel's tick, 10 ms), or None if unknown.

    Linux's /proc/self/stat gives the start in ticks since boot, which
    CLOCK_BOOTTIME also counts from (psutil's create_time adds the boot time
    in whole seconds, off by up to one).
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, "starttime"; the 3rd after the name
        age_s = time.clock_gettime(time.CLOCK_BOOTTIME) - started_s
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return now_ns() - int(max(age_s, 0.0) * 1e9)


class Timeline:
    """Marks of "part P begins at t"; `sink`, when given, also receives each mark (the worker sends it up)."""

    def __init__(self, sink: Callable[[str, int], None] | None = None) -> None:
        self._marks: list[tuple[str, int]] = []
        self._sink = sink

    def mark(self, part: str, at_ns: int | None = None) -> None:
        if part not in PARTS:
            raise ValueError(f"unknown wall-time part {part!r}")
        stamp = now_ns() if at_ns is None else at_ns
        self._marks.append((part, stamp))
        if self._sink is not None:
            self._sink(part, stamp)

    def extend(self, marks: Iterable[tuple[str, int]]) -> None:
        for part, stamp in marks:
            self.mark(part, stamp)

    @property
    def marks(self) -> tuple[tuple[str, int], ...]:
        return tuple(self._marks)

    def parts(self, end_ns: int | None = None) -> dict[str, float]:
        """Seconds per part up to `end_ns` (now), summed where a part recurs, in `PARTS` order."""
        return parts_of(self._marks, now_ns() if end_ns is None else end_ns)


def parts_of(marks: Iterable[tuple[str, int]], end_ns: int) -> dict[str, float]:
    """Seconds per part: each mark lasts until the next one (in time), the last until `end_ns`."""
    ordered = sorted(marks, key=lambda mark: mark[1])
    seconds: dict[str, float] = {}
    for (part, start), (_, stop) in zip(ordered, [*ordered[1:], ("", end_ns)]):
        seconds[part] = seconds.get(part, 0.0) + max(stop - start, 0) / 1e9
    return {part: round(seconds[part], 6) for part in PARTS if part in seconds}


def command_timeline() -> Timeline:
    """A command's marks so far: the process's start, and its checks beginning now (its first line)."""
    timeline = Timeline()
    started = process_start_ns()
    if started is not None:
        timeline.mark("start", started)
    timeline.mark("check")
    return timeline
