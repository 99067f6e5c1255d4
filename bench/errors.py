"""The two kinds of errors the CLI distinguishes (DESIGN.md, principle 7).

`UserError` is bad input: the CLI prints its message on one line and exits 2.
`BackendUnavailable` means this machine cannot run what was asked (library
missing, no such device): one line, exit 3. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: one line on stderr, exit 2.

    `key` names the option at fault (as `RunConfig.from_options` spells it)
    when one is, so a caller can point at it (a sweep file's line) without
    parsing the message.
    """

    exit_code = 2

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class BackendUnavailable(Exception):
    """The backend or device cannot run on this machine: one line with the reason, exit 3."""

    exit_code = 3
