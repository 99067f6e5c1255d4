"""How a cell's worker process starts: cold (a fresh interpreter) or forked from the pre-imported zygote.

`isolation.run_isolated` treats both alike through `Worker`: a process
group it can signal, an event pipe to read, a file descriptor that becomes
readable once the worker has exited, and `finish()` — kill what the worker
left in its group, reap it, return its exit code and kernel accounting.

* `ColdLauncher` spawns `python -c <bootstrap>` per cell: every import paid again.
* `ZygoteLauncher` starts `bench/zygote.py` lazily at the first cell (one per
  sweep command or run) and asks it to fork a child per cell. Cells on an
  accelerator start cold: the CUDA driver and TensorRT keep per-process state
  (driver threads, contexts, builder pools) that we have not shown safe to
  create in a child forked from a torch-importing parent, and the cost of a cold
  start is small beside such a cell's engine build. If the zygote cannot
  start, cells start cold, and each record says which way it started and why.
  If it dies, the next launch restarts it.

This module never imports torch: the CLI stays light.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from .walltime import now_ns
from .zygote import MAX_MESSAGE, WORKER_ENTRY, _send  # one wire format for both ends (zygote imports only the stdlib at load)

COLD, FORKED, FORKED_AFTER_RESTART = "cold", "forked", "forked-after-restart"
# Importing torch and diffusers takes seconds, more on a loaded CI machine.
ZYGOTE_READY_TIMEOUT_S = 300.0
# How long the zygote gets to fork (or to report a child's exit after SIGKILL).
_REPLY_TIMEOUT_S = 60.0

# Runs before anything of ours is imported: drop the '' entry `-c` puts first
# on sys.path (the current directory), then hand over. Only `sys` is touched
# before that, and it is built in.
_BOOTSTRAP = (
    "import sys; sys.path[:] = [p for p in sys.path if p != '']; "
    "from {module} import {function}; sys.exit({function}(sys.argv[1:]))"
)


def bootstrap(entry: str) -> str:
    """The `-c` program that runs `entry` ("module:function") with the command line's arguments."""
    module, _, function = entry.partition(":")
    return _BOOTSTRAP.format(module=module, function=function)


def worker_argv(
    python: str, config_path: Path, record_path: Path, memory_limit_bytes: int | None = None, entry: str | None = None
) -> list[str]:
    """The command line of one cold worker: never `-m`, which would import from the current directory."""
    return [python, "-c", bootstrap(entry or WORKER_ENTRY), *WorkerJob(config_path, record_path, memory_limit_bytes).argv()]


@dataclass(frozen=True)
class WorkerJob:
    """What one worker is asked to do: measure the config in one file, write the record to another."""

    config_path: Path
    record_path: Path
    memory_limit_bytes: int | None = None
    device: str = "cpu"
    # A "module:function" run instead of the worker's main: the sweep's cell check, and tests' probes.
    entry: str | None = None

    def argv(self) -> list[str]:
        limit = [] if self.memory_limit_bytes is None else [f"--memory-limit-bytes={self.memory_limit_bytes}"]
        return [str(self.config_path), str(self.record_path), *limit]


class Worker(Protocol):
    pid: int  # also its process group id
    events: int  # read end of its progress pipe
    start: str  # COLD, FORKED or FORKED_AFTER_RESTART
    start_reason: str | None  # why a cell under the zygote started cold
    lost: bool  # its zygote died under it: the cell is worth one retry
    # Where its start went, as walltime marks: ("worker_start", t), after ("zygote_start", t) if one was started.
    marks: tuple[tuple[str, int], ...]

    def exited_fd(self) -> int | None: ...

    def wait(self, timeout: float | None) -> bool: ...

    def signal(self, sig: int) -> None: ...

    def finish(self) -> tuple[int | None, Any]: ...


class Launcher(Protocol):
    def launch(self, job: WorkerJob, stderr_fd: int) -> Worker: ...

    def restart(self) -> None: ...

    def close(self) -> None: ...


