"""Peak host memory of a process over exactly the measured region.

The kernel keeps a high-water mark of the resident set (VmHWM, `ru_maxrss`)
that includes model loading and export before the region. On Linux the mark of
one's own process can be reset (writing "5" to /proc/self/clear_refs, Linux ≥
4.0), so the mark read at the end of the region is the region's exact peak, at
zero cost during the loop. That is the preferred method.

Where the reset is not possible (other OSes, another process, a locked-down
/proc) the probe samples RSS in a background thread and reports the largest
sample. Sampling can miss a spike shorter than the interval, and on a machine
with few cores its wake-ups can preempt a compute thread, which is why it is
only the fallback. The lifetime mark is reported next to either for context.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

SOURCE = "psutil-rss-sampling"
RESET_SOURCE = "linux-vmhwm-reset"
METHODS = ("auto", "vmhwm", "sampling")


class HostMemoryProbe:
    """Context manager reporting the peak RSS of `pid` (default: this process).

    >>> with HostMemoryProbe() as probe:
    ...     data = bytes(10_000_000)
    >>> probe.result()["peak_host_memory_bytes"] > 0
    True
    """

    name = "host_memory"

    def __init__(self, pid: int | None = None, interval_s: float = 0.005, method: str = "auto") -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.pid = os.getpid() if pid is None else pid
        self.interval_s = interval_s
        self.method = method
        self._source = SOURCE
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak_rss = 0
        self._done = False

    def __enter__(self) -> "HostMemoryProbe":
        self._done = False
        self._peak_rss = 0
        if self.method != "sampling" and self.pid == os.getpid() and _reset_peak_rss():
            self._source = RESET_SOURCE
            return self
        if self.method == "vmhwm":
            raise RuntimeError("the VmHWM peak cannot be reset here (needs Linux and /proc/self/clear_refs)")
        import psutil

        self._source = SOURCE
        self._process = psutil.Process(self.pid)
        self._stop.clear()
        self._sample()  # the enter sample: the region's floor is always seen
        self._thread = threading.Thread(target=self._run, name="aigcbench-host-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._source == RESET_SOURCE:
            self._peak_rss = _vm_hwm_bytes(self.pid) or 0
            self._done = True
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()  # the exit sample: memory still held at the end counts too
        self._done = True

    @property
    def sampler_alive(self) -> bool:
        """Whether the sampling thread is still running (False once the region has ended)."""
        return self._thread is not None and self._thread.is_alive()

    def result(self, elapsed_s: float | None = None) -> dict[str, Any]:
        """Peak sampled RSS over the region, and the process's lifetime peak, in bytes."""
        if not self._done:
            raise RuntimeError("HostMemoryProbe.result() is valid only after the region ends")
        return {
            "peak_host_memory_bytes": self._peak_rss,
            "host_memory_source": self._source,
            "host_memory_sample_interval_s": self.interval_s if self._source == SOURCE else None,
            # After a reset the lifetime mark is gone (it *is* the region's peak).
            "process_peak_rss_bytes": process_peak_rss_bytes(self.pid) if self._source == SOURCE else None,
        }

    def warnings(self) -> list[str]:
        """Nothing this probe reads calls for a warning."""
        return []

    def _run(self) -> None:
        # Event.wait returns True the moment __exit__ sets it: no sleep to finish.
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        import psutil

        try:
            rss = self._process.memory_info().rss
        except psutil.Error:  # the process ended: its last sample stands
            return
        # Written by the sampler thread and the caller, but never at the same
        # time: the caller samples only before start() and after join().
        self._peak_rss = max(self._peak_rss, rss)


def process_peak_rss_bytes(pid: int) -> int | None:
    """The lifetime high-water mark of a process's RSS in bytes, None where unknown."""
    if pid == os.getpid():
        try:
            import resource
        except ImportError:  # Windows has no `resource`
            return None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes (getrusage(2) on each).
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024
    return _vm_hwm_bytes(pid)


def _reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _vm_hwm_bytes(os.getpid()) is not None


def _vm_hwm_bytes(pid: int) -> int | None:
    # Another process's peak is only exposed by Linux, as VmHWM in kB.
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
