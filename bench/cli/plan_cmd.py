"""`aigcbench plan`: which hardware, how many, at what cost — and `plan --validate`, how far to trust it."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from .app import app, stdout_console, user_errors
from .reading import STORE_HELP, WHERE_HELP, check_output, write_text_atomic

PLAN_FORMATS = ("html", "md", "json")


@app.command("plan")
def plan_command(
    workload: Optional[str] = typer.Option(None, "--workload", "-w", help="Workload name (see `aigcbench list workloads`)."),
    size: str = typer.Option("base", help="Model size: tiny, base (the reference paper config) or large."),
    precision: str = typer.Option("fp32", help="fp32, fp16 or bf16: the precision every option runs at."),
    steps: Optional[int] = typer.Option(None, help="Denoising steps of iterative workloads [default: the workload's]."),
    scheduler: Optional[str] = typer.Option(None, help="Scheduler of diffusion workloads [default: the workload's]."),
    demand: Optional[str] = typer.Option(
        None, help="Items to serve: a rate (20000/h, 5/s) or a file of 24 hourly item counts (its peak hour sizes the fleet)."),
    slo_p99: Optional[str] = typer.Option(None, help="p99 latency objective per item, from arrival (2s, 500ms)."),
    hardware: Optional[str] = typer.Option(
        None, help="Only these devices: catalog ids, comma-separated (see `aigcbench list hardware`) [default: all]."),
    catalog: Optional[Path] = typer.Option(None, help="Extra or overriding hardware entries (.csv or .toml)."),
    headroom: str = typer.Option("20%", help="Spare capacity the fleet keeps above the peak demand (20% or 0.2)."),
    usd_per_kwh: float = typer.Option(0.15, help="Electricity price for purchased devices, $ per kWh."),
    amortise_months: int = typer.Option(36, help="Months over which a purchase price is spread."),
    pricing: str = typer.Option("cloud", help="cloud (rent where a $/h exists, else buy) or purchase (buy where priced)."),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the plan (or the validation rows) as JSON."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the procurement report: .html, .md or .json."),
    validate: bool = typer.Option(
        False, "--validate", help="Re-project every measured cell as if unmeasured (leave-one-out) and print the errors."),
    where: List[str] = typer.Option([], "--where", help=WHERE_HELP + " (--validate only)"),
) -> None:
    """Size a fleet per device for a workload at a demand and a p99 SLO; rank the options by cost.

    Every number carries its tier — measured (this hardware ran this
    configuration), calibrated (a neighbouring configuration measured here, or
    on the same GPU elsewhere) or roofline (the spec sheet with a cited prior
    efficiency) — and a low/high band. Exit 0 when an option meets the SLO, 1
    when none does (the closest is named), 2 on bad input.
    """
    with user_errors():
        if validate:
            _validate(where, store, json_path, catalog)
            return
        from ...reports.plan.request import build_request

        fmt = check_output(output, PLAN_FORMATS)
        check_output(json_path, ("json",), "--json")
        request = build_request(workload=workload, size=size, precision=precision, steps=steps, scheduler=scheduler,
                                demand=demand, slo_p99=slo_p99, hardware=hardware, headroom=headroom,
                                usd_per_kwh=usd_per_kwh, amortise_months=amortise_months, pricing=pricing)
        plan = _make(request, store, catalog)
        _emit(plan, fmt, output, json_path)
        if plan.best is None:
            raise typer.Exit(1)


def _make(request, store, catalog_path):  # type: ignore[no-untyped-def]
    from ...reports.plan.catalog import load_catalog
    from ...reports.plan.planner import make_plan

    catalog = load_catalog(catalog_path)
    return make_plan(request, _records(store), catalog)


def _records(store: Optional[str]) -> list:
    """Every record of the store, raw samples only where a plan reads them (none without a store: spec-sheet only).

    Summaries come without samples (`select(samples=False)`); only `ok`
    closed-loop records are service-time evidence, so only theirs are loaded.
    """
    import dataclasses

    from ...reports.plan.evidence import CLOSED_LOOP
    from ...reports.select import parse_where
    from ..store import Store

    if not Store.exists(store):
        return []
    with Store.open(store) as opened:
        records = opened.select(parse_where([]), samples=False)
        wanted = [r.run_id for r in records if r.status == "ok" and r.scenario.get("name") in CLOSED_LOOP]
        samples = opened.samples_of(wanted)
    return [dataclasses.replace(r, samples=samples[r.run_id]) if r.run_id in samples else r for r in records]


def _emit(plan, fmt, output, json_path) -> None:  # type: ignore[no-untyped-def]
    import json


    from ...reports.plan.render import plan_dict, plan_tables

    console = stdout_console()
    for renderable in plan_tables(plan):
        console.print(renderable)
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(plan_dict(plan), indent=2, allow_nan=False), "--json")
        typer.echo(f"plan written to {json_path}")
    if output is not None:
        from ...reports.plan.render import render

        write_text_atomic(output, render(plan, fmt), "-o")
        typer.echo(f"procurement report written to {output}")


def _validate(where: List[str], store: Optional[str], json_path: Optional[Path], catalog_path: Optional[Path]) -> None:
    import json


    from ...reports.plan.catalog import load_catalog
    from ...reports.plan.validate import validate, validation_dict, validation_table
    from .reading import load_records

    check_output(json_path, ("json",), "--json")
    catalog = load_catalog(catalog_path)
    chosen, _ = load_records(where, store, samples=False)  # which cells; refuses a bad or empty selection
    everything = _records(store)  # the evidence: ceilings too, even when --where names a workload
    named = {r.run_id for r in chosen}
    result = validate([r for r in everything if r.run_id in named], everything, catalog)
    if not result.rows:
        raise UserError("no measured cell in the selection can be re-projected (closed-loop ok records on a "
                        "device with a roofline: run `aigcbench calibrate`, then a sweep)")
    stdout_console().print(validation_table(result))
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(validation_dict(result), indent=2, allow_nan=False), "--json")
        typer.echo(f"validation rows written to {json_path}")
