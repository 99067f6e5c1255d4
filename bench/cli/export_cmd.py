"""`aigcbench export`: write a selection of stored records as JSON lines (what `import` reads back)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app, user_errors
from .reading import STORE_HELP, WHERE_HELP


@app.command("export")
def export_command(
    output: Path = typer.Option(..., "--output", "-o", help="Write the records to this .jsonl file."),
    where: List[str] = typer.Option([], "--where", "-w", help=WHERE_HELP),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
) -> None:
    """Write the selected records, one whole record (samples included) per line, to a .jsonl file.

    The file is written whole or not at all; `aigcbench import` on another
    machine merges it into that machine's store.
    """
    with user_errors():
        import json

        from .reading import check_output, load_records, write_text_atomic

        check_output(output, ("jsonl",))
        records, url = load_records(where, store, samples=True)
        lines = [json.dumps(r.to_dict(), separators=(",", ":"), allow_nan=False) for r in records]
        write_text_atomic(output, "\n".join(lines) + "\n", "-o")
        typer.echo(f"exported {len(records)} records from {url} to {output}")
