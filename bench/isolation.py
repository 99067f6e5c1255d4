"""Run one cell in its own worker process and always get a record back.

The worker runs `aigcbench.bench.worker`: in a fresh interpreter (the cold
start: no inherited threads, CUDA context or allocator state), or forked from
the pre-imported zygote (`bench/zygote.py`, through `launchers.ZygoteLauncher`),
which spares each cell the seconds of importing torch and keeps the same
containment. The parent blocks on it — with a pidfd (or the zygote's socket)
and `select`, so it sleeps until the worker exits, prints progress, or the
timeout passes; it never polls. Whatever happens to the worker becomes a record:

* it exits 0 → the record it wrote, plus what the kernel accounted to it
  (`wait4` rusage: peak RSS, CPU time), under `metadata.worker`;
* a signal (segfault, abort, the OOM killer's SIGKILL) → `failed`, naming the signal;
* still running at the timeout → SIGUSR1 (the worker's faulthandler prints
  where it is), then SIGKILL to its whole process group → `failed`, naming
  the stage it was in;
* any other exit → `failed` with the last line of its stderr;
* under a memory limit, any of these caused by a failed allocation →
  `failed` with "exceeded memory limit 8 GiB", the limit under `metadata.memory_limit`.

The worker never imports from the current directory: `python -m` and `-c`
put it first on `sys.path`, where a stray `inspect.py` in the folder the user
runs from would shadow the standard library and run in the worker. The
bootstrap removes that entry before importing anything (`-P` would too, but
only from Python 3.11, and the worker's interpreter may be older).

The last lines of the worker's stderr are kept in `metadata.stderr_tail`, and
how it started (`cold`, `forked`, `forked-after-restart`: its zygote had died
and the cell was retried once on a fresh one) in `metadata.worker.start`.
Ctrl-C kills the worker group and re-raises, so a sweep can stop cleanly with
every finished record already stored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import resources
from .launchers import ColdLauncher, Launcher, Worker, WorkerJob
from .launchers import worker_argv as worker_argv  # re-exported: tests and callers build cold argv here
from .config import RunConfig
from .errors import BackendUnavailable, UserError
from .record import Record
from .runner import RunObserver, Silent, failure_record
from .walltime import Timeline

STDERR_TAIL_LINES = 20
# After SIGUSR1, how long the worker gets to print its stack before SIGKILL.
_DUMP_GRACE_S = 1.0
_SIGNAL_MEANING = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating-point exception",
    signal.SIGILL: "illegal instruction",
    signal.SIGKILL: "killed; the kernel's out-of-memory killer sends SIGKILL (see dmesg)",
    signal.SIGTERM: "terminated",
}


@dataclasses.dataclass
class _Outcome:
    returncode: int | None = None
    timed_out: bool = False
    last_stage: str = "starting"
    rusage: Any = None
    wall_s: float = 0.0
    hung_at: str | None = None
    refused: dict | None = None  # the worker's own refusal: exit code, message, key
    start: str = "cold"  # how the worker started (launchers.COLD, FORKED, FORKED_AFTER_RESTART)
    start_reason: str | None = None  # why a cell that could have been forked started cold
    lost: bool = False  # its zygote died under it
    marks: list = dataclasses.field(default_factory=list)  # walltime marks: the launcher's, then the worker's


def run_isolated(
    config: RunConfig,
    *,
    timeout_s: float | None,
    observer: RunObserver,
    python: str = sys.executable,
    memory_limit_bytes: int | None = None,
    launcher: Launcher | None = None,
    timeline: Timeline | None = None,
) -> Record:
    """Measure `config` in a worker process of its own; return its record, or a `failed` one saying why.

    `launcher` starts the worker: cold (a fresh interpreter, the default) or
    forked from a pre-imported zygote (`launchers.ZygoteLauncher`; the caller
    owns it and closes it). A cell whose zygote died under it is retried once
    on a fresh one, and its record says so (`metadata.worker.start`).
    `memory_limit_bytes` caps the worker's memory (see `bench/resources.py`);
    the caller has checked it with `resources.check_memory_limit`.
    `timeline` holds the caller's marks so far (`bench/walltime.py`); the
    record's `metadata.wall_s` covers them and the worker's, up to its return.
    """
    launcher = launcher or ColdLauncher(python)
    timeline = timeline or Timeline()
    for _ in range(2):
        record, lost = _attempt(config, launcher, config.device, timeout_s, observer, memory_limit_bytes, timeline)
        if not lost:
            return with_wall_time(record, timeline)
        launcher.restart()
    record = failure_record(
        config, "the pre-imported worker died while running this cell, twice (retried once on a fresh one)",
        metadata=record.metadata,
    )
    return with_wall_time(record, timeline)


CHECK_ENTRY = f"{__package__}.cell_check:main"


def check_cells(
    configs: list[RunConfig], launcher: Launcher, timeout_s: float, timeline: Timeline | None = None
) -> list[dict] | None:
    """`bench/cell_check.py` on `configs`, in a process the launcher starts; None if it gave no results.

    One result per config, in order. None (it crashed, hung, or wrote nothing)
    leaves each cell to its own worker, which runs the same checks first.
    On `timeline`, a zygote started for the check is its own part; the check is "check".
    """
    workdir = Path(tempfile.mkdtemp(prefix="aigcbench-check-"))
    try:
        configs_path, results_path = workdir / "configs.json", workdir / "results.json"
        configs_path.write_text(json.dumps([config.to_dict() for config in configs]))
        job = WorkerJob(configs_path, results_path, entry=CHECK_ENTRY)
        with open(workdir / "stderr.log", "wb") as stderr:
            outcome = _run_worker(launcher, job, stderr.fileno(), timeout_s, Silent())
        if timeline is not None:
            timeline.extend((part if part == "zygote_start" else "check", at) for part, at in outcome.marks)
        if outcome.returncode != 0 or outcome.timed_out or not results_path.exists():
            return None
        results = json.loads(results_path.read_text())
        return results if isinstance(results, list) and len(results) == len(configs) else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def with_wall_time(record: Record, timeline: Timeline) -> Record:
    """`record` with `metadata.wall_s`: its timeline's parts, up to now."""
    return dataclasses.replace(record, metadata={**record.metadata, "wall_s": timeline.parts()})


