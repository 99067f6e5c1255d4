"""The `aigcbench` Typer application and its error contract.

Exit codes (DESIGN.md): 0 ok · 1 a verdict to act on · 2 bad input · 3 backend
unavailable. Bad input is one line on stderr, never a traceback or a usage
panel: scripts and CI parse it. Anything else that escapes is a bug and keeps
its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import typer

from ..errors import BackendUnavailable, UserError

PROG = "aigcbench"
# Typer's parse errors derive from click's ClickException, which recent Typer
# vendors under its own name; find it through a class Typer exports.
_CLICK_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def stdout_console() -> Any:
    """A rich Console for results: the terminal's width, or 160 columns in a pipe or a CI log (never 80-column wrap)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


def fail(message: str, code: int) -> "typer.Exit":
    typer.echo(f"{PROG}: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the two expected error kinds into one stderr line and their exit code."""
    try:
        yield
    except UserError as exc:
        raise fail(f"error: {exc}", UserError.exit_code) from None
    except BackendUnavailable as exc:
        raise fail(f"unavailable: {exc}", BackendUnavailable.exit_code) from None


class App(typer.Typer):
    """A Typer app whose own parse errors also follow the one-line contract."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            code = super().__call__(*args, standalone_mode=False, **kwargs)
        except _CLICK_ERROR as exc:
            typer.echo(f"{PROG}: error: {exc.format_message()}", err=True)  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        except typer.Abort:
            typer.echo(f"{PROG}: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = App(
    name=PROG,
    help="Benchmark generative models (GAN, VAE, diffusion) across inference backends and hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain: "[default: 1 for latency, 8 for throughput]" is text, not rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
