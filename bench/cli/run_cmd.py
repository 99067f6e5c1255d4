"""`aigcbench run`: measure one workload on one backend and store the record."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ...workloads.params import MODE_HELP, PARAMS
from ..errors import BackendUnavailable, UserError
from ..limits import range_help
from ..interpreters import PYTHON_HELP
from ..outputs import check_output
from .app import app, stdout_console, user_errors


@app.command("run")
def run_command(
    workload: str = typer.Option(..., "--workload", "-w", help="Workload name (see `aigcbench list workloads`)."),
    backend: str = typer.Option(..., "--backend", "-b", help="Backend name (see `aigcbench list backends`)."),
    size: str = typer.Option("base", help="Model size: tiny, base (the reference paper config) or large."),
    device: str = typer.Option("cpu", help="Device: cpu, cuda, cuda:N, mps (backend dependent)."),
    precision: str = typer.Option("fp32", help="fp32, fp16 or bf16."),
    batch_size: Optional[int] = typer.Option(
        None, help=f"Items per call {range_help('batch_size')} [default: 1 for latency, 8 for throughput]."
    ),
    scenario: str = typer.Option(
        "latency", help="latency (single stream), throughput (offline) or server (Poisson arrivals)."
    ),
    steps: Optional[int] = typer.Option(
        None, help=f"Denoising steps of iterative workloads {range_help('steps')}, at most the workload's own "
        "schedule [default: 50]."
    ),
    scheduler: Optional[str] = typer.Option(None, help="Scheduler of diffusion workloads: ddpm or ddim [default: ddpm]."),
    mode: str = typer.Option("infer", help=MODE_HELP),
    guidance: Optional[float] = typer.Option(None, help=f"{PARAMS['guidance'].help} {range_help('guidance')}"),
    prompt_tokens: Optional[int] = typer.Option(
        None, help=f"{PARAMS['prompt_tokens'].help} {range_help('prompt_tokens')}"),
    new_tokens: Optional[int] = typer.Option(None, help=f"{PARAMS['new_tokens'].help} {range_help('new_tokens')}"),
    frames: Optional[int] = typer.Option(None, help=f"{PARAMS['frames'].help} {range_help('frames')}"),
    seed: int = typer.Option(0, help=f"Seed of weights and inputs {range_help('seed')}."),
    # A str, not a Path: typer turns an empty path into ".", and `--weights ""` must be refused, not read as here.
    weights: Optional[str] = typer.Option(None, help="Load weights from this local folder instead of random init."),
    duration: float = typer.Option(
        5.0, help=f"Minimum measured seconds {range_help('duration')} (both this and --min-iterations)."
    ),
    min_iterations: int = typer.Option(10, help="Minimum measured calls."),
    max_iterations: int = typer.Option(100_000, help="Hard cap on measured calls."),
    max_duration: float = typer.Option(600.0, help="Hard cap on measured seconds."),
    target_rel_iqr: Optional[float] = typer.Option(
        None, help="Adaptive stop: end early once IQR/median ≤ this (after --min-iterations)."
    ),
    warmup: int = typer.Option(2, help="Minimum warm-up calls before measuring."),
    warmup_duration: float = typer.Option(1.0, help="Minimum warm-up seconds."),
    rate: Optional[str] = typer.Option(None, help="Server: offered load in queries/s (200, 200/s, 20000/h)."),
    max_batch: Optional[int] = typer.Option(None, help="Server: largest batch the dynamic batcher forms [default: 1]."),
    max_wait: Optional[str] = typer.Option(
        None, help="Server: longest a query waits for its batch to fill (5ms) [default: 0]."
    ),
    slo_p99: Optional[str] = typer.Option(None, help="Server: p99 latency objective (50ms, 2s); the run is valid if met."),
    find_max_rate: bool = typer.Option(
        False, "--find-max-rate", help="Server: search the highest rate whose p99 meets --slo-p99 (the capacity)."
    ),
    timeout: Optional[float] = typer.Option(
        None, help="Kill the worker after this many seconds and record the cell as failed [default: none]."
    ),
    memory_limit: Optional[str] = typer.Option(
        None, "--memory-limit",
        help="Cap the worker's memory (8GiB, 512MiB, 1.5GB, 2G; KiB/MiB/GiB binary, KB/MB/GB decimal, plain number"
        " = bytes) as RLIMIT_AS, its virtual address space; a cell that exceeds it is recorded as failed"
        " (\"exceeded memory limit 8 GiB\"). Not with --in-process or a CUDA device [default: none].",
    ),
    in_process: bool = typer.Option(
        False, "--in-process", help="Measure in this process instead of a worker (for debuggers and profilers)."
    ),
    python: Optional[str] = typer.Option(None, "--python", help=PYTHON_HELP),
    option: List[str] = typer.Option([], "--option", "-o", help="Backend option KEY=VALUE (repeatable)."),
    label: List[str] = typer.Option([], "--label", "-l", help="Label KEY=VALUE stored with the record (repeatable)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the record to this JSON file."),
    store: Optional[str] = typer.Option(
        None, help="Store: a SQLite path or a SQLAlchemy URL [default: $AIGCBENCH_STORE or ./aigcbench.db]."
    ),
    no_store: bool = typer.Option(False, "--no-store", help="Do not store the record."),
) -> None:
    """Measure WORKLOAD on BACKEND; print a result table, store the record, optionally write JSON.

    The measurement runs in its own worker process (a crash or a --timeout
    becomes a failed record). With --scenario server, --rate offers Poisson
    load; --slo-p99 with --find-max-rate searches the capacity instead.

    Exit 0 when the record is ok, 1 when it is invalid (fidelity) or failed,
    2 on bad input, 3 when the backend or device is unavailable here.
    """
    from ..walltime import command_timeline

    timeline = command_timeline()
    with user_errors():
        # Before the imports below: a bad limit is refused at once.
        limit_bytes = _memory_limit(memory_limit, in_process, device)
        explicit = _python(python, in_process)
        from ...reports.table import result_notes, result_table
        from .. import limits
        from ..config import RunConfig, parse_pairs
        from ..record import write_json
        from ..cell_check import check_config
        from ..store import Store

        values = {
            "workload": workload, "backend": backend, "size": size, "device": device, "precision": precision,
            "scenario": scenario, "batch_size": batch_size, "steps": steps, "scheduler": scheduler, "seed": seed,
            "weights": weights, "duration": duration, "min_iterations": min_iterations,
            "max_iterations": max_iterations, "max_duration": max_duration, "target_rel_iqr": target_rel_iqr,
            "warmup": warmup, "warmup_duration": warmup_duration,
            "options": parse_pairs(option, "--option"), "labels": parse_pairs(label, "--label"),
            "rate": rate, "max_batch": max_batch, "max_wait": max_wait, "slo_p99": slo_p99,
            "find_max_rate": find_max_rate, "mode": mode, "guidance": guidance, "prompt_tokens": prompt_tokens,
            "new_tokens": new_tokens, "frames": frames,
        }
        config = RunConfig.from_options({k: v for k, v in values.items() if v is not None})
        launcher = None if in_process else _spawned(config, explicit)
        opened, created, stored = None, False, False
        try:
            limits.check("timeout", timeout)
            check_output(json_path, None, "--json")  # before anything is measured
            # What needs torch or a runtime is checked in the worker, before it measures (cell_check.preflight).
            check_config(config)
            # Open the store before measuring: a bad store must not cost a measurement.
            created = not no_store and not Store.exists(store)
            opened = None if no_store else Store.open(store)
            record = _measure(config, launcher, timeout, limit_bytes, timeline)
            # False: the server stopped answering and the record was spooled (stderr said where).
            stored = opened is not None and opened.append(record)
        except (UserError, BackendUnavailable):
            if created and opened is not None:  # refused in the worker: leave no store this run made
                _discard_new(opened)
                opened = None
            raise
        finally:
            if launcher is not None:
                launcher.close()
            if opened is not None:
                opened.close()
        if json_path is not None:
            write_json(record, json_path)

        # Logs and CI capture stdout without a terminal: give the table room there.
        console = stdout_console()
        console.print(result_table([record]))
        for line in result_notes(record):
            console.print(line)
        if stored:
            console.print(f"stored in {opened.url} (run {record.run_id[:12]})")
        if json_path is not None:
            console.print(f"record written to {json_path}")
        if record.status == "failed" and record.metadata.get("traceback"):
            typer.echo(record.metadata["traceback"], err=True)
    if record.status != "ok":
        raise typer.Exit(1)


def _python(value: Optional[str], in_process: bool) -> Optional[str]:
    """--python as a checked interpreter path (it must have this aigcbench), refused with --in-process."""
    if value is None:
        return None
    if in_process:
        raise UserError("--python runs the worker in another interpreter; it cannot be combined with --in-process",
                        key="python")
    from ..interpreters import check_python

    return check_python(value, "--python")


def _spawned(config, explicit: Optional[str]):
    """The pre-imported worker a sweep cell gets, started now: it imports torch while the CLI checks and opens the store.

    It runs in the interpreter `--python` named, else in the backend's dedicated environment if made, else here.
    """
    from ...backends import registry as backend_registry
    from ...workloads.registry import model_modules
    from ..interpreters import interpreter_for
    from ..launchers import ZygoteLauncher

    python = interpreter_for(backend_registry.get(config.backend).environment, explicit)
    launcher = ZygoteLauncher(python, preload=model_modules([config.workload]))
    launcher.spawn()
    return launcher


def _measure(config, launcher, timeout: Optional[float], limit_bytes: Optional[int], timeline):
    """The cell's record, measured in a worker forked from `launcher`'s zygote, or here without one (--in-process)."""
    from ..isolation import run_isolated, with_wall_time
    from .progress import RichObserver

    with RichObserver() as observer:
        if launcher is None:
            from ..runner import run_cell

            return with_wall_time(run_cell(config, observer=observer, timeline=timeline), timeline)
        try:
            return run_isolated(
                config, timeout_s=timeout, observer=observer, memory_limit_bytes=limit_bytes, launcher=launcher,
                timeline=timeline,
            )
        finally:
            launcher.close()  # before the store append: the zygote has nothing left to do


def _discard_new(opened) -> None:
    from ..store import discard_if_empty

    discard_if_empty(opened)


def _memory_limit(value: Optional[str], in_process: bool, device: str) -> Optional[int]:
    """--memory-limit in bytes, refused when it cannot be applied to this run's worker."""
    if value is None:
        return None
    from ..resources import check_memory_limit, parse_memory_limit

    limit = parse_memory_limit(value, "--memory-limit")
    if in_process:
        # RLIMIT_AS cannot be lifted again by an unprivileged process: applied
        # here it would bind this CLI, its store writes and everything after.
        raise UserError("--memory-limit applies to the worker process; it cannot be combined with --in-process")
    check_memory_limit(limit, device, "--memory-limit")
    return limit
