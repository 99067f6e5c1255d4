"""`aigcbench calibrate [--store URL] [--device cpu|cuda[:i]] [--duration S] [--json PATH]`: this machine's ceilings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import typer

from ..errors import BackendUnavailable
from ..outputs import check_output
from .app import app, stdout_console, user_errors
from .reading import STORE_HELP


@app.command("calibrate")
def calibrate_command(
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    device: str = typer.Option("cpu", help="Device to measure: cpu, cuda or cuda:N."),
    duration: float = typer.Option(1.0, help="Measured seconds per ceiling (after sizing and a warm-up call)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the ceiling records to this JSON file."),
) -> None:
    """Measure this machine's real ceilings and store them as records.

    GEMM FLOP/s at fp32, bf16 and fp16 and memory copy bandwidth, each the
    best call over --duration seconds (datasheet peaks may be unreachable;
    the planner uses these for this machine). A precision the device cannot
    compute is skipped with a note; one far slower than fp32 is stored with
    an "emulated" warning. Exit 0, 2 on bad input, 3 when the device is not here.
    """
    with user_errors():
        import torch

        from .. import ceilings
        from ..probes.environment import fingerprint, git_commit
        from ..record import write_json
        from ..store import Store

        duration_s = ceilings.check_duration(duration)
        check_output(json_path, None, "--json")  # before anything is measured
        resolved = ceilings.resolve_device(device)
        # Refused input has changed nothing; only now may the store file be created.
        with Store.open(store) as opened:
            measured, notes = ceilings.calibrate(resolved, duration_s=duration_s)
            if not measured:
                raise BackendUnavailable(f"no ceiling could be measured on {resolved}: " + "; ".join(notes))
            records = ceilings.ceiling_records(measured, fingerprint(), git_commit(), torch.__version__)
            opened.append_many(records)
            url = opened.url
        if json_path is not None:
            write_json(records, json_path)

        console = stdout_console()
        console.print(ceiling_table(measured))
        for note in notes:
            console.print(f"note: {note}", highlight=False, markup=False)
        hardware = records[0].environment.get("hardware_key")
        console.print(f"stored {len(records)} ceiling records for {hardware} in {url}", highlight=False, markup=False)
        if json_path is not None:
            console.print(f"records written to {json_path}", highlight=False, markup=False)


def ceiling_table(measured: Sequence[Any]) -> Any:
    """One row per ceiling: its best and median rate, the size it ran at, its warnings."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from ...reports import units

    table = Table(title="aigcbench calibrate — measured ceilings", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("ceiling", "precision", "best", "median", "n", "warnings"):
        table.add_column(column, overflow="fold")
    for c in measured:
        unit = "FLOP" if c.kind == "gemm" else "B"
        size = str(c.size) if c.kind == "gemm" else units.bytes_(c.size)
        table.add_row(c.name, c.precision, units.rate(c.best_per_s, unit), units.rate(c.median_per_s, unit),
                      size, escape("; ".join(c.warnings)) or "—")
    return table
