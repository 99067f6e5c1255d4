"""Run one cell in its own worker process and always get a record back.

The parent spawns a fresh interpreter running `aigcbench.bench.worker` (not
a fork: no inherited threads, CUDA context or allocator state) and blocks
on it — on Linux with a pidfd and `select`, so it sleeps until the worker
exits, prints progress, or the timeout passes; it never polls. Whatever
happens to the worker becomes a record:

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

The last lines of the worker's stderr are kept in `metadata.stderr_tail`.
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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import resources
from .config import RunConfig
from .errors import BackendUnavailable, UserError
from .record import Record
from .runner import RunObserver, failure_record

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


def run_isolated(
    config: RunConfig,
    *,
    timeout_s: float | None,
    observer: RunObserver,
    python: str = sys.executable,
    memory_limit_bytes: int | None = None,
) -> Record:
    """Measure `config` in a fresh worker process; return its record, or a `failed` one saying why.

    `memory_limit_bytes` caps the worker's memory (see `bench/resources.py`);
    the caller has checked it with `resources.check_memory_limit`.
    """
    workdir = Path(tempfile.mkdtemp(prefix="aigcbench-cell-"))
    try:
        config_path, record_path, stderr_path = workdir / "config.json", workdir / "record.json", workdir / "stderr.log"
        config_path.write_text(json.dumps(config.to_dict()))
        with open(stderr_path, "wb") as stderr:
            outcome = _run_worker(
                worker_argv(python, config_path, record_path, memory_limit_bytes), stderr, timeout_s, observer
            )
        tail = _tail(stderr_path, STDERR_TAIL_LINES)
        if outcome.timed_out:
            outcome.hung_at = _hung_at(stderr_path)
        record = _record_of(config, outcome, record_path, tail, timeout_s)
        return record if memory_limit_bytes is None else _under_limit(record, memory_limit_bytes, tail, outcome)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# Runs before anything of ours is imported: drop the '' entry `-c` puts first
# on sys.path (the current directory), then hand over to the worker. Only
# `sys` is touched before that, and it is built in.
_BOOTSTRAP = (
    "import sys; sys.path[:] = [p for p in sys.path if p != '']; "
    f"from {__package__}.worker import main; sys.exit(main(sys.argv[1:]))"
)


def worker_argv(python: str, config_path: Path, record_path: Path, memory_limit_bytes: int | None = None) -> list[str]:
    """The command line of one worker: never `-m`, which would import from the current directory."""
    limit = [] if memory_limit_bytes is None else [f"--memory-limit-bytes={memory_limit_bytes}"]
    return [python, "-c", _BOOTSTRAP, str(config_path), str(record_path), *limit]


def _run_worker(argv: list[str], stderr: Any, timeout_s: float | None, observer: RunObserver) -> _Outcome:
    outcome = _Outcome()
    start = time.monotonic()
    # A new session: the terminal's Ctrl-C reaches only the parent, which then
    # kills the worker's whole group (including any compiler subprocesses).
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    try:
        exited = _wait(proc, start, timeout_s, observer, outcome)
        if not exited:
            outcome.timed_out = True
            _kill_group(proc, dump_first=True)
        else:
            # Anything the worker started and left behind (compiler pools) goes
            # with it. Its unreaped zombie still holds the group id, so this
            # cannot hit an unrelated process that reused the number.
            _kill_group(proc, dump_first=False)
    except BaseException:  # KeyboardInterrupt above all: never leave a worker behind
        _kill_group(proc, dump_first=False)
        _reap(proc, outcome)
        raise
    _reap(proc, outcome)
    outcome.wall_s = time.monotonic() - start
    return outcome


def _wait(proc: subprocess.Popen, start: float, timeout_s: float | None, observer: RunObserver, outcome: _Outcome) -> bool:
    """Relay progress until the worker exits (True) or the timeout passes (False); blocks, never spins."""
    assert proc.stdout is not None
    out_fd = proc.stdout.fileno()
    pidfd = _pidfd(proc.pid)
    watched = [out_fd] + ([pidfd] if pidfd is not None else [])
    pending = b""
    try:
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
                    watched.remove(out_fd)  # the worker closed stdout: it is exiting
                    if pidfd is None:
                        return _wait_exit(proc, start, timeout_s)
            if pidfd is not None and pidfd in ready:
                return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when `pid` exits (Linux ≥ 5.3), or None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _wait_exit(proc: subprocess.Popen, start: float, timeout_s: float | None) -> bool:
    remaining = None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - start))
    try:
        proc.wait(remaining)
    except subprocess.TimeoutExpired:
        return False
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
        elif "refused" in event:
            outcome.refused = dict(event["refused"])
    return rest


def _kill_group(proc: subprocess.Popen, *, dump_first: bool) -> None:
    try:
        if dump_first:
            os.killpg(proc.pid, signal.SIGUSR1)
            _sleep_until_exit(proc, _DUMP_GRACE_S)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone


def _sleep_until_exit(proc: subprocess.Popen, seconds: float) -> None:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        pass


def _reap(proc: subprocess.Popen, outcome: _Outcome) -> None:
    """Collect the exit status and the worker's own resource usage (`wait4`: this child only)."""
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.returncode is not None:
        outcome.returncode = proc.returncode
        return
    _, status, rusage = os.wait4(proc.pid, 0)
    proc.returncode = outcome.returncode = os.waitstatus_to_exitcode(status)
    outcome.rusage = rusage


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