class ColdWorker:
    """A fresh interpreter in a new session: the terminal's Ctrl-C reaches only the CLI, which kills its group."""

    lost = False

    def __init__(self, python: str, job: WorkerJob, stderr_fd: int, reason: str | None = None) -> None:
        self.marks: tuple[tuple[str, int], ...] = (("worker_start", now_ns()),)
        argv = worker_argv(python, job.config_path, job.record_path, job.memory_limit_bytes, job.entry)
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr_fd, start_new_session=True
        )
        assert self._proc.stdout is not None
        self.pid, self.events = self._proc.pid, self._proc.stdout.fileno()
        self.start, self.start_reason = COLD, reason
        try:  # readable when the worker exits, without reaping it (Linux >= 5.3)
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def exited_fd(self) -> int | None:
        return self._pidfd

    def wait(self, timeout: float | None) -> bool:
        if self._pidfd is not None:
            return bool(select.select([self._pidfd], [], [], timeout)[0])
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def signal(self, sig: int) -> None:
        if self._proc.returncode is None:  # reaped: the group id may belong to someone else now
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass

    def finish(self) -> tuple[int | None, Any]:
        # Anything it started and left behind (compiler pools) goes with it;
        # its unreaped zombie still holds the group id, so this hits no stranger.
        self.signal(signal.SIGKILL)
        assert self._proc.stdout is not None
        self._proc.stdout.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._proc.returncode is not None:
            return self._proc.returncode, None
        _, status, usage = os.wait4(self.pid, 0)
        self._proc.returncode = os.waitstatus_to_exitcode(status)
        return self._proc.returncode, usage


