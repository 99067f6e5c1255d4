"""Live progress of one cell on stderr (rich): the stage, and calls done during loops.

It goes to stderr so stdout carries only the result table. It never runs a
thread of its own: rich's auto-refresh thread would wake up during the measured
loop and, on a machine with few cores, preempt a compute thread and show up as
latency outliers. Instead the loop's own callback redraws, at most every
`REDRAW_S` seconds, and that time is inside the loop's wall time, honestly.

Without a terminal (CI, a log file, a script reading stderr) it shows
nothing: a spinner there is noise, and stderr must stay the one line a
refusal prints, even when the refusal comes from the worker mid-display.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

REDRAW_S = 0.5


class RichObserver:
    def __init__(self, console: Console | None = None) -> None:
        console = console or Console(stderr=True)
        self._shown = console.is_terminal
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            auto_refresh=False,
        )
        self._task = self._progress.add_task("starting", detail="")
        self._last_redraw = 0.0

    def __enter__(self) -> "RichObserver":
        if self._shown:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shown:
            self._progress.stop()

    def stage(self, text: str) -> None:
        if not self._shown:
            return
        self._progress.update(self._task, description=text, detail="", refresh=True)
        self._last_redraw = time.monotonic()

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
        now = time.monotonic()
        if not self._shown or now - self._last_redraw < REDRAW_S:
            return
        self._last_redraw = now
        self._progress.update(self._task, detail=f"{count} calls, {elapsed_ns / 1e9:.1f} s", refresh=True)
