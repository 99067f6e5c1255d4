"""Tables for `aigcbench list` and `aigcbench env`."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.markup import escape
from rich.table import Table

from . import units


def workloads_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="workloads", title_justify="left")
    for column in ("name", "family", "unit", "sizes", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["family"], row["unit"], ", ".join(row["sizes"]), row["description"])
    return table


def backends_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="backends", title_justify="left")
    for column in ("name", "available", "version", "precisions", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            "yes" if row["available"] else "[red]no[/]",
            row.get("version") or "—",
            ", ".join(row.get("precisions", [])),
            escape(row.get("reason") or ""),  # reasons quote extras like aigcbench[tensorrt]
        )
    return table


def environment_table(env: Mapping[str, Any]) -> Table:
    table = Table(title="environment", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    cpu = env.get("cpu", {})
    table.add_row("hardware_key", str(env.get("hardware_key")))
    table.add_row("cpu", f"{cpu.get('model')} ({cpu.get('logical_cores')} logical cores)")
    table.add_row("cpu flags", ", ".join(cpu.get("flags", [])))
    table.add_row("memory", units.bytes_(env.get("memory_bytes")))
    for gpu in env.get("gpus", []):
        table.add_row(f"gpu {gpu.get('index')}", f"{gpu.get('name')} ({units.bytes_(gpu.get('memory_bytes'))})")
    if not env.get("gpus"):
        table.add_row("gpus", str(env.get("gpu_source")))
    table.add_row("python", str(env.get("python")))
    for name, version in (env.get("packages") or {}).items():
        table.add_row(name, version or "not installed")
    table.add_row("git commit", str(env.get("git_commit")))
    return table
