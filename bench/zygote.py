"""The pre-imported worker ("zygote"): import torch and the harness once, fork a fresh child per cell.

A cold worker spends seconds importing torch, numpy, scipy and the diffusers
model classes before it measures anything; a sweep paid that once per cell.
This process pays it once per sweep, then serves each cell by forking. The
child is the worker of `bench/worker.py` exactly as a cold one would be (it
calls the same `main`), only without the imports.

It runs as `python -c <bootstrap> FD CLI_PID [MODULE...]` (see `launchers.ZygoteLauncher`)
and talks to the CLI over a SOCK_SEQPACKET Unix socket, one JSON object per
message, file descriptors passed with `socket.send_fds`:

* zygote → CLI, once: `{"ready": pid}` or `{"broken": reason}` (the CLI then starts cells cold);
* CLI → zygote: `{"run": {"argv": [...]}}` with two fds, the write end of the
  cell's event pipe and its stderr file; the zygote answers `{"pid": N}` (the
  child's pid, which is also its process group and session), or
  `{"cold": reason}` when forking is not safe right now;
* CLI → zygote while the child runs: `{"kill": signum}` — sent to the child's
  whole group by the zygote, which alone knows whether the child is reaped,
  so a signal never reaches a process that reused the number;
* zygote → CLI when the child has exited: `{"exit": code, "rusage": {...}}`
  (`wait4` of that child, after its group's leftovers were killed).

What a fork must not carry over, and how each is kept out:
* threads: the zygote never runs a torch op (intra-op and OpenMP pools start
  on the first parallel op); OpenBLAS, which numpy and scipy start at import,
  stops its threads in its own pthread_atfork handler, so one throwaway fork
  at start-up leaves the zygote single-threaded, and every fork checks it still is;
* a CUDA context: the zygote never touches torch.cuda, and checks it is not initialised;
* a store connection: the zygote never imports the store;
* RNG state: the child reseeds Python's `random`, numpy's global RNG and torch
  from os.urandom (the harness still seeds each cell's own draws);
* environment and module state a cell changes: each child forks from the
  pristine zygote, never from a previous child.
The child gets its own session and process group (Ctrl-C and timeouts reach
its whole group), dies with the zygote (PR_SET_PDEATHSIG), and the zygote dies
with the CLI, so a CLI killed outright leaves nothing measuring.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import traceback
import warnings

# What every cell needs; nothing a single backend needs (onnxruntime, openvino,
# tensorrt, transformers stay out: a cell that uses them imports them itself).
PRELOAD = (
    "numpy",
    "scipy.special",
    "torch",
    "aigcbench.workloads.registry",
    "aigcbench.bench.runner",
    "aigcbench.bench.worker",
    "aigcbench.bench.record",
    "aigcbench.backends.registry",
    "aigcbench.backends.pytorch",
    "aigcbench.backends.null",
)
MAX_MESSAGE = 65536
WORKER_ENTRY = "aigcbench.bench.worker:main"
# Exit status of a child whose entry point raised something other than SystemExit (EX_SOFTWARE).
_CHILD_BUG = 70


def serve(argv: list[str]) -> int:
    """The zygote's main loop: preload, then serve cells one at a time until the CLI closes the socket."""
    sock = socket.socket(fileno=int(argv[0]))
    _die_with(int(argv[1]))
    try:
        _preload(argv[2:])
        broken = _prime_fork() or fork_hazard()
    except Exception as err:  # an import that fails here would fail in a cold worker too: say it, go cold
        broken = f"preloading failed: {type(err).__name__}: {err}"
    _send(sock, {"broken": broken} if broken else {"ready": os.getpid()})
    if broken:
        return 1
    while True:
        message, fds = _receive(sock)
        if message is None:
            return 0  # the CLI closed its end: the sweep is over (or the CLI is gone)
        if "run" in message:
            if not _serve_cell(sock, message["run"], fds):
                return 0
        else:  # a late "kill" for a child already reaped: nothing to do
            _close_all(fds)


def _preload(extra: list[str]) -> None:
    """PRELOAD, every workload's declaration, and `extra`: the model modules the command's cells build."""
    import importlib

    for name in (*PRELOAD, *extra):
        importlib.import_module(name)
    from aigcbench.workloads.registry import WORKLOADS

    for spec in WORKLOADS.values():
        importlib.import_module(spec.partition(":")[0])
    from aigcbench.bench.plugins import entry_point_specs

    entry_point_specs("aigcbench.backends")  # read once here, not once per cell


