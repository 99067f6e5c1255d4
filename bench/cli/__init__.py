"""The command-line interface: one file per command, registered on one Typer app.

Importing this package imports typer and rich only; each command imports torch
and the rest of aigcbench inside its body, so `aigcbench --help` stays fast.
"""

from . import (  # noqa: F401  (registers the commands)
    calibrate_cmd, compare_cmd, env_cmd, export_cmd, history_cmd, import_cmd, list_cmd, plan_cmd, report_cmd,
    run_cmd, sweep_cmd,
)
from . import store_cmd  # noqa: F401  (registers `aigcbench store ...`)
from .app import app

__all__ = ["app"]