def _attempt(
    config: RunConfig, launcher: Launcher, device: str, timeout_s: float | None, observer: RunObserver,
    memory_limit_bytes: int | None, timeline: Timeline,
) -> tuple[Record, bool]:
    """One try: the record, and whether the worker's zygote died under it (then the record is not the cell's)."""
    workdir = Path(tempfile.mkdtemp(prefix="aigcbench-cell-"))
    try:
        config_path, record_path, stderr_path = workdir / "config.json", workdir / "record.json", workdir / "stderr.log"
        config_path.write_text(json.dumps(config.to_dict()))
        job = WorkerJob(config_path, record_path, memory_limit_bytes, device)
        with open(stderr_path, "wb") as stderr:
            outcome = _run_worker(launcher, job, stderr.fileno(), timeout_s, observer)
        timeline.extend(outcome.marks)
        tail = _tail(stderr_path, STDERR_TAIL_LINES)
        if outcome.lost:
            return failure_record(config, "lost", metadata={"worker": _worker_accounting(outcome)}), True
        if outcome.timed_out:
            outcome.hung_at = _hung_at(stderr_path)
        record = _record_of(config, outcome, record_path, tail, timeout_s)
        record = record if memory_limit_bytes is None else _under_limit(record, memory_limit_bytes, tail, outcome)
        return record, False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_worker(launcher: Launcher, job: WorkerJob, stderr_fd: int, timeout_s: float | None, observer: RunObserver) -> _Outcome:
    start = time.monotonic()
    worker = launcher.launch(job, stderr_fd)
    outcome = _Outcome(start=worker.start, start_reason=worker.start_reason, marks=list(worker.marks))
    try:
        if not _wait(worker, start, timeout_s, observer, outcome):
            outcome.timed_out = True
            worker.signal(signal.SIGUSR1)  # its faulthandler prints where it is
            worker.wait(_DUMP_GRACE_S)
    except BaseException:  # KeyboardInterrupt above all: never leave a worker behind
        worker.finish()
        raise
    outcome.returncode, outcome.rusage = worker.finish()  # SIGKILLs what is left of its group, then reaps
    outcome.lost = worker.lost
    outcome.wall_s = time.monotonic() - start
    return outcome


def _wait(worker: Worker, start: float, timeout_s: float | None, observer: RunObserver, outcome: _Outcome) -> bool:
    """Relay progress until the worker exits (True) or the timeout passes (False); blocks, never spins."""
    out_fd, exited_fd = worker.events, worker.exited_fd()
    watched = [out_fd] + ([exited_fd] if exited_fd is not None else [])
    pending = b""
    while True:
        remaining = None if timeout_s is None else timeout_s - (time.monotonic() - start)
        if remaining is not None and remaining <= 0:
            return False
        ready, _, _ = select.select(watched, [], [], remaining)
        if out_fd in ready:
            chunk = os.read(out_fd, 65536)
            if chunk:
                pending = _relay(pending + chunk, observer, outcome)
            else:
                watched.remove(out_fd)  # the worker closed its end: it is exiting
                if exited_fd is None:
                    rest = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - start))
                    return worker.wait(rest)
        if exited_fd is not None and exited_fd in ready:
            return True


