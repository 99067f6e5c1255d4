"""`aigcbench import`: add records from files (aigcbench JSON / JSON lines, pytest-benchmark JSON) to the store."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .app import app, user_errors
from .reading import STORE_HELP


@app.command("import")
def import_command(
    files: List[Path] = typer.Argument(..., help="Files to import: aigcbench .json/.jsonl, or pytest-benchmark JSON."),
    fmt: Optional[str] = typer.Option(
        None, "--format", help="aigcbench or pytest-benchmark [default: detected from each file]."
    ),
    store: Optional[str] = typer.Option(None, help=STORE_HELP),
) -> None:
    """Validate every FILE, then add all their records to the store in one transaction.

    All or nothing: a bad file, or one bad record in a file, imports nothing
    (exit 2, one line naming the file and record). Records already stored
    (same run_id) are skipped, so importing a file twice adds nothing.
    """
    with user_errors():
        from ...reports.ingest import read_records
        from ..store import Store

        records = [record for path in files for record in read_records(path, fmt)]
        with Store.open(store) as opened:
            added = opened.append_many(records)
            url = opened.url
        skipped = len({r.run_id for r in records}) - added
        noun = "file" if len(files) == 1 else "files"
        note = f" ({skipped} already stored)" if skipped else ""
        typer.echo(f"imported {added} records from {len(files)} {noun} into {url}{note}")
