"""`aigcbench store upgrade`: migrate a store written by an older aigcbench, after a backup."""

from __future__ import annotations

from typing import Optional

import typer

from .app import app, user_errors
from .reading import STORE_HELP

store_app = typer.Typer(
    name="store", help="Look after the result store.", no_args_is_help=True, rich_markup_mode=None,
)
app.add_typer(store_app, name="store")


@store_app.command("upgrade")
def upgrade_command(store: Optional[str] = typer.Option(None, help=STORE_HELP)) -> None:
    """Migrate a store of an older layout to this aigcbench's, in one transaction, after writing a backup.

    For a SQLite store the backup is a copy next to it (NAME.layout1-backup.db);
    for a server database, every record as JSON lines in the current folder
    (`aigcbench import` reads it back). Its path is printed. Other commands
    refuse an older store until it is upgraded. Exit 2 when there is no
    store, or it is not one this aigcbench can upgrade (nothing is changed).
    """
    with user_errors():
        from ..store_upgrade import upgrade_store

        done = upgrade_store(store)
        if done.backup is None:
            typer.echo(f"store {done.store} is already at layout {done.to_layout}; nothing to do")
            return
        typer.echo(f"backup of store layout {done.from_layout} written to {done.backup}")
        typer.echo(f"upgraded store {done.store} from layout {done.from_layout} to {done.to_layout} "
                   f"({done.records} records)")