class ColdLauncher:
    """Every cell in a fresh interpreter (the old path, and what `--executor` plugins may still want)."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python

    def launch(self, job: WorkerJob, stderr_fd: int) -> Worker:
        return ColdWorker(self.python, job, stderr_fd)

    def restart(self) -> None:
        pass

    def close(self) -> None:
        pass


class ForkedWorker:
    """A child of the zygote. Signals go through the zygote, which alone can reap it and knows when it has."""

    def __init__(self, sock: socket.socket, pid: int, events: int, start: str) -> None:
        self._sock, self.pid, self.events, self.start = sock, pid, events, start
        self.start_reason: str | None = None
        self.marks: tuple[tuple[str, int], ...] = ()  # set by the launcher, which knows what it started
        self.lost = False

    def exited_fd(self) -> int | None:
        return self._sock.fileno()  # readable on its exit report, or when the zygote died

    def wait(self, timeout: float | None) -> bool:
        return bool(select.select([self._sock], [], [], timeout)[0])

    def signal(self, sig: int) -> None:
        _send(self._sock, {"kill": int(sig)})  # a dead zygote shows in finish()

    def finish(self) -> tuple[int | None, Any]:
        if not self.wait(0):
            self.signal(signal.SIGKILL)
        reply = _receive(self._sock, _REPLY_TIMEOUT_S)
        os.close(self.events)
        if reply is None or "exit" not in reply:
            self.lost = True  # its zygote died; the child went with it (PR_SET_PDEATHSIG)
            return None, None
        return int(reply["exit"]), SimpleNamespace(**reply["rusage"])


def cold_reason(device: str) -> str | None:
    """Why a cell on `device` must start cold even under the zygote, or None."""
    if device.split(":")[0] != "cpu":
        return f"device {device!r}: accelerator cells start cold (driver state is per process)"
    return None


class ZygoteLauncher:
    """Forks each cell from one pre-imported process, started at the first cell and closed by `close()`."""

    def __init__(self, python: str = sys.executable, preload: tuple[str, ...] = ()) -> None:
        self.python = python
        self.preload = tuple(preload)  # modules the cells will import (workloads' model_modules), beyond zygote.PRELOAD
        self._cold = ColdLauncher(python)
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._log: Any = None
        self._broken: str | None = None
        self._restarted = False
        self._ready = False  # the current zygote has said it is ready
        self._ready_ns = 0  # when it did

    @property
    def pid(self) -> int | None:
        """The zygote's pid while it runs (tests check it survives a crashing cell)."""
        return None if self._proc is None else self._proc.pid

    def launch(self, job: WorkerJob, stderr_fd: int) -> Worker:
        reason = cold_reason(job.device)
        if reason is None:
            begun, starting = now_ns(), not self._ready and self._broken is None
            forked = self._fork_with_restart(job, stderr_fd)
            if not isinstance(forked, str):
                forked.marks = self._start_marks(begun, starting)
                return forked
            reason = forked
        return ColdWorker(self.python, job, stderr_fd, reason)

    def _start_marks(self, begun: int, started_zygote: bool) -> tuple[tuple[str, int], ...]:
        if not started_zygote:
            return (("worker_start", begun),)
        return (("zygote_start", begun), ("worker_start", self._ready_ns))

    def _fork_with_restart(self, job: WorkerJob, stderr_fd: int) -> Worker | str:
        """A forked child; a zygote found dead is restarted once. A string says why the cell starts cold."""
        for _ in range(2):
            if self._sock is None:
                self.spawn()
            if not self._ready:
                self._await_ready()
            if self._broken is not None:
                return self._broken
            forked = self._fork(job, stderr_fd)
            if forked is not None:
                self._restarted = self._restarted and isinstance(forked, str)
                return forked
            self.restart()  # it died between cells: a fresh one, once
        return "the pre-imported worker died twice while starting this cell"

    def restart(self) -> None:
        """Drop the current zygote (dead, or lost under a cell); the next launch starts a fresh one."""
        self._stop()
        self._restarted = True

    def close(self) -> None:
        self._stop()

    def _fork(self, job: WorkerJob, stderr_fd: int) -> Worker | str | None:
        """A forked child, or why this cell must start cold, or None if the zygote is gone."""
        assert self._sock is not None
        read_end, write_end = os.pipe()
        request: dict[str, Any] = {"argv": job.argv()}
        if job.entry is not None:
            request["entry"] = job.entry
        try:
            sent = _send(self._sock, {"run": request}, [write_end, stderr_fd])
        finally:
            os.close(write_end)  # the child holds its own copy: EOF here when it exits
        reply = _receive(self._sock, _REPLY_TIMEOUT_S) if sent else None
        if reply is None or "pid" not in reply:
            os.close(read_end)
            return None if reply is None else str(reply.get("cold", reply))
        start = FORKED_AFTER_RESTART if self._restarted else FORKED
        return ForkedWorker(self._sock, int(reply["pid"]), read_end, start)

    def spawn(self) -> None:
        """Start the zygote now and return at once: it imports torch while the caller does other work.

        The first launch waits for it to be ready; without `spawn`, the first
        launch starts it. A command that is refused meanwhile closes it unused.
        """
        if self._sock is not None or self._broken is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log = tempfile.TemporaryFile(prefix="aigcbench-zygote-")
        argv = [self.python, "-c", bootstrap(f"{__package__}.zygote:serve"),
                str(theirs.fileno()), str(os.getpid()), *self.preload]
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                pass_fds=[theirs.fileno()], start_new_session=True,
            )
        finally:
            theirs.close()
        self._sock = ours

    def _await_ready(self) -> None:
        assert self._sock is not None
        reply = _receive(self._sock, ZYGOTE_READY_TIMEOUT_S)
        self._ready, self._ready_ns = reply is not None and "ready" in reply, now_ns()
        if not self._ready:
            said = reply.get("broken") if reply else self._last_log_line()
            self._broken = f"the pre-imported worker did not start: {said or 'no reason given'}"
            self._stop()

    def _last_log_line(self) -> str | None:
        try:
            self._log.seek(0)
            lines = [line for line in self._log.read()[-8192:].decode("utf-8", "replace").splitlines() if line.strip()]
        except (OSError, ValueError):
            return None
        return " ".join(lines[-1].split()) if lines else None

    def _stop(self) -> None:
        """Close the socket and SIGKILL the zygote; reap it.

        Between cells the zygote holds nothing worth a clean exit (its children
        are reaped before it reports them), and an interpreter that imported
        torch takes a noticeable while to tear itself down: the command would wait on it.
        """
        self._ready = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _receive(sock: socket.socket, timeout: float | None) -> dict | None:
    """One message from the zygote, or None when it is gone (or silent for `timeout` seconds)."""
    if not select.select([sock], [], [], timeout)[0]:
        return None
    try:
        data = sock.recv(MAX_MESSAGE)
    except OSError:
        return None
    return json.loads(data) if data else None
