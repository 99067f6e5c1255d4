"""`aigcbench store upgrade` and `aigcbench store flush`: look after the result store."""

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


@store_app.command("flush")
def flush_command(store: Optional[str] = typer.Option(None, help=STORE_HELP)) -> None:
    """Send the records this machine spooled while a server store did not answer; print how many.

    A record a run or sweep could not store (the network or the server went
    away) waits in a local spool ($AIGCBENCH_SPOOL, else
    $XDG_DATA_HOME/aigcbench/spool). This sends them in one transaction,
    skips run_ids the store already holds, and removes from the spool only
    what was sent; any command that opens the store does the same. Exit 2
    when the store cannot be reached (the spool is left as it was).
    """
    with user_errors():
        from .. import store_spool
        from ..store import Store, resolve_store_url, spool_of

        spool = spool_of(store)
        if spool is None:
            typer.echo(f"store {resolve_store_url(store)} is a local file: nothing is spooled for it")
        else:
            with Store.open(store, send_spooled=False) as opened:
                sent = opened.send_spooled()
            typer.echo(f"store {opened.url}: nothing spooled" if sent is None else store_spool.describe(sent, opened.url))
        for other, count in store_spool.spooled_elsewhere(spool).items():
            typer.echo(f"the spool also holds {count} record(s) for {other}: pass it (with its password) as --store")
