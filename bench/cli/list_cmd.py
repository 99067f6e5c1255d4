"""`aigcbench list [workloads|backends] [--json]`: what this installation can run."""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import typer

from .app import app, user_errors


class Listable(str, Enum):
    workloads = "workloads"
    backends = "backends"


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


@app.command("list")
def list_command(
    what: Listable = typer.Argument(None, help="What to list; both when omitted.", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the workloads and backends, with each backend's availability and reason."""
    with user_errors():
        kinds = [what] if what else list(Listable)
        data = {kind.value: (_workloads() if kind is Listable.workloads else _backends()) for kind in kinds}
        if as_json:
            typer.echo(json.dumps(data[what.value] if what else data, indent=2))
            return
        from rich.console import Console

        from ...reports.listing import backends_table, workloads_table

        console = Console()
        if "workloads" in data:
            console.print(workloads_table(data["workloads"]))
        if "backends" in data:
            console.print(backends_table(data["backends"]))
