"""One timed line of a benchmark's end-of-run summary: `what` and its wall seconds, aligned."""

from __future__ import annotations

import time
from typing import Any, Callable


def timed(lines: list[str], what: str, call: Callable[[], Any]) -> float:
    """Run `call` once, append "  what … N.NN s" to `lines`, return the seconds."""
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    lines.append(f"  {what:<58} {seconds:7.2f} s")
    return seconds
