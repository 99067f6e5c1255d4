"""The command-line interface: one file per command, registered on one Typer app.

Importing this package imports typer and rich only; each command imports torch
and the rest of aigcbench inside its body, so `aigcbench --help` stays fast.
"""

from . import env_cmd, list_cmd, run_cmd, sweep_cmd  # noqa: F401  (registers the commands)
from .app import app

__all__ = ["app"]
