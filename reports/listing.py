"""Tables for `aigcbench list` and `aigcbench env`."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich import box
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


def hardware_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """The hardware catalog, one `HardwareSpec.to_dict()` per row, in the catalog's units (in the headers)."""
    # Twelve columns want about 120 characters, so borders and padding are trimmed; a narrower terminal
    # gets cells shortened with '…' (`--json` keeps every number and every source).
    table = Table(title="hardware", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="dense peaks in TFLOPS (int8: TOPS); memory GB; bandwidth GB/s; "
                          "TDP W; launch price $; cloud $/h", caption_justify="left")
    table.add_column("id", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    for column in ("GB", "GB/s", "fp32", "fp16", "bf16", "int8", "W", "$", "$/h"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("source", ratio=1)  # the one column that wraps on a narrow terminal
    for row in rows:
        peaks = row.get("peak_tflops") or {}
        table.add_row(
            escape(row["id"]), row["kind"],
            _or_dash(row.get("memory_gb"), "{:.4g}"), _or_dash(row.get("memory_bw_gbs"), "{:.4g}"),
            *(_or_dash(peaks.get(p), "{:.4g}") for p in ("fp32", "fp16", "bf16", "int8")),
            _or_dash(row.get("tdp_w"), "{:g}"), _or_dash(row.get("launch_price_usd"), "{:,.0f}"),
            _or_dash(row.get("cloud_usd_per_hour"), "{:.3g}"), escape(_short_source(row)),
        )
    return table


def _or_dash(value: float | None, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)


def _short_source(row: Mapping[str, Any]) -> str:
    """Where a row comes from, in a few words: the first source's repository or web host, or its origin."""
    origin, sources = row.get("origin", "catalog"), row.get("sources") or []
    if origin == "measured":
        return f"measured ({len(row.get('measured_run_ids') or [])} records)"
    if origin != "catalog":
        return origin
    if not sources:
        return "—"
    first = sources[0]
    if "://" in first:
        from urllib.parse import urlparse

        first = urlparse(first).netloc.removeprefix("www.")
    else:
        first = first.split("@", 1)[0]  # owner/repo@commit:path -> owner/repo
    return first + (f" +{len(sources) - 1}" if len(sources) > 1 else "")
