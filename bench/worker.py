"""The worker process: measures one cell and writes its record; nothing else.

`python -m aigcbench.bench.worker CONFIG.json RECORD.json [--memory-limit-bytes=N]`
— spawned by `bench/isolation.py` (through a bootstrap that keeps the current
directory off `sys.path`), one fresh interpreter per cell, or forked per cell
from the pre-imported `bench/zygote.py`, which calls `main` the same way; so a segfault, a hang,
a leak or a runtime's global state (thread pools, allocator caches, compiled
kernels) cannot reach the next cell, and the peak memory the kernel accounts
to this process is this cell's alone (a forked child's peak counts the
zygote's pages it maps, as a cold worker's counts its own imports).

Protocol with the parent:
* stdout carries progress events only, one JSON object per line
  (`{"stage": text}`, `{"loop": [phase, calls, elapsed_ns]}`); anything else a
  library prints to stdout is redirected to stderr so it cannot corrupt them;
* stderr is the parent's log of this cell: on a crash its last lines are the reason;
* the record is written atomically to RECORD.json; exit 0 means it is there.
* `--memory-limit-bytes=N` caps the worker's address space (RLIMIT_AS) once
  numpy, scipy and torch are loaded (`_PRELOAD`), before the cell is built: the
  limit covers everything the cell allocates, with every thread and
  subprocess the runtime starts, and the libraries' own mappings count towards it.
* faulthandler prints the Python stack on a fatal signal, and on SIGUSR1 —
  which the parent sends a worker that ran past its timeout, before killing it,
  so a hang names the line it hung on.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO

# Progress is throttled: the parent only redraws, and each event wakes it.
EVENT_INTERVAL_S = 0.5
# Exit status when the parent has gone away (EX_TEMPFAIL: nothing was wrong with the cell).
PARENT_GONE = 75
_PR_SET_PDEATHSIG = 1


class PipeObserver:
    """Forwards the runner's progress to the parent as JSON lines."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._last = 0.0

    def stage(self, text: str) -> None:
        self._send({"stage": text})

    def loop(self, phase: str, count: int, elapsed_ns: int) -> None:
        now = time.monotonic()
        if now - self._last >= EVENT_INTERVAL_S:
            self._send({"loop": [phase, count, elapsed_ns]})

    def part(self, name: str, at_ns: int) -> None:
        """A part of the cell's wall time begins (`bench/walltime.py`); never throttled: the parent sums them."""
        self._send({"part": [name, at_ns]})

    def refused(self, err: Exception, exit_code: int) -> None:
        """Bad input or a missing device found only here: the parent refuses it as it would have."""
        self._send({"refused": {"exit_code": exit_code, "message": str(err), "key": getattr(err, "key", None)}})

    def _send(self, event: dict) -> None:
        self._last = time.monotonic()
        try:
            self._stream.write(json.dumps(event) + "\n")
            self._stream.flush()
        except BrokenPipeError:
            # The parent reads until we exit, so a closed pipe means it is gone:
            # nobody will store this record, and the machine should be free again.
            os._exit(PARENT_GONE)


def _die_with_parent(parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this worker when the parent dies (prctl PR_SET_PDEATHSIG).

    A parent killed outright (SIGKILL, OOM) cannot stop its worker; without
    this the worker would go on measuring for nobody, competing with whatever
    runs next. Elsewhere the broken progress pipe ends it at its next event.
    `parent` is the pid it must still have (a forked child's zygote); without
    it, being adopted by init means the parent is gone.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1 or (parent is not None and os.getppid() != parent):  # died before prctl took effect
        os._exit(PARENT_GONE)


def _event_stream() -> IO[str]:
    """A private copy of stdout for events; fd 1 itself then points at stderr."""
    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return events


_LIMIT_FLAG = "--memory-limit-bytes="
# OpenBLAS (in numpy's and scipy's wheels) retries a failed mmap forever while
# it initialises, so under an address-space limit it would hang the cell
# instead of failing it. These are loaded before the limit is applied; their
# mappings still count towards it, and what the cell allocates later fails fast.
_PRELOAD = ("numpy", "scipy.special", "torch")


def _preload_native_libraries() -> None:
    import importlib

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # not installed: nothing of it can hang either


def main(argv: list[str], parent: int | None = None) -> int:
    """Measure one cell; `parent` is the pid of the zygote when this worker was forked from one."""
    entered = time.monotonic_ns()  # the walltime clock: the parent's "worker_start" ends here
    limits = [arg for arg in argv if arg.startswith(_LIMIT_FLAG)]
    argv = [arg for arg in argv if not arg.startswith(_LIMIT_FLAG)]
    if len(argv) != 2 or len(limits) > 1:
        print(f"usage: python -m aigcbench.bench.worker CONFIG.json RECORD.json [{_LIMIT_FLAG}N]", file=sys.stderr)
        return 2
    _die_with_parent(parent)
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    events = _event_stream()
    if limits:
        _preload_native_libraries()
        from .resources import limit_address_space

        limit_address_space(int(limits[0][len(_LIMIT_FLAG):]))
    observer = PipeObserver(events)
    observer.part("worker_imports", entered)
    from .config import RunConfig
    from .errors import BackendUnavailable, UserError
    from .record import write_json
    from .runner import run_cell
    from .walltime import Timeline

    config = RunConfig.from_dict(json.loads(Path(argv[0]).read_text()))
    timeline = Timeline(sink=observer.part)
    try:
        record = run_cell(config, observer=observer, timeline=timeline)
    except (UserError, BackendUnavailable) as err:  # refused inside the worker: the parent reports the line
        observer.refused(err, err.exit_code)
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    write_json(record, Path(argv[1]))
    timeline.mark("worker_exit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
