"""Output files (`--json`, `-o`, `--markdown`): checked before any work, written whole or not at all.

Every command that writes a file checks its path first, before a store is
read or a cell measured — a directory, a missing or unwritable folder, a
target that is not a regular file (a device such as /dev/full, a FIFO) or a
read-only file is one line and exit 2, and nothing has been done yet. The
write itself goes to a temporary file beside the target, renamed over it once
complete, so a reader never sees half a file; if the write fails after all
(a full disk), the temporary file is removed, the target is as it was, and
the failure is the same one line.

The file gets the permissions an ordinary `open()` would give it — the
umask's, or the mode of the file it replaces — not mkstemp's private 0600.
A symlink at the target is written through: its target is replaced, the link
stays (replacing the link with a regular file would silently detach whatever
pointed there).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Sequence

from .errors import UserError


def check_output(path: Path | None, suffixes: Sequence[str] | None = None, flag: str = "-o") -> str | None:
    """Refuse an output path that cannot be written; return its suffix (without the dot), None without a path.

    `suffixes` None accepts any name (a record's `--json` may be called anything).
    """
    if path is None:
        return None
    shown = repr(str(path))
    target = _through_links(Path(path))
    if target.is_dir():
        raise UserError(f"{flag} {shown}: is a directory")
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffixes is not None and suffix not in suffixes:
        raise UserError(f"{flag} {shown}: unknown format {Path(path).suffix or '(none)'!r}; choose from "
                        + ", ".join(f".{s}" for s in suffixes))
    parent = target.parent
    if not parent.is_dir():
        raise UserError(f"{flag} {shown}: folder {str(parent)!r} does not exist")
    if not _can_create_in(parent):
        raise UserError(f"{flag} {shown}: folder {str(parent)!r} is not writable")
    if target.exists():
        mode = target.stat().st_mode
        if not stat.S_ISREG(mode):
            raise UserError(f"{flag} {shown}: exists and is not a regular file")
        if not os.access(target, os.W_OK):
            raise UserError(f"{flag} {shown}: the file is read-only")
    return suffix


def write_text_atomic(path: Path, text: str, flag: str = "output") -> None:
    """Write a whole file or nothing: a temporary file beside the target, renamed over it once complete."""
    target = _through_links(Path(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, _mode_for(target))
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"{flag} {str(path)!r}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be created there: tried, because permission bits do not tell (root, read-only mounts)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _through_links(path: Path) -> Path:
    """The file a write to `path` should replace: a symlink's final target, else the path itself."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _mode_for(target: Path) -> int:
    """The replaced file's permission bits, or what open() would give a new file under the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
