"""The command-line interface: one file per command, registered on one Typer app.

Importing this package imports typer and rich only; each command imports
the rest of aigcbench inside its body, so `aigcbench --help` stays fast, and
the measuring commands leave torch and the runtimes to their workers.
"""

import os
import sys

from . import (  # noqa: F401  (registers the commands)
    calibrate_cmd, compare_cmd, env_cmd, export_cmd, history_cmd, import_cmd, list_cmd, plan_cmd, report_cmd,
    run_cmd, sweep_cmd,
)
from . import store_cmd  # noqa: F401  (registers `aigcbench store ...`)
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    """The `aigcbench` console script: the app, then an exit that skips the interpreter's teardown.

    Once a command has returned, everything it owns is closed (stores, files,
    workers, the zygote) and its output is written; what finalization would
    still do is free a few hundred modules one by one, a quarter of a second
    that every command would pay after its work is done, outside any record's
    `metadata.wall_s`. So: flush the streams and leave.
    """
    code: object = 0
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken pipe: nothing more can be said
    os._exit(code or 0)