def _prime_fork() -> str | None:
    """Fork once and reap: native pools that stop themselves at fork (OpenBLAS) are then gone for good."""
    with warnings.catch_warnings():  # 3.12 warns about forking with those threads: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return None


def fork_hazard() -> str | None:
    """Why forking this process now would hand a child something it must not inherit, or None."""
    if not hasattr(os, "pidfd_open"):
        return "the pre-imported worker needs os.pidfd_open (Linux >= 5.3, Python >= 3.9) to watch its children"
    threads = _thread_count()
    if threads is not None and threads != 1:
        return f"the pre-imported worker has {threads} threads; forking it could deadlock a child"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "the pre-imported worker has a CUDA context, which a forked child cannot use"
    if "aigcbench.bench.store" in sys.modules:
        return "the pre-imported worker imported the store; a child could inherit its connection"
    return None


def _thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _serve_cell(sock: socket.socket, request: dict, fds: list[int]) -> bool:
    """Fork one child for `request`, relay kills to its group, report its exit; False if the CLI is gone."""
    hazard = fork_hazard()
    if hazard is not None or len(fds) != 2:
        _close_all(fds)
        return _send(sock, {"cold": hazard or "the cell's pipe and stderr did not arrive"})
    sys.stdout.flush()
    sys.stderr.flush()
    zygote = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(sock, fds, request, zygote)
    _close_all(fds)
    pidfd = os.pidfd_open(pid)
    try:
        alive = _send(sock, {"pid": pid})
        if alive:
            alive = _relay_kills(sock, pid, pidfd)
        else:
            _signal_group(pid, signal.SIGKILL)  # nobody would read its record
        # Exited but not yet reaped: its pid still holds the group id, so this
        # reaches only what it left behind (compiler pools), never a stranger.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        _signal_group(pid, signal.SIGKILL)
        _, status, usage = os.wait4(pid, 0)
    finally:
        os.close(pidfd)
    rusage = {"ru_maxrss": usage.ru_maxrss, "ru_utime": usage.ru_utime, "ru_stime": usage.ru_stime}
    return alive and _send(sock, {"exit": os.waitstatus_to_exitcode(status), "rusage": rusage})


def _relay_kills(sock: socket.socket, pid: int, pidfd: int) -> bool:
    """Until the child exits, pass the CLI's signals to its group; False (child killed) if the CLI is gone."""
    while True:
        ready, _, _ = select.select([sock, pidfd], [], [])
        if pidfd in ready:
            return True
        message, fds = _receive(sock)
        _close_all(fds)
        if message is None:
            _signal_group(pid, signal.SIGKILL)
            return False
        if "kill" in message:
            _signal_group(pid, int(message["kill"]))


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        # Not yet its own group (the child has not reached setsid): then it is alone.
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _child(sock: socket.socket, fds: list[int], request: dict, zygote: int) -> None:
    """The forked child: become a worker exactly as a cold one, then exit; never returns into the zygote."""
    code = _CHILD_BUG
    try:
        sock.close()
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        _close_all([devnull, *fds])
        _reseed()
        code = _entry(request.get("entry", WORKER_ENTRY))(list(request["argv"]), parent=zygote)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else _CHILD_BUG)


def _entry(spec: str):
    from aigcbench.bench.plugins import load

    return load(spec)


def _reseed() -> None:
    """Fresh global RNG state: every child of one zygote would otherwise draw the same numbers."""
    import random

    random.seed(os.urandom(32))
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """SIGKILL this zygote when the CLI that started it dies (the CLI's starting thread, strictly)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the CLI died before prctl took effect
        os._exit(0)


def _send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> bool:
    """One message; False when the other end is gone."""
    data = json.dumps(message).encode()
    try:
        if fds:
            socket.send_fds(sock, [data], fds)
        else:
            sock.send(data)
    except OSError:
        return False
    return True


def _receive(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """One message and the fds that came with it; (None, []) when the other end closed or broke."""
    try:
        data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 4)
    except OSError:
        return None, []
    if not data:
        _close_all(fds)
        return None, []
    return json.loads(data), list(fds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
