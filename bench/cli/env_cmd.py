"""`aigcbench env [--json]`: the environment fingerprint recorded with every result."""

from __future__ import annotations

import json

import typer

from .app import app, stdout_console, user_errors


@app.command("env")
def env_command(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Show this machine's fingerprint: CPU, memory, GPUs, library versions, hardware key."""
    with user_errors():
        from ..probes.environment import fingerprint, git_commit

        data = dict(fingerprint(), git_commit=git_commit())
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return

        from ...reports.listing import environment_table

        stdout_console().print(environment_table(data))