def _relay(data: bytes, observer: RunObserver, outcome: _Outcome) -> bytes:
    """Pass complete event lines to the observer; return the incomplete rest."""
    *lines, rest = data.split(b"\n")
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # not ours: ignore rather than let a stray print break the cell
        if "stage" in event:
            outcome.last_stage = str(event["stage"])
            observer.stage(outcome.last_stage)
        elif "loop" in event:
            observer.loop(*event["loop"])
        elif "part" in event:
            name, stamp = event["part"]
            outcome.marks.append((str(name), int(stamp)))
        elif "refused" in event:
            outcome.refused = dict(event["refused"])
    return rest


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_bytes()[-65536:].decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


def _hung_at(path: Path) -> str | None:
    """The innermost frame of the stack faulthandler dumped on SIGUSR1, outside the threading module."""
    try:
        text = path.read_bytes()[-65536:].decode("utf-8", "replace")
    except OSError:
        return None
    marker = text.rfind("(most recent call first):")
    if marker < 0:
        return None
    for line in text[marker:].splitlines()[1:]:
        match = re.match(r'\s*File "(.+)", line (\d+) in (\S+)', line)
        if match is None:
            break
        file, number, function = match.groups()
        if not file.endswith("threading.py"):
            return f"{file}:{number} in {function}"
    return None


def _worker_accounting(outcome: _Outcome) -> dict[str, Any]:
    usage = outcome.rusage
    return {
        "exit_code": outcome.returncode,
        "wall_s": outcome.wall_s,
        # Linux reports ru_maxrss in KiB; this is the worker's lifetime peak, the cell's alone.
        "peak_rss_bytes": usage.ru_maxrss * 1024 if usage is not None else None,
        "user_cpu_s": usage.ru_utime if usage is not None else None,
        "system_cpu_s": usage.ru_stime if usage is not None else None,
        "start": outcome.start,
        **({"start_reason": outcome.start_reason} if outcome.start_reason else {}),
    }


def _record_of(config: RunConfig, outcome: _Outcome, record_path: Path, tail: list[str], timeout_s: float | None) -> Record:
    _raise_refusal(outcome)
    worker = _worker_accounting(outcome)
    if outcome.returncode == 0 and not outcome.timed_out and record_path.exists():
        record = Record.from_dict(json.loads(record_path.read_text()))
        return dataclasses.replace(record, metadata={**record.metadata, "worker": worker})
    reason = _failure_reason(outcome, tail, timeout_s)
    return failure_record(config, reason, metadata={"worker": worker, "stderr_tail": tail})


def _raise_refusal(outcome: _Outcome) -> None:
    """A worker that refused its cell (bad input, a missing device) is a refusal here too, never a record.

    The parent refuses everything it can before starting a worker; what only
    the worker can find (a check that needs the built model) still must not
    become a stored `failed` record, which would block the cell on resume.
    """
    refused = outcome.refused
    if refused is None or outcome.timed_out or outcome.returncode != refused.get("exit_code"):
        return
    message = " ".join(str(refused.get("message", "")).split())  # one line, whatever the worker said
    if refused["exit_code"] == BackendUnavailable.exit_code:
        raise BackendUnavailable(message)
    raise UserError(message, key=refused.get("key"))


def _failure_reason(outcome: _Outcome, tail: list[str], timeout_s: float | None) -> str:
    fatal = [line for line in tail if line.startswith("Fatal Python error")]
    shown = (fatal or tail)[-1].strip() if tail else None
    last = f"; stderr: {shown}" if shown else ""
    if outcome.timed_out:
        where = f", stack at {outcome.hung_at}" if outcome.hung_at else ""
        return f"timeout: worker still running after {timeout_s:g} s, killed (it was {outcome.last_stage!r}{where})"
    code = outcome.returncode
    if code is not None and code < 0:
        sig = signal.Signals(-code)
        meaning = _SIGNAL_MEANING.get(sig, "killed by a signal")
        return f"worker crashed: {sig.name} ({meaning}) during {outcome.last_stage!r}{last}"
    if code == 0:
        return f"worker exited without writing its record{last}"
    return f"worker exited with code {code} during {outcome.last_stage!r}{last}"


def _under_limit(record: Record, limit: int, tail: list[str], outcome: _Outcome) -> Record:
    """Say the limit in the record; a cell that failed for want of memory fails with the limit as its reason.

    The worker's own words (a MemoryError, torch's "can't allocate memory", a
    C++ bad_alloc abort) stay in `metadata.memory_limit.error`; the reason is
    the same text for every such failure, so reruns and comparisons match.
    """
    applied = {"bytes": limit, "mechanism": resources.MECHANISM}
    metadata = {**record.metadata, "memory_limit": applied}
    if record.status != "failed" or outcome.timed_out:
        return dataclasses.replace(record, metadata=metadata)
    evidence = [record.reason or "", str(record.metadata.get("traceback") or ""), *tail]
    if not resources.out_of_memory(evidence):
        return dataclasses.replace(record, metadata=metadata)
    metadata["memory_limit"] = {**applied, "error": record.reason}
    return dataclasses.replace(record, reason=resources.exceeded_reason(limit), metadata=metadata)
