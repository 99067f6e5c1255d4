"""`aigcbench list [workloads|backends|hardware] [--json]`: what this installation can run, and on what."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from ...reports.plan.catalog import CATALOG_HELP
from .app import app, stdout_console, user_errors
from .reading import STORE_HELP


class Listable(str, Enum):
    workloads = "workloads"
    backends = "backends"
    hardware = "hardware"


def _workloads() -> list[dict[str, Any]]:
    from ...workloads import registry

    rows = []
    for name in registry.names():
        cls = registry.get(name)
        rows.append(
            {
                "name": name,
                "family": cls.family,
                "unit": cls.unit,
                "sizes": list(cls.sizes),
                "iterative": cls.iterative,
                "schedulers": list(cls.schedulers),
                "description": cls.description,
            }
        )
    return rows


def _backends() -> list[dict[str, Any]]:
    from ...backends import registry

    return [registry.describe(name) for name in registry.names()]


def _hardware(catalog: Path | None, store: str | None) -> list[dict[str, Any]]:
    """The catalog (with `--catalog`'s entries), then the machines the store holds ceiling records of."""
    from ...reports.plan.catalog import load_catalog
    from ...reports.plan.devices import measured_entries
    from ...reports.select import parse_where
    from ..store import Store

    specs = load_catalog(catalog)
    rows = [spec.to_dict() for spec in specs]
    if Store.exists(store):  # listing never creates a store
        with Store.open(store) as opened:
            ceilings = opened.select(parse_where(["scenario=ceiling", "status=ok"]), samples=False)
        rows += [spec.to_dict() for spec in measured_entries(ceilings, specs)]
    return rows


@app.command("list")
def list_command(
    what: Listable = typer.Argument(None, help="What to list; all three when omitted.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    catalog: Optional[Path] = typer.Option(None, "--catalog", help=CATALOG_HELP, show_default=False),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
) -> None:
    """List the workloads, the backends (with each one's availability and reason) and the hardware catalog."""
    with user_errors():
        kinds = [what] if what else list(Listable)
        makers = {Listable.workloads: _workloads, Listable.backends: _backends,
                  Listable.hardware: lambda: _hardware(catalog, store)}
        data = {kind.value: makers[kind]() for kind in kinds}
        if as_json:
            typer.echo(json.dumps(data[what.value] if what else data, indent=2))
            return

        from ...reports import listing

        console = stdout_console()
        tables = {"workloads": listing.workloads_table, "backends": listing.backends_table,
                  "hardware": listing.hardware_table}
        for kind, rows in data.items():
            console.print(tables[kind](rows))
