"""Progress of a sweep on stderr: a bar over cells with ETA, the running cell's stage, a line per cell.

Like `progress.RichObserver` it has no refresh thread: it redraws when the
worker reports (at most every `REDRAW_S`), so the parent stays asleep while
a cell is being measured. Cells of a cluster run several at a time: the
line shows the latest news of one and counts the others running.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ...reports.sweep_table import headline, placed_label
from .progress import REDRAW_S


class _CellObserver:
    def __init__(self, display: "SweepDisplay", index: int) -> None:
        self._display = display
        self._index = index

    def stage(self, text: str) -> None:
        self._display.detail(text, index=self._index)

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
        self._display.detail(f"{phase}: {count} calls, {elapsed_ns / 1e9:.1f} s", throttle=True, index=self._index)


class SweepDisplay:
    def __init__(self, total: int, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            transient=True,
            auto_refresh=False,
        )
        self._task = self._progress.add_task("cells", total=total, detail="")
        self._total = total
        self._last = 0.0
        self._running: dict[int, str] = {}  # index -> label of each cell started and not done
        self.finished = 0

    def __enter__(self) -> "SweepDisplay":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def cell_started(self, index: int, cell) -> _CellObserver:
        self._running[index] = f"[{index + 1}/{self._total}] {placed_label(cell)}"
        self.detail("starting worker", index=index)
        return _CellObserver(self, index)

    def cell_done(self, index: int, result) -> None:
        self.finished += 1
        self._running.pop(index, None)
        record = result.record
        if record is None:
            line = f"[dim]skip[/] {placed_label(result.cell)}: {escape(result.note or '')}"
        else:
            status = record.status if record.status == "ok" else f"[bold red]{record.status}[/]"
            shown = headline(record) if record.status != "failed" else escape(record.reason or "")
            extra = f" — {escape(record.reason or '')}" if record.status == "invalid" else ""
            line = f"{status} ({result.action}) {placed_label(result.cell)}: {shown}{extra}"
        self._progress.console.print(f"{index + 1:3d}. {line}")
        self._progress.update(self._task, advance=1, detail="", refresh=True)

    def detail(self, text: str, throttle: bool = False, index: int | None = None) -> None:
        now = time.monotonic()
        if throttle and now - self._last < REDRAW_S:
            return
        self._last = now
        others = len(self._running) - 1
        more = f" (and {others} more running)" if others > 0 else ""
        shown = f"{self._running.get(index, '')}: {text}{more}"
        self._progress.update(self._task, detail=escape(shown), refresh=True)
